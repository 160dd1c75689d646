"""State of the pipeline pattern: one record per stage, the typed hand-off between stages, usage.

Stages run one after another. Each stage sees the user's request and the previous stage's validated
output (a `StageHandoff`), never the transcript. Each stage's record lands in `stages`.
"""

from __future__ import annotations

import operator
from typing import Annotated, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph import MessagesState
from langgraph.graph.message import add_messages
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from typing_extensions import TypedDict

from switchyard.state.outcomes import EndReason, Escalations
from switchyard.state.reducers import AgentMemory, merge_usage
from switchyard.state.usage import UsageLedger

StageStatus = Literal["ok", "failed"]


class StageRecord(TypedDict):
    """What one stage did in this run.

    Attributes:
        stage: The stage (agent) name.
        status: "ok" when the stage produced valid output; "failed" when it raised after its retries
            or its output failed validation.
        output: The validated output as JSON: the schema instance dumped to a dict, or the text.
            None when the stage failed.
        duration_ms: Wall time of the stage's successful attempt, validation re-asks included. None
            when the stage failed (its error handler cannot see when the failed attempts began).
        error: One line saying why the stage failed, else None.
    """

    stage: str
    status: StageStatus
    output: JsonValue
    duration_ms: float | None
    error: str | None


class StageHandoff(BaseModel):
    """The typed payload a stage receives from the stage before it, sent as JSON.

    Example:
        ```python
        StageHandoff(request="Write about X", previous_stage="research",
                     previous_output={"key_points": ["..."]}).model_dump_json(indent=2)
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: str = Field(description="The user's original request.")
    previous_stage: str = Field(description="Name of the stage whose output follows.")
    previous_output: JsonValue = Field(description="That stage's validated output.")


class PipelineInput(TypedDict):
    """What a caller sends: new messages (usually one user message)."""

    messages: Annotated[list[AnyMessage], add_messages]


class PipelineOutput(TypedDict):
    """What a caller gets back: the answer, every stage's record, usage and how the run ended."""

    messages: Annotated[list[AnyMessage], add_messages]
    stages: Annotated[dict[str, StageRecord], operator.or_]
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None
    end_detail: str | None


class PipelineState(MessagesState, AgentMemory, Escalations):
    """Full pipeline state, checkpointed per session.

    Writers and reducers:
        - `stages`: every stage (and each stage's error handler) adds its own record, keyed by stage
          name; `operator.or_` keeps every key, so the records of earlier stages survive a later
          failure. The intake node resets it at the start of each run (`Overwrite({})`).
        - `usage`: every stage adds its model calls; summed by `merge_usage`.
        - `messages`: the last stage appends its answer; when a stage fails, `finish` appends
          instead a message saying which stage failed and why. Intermediate outputs stay in
          `stages`, out of the transcript.
        - `end_reason` / `end_detail`: single writer, the `finish` node, which runs at the end of
          every run: None when every stage succeeded; "stage_failed" and a one-line reason naming
          the stage when one failed.
    """

    stages: Annotated[dict[str, StageRecord], operator.or_]
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None
    end_detail: str | None
