"""Typed state, reducers, run-time context and agent specifications (no nodes/graphs imports)."""

from switchyard.state.agents import AgentSpec, check_agents, make_agent
from switchyard.state.context import Context
from switchyard.state.usage import UsageEntry, UsageLedger

__all__ = ["AgentSpec", "Context", "UsageEntry", "UsageLedger", "check_agents", "make_agent"]
