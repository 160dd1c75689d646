"""Switchyard: multi-agent orchestration patterns on LangGraph, with production guardrails.

The public surface is small: describe agents with `AgentSpec`, build a pattern with one of the
`graphs.build_*_graph` factories, and call it through `run` / `arun`, which return a `RunResult`.
"""

from switchyard.errors import (
    AgentConfigError,
    InvalidInputError,
    ModelConfigError,
    SessionAccessError,
    SwitchyardError,
)

__all__ = [
    "AgentConfigError",
    "InvalidInputError",
    "ModelConfigError",
    "SessionAccessError",
    "SwitchyardError",
]
__version__ = "0.1.0"
