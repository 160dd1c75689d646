"""State of the supervisor pattern: the conversation, the worker's task and the workers' results.

Workers never see the transcript: the supervisor hands each one a `TaskPayload` and gets a
`WorkerResult` back. Records carry the turn they belong to (the count of user messages so far), so
limits apply per turn and the state keeps only the current turn's records.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from langchain_core.messages import AnyMessage
from langgraph.graph import MessagesState
from langgraph.graph.message import add_messages
from langgraph.managed import RemainingSteps
from typing_extensions import TypedDict

from switchyard.state.outcomes import EndReason, Escalations
from switchyard.state.reducers import AgentMemory, merge_usage
from switchyard.state.usage import UsageLedger

TurnRecord = TypeVar("TurnRecord", bound=Mapping[str, Any])


def keep_current_turn(
    left: list[TurnRecord] | None, right: list[TurnRecord] | None
) -> list[TurnRecord]:
    """Append records, keeping only those of the newest turn.

    Keeps every record whose `turn` equals the `turn` of the newest record written; drops the
    records of earlier turns (their outcome is in `messages` and in earlier checkpoints). Writing
    an empty list changes nothing.
    """
    merged = [*(left or []), *(right or [])]
    if not right:
        return merged
    turn = right[-1]["turn"]
    return [record for record in merged if record["turn"] == turn]


class TaskPayload(TypedDict):
    """What the supervisor hands a worker; the worker sees `task`, never the transcript."""

    worker: str
    task: str
    call_id: str
    turn: int
    round: int


class WorkerResult(TypedDict):
    """What a worker reports back, attributed by name.

    `output` is the worker's answer as text (structured output as JSON); `data` is the structured
    output as a dict when the worker has an output schema, else None.
    """

    worker: str
    task: str
    output: str
    data: dict[str, Any] | None
    call_id: str
    turn: int
    round: int


class SupervisorInput(TypedDict):
    """What a caller sends: new messages (usually one user message)."""

    messages: Annotated[list[AnyMessage], add_messages]


class SupervisorOutput(TypedDict):
    """What a caller gets back: the conversation, this turn's worker results, usage, end reason."""

    messages: Annotated[list[AnyMessage], add_messages]
    results: Annotated[list[WorkerResult], keep_current_turn]
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None


class SupervisorState(MessagesState, AgentMemory, Escalations):
    """Full supervisor state, checkpointed per session.

    `task` and `end_reason` have a single writer (the supervisor node). `results` (every worker),
    `refusals` (every agent), `usage` and `messages` have several writers and explicit reducers.
    `remaining_steps` is LangGraph's managed count of steps left before the recursion limit.
    """

    task: TaskPayload | None
    results: Annotated[list[WorkerResult], keep_current_turn]
    refusals: Annotated[list[str], operator.add]
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None
    remaining_steps: RemainingSteps
