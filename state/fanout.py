"""State of the fan-out / fan-in pattern: worker tasks, per-worker results, the vote, usage.

Workers run in parallel (one `Send` each) and each writes only its own entry of `results`, keyed by
its name, so the merged state is the same whatever order they finish in.
"""

from __future__ import annotations

import operator
from typing import Annotated, Literal, NotRequired

from langchain_core.messages import AnyMessage
from langgraph.graph import MessagesState
from langgraph.graph.message import add_messages
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from typing_extensions import TypedDict

from switchyard.state.outcomes import EndReason, Escalations
from switchyard.state.reducers import AgentMemory, merge_usage
from switchyard.state.usage import UsageLedger

MergeStrategy = Literal["collect", "vote", "synthesize"]
"""How worker results become one answer: all of them, the majority's, or a merger agent's."""

MERGE_STRATEGIES: tuple[MergeStrategy, ...] = ("collect", "vote", "synthesize")

WorkerStatus = Literal["ok", "failed"]


class WorkerTask(TypedDict):
    """The payload `Send` gives one worker: who it is and the request, nothing else."""

    worker: str
    request: str


class ShardTask(TypedDict):
    """The payload `Send` gives one shard of a wide fan-out: its workers and the request.

    A graph with more workers than its shard size sends one `ShardTask` per shard instead of one
    `WorkerTask` per worker; the shard node runs its workers concurrently and writes the same
    per-worker `results` entries the worker nodes would.
    """

    workers: list[str]
    request: str


class WorkerResult(TypedDict):
    """What one worker produced in this run.

    Attributes:
        worker: The worker (agent) name.
        status: "ok" with valid output; "failed" when it raised after its retries or its output
            failed validation.
        output: The validated output as JSON (schema instance dumped to a dict, or the text); None
            when the worker failed.
        duration_ms: Wall time of the successful attempt; None when the worker failed.
        error: One line saying why the worker failed, else None.
        stopped_by: The guardrail that stopped the worker (`budget_exceeded`, `deadline`),
            when one did; the run then ends with that reason.
    """

    worker: str
    status: WorkerStatus
    output: JsonValue
    duration_ms: float | None
    error: str | None
    stopped_by: NotRequired[EndReason]


class Vote(TypedDict):
    """The tally of a majority vote over the successful workers.

    Attributes:
        winner: The normalised answer with the most votes; None on a tie.
        ballots: Each normalised answer and the workers that gave it, in dispatch order.
    """

    winner: str | None
    ballots: dict[str, list[str]]


class WorkerOutput(BaseModel):
    """One successful worker's output, as the merger agent receives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker: str
    output: JsonValue


class MergeRequest(BaseModel):
    """The typed payload the merger agent receives, sent as JSON (never the transcript)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: str = Field(description="The user's request the workers answered.")
    results: list[WorkerOutput] = Field(description="Successful workers' outputs, dispatch order.")
    failed_workers: list[str] = Field(
        default_factory=list, description="Workers that failed; their views are missing."
    )


class FanoutInput(TypedDict):
    """What a caller sends: new messages and, optionally, which workers to dispatch.

    `workers` selects a subset of the graph's workers for this run (default: all of them).
    """

    messages: Annotated[list[AnyMessage], add_messages]
    workers: NotRequired[list[str] | None]


class FanoutOutput(TypedDict):
    """What a caller gets back: the answer, each worker's result, the vote, usage, the outcome."""

    messages: Annotated[list[AnyMessage], add_messages]
    dispatched: list[str]
    results: Annotated[dict[str, WorkerResult], operator.or_]
    vote: Vote | None
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None
    end_detail: str | None


class FanoutState(MessagesState, AgentMemory, Escalations):
    """Full fan-out state, checkpointed per session.

    Writers and reducers:
        - `results`: written by every worker in parallel (and by a failed worker's error handler),
          each under its own name; `operator.or_` keeps every key, so concurrent writes never
          conflict and completion order does not matter. Reset by the intake node each run
          (`Overwrite({})`).
        - `usage`: every model call adds to it; summed by `merge_usage` (order-independent).
        - `workers` (optional input) and `dispatched`: single writer, the intake node, which reads
          the selection, records what it dispatches and clears `workers` so the next turn does not
          inherit it.
        - `vote`, `end_reason`, `end_detail`: single writer, the merge node, every run.
        - `messages`: the final answer is appended by the merge node (collect, vote) or by the
          merger agent (synthesize); when the merge cannot answer (quorum missed, tied vote), the
          merge node appends a message saying why.
    """

    workers: list[str] | None
    dispatched: list[str]
    results: Annotated[dict[str, WorkerResult], operator.or_]
    vote: Vote | None
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None
    end_detail: str | None
