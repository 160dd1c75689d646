"""OpenTelemetry tracing: a span per run, per agent (graph node) call, per model call and tool call.

`TelemetryCallbackHandler` is a LangChain callback handler; the run facade puts one in every run's
config, so it sees what LangGraph and LangChain report about the run without touching the agent
node: graph nodes arrive as chain runs carrying `langgraph_node` / `langgraph_checkpoint_ns`
metadata, model calls as chat-model runs whose `AIMessage.usage_metadata` holds the tokens. It
builds this tree (names and attributes follow the OpenTelemetry GenAI semantic conventions):

```
invoke_workflow router                 gen_ai.workflow.name, switchyard.pattern / correlation_id /
│                                      end_reason / route.* / retries / failed_node, token totals
├── classify                           switchyard.node, switchyard.route.agent / confidence
└── invoke_agent support               gen_ai.agent.name, switchyard.agent, switchyard.attempt,
    ├── chat gpt-4o-mini   (CLIENT)    gen_ai.request.model, gen_ai.usage.input_tokens / output_...,
    │                                  gen_ai.provider.name, switchyard.cost_usd
    └── execute_tool lookup            gen_ai.tool.name
```

A node span is an agent span when a model call runs in it. It is named after the agent the
call names in its metadata (`agent`, set by the agent node), else after the agents in the node's
usage-ledger update, else after the node: a node `plan` that runs the `manager` agent gives
`invoke_agent manager`. Nodes inside subgraphs nest under the node that runs the subgraph; each
attempt of a node retried by its `RetryPolicy` is its own span (`switchyard.attempt`), failed
attempts with status ERROR. Control flow that LangGraph raises (an interrupt, a handoff to the
parent graph) is recorded as `switchyard.control`, not as an error. Every span carries
`switchyard.correlation_id`. Attribute values are redacted (`switchyard.core.redact`); prompts and
replies are recorded only when `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, and
redacted then too.

Tracing is off by default: with no tracer provider installed, OpenTelemetry's API is a no-op.
`configure_tracing` installs one from the standard `OTEL_*` variables (`OTEL_TRACES_EXPORTER`,
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_SDK_DISABLED`, ...) or, with
`console=True` (`switchyard run --trace`), prints spans to standard error. No collector is needed.

LangSmith: when `LANGSMITH_TRACING=true`, `langsmith_callbacks` adds a LangSmith tracer whose
client redacts inputs, outputs and metadata; the run's tags and metadata (pattern, correlation id,
user, session, LangGraph node, agent) go with every run it records. Otherwise nothing is sent and
no client is created.

Why not opentelemetry-instrumentation-langchain (traceloop/openllmetry 0.62.4, evaluated on the
router graph): it produced 8 spans for one run where 4 say what happened (each node twice, once
for the LangGraph task and once for the node's runnable, plus a span for the `route_to_agent`
edge function); `gen_ai.request.model` was "unknown" for the offline model; it has no cost, route
confidence, end reason, retry attempt or Switchyard agent attribute, and its spans cannot be
enriched once they end. It records full prompts and replies by default (a planted `sk-...` key in
the user's message appeared verbatim in `gen_ai.input.messages`), and it works by patching
`BaseCallbackManager.__init__` for the whole process. A handler of our own gives exactly the spans
above, from the same callbacks, and only for the runs it is passed to.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from switchyard.core.errors import SwitchyardError
from switchyard.core.redact import redact, redact_value

if TYPE_CHECKING:
    from langsmith import Client

logger = logging.getLogger(__name__)

TRACER_NAME = "switchyard"
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# Attribute names: GenAI semantic conventions first, Switchyard's own under `switchyard.`.
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"
AGENT = "switchyard.agent"
AGENTS = "switchyard.agents"
NODE = "switchyard.node"
STEP = "switchyard.step"
ATTEMPT = "switchyard.attempt"
PATTERN = "switchyard.pattern"
CORRELATION_ID = "switchyard.correlation_id"
USER_ID = "switchyard.user_id"
SESSION_ID = "switchyard.session_id"
THREAD_ID = "switchyard.thread_id"
END_REASON = "switchyard.end_reason"
FAILED_NODE = "switchyard.failed_node"
RETRIES = "switchyard.retries"
COST_USD = "switchyard.cost_usd"
MODEL_CALLS = "switchyard.model_calls"
ROUTE_AGENT = "switchyard.route.agent"
ROUTE_CONFIDENCE = "switchyard.route.confidence"
ROUTE_REASON = "switchyard.route.reason"
GOTO = "switchyard.goto"
CONTROL = "switchyard.control"
USAGE_PREFIX = "switchyard.usage."

# LangChain provider ids -> `gen_ai.provider.name` well-known values.
_PROVIDERS = {
    "openai": "openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "google_genai": "gcp.gemini",
    "google_vertexai": "gcp.vertex_ai",
    "mistralai": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "cohere": "cohere",
    "ollama": "ollama",
    "offline": "switchyard.offline",
    "offlinechatmodel": "switchyard.offline",
}
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_EXPORTER_PACKAGES = {
    "otlp_proto_http": "opentelemetry-exporter-otlp-proto-http",
    "otlp_proto_grpc": "opentelemetry-exporter-otlp-proto-grpc",
}


class TelemetryConfigError(SwitchyardError, ValueError):
    """The `OTEL_*` settings ask for an exporter that is not installed or not known."""


# --------------------------------------------------------------------------- configuration


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def exporter_names(environ: Mapping[str, str] | None = None, *, console: bool = False) -> list[str]:
    """The span exporters the environment asks for (entry-point names), in order.

    `OTEL_TRACES_EXPORTER` is a comma-separated list (`otlp`, `console`, `none`, or any installed
    `opentelemetry_traces_exporter` entry point); `otlp` resolves by `OTEL_EXPORTER_OTLP_TRACES_
    PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL` (default `http/protobuf`). When it is unset, an
    `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) alone turns OTLP on. `console` adds
    the console exporter. Empty means tracing stays off.
    """
    env = os.environ if environ is None else environ
    if _truthy(env.get("OTEL_SDK_DISABLED")):
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
        if name == "otlp":
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
            name = _OTLP_BY_PROTOCOL[protocol]
        if name not in names:
            names.append(name)
    if console and "console" not in names:
        names.append("console")
    return names


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


_run_provider: trace.TracerProvider | None = None


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Send the spans of runs started by the run facade to `provider` (None: the global one).

    For applications (and tests) that keep their own provider instead of installing a global one.
    """
    global _run_provider
    _run_provider = provider


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
    env = os.environ if environ is None else environ
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
    use_tracer_provider(provider)
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def tracing_active() -> bool:
    """Whether runs' spans go anywhere: a provider for runs, or a real global one, is installed."""
    if _run_provider is not None:
        return True
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


# --------------------------------------------------------------------------- redaction


def _safe(value: Any) -> AttributeValue:
    """An attribute value with secrets masked (strings and sequences of strings)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return [redact(v) for v in value]
        if all(isinstance(v, bool | int | float) for v in value):
            return list(value)
    return redact(json.dumps(value, default=str))


class RedactingSpanExporter(SpanExporter):
    """Masks secrets in span names, attributes, events and status before another exporter runs.

    The handler already redacts what it records; this catches what other instrumentations record.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        """Wrap `exporter`."""
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export redacted copies of `spans`."""
        return self.exporter.export([_redacted_span(span) for span in spans])

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.exporter.force_flush(timeout_millis)


def _redacted_attributes(attributes: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    return {key: _safe(value) for key, value in (attributes or {}).items()}


def _redacted_span(span: ReadableSpan) -> ReadableSpan:
    status = span.status
    if status.description:
        status = Status(status.status_code, redact(status.description))
    return ReadableSpan(
        name=redact(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_redacted_attributes(span.attributes),
        events=[
            Event(event.name, _redacted_attributes(event.attributes), event.timestamp)
            for event in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


# --------------------------------------------------------------------------- the handler


@functools.cache
def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchyard")
    except PackageNotFoundError:  # running from a source tree
        return None


@dataclass
class _Open:
    """A span this handler started and has not ended yet."""

    span: Span
    kind: str  # "run", "node", "model", "tool"
    name: str
    started: float
    root: UUID
    parent: _Open | None = None
    namespace: str | None = None
    node: str | None = None
    attempt: int = 1
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    agents: list[str] = field(default_factory=list)  # agents its runs named (metadata "agent")
    called_model: bool = False  # a model call ran directly in this node
    # Root only: what the run's nodes reported.
    attempts: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    end_reason: str | None = None
    failed_node: str | None = None
    last_agent: str | None = None
    route: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class TelemetryCallbackHandler(BaseCallbackHandler):
    """Turns a run's LangChain callbacks into OpenTelemetry spans and log lines.

    Put it in the run's config (`config["callbacks"]`); the run facade does. One handler may serve
    several runs, one after another or at once (it is thread-safe).

    Args:
        tracer_provider: Where spans go; OpenTelemetry's global provider when None (a no-op until
            one is installed, e.g. by `configure_tracing`).
        capture_content: Record prompts and replies (redacted) as `gen_ai.input.messages` /
            `gen_ai.output.messages`; when None, the environment variable
            `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` decides (default off).

    Example:
        ```python
        handler = TelemetryCallbackHandler()
        graph.invoke(inputs, {"callbacks": [handler], "metadata": {"correlation_id": "c1"}})
        ```
    """

    run_inline = True  # keep callbacks in order, and in the caller's context, under ainvoke

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        capture_content: bool | None = None,
    ) -> None:
        super().__init__()
        self._tracer = trace.get_tracer(
            TRACER_NAME, _package_version(), tracer_provider=tracer_provider
        )
        self._capture = (
            _truthy(os.environ.get(CAPTURE_CONTENT_ENV))
            if capture_content is None
            else capture_content
        )
        self._open: dict[UUID, _Open] = {}
        self._owner: dict[UUID, UUID] = {}  # every run we see -> the span that contains it
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- helpers

    def _start(
        self,
        run_id: UUID,
        name: str,
        *,
        kind: str,
        parent: _Open | None,
        span_kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any],
        **fields: Any,
    ) -> _Open:
        context = (
            trace.set_span_in_context(parent.span)
            if parent is not None
            else otel_context.get_current()
        )
        span = self._tracer.start_span(
            redact(name),
            context=context,
            kind=span_kind,
            attributes={k: _safe(v) for k, v in attributes.items() if v is not None},
        )
        opened = _Open(
            span=span,
            kind=kind,
            name=name,
            started=time.perf_counter(),
            root=parent.root if parent is not None else run_id,
            parent=parent,
            **fields,
        )
        self._open[run_id] = opened
        self._owner[run_id] = run_id
        return opened

    def _parent(self, parent_run_id: UUID | None) -> _Open | None:
        if parent_run_id is None:
            return None
        owner = self._owner.get(parent_run_id)
        return self._open.get(owner) if owner is not None else None

    @staticmethod
    def _set(span: Span, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            if value is not None:
                span.set_attribute(key, _safe(value))

    def _fail(self, opened: _Open, error: BaseException) -> None:
        message = redact(str(error).strip().splitlines()[0] if str(error).strip() else "")
        opened.span.set_attribute(ERROR_TYPE, type(error).__qualname__)
        opened.span.add_event(
            "exception",
            {"exception.type": type(error).__qualname__, "exception.message": message},
        )
        opened.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}"))

    def _log_fields(self, opened: _Open) -> dict[str, Any]:
        root = self._open.get(opened.root)
        metadata = root.metadata if root is not None else {}
        return {
            "correlation_id": metadata.get("correlation_id"),
            "pattern": metadata.get("pattern"),
            "thread_id": metadata.get("thread_id"),
        }

    # ----------------------------------------------------------------- chains (runs and nodes)

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open the run span (a top-level chain) or a node span (a LangGraph task)."""
        metadata = metadata or {}
        name = kwargs.get("name") or (serialized or {}).get("name") or "graph"
        with self._lock:
            parent = self._parent(parent_run_id)
            if parent is None:
                self._open_run(run_id, str(name), metadata)
                return
            node = metadata.get("langgraph_node")
            namespace = metadata.get("langgraph_checkpoint_ns")
            container = self._node_of(parent)
            named = metadata.get("agent")
            if isinstance(named, str) and container is not None and named not in container.agents:
                container.agents.append(named)
            is_new_task = (
                isinstance(node, str)
                and not node.startswith("__")
                and namespace is not None
                and (container is None or namespace != container.namespace)
            )
            if not is_new_task:
                assert parent_run_id is not None  # a parent was found for it
                self._owner[run_id] = self._owner[parent_run_id]
                return
            assert isinstance(node, str)
            root = self._open[parent.root]
            attempt = root.attempts.get(str(namespace), 0) + 1
            root.attempts[str(namespace)] = attempt
            if attempt > 1:
                root.retries += 1
            self._start(
                run_id,
                node,
                kind="node",
                parent=parent,
                attributes={
                    NODE: node,
                    STEP: metadata.get("langgraph_step"),
                    ATTEMPT: attempt,
                    PATTERN: root.metadata.get("pattern"),
                    CORRELATION_ID: root.metadata.get("correlation_id"),
                },
                namespace=str(namespace),
                node=node,
                attempt=attempt,
            )

    def _open_run(self, run_id: UUID, name: str, metadata: dict[str, Any]) -> None:
        pattern = metadata.get("pattern") or name
        opened = self._start(
            run_id,
            f"invoke_workflow {pattern}",
            kind="run",
            parent=None,
            attributes={
                GEN_AI_OPERATION: "invoke_workflow",
                GEN_AI_WORKFLOW_NAME: pattern,
                PATTERN: pattern,
                CORRELATION_ID: metadata.get("correlation_id"),
                USER_ID: metadata.get("user_id"),
                SESSION_ID: metadata.get("session_id"),
                THREAD_ID: metadata.get("thread_id"),
                GEN_AI_CONVERSATION_ID: metadata.get("thread_id"),
            },
            metadata={
                key: metadata.get(key)
                for key in ("correlation_id", "pattern", "user_id", "session_id", "thread_id")
            },
        )
        opened.metadata["pattern"] = pattern

    @staticmethod
    def _node_of(opened: _Open | None) -> _Open | None:
        """The node span that contains `opened` (itself when it is one)."""
        while opened is not None and opened.kind != "node":
            opened = opened.parent
        return opened

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a node span (reading its state update) or the run span."""
        with self._lock:
            opened = self._open.get(run_id)
            if opened is None:
                self._owner.pop(run_id, None)
                return
            if opened.kind == "node":
                self._end_node(opened, outputs, error=None)
            elif opened.kind == "run":
                self._end_run(opened, outputs, error=None)
            self._close(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a node span or the run span with the error that ended it."""
        with self._lock:
            opened = self._open.get(run_id)
            if opened is None:
                self._owner.pop(run_id, None)
                return
            if opened.kind == "node":
                self._end_node(opened, None, error=error)
            elif opened.kind == "run":
                self._end_run(opened, None, error=error)
            self._close(run_id)

    def _close(self, run_id: UUID) -> None:
        opened = self._open.pop(run_id)
        self._owner.pop(run_id, None)
        opened.span.end()
        if opened.kind == "run":  # drop what is left of this run (runs that never ended)
            for key in [k for k, v in self._open.items() if v.root == run_id]:
                self._open.pop(key).span.end()
            for key in [k for k, v in self._owner.items() if v not in self._open]:
                self._owner.pop(key, None)

    def _end_node(self, opened: _Open, outputs: Any, *, error: BaseException | None) -> None:
        from langgraph.errors import GraphBubbleUp
        from langgraph.types import Command

        span = opened.span
        root = self._open.get(opened.root)
        update: Any = outputs
        if isinstance(outputs, Command):
            update = outputs.update
            goto = outputs.goto if isinstance(outputs.goto, list | tuple) else [outputs.goto]
            names = [g if isinstance(g, str) else getattr(g, "node", str(g)) for g in goto if g]
            self._set(span, {GOTO: names or None})
        usage = update.get("usage") if isinstance(update, Mapping) else None
        agents = _agents_of(opened, usage)
        is_agent = bool(agents)
        label = agents[0] if len(agents) == 1 else opened.node
        if is_agent:
            span.update_name(f"invoke_agent {label}")
            self._set(
                span,
                {
                    GEN_AI_OPERATION: "invoke_agent",
                    GEN_AI_AGENT_NAME: label,
                    AGENT: label,
                    AGENTS: agents if len(agents) > 1 else None,
                },
            )
        if isinstance(usage, Mapping) and usage:
            self._set(span, _usage_attributes(usage))
        if isinstance(update, Mapping):
            route = update.get("route")
            if isinstance(route, Mapping) and route.get("agent"):
                self._set(
                    span,
                    {
                        ROUTE_AGENT: route.get("agent"),
                        ROUTE_CONFIDENCE: route.get("confidence"),
                        ROUTE_REASON: route.get("reason"),
                    },
                )
                if root is not None and opened.parent is root:  # not a subgraph's own router
                    root.route = dict(route)
            end_reason = update.get("end_reason")
            if isinstance(end_reason, str):
                self._set(span, {END_REASON: end_reason})
                if root is not None and opened.parent is root:
                    root.end_reason = end_reason
        duration_ms = round((time.perf_counter() - opened.started) * 1000, 3)
        fields = {
            **self._log_fields(opened),
            "node": opened.node,
            "agent": label if is_agent else None,
            "attempt": opened.attempt,
            "duration_ms": duration_ms,
            "model_calls": opened.model_calls,
            "input_tokens": opened.input_tokens,
            "output_tokens": opened.output_tokens,
            "cost_usd": round(opened.cost_usd, 8),
        }
        if error is None:
            span.set_status(Status(StatusCode.OK))
            if is_agent and root is not None:
                root.last_agent = label
            logger.info("node %s finished in %.1f ms", opened.node, duration_ms, extra=fields)
        elif isinstance(error, GraphBubbleUp):  # an interrupt or a handoff to a parent graph
            span.set_attribute(CONTROL, type(error).__name__)
            logger.info(
                "node %s yielded control (%s)", opened.node, type(error).__name__, extra=fields
            )
        else:
            self._fail(opened, error)
            if root is not None:
                root.failed_node = opened.node
            logger.warning(
                "node %s failed (attempt %d): %s: %s",
                opened.node,
                opened.attempt,
                type(error).__name__,
                redact(str(error)),
                extra=fields,
            )

    def _end_run(self, opened: _Open, outputs: Any, *, error: BaseException | None) -> None:
        from langgraph.errors import GraphBubbleUp, GraphRecursionError

        span = opened.span
        if error is None:
            interrupted = isinstance(outputs, Mapping) and outputs.get("__interrupt__")
            end_reason = opened.end_reason or ("interrupted" if interrupted else "completed")
        elif isinstance(error, GraphRecursionError):
            end_reason = "recursion_limit"
        elif isinstance(error, GraphBubbleUp):
            end_reason = "interrupted"
        else:
            end_reason = "error"
        route = opened.route or {}
        self._set(
            span,
            {
                END_REASON: end_reason,
                RETRIES: opened.retries,
                MODEL_CALLS: opened.model_calls,
                GEN_AI_INPUT_TOKENS: opened.input_tokens,
                GEN_AI_OUTPUT_TOKENS: opened.output_tokens,
                COST_USD: round(opened.cost_usd, 8),
                ROUTE_AGENT: route.get("agent"),
                ROUTE_CONFIDENCE: route.get("confidence"),
                AGENT: opened.last_agent or route.get("agent"),
                FAILED_NODE: opened.failed_node if end_reason != "completed" else None,
            },
        )
        duration_ms = round((time.perf_counter() - opened.started) * 1000, 3)
        fields = {
            **self._log_fields(opened),
            "end_reason": end_reason,
            "duration_ms": duration_ms,
            "model_calls": opened.model_calls,
            "input_tokens": opened.input_tokens,
            "output_tokens": opened.output_tokens,
            "cost_usd": round(opened.cost_usd, 8),
            "retries": opened.retries,
            "failed_node": opened.failed_node,
        }
        if error is not None and not isinstance(error, GraphBubbleUp):
            self._fail(opened, error)
            logger.warning(
                "run %s ended: %s (%s: %s)",
                opened.metadata.get("pattern"),
                end_reason,
                type(error).__name__,
                redact(str(error)),
                extra=fields,
            )
            return
        if end_reason in ("completed", "interrupted"):
            span.set_status(Status(StatusCode.OK))
        else:
            span.set_status(Status(StatusCode.ERROR, f"run ended: {end_reason}"))
        logger.info(
            "run %s ended: %s in %.1f ms",
            opened.metadata.get("pattern"),
            end_reason,
            duration_ms,
            extra=fields,
        )

    # ----------------------------------------------------------------- model calls

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a `chat {model}` span."""
        self._model_start(run_id, parent_run_id, metadata or {}, kwargs, messages)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a `text_completion {model}` span (completion-style models)."""
        self._model_start(run_id, parent_run_id, metadata or {}, kwargs, None, prompts=prompts)

    def _model_start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any],
        kwargs: dict[str, Any],
        messages: list[list[BaseMessage]] | None,
        *,
        prompts: list[str] | None = None,
    ) -> None:
        params: dict[str, Any] = kwargs.get("invocation_params") or {}
        model = (
            metadata.get("ls_model_name")
            or params.get("model")
            or params.get("model_name")
            or params.get("model_id")
            or "unknown"
        )
        provider = str(metadata.get("ls_provider") or params.get("_type") or "unknown")
        operation = "chat" if messages is not None else "text_completion"
        with self._lock:
            parent = self._parent(parent_run_id)
            node = self._node_of(parent)
            root = self._open.get(parent.root) if parent is not None else None
            named = metadata.get("agent")
            agent = named if isinstance(named, str) else (node.node if node is not None else None)
            if node is not None:  # a node that calls a model is an agent, even if the call fails
                node.called_model = True
                if isinstance(named, str) and named not in node.agents:
                    node.agents.append(named)
            attributes: dict[str, Any] = {
                GEN_AI_OPERATION: operation,
                GEN_AI_PROVIDER: _PROVIDERS.get(provider, provider),
                GEN_AI_REQUEST_MODEL: str(model),
                GEN_AI_TEMPERATURE: metadata.get("ls_temperature", params.get("temperature")),
                GEN_AI_MAX_TOKENS: metadata.get("ls_max_tokens", params.get("max_tokens")),
                AGENT: agent,
                CORRELATION_ID: (root.metadata if root is not None else metadata).get(
                    "correlation_id"
                ),
            }
            if self._capture:
                if messages is not None:
                    attributes[GEN_AI_INPUT_MESSAGES] = _messages_json(
                        messages[0] if messages else []
                    )
                elif prompts:
                    attributes[GEN_AI_INPUT_MESSAGES] = json.dumps(
                        [{"role": "user", "content": prompts[0]}]
                    )
            self._start(
                run_id,
                f"{operation} {model}",
                kind="model",
                parent=parent,
                span_kind=SpanKind.CLIENT,
                attributes=attributes,
                node=str(agent) if agent else None,
                metadata={"model": str(model), "provider": provider},
            )

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a model span with the tokens, model and cost of the response."""
        with self._lock:
            opened = self._open.get(run_id)
            if opened is None or opened.kind != "model":
                return
            message = _first_message(response)
            usage: Mapping[str, Any] = (
                message.usage_metadata or {} if isinstance(message, AIMessage) else {}
            )
            if not usage:
                token_usage = (response.llm_output or {}).get("token_usage") or {}
                usage = {
                    "input_tokens": token_usage.get("prompt_tokens", 0),
                    "output_tokens": token_usage.get("completion_tokens", 0),
                }
            input_tokens = int(usage.get("input_tokens") or 0)
            output_tokens = int(usage.get("output_tokens") or 0)
            cached = int((usage.get("input_token_details") or {}).get("cache_read") or 0)
            reasoning = int((usage.get("output_token_details") or {}).get("reasoning") or 0)
            meta: Mapping[str, Any] = message.response_metadata if message is not None else {}
            response_model = (
                meta.get("model_name")
                or meta.get("model")
                or (response.llm_output or {}).get("model_name")
            )
            finish = meta.get("finish_reason") or meta.get("stop_reason")
            provider = str(meta.get("model_provider") or opened.metadata["provider"])
            cost = _price(
                provider,
                str(response_model or opened.metadata["model"]),
                input_tokens,
                output_tokens,
                cached,
            )
            self._set(
                opened.span,
                {
                    GEN_AI_INPUT_TOKENS: input_tokens,
                    GEN_AI_OUTPUT_TOKENS: output_tokens,
                    GEN_AI_CACHE_READ_TOKENS: cached or None,
                    GEN_AI_REASONING_TOKENS: reasoning or None,
                    GEN_AI_RESPONSE_MODEL: response_model,
                    GEN_AI_RESPONSE_ID: meta.get("id"),
                    GEN_AI_FINISH_REASONS: [str(finish)] if finish else None,
                    COST_USD: cost,
                },
            )
            if self._capture and message is not None:
                opened.span.set_attribute(GEN_AI_OUTPUT_MESSAGES, _messages_json([message]))
            opened.span.set_status(Status(StatusCode.OK))
            # Roll the call up into its node span and the run span.
            for holder in {
                id(h): h for h in (self._node_of(opened), self._open.get(opened.root)) if h
            }.values():
                holder.model_calls += 1
                holder.input_tokens += input_tokens
                holder.output_tokens += output_tokens
                holder.cost_usd += cost or 0.0
            duration_ms = round((time.perf_counter() - opened.started) * 1000, 3)
            logger.info(
                "model call %s for %s: %d/%d tokens in %.1f ms",
                opened.metadata["model"],
                opened.node,
                input_tokens,
                output_tokens,
                duration_ms,
                extra={
                    **self._log_fields(opened),
                    "agent": opened.node,
                    "model": opened.metadata["model"],
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cost_usd": cost,
                    "duration_ms": duration_ms,
                },
            )
            self._close(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a model span with the provider's error."""
        with self._lock:
            opened = self._open.get(run_id)
            if opened is None:
                return
            self._fail(opened, error)
            self._close(run_id)

    # ----------------------------------------------------------------- tools

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open an `execute_tool {name}` span."""
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "tool")
        with self._lock:
            parent = self._parent(parent_run_id)
            node = self._node_of(parent)
            self._start(
                run_id,
                f"execute_tool {name}",
                kind="tool",
                parent=parent,
                attributes={
                    GEN_AI_OPERATION: "execute_tool",
                    GEN_AI_TOOL_NAME: name,
                    GEN_AI_TOOL_CALL_ID: kwargs.get("tool_call_id"),
                    AGENT: node.node if node is not None else None,
                },
            )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a tool span."""
        with self._lock:
            opened = self._open.get(run_id)
            if opened is None:
                self._owner.pop(run_id, None)
                return
            status = getattr(output, "status", "success")
            if status == "error":
                opened.span.set_status(Status(StatusCode.ERROR, "tool reported an error"))
            else:
                opened.span.set_status(Status(StatusCode.OK))
            self._close(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a tool span with its error."""
        with self._lock:
            opened = self._open.get(run_id)
            if opened is None:
                return
            self._fail(opened, error)
            self._close(run_id)

    # ----------------------------------------------------------------- retrievers (no span)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Keep runs inside a retriever under the span that contains the retriever."""
        with self._lock:
            if parent_run_id is not None and parent_run_id in self._owner:
                self._owner[run_id] = self._owner[parent_run_id]

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the retriever run."""
        with self._lock:
            self._owner.pop(run_id, None)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the retriever run."""
        with self._lock:
            self._owner.pop(run_id, None)


def _agents_of(opened: _Open, usage: Any) -> list[str]:
    """The agents a node span ran, in order; empty when it is not an agent call.

    Agents named by the runs inside the node (metadata `agent`) come first. A node that called a
    model itself but named no agent ran the agents its usage ledger update names (or, with no
    ledger, the agent it is named after); a node that called no model (a router, a subgraph's
    parent) is an agent only when its ledger update names it.
    """
    if opened.agents:
        return list(opened.agents)
    ledger_agents: list[str] = []
    if isinstance(usage, Mapping):
        for entry in usage.values():
            name = entry.get("agent") if isinstance(entry, Mapping) else None
            if isinstance(name, str) and name not in ledger_agents:
                ledger_agents.append(name)
    if opened.called_model:
        return ledger_agents or [str(opened.node)]
    return [str(opened.node)] if opened.node in ledger_agents else []


def _usage_attributes(usage: Mapping[str, Any]) -> dict[str, Any]:
    totals: dict[str, float] = {}
    for entry in usage.values():
        if not isinstance(entry, Mapping):
            continue
        for key in (
            "calls",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cache_hits",
            "retries",
            "fallbacks",
            "cost_usd",
            "latency_ms_sum",
        ):
            value = entry.get(key)
            if isinstance(value, int | float):
                totals[key] = totals.get(key, 0) + value
    models = sorted({str(e.get("model")) for e in usage.values() if isinstance(e, Mapping)})
    attributes: dict[str, Any] = {f"{USAGE_PREFIX}{k}": v for k, v in totals.items()}
    attributes[f"{USAGE_PREFIX}models"] = models
    return attributes


def _first_message(response: LLMResult) -> BaseMessage | None:
    for generations in response.generations:
        for generation in generations:
            if isinstance(generation, ChatGeneration):
                return generation.message
    return None


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def _messages_json(messages: Sequence[BaseMessage]) -> str:
    return json.dumps(
        [{"role": _ROLES.get(m.type, m.type), "content": redact(m.text)} for m in messages],
        ensure_ascii=False,
    )


def _price(
    provider: str, model: str, input_tokens: int, output_tokens: int, cached: int
) -> float | None:
    from switchyard.core.pricing import cost_usd

    name = model.split(":", 1)[1] if model.startswith(f"{provider}:") else model
    try:
        return cost_usd(
            "offline" if provider == "offline" else f"{provider}:{name}",
            input_tokens,
            output_tokens,
            cached,
        )
    except SwitchyardError:
        return None


def redacting_langsmith_client(**kwargs: Any) -> Client:
    """A LangSmith client that masks secrets in every run's inputs, outputs and metadata.

    Args:
        **kwargs: Passed to `langsmith.Client` (endpoint, key, session, ...); by default it
            reads `LANGSMITH_*` like any client.
    """
    from langsmith import Client

    return Client(
        hide_inputs=_redact_mapping,
        hide_outputs=_redact_mapping,
        hide_metadata=_redact_mapping,
        **kwargs,
    )


def _redact_mapping(values: dict[str, Any]) -> dict[str, Any]:
    redacted: dict[str, Any] = redact_value(values)
    return redacted


@functools.cache
def _langsmith_client() -> Client:
    return redacting_langsmith_client()


def langsmith_callbacks() -> list[BaseCallbackHandler]:
    """The LangSmith tracer for a run: one whose client redacts, when LangSmith tracing is on.

    Returns an empty list when `LANGSMITH_TRACING` (or `LANGCHAIN_TRACING_V2`) is not `true`, so
    nothing is sent and no client is created, and when the caller traces with its own
    `tracing_v2_enabled(...)` block (its tracer, project and client are used instead). The run's
    tags and metadata (pattern, correlation id, user, session, and LangGraph's node and step) go
    with every run it records, so traces can be grouped per agent.
    """
    from langchain_core.tracers import LangChainTracer
    from langchain_core.tracers.context import tracing_v2_callback_var
    from langsmith.utils import tracing_is_enabled

    if tracing_is_enabled() is not True or tracing_v2_callback_var.get() is not None:
        return []
    return [LangChainTracer(client=_langsmith_client())]


def run_callbacks() -> list[BaseCallbackHandler]:
    """The callback handlers the run facade puts in every run's config.

    A `TelemetryCallbackHandler` when spans go somewhere (`tracing_active`) or the
    `switchyard.observability.telemetry` log lines are wanted (INFO enabled, e.g. `--log-json`),
    and the LangSmith tracer when LangSmith tracing is on (`langsmith_callbacks`). With all three
    off there is none: callbacks cost about 1 ms per run of the offline router.
    """
    handlers: list[BaseCallbackHandler] = []
    if tracing_active() or logger.isEnabledFor(logging.INFO):
        handlers.append(TelemetryCallbackHandler(tracer_provider=_run_provider))
    handlers.extend(langsmith_callbacks())
    return handlers
