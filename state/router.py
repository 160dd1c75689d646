"""State of the router pattern: the conversation, the last routing decision and the usage ledger."""

from __future__ import annotations

from typing import Annotated

from langchain_core.messages import AnyMessage
from langgraph.graph import MessagesState
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from switchyard.state.outcomes import EndReason, Escalations
from switchyard.state.reducers import AgentMemory, merge_usage
from switchyard.state.usage import UsageLedger


class Route(TypedDict):
    """One routing decision: which agent answers this turn, how sure the router is, and why."""

    agent: str
    confidence: float
    reason: str
    classifier: str


class RouterInput(TypedDict):
    """What a caller sends: new messages (usually one user message)."""

    messages: Annotated[list[AnyMessage], add_messages]


class RouterOutput(TypedDict):
    """What a caller gets back."""

    messages: Annotated[list[AnyMessage], add_messages]
    route: Route | None
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None


class RouterState(MessagesState, AgentMemory, Escalations):
    """Full router state, checkpointed per session.

    `route` and `active_agent` have a single writer (`classify`), so they need no reducer; the
    usage ledger is written by every agent node and sums; `end_reason` is set only when a run
    ends early (a fallback handler stopping it) and reset by `classify` at the start of a turn.
    """

    route: Route | None
    active_agent: str | None
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None
