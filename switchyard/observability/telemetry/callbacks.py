"""Which callback handlers a run gets: Switchyard's telemetry handler, LangSmith's tracer.

The run facade calls `run_callbacks` for every run. Each handler is added only when what it
produces goes somewhere, because callbacks cost time on every run even when nobody listens.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import BaseCallbackHandler

from switchyard.core.redact import redact_value
from switchyard.observability.telemetry.conventions import logger
from switchyard.observability.telemetry.handler import TelemetryCallbackHandler
from switchyard.observability.telemetry.provider import run_tracer_provider, tracing_active

if TYPE_CHECKING:
    from langsmith import Client


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
        handlers.append(TelemetryCallbackHandler(tracer_provider=run_tracer_provider()))
    handlers.extend(langsmith_callbacks())
    return handlers
