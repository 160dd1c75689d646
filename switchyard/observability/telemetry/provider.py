"""Where spans go: the tracer provider and exporters the standard `OTEL_*` variables ask for.

Tracing is off by default: with no tracer provider installed, OpenTelemetry's API is a no-op.
`configure_tracing` installs one; runs started by the run facade use it (or the provider given to
`use_tracer_provider`) without it having to be OpenTelemetry's global one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from importlib.metadata import entry_points

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from switchyard.core.errors import SwitchyardError
from switchyard.observability.telemetry.conventions import truthy
from switchyard.observability.telemetry.redaction import RedactingSpanExporter

_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_EXPORTER_PACKAGES = {
    "otlp_proto_http": "opentelemetry-exporter-otlp-proto-http",
    "otlp_proto_grpc": "opentelemetry-exporter-otlp-proto-grpc",
}

_run_provider: trace.TracerProvider | None = None


class TelemetryConfigError(SwitchyardError, ValueError):
    """The `OTEL_*` settings ask for an exporter that is not installed or not known."""


def exporter_names(environ: Mapping[str, str] | None = None, *, console: bool = False) -> list[str]:
    """The span exporters the environment asks for (entry-point names), in order.

    `OTEL_TRACES_EXPORTER` is a comma-separated list (`otlp`, `console`, `none`, or any installed
    `opentelemetry_traces_exporter` entry point); `otlp` resolves by `OTEL_EXPORTER_OTLP_TRACES_
    PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL` (default `http/protobuf`). When it is unset, an
    `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) alone turns OTLP on. `console` adds
    the console exporter. Empty means tracing stays off.
    """
    env = os.environ if environ is None else environ
    if truthy(env.get("OTEL_SDK_DISABLED")):
        return []
    requested = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not requested and (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        requested = ["otlp"]
    names: list[str] = []
    for name in requested:
        if name == "none":
            continue
        resolved = _otlp_exporter_name(env) if name == "otlp" else name
        if resolved not in names:
            names.append(resolved)
    if console and "console" not in names:
        names.append("console")
    return names


def _otlp_exporter_name(env: Mapping[str, str]) -> str:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol not in _OTLP_BY_PROTOCOL:
        raise TelemetryConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use "
            f"{' or '.join(_OTLP_BY_PROTOCOL)}"
        )
    return _OTLP_BY_PROTOCOL[protocol]


def _load_exporter(name: str) -> SpanExporter:
    if name == "console":
        # Standard error, so spans never mix with the answer (or the JSON) on standard output;
        # one line per span, like `--log-json`.
        return ConsoleSpanExporter(
            out=sys.stderr, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        available = sorted(ep.name for ep in entry_points(group="opentelemetry_traces_exporter"))
        hint = _EXPORTER_PACKAGES.get(name)
        fix = f"pip install {hint}" if hint else f"use one of: {', '.join(available)}"
        raise TelemetryConfigError(f"span exporter {name!r} is not installed: {fix}")
    exporter_class = next(iter(found)).load()
    exporter: SpanExporter = exporter_class()  # exporters read their OTEL_* settings themselves
    return exporter


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Send the spans of runs started by the run facade to `provider` (None: the global one).

    For applications (and tests) that keep their own provider instead of installing a global one.
    """
    global _run_provider
    _run_provider = provider


def run_tracer_provider() -> trace.TracerProvider | None:
    """The provider runs started by the run facade send their spans to; None for the global one."""
    return _run_provider


def configure_tracing(
    *,
    console: bool = False,
    environ: Mapping[str, str] | None = None,
    set_global: bool = True,
) -> TracerProvider | None:
    """Install an OpenTelemetry tracer provider when the environment (or `console`) asks for one.

    Runs started by the run facade send their spans to it (see `use_tracer_provider`); with
    `set_global` it also becomes OpenTelemetry's global provider, for other instrumentations.
    Every exporter is wrapped in `RedactingSpanExporter`. An application that already installed a
    global provider keeps it (and its exporters); `console` then adds a console exporter to it.

    Args:
        console: Print every span to standard error as it ends (`switchyard run --trace`).
        environ: Read the `OTEL_*` settings from here; `os.environ` when None.
        set_global: Also install the provider as OpenTelemetry's global one (which can be done
            once per process).

    Returns:
        The provider spans now go to, or None when tracing is off (for runs, unless an
        application installed a global provider of its own).

    Raises:
        TelemetryConfigError: An exporter is requested that is not installed or not known.

    Example:
        ```python
        # OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 in the environment
        configure_tracing()
        run(graph, "I need a refund")  # spans go to the collector
        ```
    """
    names = exporter_names(environ, console=console)
    if not names:
        use_tracer_provider(None)
        return None
    current = trace.get_tracer_provider()
    if set_global and isinstance(current, TracerProvider):
        if console:
            current.add_span_processor(
                SimpleSpanProcessor(RedactingSpanExporter(_load_exporter("console")))
            )
        use_tracer_provider(None)  # runs use the application's (global) provider
        return current
    provider = _new_provider(names, os.environ if environ is None else environ)
    use_tracer_provider(provider)
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def _new_provider(names: list[str], env: Mapping[str, str]) -> TracerProvider:
    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    provider = TracerProvider(
        resource=Resource.create({} if named else {"service.name": "switchyard"})
    )
    for name in names:
        exporter = RedactingSpanExporter(_load_exporter(name))
        # The console exporter prints as spans end; network exporters send in batches.
        processor = (
            SimpleSpanProcessor(exporter) if name == "console" else BatchSpanProcessor(exporter)
        )
        provider.add_span_processor(processor)
    return provider


def tracing_active() -> bool:
    """Whether runs' spans go anywhere: a provider for runs, or a real global one, is installed."""
    if _run_provider is not None:
        return True
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
