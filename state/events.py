"""State of the event-driven pattern: events, the capped event log, dead letters and reducers.

An `Event` carries its type, data, the run's correlation id, the id of the event that caused it,
its depth in the causal chain, its source and a timestamp. Handlers publish events into an outbox
(`published`); the bus drains it, enforces the run's limits, logs every event with its outcome and
delivers the rest to their subscribers. Failed handlers leave a `DeadLetter` with the event.
"""

from __future__ import annotations

import operator
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired, Required

from langchain_core.messages import AnyMessage
from langgraph.graph import MessagesState
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from switchyard.state.outcomes import EndReason
from switchyard.state.reducers import AgentMemory, merge_usage
from switchyard.state.usage import UsageLedger

EVENT_LOG_CAP = 200
"""Most entries the event log keeps (the newest); older entries are dropped."""

DEAD_LETTER_CAP = 100
"""Most dead letters kept in state (the newest); older ones are dropped."""


class Event(TypedDict):
    """One event.

    Attributes:
        id: Unique id of the event.
        type: What happened, as dotted lowercase words (e.g. "article.submitted").
        data: The payload; events made from a user message or a handler's publication carry
            their text under "content".
        correlation_id: Id shared by every event of one run.
        causation_id: Id of the event whose handler published this one (None for the first).
        depth: Steps from the run's first event (0) along the causal chain.
        source: Who published it: "user", "input" (an explicit event) or an agent's name.
        timestamp: When it was published (ISO 8601, UTC).
    """

    id: str
    type: str
    data: dict[str, Any]
    correlation_id: str
    causation_id: str | None
    depth: int
    source: str
    timestamp: str


class InitialEvent(TypedDict, total=False):
    """An explicit first event a caller may send instead of (or with) a user message."""

    type: Required[str]
    data: dict[str, Any]
    correlation_id: str


class EventRecord(TypedDict):
    """One entry of the event log: an event and what the bus did with it.

    Attributes:
        event: The event.
        outcome: "delivered" (to `delivered_to`), "unhandled" (nobody subscribes to its type) or
            "dropped" (a run limit was reached; `note` says which).
        delivered_to: The agents it was delivered to.
        note: Why it was dropped, or "".
    """

    event: Event
    outcome: Literal["delivered", "unhandled", "dropped"]
    delivered_to: list[str]
    note: str


class Delivery(TypedDict):
    """One event for one subscriber: the payload of a `Send` to the agent's node."""

    agent: str
    event: Event


class Handled(TypedDict):
    """What one handler did with one event.

    Attributes:
        agent: The handler.
        event_id: The event it handled.
        event_type: The event's type.
        output: Its answer: text, or a structured output as a dict.
        published: Ids of the events it published.
        converged: Why its answer ends the run: it gave it to the same event before (see
            `switchyard.guardrails.convergence`); absent otherwise.
    """

    agent: str
    event_id: str
    event_type: str
    output: str | dict[str, Any]
    published: list[str]
    converged: NotRequired[str]


class DeadLetter(TypedDict):
    """A handler that failed, with the event it failed on.

    Attributes:
        agent: The handler that failed.
        event: The event it was handling.
        error: One line naming the error (and the failed fallback models, if any).
        timestamp: When the failure was recorded (ISO 8601, UTC).
        stopped_by: The guardrail that stopped the handler (`budget_exceeded`, `deadline`),
            when one did; the run then ends with that reason.
    """

    agent: str
    event: Event
    error: str
    timestamp: str
    stopped_by: NotRequired[EndReason]


def now() -> str:
    """The current time as an ISO 8601 UTC timestamp with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def make_event(
    type_: str,
    data: dict[str, Any],
    *,
    source: str,
    correlation_id: str,
    cause: Event | None = None,
) -> Event:
    """A new event with a fresh id and timestamp; `cause` sets its causation id and depth."""
    return Event(
        id=uuid.uuid4().hex,
        type=type_,
        data=data,
        correlation_id=correlation_id,
        causation_id=cause["id"] if cause is not None else None,
        depth=cause["depth"] + 1 if cause is not None else 0,
        source=source,
        timestamp=now(),
    )


def _append_capped(left: list[Any] | None, right: list[Any] | None, cap: int) -> list[Any]:
    merged = [*(left or []), *(right or [])]
    return merged[-cap:]


def append_event_log(
    left: list[EventRecord] | None, right: list[EventRecord] | None
) -> list[EventRecord]:
    """Append to the event log, keeping only the newest `EVENT_LOG_CAP` entries.

    Keeps entries in the order they were appended and never edits one (append-only); once the log
    is full, the oldest entries are dropped to make room. Only the bus writes it.
    """
    merged: list[EventRecord] = _append_capped(left, right, EVENT_LOG_CAP)
    return merged


def append_dead_letters(
    left: list[DeadLetter] | None, right: list[DeadLetter] | None
) -> list[DeadLetter]:
    """Append dead letters, keeping only the newest `DEAD_LETTER_CAP`.

    Parallel handlers may fail in the same step; every failure is kept, in step order, until the
    cap drops the oldest.
    """
    merged: list[DeadLetter] = _append_capped(left, right, DEAD_LETTER_CAP)
    return merged


class EventsInput(TypedDict, total=False):
    """What a caller sends: a user message (it becomes the first event), or an explicit event."""

    messages: Annotated[list[AnyMessage], add_messages]
    event: InitialEvent | None


class EventsOutput(TypedDict):
    """What a caller gets back."""

    messages: Annotated[list[AnyMessage], add_messages]
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None
    end_detail: str | None
    correlation_id: str | None
    event_count: int
    handled: Annotated[list[Handled], operator.add]
    event_log: Annotated[list[EventRecord], append_event_log]
    dead_letters: Annotated[list[DeadLetter], append_dead_letters]


class EventsState(MessagesState, AgentMemory):
    """Full event-driven state, checkpointed per session.

    Single writers: `event` (cleared by ingest once read), `correlation_id` and `depth_limit`
    (ingest), `pending`, `event_count`, `end_reason` and `end_detail` (the bus, every round).
    Written by several nodes, so with reducers: `published` (ingest and parallel handlers append,
    the bus drains it with `Overwrite([])`), `handled` (parallel handlers append; ingest resets it
    per run), `dead_letters` (parallel failure handlers), `event_log` (append-only, capped) and
    `usage`.
    """

    event: NotRequired[InitialEvent | None]
    correlation_id: str | None
    depth_limit: int
    published: Annotated[list[Event], operator.add]
    pending: list[Delivery]
    event_count: int
    handled: Annotated[list[Handled], operator.add]
    event_log: Annotated[list[EventRecord], append_event_log]
    dead_letters: Annotated[list[DeadLetter], append_dead_letters]
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None
    end_detail: str | None
