"""The pattern registry mirrors langgraph.json, so the CLI and Studio serve the same graphs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from switchyard.core.errors import GraphNotFoundError
from switchyard.runtime.registry import PATTERNS, describe, load_graph, pattern_names

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REPO / "langgraph.json").read_text())
    return loaded


def test_langgraph_json_lists_exactly_the_registered_patterns(config: dict[str, Any]) -> None:
    graphs = config["graphs"]
    assert list(graphs) == list(PATTERNS)
    assert graphs == {name: f"switchyard.graphs.served:{name}" for name in PATTERNS}


def test_the_served_graphs_are_the_demo_graphs_in_the_modules_namespace() -> None:
    """`langgraph dev` reads `module.__dict__`, where the lazily built demos are not (yet)."""
    served = importlib.import_module("switchyard.graphs.served")
    for name in PATTERNS:
        assert vars(served)[name] is load_graph(name)


def test_langgraph_json_names_installed_modules_not_repository_files(
    config: dict[str, Any],
) -> None:
    """Module paths resolve wherever the package is installed; `./graphs/x.py` would import a
    second copy of the code under another name."""
    targets = [*config["graphs"].values(), config["auth"]["path"]]
    for target in targets:
        module, _, attribute = target.partition(":")
        assert module.startswith("switchyard."), target
        assert "/" not in module, target
        assert not module.endswith(".py"), target
        assert hasattr(importlib.import_module(module), attribute), target


def test_importing_a_pattern_module_builds_no_graph() -> None:
    """Only `switchyard.graphs.demos` compiles graphs; a pattern module defines its builder."""
    for name in PATTERNS:
        module = importlib.import_module(f"switchyard.graphs.{name}")
        built = [
            attribute
            for attribute, value in vars(module).items()
            if isinstance(value, StateGraph | CompiledStateGraph)
        ]
        assert built == [], f"switchyard.graphs.{name} builds {built} when imported"
        assert callable(getattr(module, f"build_{name}_graph"))


def test_langgraph_json_installs_the_project(config: dict[str, Any]) -> None:
    assert config["$schema"] == "https://langgra.ph/schema.json"
    assert config["dependencies"] == ["."]
    assert config["python_version"] == "3.11"


@pytest.mark.parametrize("name", list(PATTERNS))
def test_every_pattern_loads_as_a_compiled_graph_named_after_it(name: str) -> None:
    graph = load_graph(name)
    assert isinstance(graph, CompiledStateGraph)
    assert graph.name == name
    assert graph.checkpointer is None  # the Agent Server and the CLI bring their own
    assert describe(name)
    assert "\n" not in describe(name)


def test_pattern_names_keep_registration_order() -> None:
    assert pattern_names() == list(PATTERNS)
    assert pattern_names()[0] == "router"


def test_unknown_pattern_lists_the_known_ones() -> None:
    with pytest.raises(GraphNotFoundError) as raised:
        load_graph("nosuch")
    assert str(raised.value) == f"unknown pattern 'nosuch'; choose one of: {', '.join(PATTERNS)}"
