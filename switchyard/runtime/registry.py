"""The pattern registry: pattern name -> compiled demo graph, mirrored by langgraph.json.

`load_graph` also takes an import path (`package.module:attribute`, as in langgraph.json), and
remembers where each graph it loads came from: `graph_reference` answers that for the graph or for
any graph compiled from its builder, so a dead letter can record exactly which graph to rebuild.

Importing this module, `pattern_names` and `describe` load neither LangGraph nor any graph, so
`switchyard graphs` answers at once.
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import TYPE_CHECKING, Any

from switchyard.core.errors import GraphNotFoundError

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

DESCRIPTIONS: dict[str, str] = {
    "router": "Router: a classifier picks one specialised agent per turn; unsure -> default agent.",
    "pipeline": "Pipeline: stages run in order; each gets the validated output of the one before, "
    "not the chat.",
    "fanout": "Fan-out / fan-in: workers answer one request in parallel (`Send`), then a merge "
    "combines them.",
    "hierarchical": "Hierarchical: a manager plans typed steps for its workers, runs them in "
    "waves, then synthesises.",
    "events": "Events: agents subscribe to event types, handle events and publish new ones, "
    "through a bus.",
    "supervisor": "Supervisor: one agent delegates typed tasks to workers, which report back; it "
    "answers at the end.",
    "swarm": "Swarm: agents hand the conversation to each other; the next turn starts with "
    "whoever holds it.",
}
"""The registered patterns, in order, each in one line: the first line of its module's docstring
(`switchyard.graphs.<name>`, tested), kept here so that listing the patterns imports no graph."""

PATTERNS: dict[str, str] = {name: f"switchyard.graphs.demos:{name}" for name in DESCRIPTIONS}
"""Each pattern's compiled demo graph as `module:attribute`, as in langgraph.json (tested)."""

# The builder of every graph `load_graph` returned, by identity, with the import path it came
# from; each entry holds its builder, so an id cannot be reused while it is in here.
_loaded: dict[int, tuple[object, str]] = {}
_loaded_lock = threading.Lock()


def pattern_names() -> list[str]:
    """Names of the registered patterns, in registration order."""
    return list(PATTERNS)


def load_graph(name: str) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Import a pattern's compiled demo graph (compiled without a checkpointer), or any graph.

    Args:
        name: A registered pattern name (`router`), or an import path `module:attribute` naming
            a compiled graph.

    Raises:
        GraphNotFoundError: `name` is neither a registered pattern (the message lists those) nor
            an importable compiled graph (the message says what failed).
    """
    target = PATTERNS.get(name)
    if target is None and ":" not in name:
        raise _unknown(name)
    return load_target(target or name)


def load_target(target: str) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Import the compiled graph at `module:attribute` and remember where it came from.

    Raises:
        GraphNotFoundError: The module cannot be imported, lacks the attribute, or the attribute
            is not a compiled LangGraph graph.
    """
    # LangGraph is imported only when a graph is: listing the patterns must not pay for it.
    from langgraph.graph.state import CompiledStateGraph

    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name.strip() or not attribute.strip():
        raise GraphNotFoundError(f"graph {target!r} is not an import path module:attribute")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any failure of the user's module: reported in one line
        raise GraphNotFoundError(
            f"cannot import graph {target!r}: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    graph = getattr(module, attribute, None)
    if graph is None:
        raise GraphNotFoundError(
            f"cannot import graph {target!r}: {module_name} has no {attribute}"
        )
    if not isinstance(graph, CompiledStateGraph):
        raise GraphNotFoundError(
            f"{target!r} is a {type(graph).__name__}, not a compiled LangGraph graph"
        )
    with _loaded_lock:
        _loaded[id(graph.builder)] = (graph.builder, target)
    return graph


def graph_reference(graph: object) -> str | None:
    """The import path that rebuilds `graph`, or None for a graph built elsewhere.

    That is where `load_graph` loaded it, or the graph whose builder it was compiled from. A graph
    built elsewhere is replayed from Python, with the graph itself. Demo graphs are recognised
    once their module is imported, however they were obtained.
    """
    builder = getattr(graph, "builder", None)
    if builder is None:
        return None
    with _loaded_lock:
        entry = _loaded.get(id(builder))
    if entry is not None and entry[0] is builder:
        return entry[1]
    for target in PATTERNS.values():
        module_name, _, attribute = target.partition(":")
        module = sys.modules.get(module_name)
        # vars(), not getattr(): a demo graph is built on first access, and one not built yet
        # cannot be the graph in hand
        demo = vars(module).get(attribute) if module is not None else None
        if demo is not None and getattr(demo, "builder", None) is builder:
            return target
    return None


def describe(name: str) -> str:
    """What a registered pattern does, in one line (its module's docstring, without importing it).

    Raises:
        GraphNotFoundError: `name` is not a registered pattern (the message lists those).
    """
    description = DESCRIPTIONS.get(name)
    if description is None:
        raise _unknown(name)
    return description


def _unknown(name: str) -> GraphNotFoundError:
    return GraphNotFoundError(f"unknown pattern {name!r}; choose one of: {', '.join(PATTERNS)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"
