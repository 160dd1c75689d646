"""What one agent call records while it runs: its usage ledger and the tool calls it refused.

The agent call opens a `CallRecord`; middleware deeper in the chain (the usage recorder, tool
authority) write to it through `current_record()`. It lives in a context variable, which follows
the call into every middleware layer, sync or async, and into retries and fallbacks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AnyMessage, BaseMessage
from pydantic import BaseModel, ValidationError

from switchyard.core.errors import SwitchyardError
from switchyard.state.reducers import merge_usage
from switchyard.state.usage import UsageLedger


@dataclass
class AgentReply:
    """What one agent call produced.

    Attributes:
        messages: New messages, in order: the agent's replies (named after the agent), tool calls
            and tool results. The last one is the agent's answer, or its handoff call.
        output: The answer: text, or a validated instance of the agent's output schema.
        usage: Ledger update for every model call made, failed ones included.
        handoff: The handoff tool call the agent made, if it made one (the pattern routes it).
        refusals: Tool calls refused because the agent did not declare the tool.
        memory: Session-scoped middleware state of the agent to checkpoint (`agent_state`).
        rejections: Why each structured answer rejected before this one was (re-asked).
        duration_ms: How long the call took.
        unread_handoff: The handoff tool the agent's answer names but does not call in any way
            Switchyard can read (its model can neither call tools nor write a readable call).
    """

    messages: list[AnyMessage]
    output: str | BaseModel
    usage: UsageLedger
    handoff: dict[str, Any] | None = None
    refusals: list[str] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    rejections: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    unread_handoff: str | None = None


class OutputValidationError(SwitchyardError):
    """An agent's output failed its output schema (or the pattern's check of it).

    Attributes:
        reply: The model's reply that failed (it was billed, so it is charged and recorded).
        problem: What is wrong with it.
        reask: What the model is told when it is asked again (default: the schema's message).
        answer: The rejected answer as text, shown to the model when it is asked again (a plan
            that parsed but cannot run, say); None shows only `reask`.
    """

    def __init__(
        self,
        message: str,
        *,
        reply: BaseMessage | None = None,
        problem: str = "",
        reask: str | None = None,
        answer: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reply = reply
        self.problem = problem or message
        self.reask = reask
        self.answer = answer


@dataclass
class CallRecord:
    """The running account of one agent call.

    Attributes:
        agent: The agent making the call.
        usage: Usage of every model call made so far, failed ones included.
        refusals: Tool calls refused because the agent did not declare the tool.
        rejections: Why each structured answer that failed its validation was rejected.
        reasks: How often this call may ask again for structured output (None: the
            `SchemaReask` middleware's own number).
    """

    agent: str
    usage: UsageLedger = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    reasks: int | None = None

    def add_usage(self, entry: UsageLedger) -> None:
        """Add a one-call ledger (`usage_entry(...)`) to the call's ledger."""
        self.usage = merge_usage(self.usage, entry)


_current: ContextVar[CallRecord | None] = ContextVar("switchyard_call_record", default=None)


def current_record() -> CallRecord | None:
    """The record of the agent call running this code, if any."""
    return _current.get()


@contextmanager
def recording(record: CallRecord) -> Iterator[CallRecord]:
    """Make `record` the current one for the block; errors leaving it carry its usage."""
    token = _current.set(record)
    try:
        yield record
    except Exception as exc:
        exc.switchyard_usage = record.usage  # type: ignore[attr-defined]
        exc.switchyard_rejections = record.rejections  # type: ignore[attr-defined]
        raise
    finally:
        _current.reset(token)


def partial_usage(error: BaseException) -> UsageLedger:
    """Usage of the model calls an agent call made before it failed with `error`.

    Error handlers add it to their update, so spend is never lost from the ledger.
    """
    usage: UsageLedger = getattr(error, "switchyard_usage", None) or {}
    return usage


def rejections_of(error: BaseException) -> list[str]:
    """Why each structured answer of the failed agent call behind `error` was rejected."""
    rejected: list[str] = getattr(error, "switchyard_rejections", None) or []
    return rejected


def parse_problem(error: object) -> str:
    """What is wrong with a structured answer, as one readable line.

    `error` is what the parser reported: None when the model answered in text instead of the
    schema, a pydantic `ValidationError` (its first error, with where it is), or anything else.
    """
    if error is None:
        return "no structured answer"
    if isinstance(error, ValidationError) and error.errors():
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
