"""The pattern registry: pattern name -> compiled demo graph, mirrored by langgraph.json."""

from __future__ import annotations

import importlib
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from switchyard.errors import GraphNotFoundError

PATTERNS: dict[str, str] = {
    "router": "graphs.router:graph",
    "pipeline": "graphs.pipeline:graph",
    "fanout": "graphs.fanout:graph",
    "hierarchical": "graphs.hierarchical:graph",
    "events": "graphs.events:graph",
    "supervisor": "graphs.supervisor:graph",
    "swarm": "graphs.swarm:graph",
}
"""Each pattern's exported graph as `module:attribute`; langgraph.json lists the same (tested)."""


def pattern_names() -> list[str]:
    """Names of the registered patterns, in registration order."""
    return list(PATTERNS)


def load_graph(name: str) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Import a pattern's compiled demo graph (compiled without a checkpointer).

    Raises:
        GraphNotFoundError: `name` is not a registered pattern; the message lists those that are.
    """
    target = PATTERNS.get(name)
    if target is None:
        raise GraphNotFoundError(f"unknown pattern {name!r}; choose one of: {', '.join(PATTERNS)}")
    module_name, attribute = target.split(":")
    graph: CompiledStateGraph[Any, Any, Any, Any] = getattr(
        importlib.import_module(module_name), attribute
    )
    return graph


def describe(name: str) -> str:
    """First line of a pattern module's docstring."""
    module = importlib.import_module(PATTERNS[name].split(":")[0])
    return (module.__doc__ or "").strip().splitlines()[0]
