"""The pattern registry: pattern name -> compiled demo graph, mirrored by langgraph.json."""

from __future__ import annotations

import importlib
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from switchyard.core.errors import GraphNotFoundError

PATTERNS: dict[str, str] = {
    name: f"switchyard.graphs.demos:{name}"
    for name in ("router", "pipeline", "fanout", "hierarchical", "events", "supervisor", "swarm")
}
"""Each pattern's compiled demo graph as `module:attribute`, as in langgraph.json (tested)."""


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
    """First line of a pattern module's docstring (`switchyard.graphs.<name>`)."""
    module = importlib.import_module(f"switchyard.graphs.{name}")
    return (module.__doc__ or "").strip().splitlines()[0]
