"""One trace per turn across the client, the Workflow and every worker that ran an agent.

In one process the run's telemetry handler opens `invoke_workflow {pattern}` and a span per node
and model call. On Temporal the run is split over processes, so the pieces are joined by
OpenTelemetry context propagation, which Temporal's `TracingInterceptor` carries in the headers
of every Workflow start, Activity and signal:

```
invoke_workflow router           the client (TemporalInvoker), with the run's ids and end reason
└── StartWorkflow / RunWorkflow / StartActivity:...   Temporal's own spans
    └── RunActivity:router.support                     on whichever worker ran it
        └── invoke_agent support   (node_span)         agent, node, correlation id
            └── chat offline                           the agent's model calls, as in one process
```

Spans go where the process's tracer provider sends them (`configure_tracing`: the `OTEL_*`
variables; `switchyard worker` configures it as `switchyard run` does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from temporalio.contrib.opentelemetry import TracingInterceptor

from switchyard.observability.telemetry import (
    CORRELATION_ID,
    END_REASON,
    GEN_AI_AGENT_NAME,
    GEN_AI_CONVERSATION_ID,
    GEN_AI_OPERATION,
    GEN_AI_WORKFLOW_NAME,
    NODE,
    PATTERN,
    SESSION_ID,
    THREAD_ID,
    TRACER_NAME,
    USER_ID,
    run_tracer_provider,
)


def tracer() -> trace.Tracer:
    """The tracer of runs: the provider `configure_tracing` installed, else the global one."""
    return trace.get_tracer(TRACER_NAME, tracer_provider=run_tracer_provider())


def interceptor() -> TracingInterceptor:
    """Temporal's interceptor carrying the trace context between client, Workflow and Activity."""
    return TracingInterceptor(tracer())


@contextlib.contextmanager
def turn_span(pattern: str, metadata: Mapping[str, Any]) -> Iterator[trace.Span]:
    """The client's `invoke_workflow {pattern}` span, current while the turn runs."""
    thread = metadata.get("thread_id")
    attributes = {
        GEN_AI_OPERATION: "invoke_workflow",
        GEN_AI_WORKFLOW_NAME: pattern,
        PATTERN: pattern,
        CORRELATION_ID: metadata.get("correlation_id"),
        USER_ID: metadata.get("user_id"),
        SESSION_ID: metadata.get("session_id"),
        THREAD_ID: thread,
        GEN_AI_CONVERSATION_ID: thread,
        "switchyard.engine": "temporal",
    }
    with tracer().start_as_current_span(
        f"invoke_workflow {pattern}",
        attributes={k: v for k, v in attributes.items() if v is not None},
    ) as span:
        yield span


def end_turn(span: trace.Span, end_reason: str) -> None:
    """Record how the turn ended on its span."""
    span.set_attribute(END_REASON, end_reason)


@contextlib.contextmanager
def node_span(node: str, agent: str | None, metadata: Mapping[str, Any]) -> Iterator[None]:
    """An Activity's node span (`invoke_agent {agent}`, else the node's name), made current."""
    attributes: dict[str, Any] = {NODE: node, CORRELATION_ID: metadata.get("correlation_id")}
    if agent is not None:
        attributes[GEN_AI_OPERATION] = "invoke_agent"
        attributes[GEN_AI_AGENT_NAME] = agent
    with tracer().start_as_current_span(
        f"invoke_agent {agent}" if agent is not None else node,
        attributes={k: v for k, v in attributes.items() if v is not None},
    ):
        yield
