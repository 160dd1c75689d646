"""Reducers: the functions that decide how concurrent and successive writes to a key combine."""

from __future__ import annotations

from typing import Annotated, Any

from typing_extensions import TypedDict

from switchyard.state.usage import UsageLedger, add_entries


def merge_usage(left: UsageLedger | None, right: UsageLedger | None) -> UsageLedger:
    """Sum usage ledgers entry by entry.

    Keeps every (agent, model) entry from both sides; entries present on both are summed (and
    their `latency_ms_max` maximised; their cost is unknown, None, when either side's is, see
    `switchyard.state.usage`). Order-independent, so parallel branches may write it. Drops
    nothing.
    """
    merged: UsageLedger = dict(left or {})
    for key, entry in (right or {}).items():
        merged[key] = add_entries(merged[key], entry) if key in merged else entry
    return merged


AgentStates = dict[str, dict[str, Any]]
"""Session-scoped middleware state, by agent, then by state key."""


def merge_agent_state(left: AgentStates | None, right: AgentStates | None) -> AgentStates:
    """Merge per-agent middleware state: each agent's keys take their newest values.

    Keeps every agent's entry and every key; a key written again keeps the newer value. Agents
    never share keys: each agent's middleware reads its own entry only. Writes from parallel
    branches are merged in task order (two agents' writes never collide).
    """
    merged: AgentStates = {agent: dict(values) for agent, values in (left or {}).items()}
    for agent, values in (right or {}).items():
        merged.setdefault(agent, {}).update(values)
    return merged


class AgentMemory(TypedDict):
    """The state key where agents keep their middleware's session-scoped state (checkpointed)."""

    agent_state: Annotated[AgentStates, merge_agent_state]
