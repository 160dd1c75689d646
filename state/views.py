"""Per-agent views of a conversation: what one agent is allowed to see, trimmed to its window.

A *turn* is one user message and everything that answers it (agent replies, tool calls, tool
results). Windows are cut at turn boundaries only, so a tool call is never separated from its
result, and an agent never sees a turn that was routed to another agent.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately

Turn = list[AnyMessage]


def split_turns(messages: Sequence[AnyMessage]) -> list[Turn]:
    """Group messages into turns, each starting at a user message.

    Messages before the first user message (a stray system message, say) are dropped: they are not
    part of any exchange an agent should replay.
    """
    turns: list[Turn] = []
    for message in messages:
        if isinstance(message, HumanMessage):
            turns.append([message])
        elif turns:
            turns[-1].append(message)
    return turns


def answered_by(turn: Turn) -> set[str]:
    """Names of the agents that replied within a turn."""
    return {m.name for m in turn if isinstance(m, AIMessage) and m.name}


def agent_view(
    messages: Sequence[AnyMessage],
    agent: str | None,
    *,
    max_pairs: int,
    max_tokens: int,
) -> list[AnyMessage]:
    """The slice of the conversation an agent sees for the current (last) turn.

    Args:
        messages: The whole thread, oldest first; the last turn is the one being answered.
        agent: Only earlier turns this agent replied in are kept; `None` keeps every turn (for
            patterns whose agents share one conversation, such as the swarm).
        max_pairs: Most earlier turns to keep, newest first.
        max_tokens: Approximate token budget; the oldest kept turns are dropped until the view fits.
            The current turn is always kept, whatever its size.

    Returns:
        The messages of the kept turns, oldest first, followed by the current turn.
    """
    turns = split_turns(messages)
    if not turns:
        return []
    *history, current = turns
    if agent is not None:
        history = [turn for turn in history if agent in answered_by(turn)]
    history = history[-max_pairs:] if max_pairs > 0 else []
    budget = max_tokens - count_tokens_approximately(current)
    kept: list[Turn] = []
    for turn in reversed(history):
        cost = count_tokens_approximately(turn)
        if cost > budget:
            break
        kept.append(turn)
        budget -= cost
    return [m for turn in reversed(kept) for m in turn] + current
