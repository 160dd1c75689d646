"""Secrets masked in span names, attribute values, events and statuses.

Everything goes through `switchyard.core.redact`, the masking the logs and the LangSmith client
use too, so a secret is masked the same way wherever it would have appeared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status
from opentelemetry.util.types import AttributeValue

from switchyard.core.redact import redact

# What a redacted copy of a span takes over as it is: ids, timing and structure hold no text.
_UNCHANGED_SPAN_FIELDS = (
    "context",
    "parent",
    "resource",
    "links",
    "kind",
    "start_time",
    "end_time",
    "instrumentation_scope",
)


def safe_value(value: Any) -> AttributeValue:
    """An attribute value with secrets masked.

    Args:
        value: Any value a span attribute is set from.

    Returns:
        Strings and lists of strings redacted, numbers and booleans (and lists of them) as they
        are, anything else as redacted JSON.
    """
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


def redacted_attributes(attributes: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    """Span or event attributes with every value passed through `safe_value`.

    Args:
        attributes: The attributes, None for none.

    Returns:
        A new mapping with the same keys, in the same order.
    """
    return {key: safe_value(value) for key, value in (attributes or {}).items()}


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


def _redacted_span(span: ReadableSpan) -> ReadableSpan:
    status = span.status
    if status.description:
        status = Status(status.status_code, redact(status.description))
    return ReadableSpan(
        name=redact(span.name),
        attributes=redacted_attributes(span.attributes),
        events=[
            Event(event.name, redacted_attributes(event.attributes), event.timestamp)
            for event in span.events
        ],
        status=status,
        **{name: getattr(span, name) for name in _UNCHANGED_SPAN_FIELDS},
    )
