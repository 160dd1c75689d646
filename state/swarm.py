"""State of the swarm pattern: one shared conversation, the active agent and the handoff history.

The active agent is part of the checkpointed state, so the next user turn in the same session goes
straight to whichever agent held the conversation last. Handoff records carry the turn they belong
to (the count of user messages so far); limits and ping-pong detection apply per turn.
"""

from __future__ import annotations

import operator
from typing import Annotated, TypeVar

from langchain_core.messages import AnyMessage
from langgraph.graph import MessagesState
from langgraph.graph.message import add_messages
from langgraph.managed import RemainingSteps
from typing_extensions import TypedDict

from switchyard.state.outcomes import EndReason, Escalations
from switchyard.state.reducers import AgentMemory, merge_usage
from switchyard.state.supervisor import keep_current_turn
from switchyard.state.usage import UsageLedger

Value = TypeVar("Value")


def last_value(left: Value, right: Value) -> Value:
    """Keep the newest write; drop the previous value.

    For keys that several nodes write one after another (never in the same step), such as the
    active agent: the agent that ran last decides.
    """
    return right


class Handoff(TypedDict):
    """One accepted handoff: who passed the conversation to whom, why, and in which turn."""

    source: str
    target: str
    reason: str
    turn: int


class SwarmInput(TypedDict):
    """What a caller sends: new messages (usually one user message)."""

    messages: Annotated[list[AnyMessage], add_messages]


class SwarmOutput(TypedDict):
    """What a caller gets back: the conversation, who holds it, usage and the end reason."""

    messages: Annotated[list[AnyMessage], add_messages]
    active_agent: Annotated[str | None, last_value]
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: Annotated[EndReason | None, last_value]


class SwarmState(MessagesState, AgentMemory, Escalations):
    """Full swarm state, checkpointed per session.

    Every agent node writes `messages`, `usage`, `active_agent`, `end_reason`, `handoffs` and
    `refusals`, so each has an explicit reducer. `remaining_steps` is LangGraph's managed count of
    steps left before the recursion limit.
    """

    active_agent: Annotated[str | None, last_value]
    handoffs: Annotated[list[Handoff], keep_current_turn]
    refusals: Annotated[list[str], operator.add]
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: Annotated[EndReason | None, last_value]
    remaining_steps: RemainingSteps
