"""Structured logging: JSON lines stamped with the run's correlation id, with secrets masked.

Every record handled by `configure_logging` carries the correlation id of the run it belongs to
(and the pattern, agent, thread and step when it was logged inside a graph node), so one `grep` for
a correlation id finds the run's log lines, spans, LangSmith runs and dead-letter records. The id
comes from, in order: an explicit `extra={"correlation_id": ...}`, the LangGraph run config of the
node that is executing (its metadata, set by the run facade), or `correlation_scope(...)`.

Messages, arguments, extra fields and tracebacks are redacted with `switchyard.core.redact.redact`.

Example:
    ```python
    configure_logging(json_lines=True)
    with correlation_scope(result.correlation_id):
        logging.getLogger("switchyard.storage.dlq").warning("run parked", extra={"thread_id": tid})
    ```
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from switchyard.core.redact import redact, redact_value

ROOT_LOGGER = "switchyard"
"""Logger every Switchyard module logs under (`switchyard.<module>`)."""

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "switchyard_correlation_id", default=None
)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is emitted.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
# Run-config metadata copied onto records logged inside a graph node, under these names.
_CONFIG_FIELDS = {
    "correlation_id": "correlation_id",
    "pattern": "pattern",
    "user_id": "user_id",
    "session_id": "session_id",
    "langgraph_node": "node",
    "langgraph_step": "step",
}
_HANDLER_MARK = "_switchyard_handler"


def current_correlation_id() -> str | None:
    """The correlation id of the run being executed here, if any (see the module docstring)."""
    config_id = _config_metadata().get("correlation_id")
    if isinstance(config_id, str) and config_id:
        return config_id
    return _correlation_id.get()


@contextmanager
def correlation_scope(correlation_id: str) -> Iterator[None]:
    """Stamp records logged inside the block (outside graph nodes too) with `correlation_id`."""
    token = _correlation_id.set(correlation_id)
    try:
        yield
    finally:
        _correlation_id.reset(token)


def _config_metadata() -> dict[str, Any]:
    from langgraph.config import get_config

    try:
        config = get_config()
    except RuntimeError:  # not inside a runnable
        return {}
    metadata = config.get("metadata") or {}
    return dict(metadata)


class CorrelationFilter(logging.Filter):
    """Adds `correlation_id` (and, inside a graph node, pattern/node/step) to every record.

    Values set explicitly with `extra=` are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp the record; never drops it."""
        metadata = _config_metadata()
        for source, target in _CONFIG_FIELDS.items():
            value = metadata.get(source)
            if value is not None and not hasattr(record, target):
                setattr(record, target, value)
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = _correlation_id.get()
        return True


class RedactingFormatter(logging.Formatter):
    """A text formatter whose output (message, arguments, traceback) has its secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        """Format as usual, then redact."""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id and extra fields.

    Field names: `ts` (ISO 8601, UTC), `level`, `logger`, `message`, `correlation_id`, then every
    `extra=` field (and `pattern`, `node`, `step` inside graph nodes), then `exception` when the
    record carries one. Every string is redacted; values that are not JSON types become strings.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Serialise the record as one line of JSON."""
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in payload and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(redact_value(_jsonable(payload)), ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


def configure_logging(
    *,
    json_lines: bool = False,
    level: int | str | None = None,
    stream: TextIO | None = None,
    logger_name: str = ROOT_LOGGER,
) -> logging.Handler:
    """Send the `switchyard` loggers' records to `stream`, redacted and correlated.

    Calling it again replaces the handler it installed before (nothing else is touched), so the
    CLI and tests can reconfigure freely. Records still propagate to the root logger; an
    application that also logs them from the root should call only one of the two.

    Args:
        json_lines: One JSON object per line (`JsonFormatter`) instead of readable text.
        level: Threshold; INFO for JSON lines (they are meant for a log pipeline), else WARNING.
        stream: Where to write; standard error when None.
        logger_name: The logger to configure (`switchyard` covers every module).

    Returns:
        The installed handler.
    """
    logger = logging.getLogger(logger_name)
    for existing in list(logger.handlers):
        if getattr(existing, _HANDLER_MARK, False):
            logger.removeHandler(existing)
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(CorrelationFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            RedactingFormatter("%(levelname)s %(name)s [%(correlation_id)s] %(message)s")
        )
    logger.addHandler(handler)
    logger.setLevel(
        level if level is not None else (logging.INFO if json_lines else logging.WARNING)
    )
    return handler


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to the `sys.stderr` of the moment a record is emitted (as `logging.lastResort`)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        """Ignored: the stream is always the current standard error."""
