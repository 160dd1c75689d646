"""The spans a handler has open, and which of them each LangChain run belongs to.

LangChain reports many runs per graph node (the node's runnable, its sequences, its parsers); only
some open a span. `SpanBook` maps every run it hears of to the span that contains it, so a model
call deep inside a node's runnables still nests under the node's span.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from switchyard.core.redact import redact
from switchyard.observability.telemetry.conventions import ERROR_TYPE
from switchyard.observability.telemetry.redaction import safe_value


@dataclass
class OpenSpan:
    """A span a handler started and has not ended yet, with what its runs reported so far."""

    span: Span
    kind: str  # "run", "node", "model", "tool"
    name: str
    started: float
    root: UUID
    parent: OpenSpan | None = None
    namespace: str | None = None
    node: str | None = None
    attempt: int = 1
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    known_cost_usd: float = 0.0  # dollars of its model calls with a known price
    unpriced_calls: int = 0  # its model calls with no known price
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

    def duration_ms(self) -> float:
        """Milliseconds since the span started, rounded to microseconds."""
        return round((time.perf_counter() - self.started) * 1000, 3)

    @property
    def cost_usd(self) -> float | None:
        """Dollars its model calls cost; None when one had no known price (never 0 for it)."""
        return None if self.unpriced_calls else round(self.known_cost_usd, 8)


class SpanBook:
    """The open spans of the runs a handler serves, keyed by LangChain run id.

    Not thread-safe on its own: the handler calls it under its lock.

    Args:
        tracer: Starts the spans.
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._open: dict[UUID, OpenSpan] = {}
        self._owner: dict[UUID, UUID] = {}  # every run we see -> the span that contains it

    def start(
        self,
        run_id: UUID,
        name: str,
        *,
        kind: str,
        parent: OpenSpan | None,
        span_kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any],
        **fields: Any,
    ) -> OpenSpan:
        """Start a span for `run_id` under `parent` (the current context's span when None).

        Args:
            run_id: The LangChain run the span stands for.
            name: The span's name (recorded redacted).
            kind: What the span stands for: "run", "node", "model" or "tool".
            parent: The span it nests under.
            span_kind: The OpenTelemetry span kind.
            attributes: Its first attributes; None values are left out, the rest redacted.
            **fields: Further `OpenSpan` fields.

        Returns:
            The open span.
        """
        context = (
            trace.set_span_in_context(parent.span)
            if parent is not None
            else otel_context.get_current()
        )
        span = self._tracer.start_span(
            redact(name),
            context=context,
            kind=span_kind,
            attributes={k: safe_value(v) for k, v in attributes.items() if v is not None},
        )
        opened = OpenSpan(
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

    def get(self, run_id: UUID) -> OpenSpan | None:
        """The open span started for `run_id`, if any."""
        return self._open.get(run_id)

    def root_of(self, opened: OpenSpan) -> OpenSpan | None:
        """The run span `opened` belongs to, while it is open."""
        return self._open.get(opened.root)

    def containing(self, run_id: UUID | None) -> OpenSpan | None:
        """The open span that contains the run `run_id` (None for a run of no open span)."""
        if run_id is None:
            return None
        owner = self._owner.get(run_id)
        return self._open.get(owner) if owner is not None else None

    def adopt(self, run_id: UUID, parent_run_id: UUID) -> None:
        """Count `run_id` as part of the span that contains `parent_run_id`."""
        self._owner[run_id] = self._owner[parent_run_id]

    def knows(self, run_id: UUID) -> bool:
        """Whether `run_id` belongs to an open span."""
        return run_id in self._owner

    def forget(self, run_id: UUID) -> None:
        """Drop `run_id`, a run that opened no span, once it has ended."""
        self._owner.pop(run_id, None)

    def close(self, run_id: UUID) -> None:
        """End the span of `run_id`; for a run span, also every span of the run still open."""
        opened = self._open.pop(run_id)
        self._owner.pop(run_id, None)
        opened.span.end()
        if opened.kind == "run":  # drop what is left of this run (runs that never ended)
            for key in [k for k, v in self._open.items() if v.root == run_id]:
                self._open.pop(key).span.end()
            for key in [k for k, v in self._owner.items() if v not in self._open]:
                self._owner.pop(key, None)

    def log_fields(self, opened: OpenSpan) -> dict[str, Any]:
        """The fields every log line about `opened` carries: its run's correlation id, ..."""
        root = self.root_of(opened)
        metadata = root.metadata if root is not None else {}
        return {
            "correlation_id": metadata.get("correlation_id"),
            "pattern": metadata.get("pattern"),
            "thread_id": metadata.get("thread_id"),
        }


def node_of(opened: OpenSpan | None) -> OpenSpan | None:
    """The node span that contains `opened` (itself when it is one)."""
    while opened is not None and opened.kind != "node":
        opened = opened.parent
    return opened


def set_attributes(span: Span, attributes: Mapping[str, Any]) -> None:
    """Set `attributes` on `span`, redacted, leaving out None values."""
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, safe_value(value))


def record_error(opened: OpenSpan, error: BaseException) -> None:
    """Mark `opened` as failed by `error`: `error.type`, an `exception` event, status ERROR.

    Only the first line of the error's message is kept, redacted.
    """
    message = redact(str(error).strip().splitlines()[0] if str(error).strip() else "")
    opened.span.set_attribute(ERROR_TYPE, type(error).__qualname__)
    opened.span.add_event(
        "exception",
        {"exception.type": type(error).__qualname__, "exception.message": message},
    )
    opened.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}"))


def mark_ok(opened: OpenSpan) -> None:
    """Set the status of `opened` to OK."""
    opened.span.set_status(Status(StatusCode.OK))
