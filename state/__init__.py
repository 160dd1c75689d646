"""Typed state, reducers, run-time context and agent specifications (no nodes/graphs imports)."""

from state.agents import AgentSpec, check_agents, make_agent
from state.context import Context
from state.usage import UsageEntry, UsageLedger

__all__ = ["AgentSpec", "Context", "UsageEntry", "UsageLedger", "check_agents", "make_agent"]
