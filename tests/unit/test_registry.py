"""The pattern registry mirrors langgraph.json, so the CLI and Studio serve the same graphs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph.state import CompiledStateGraph

from switchyard.errors import GraphNotFoundError
from switchyard.registry import PATTERNS, describe, load_graph, pattern_names

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REPO / "langgraph.json").read_text())
    return loaded


def as_module_target(path_target: str) -> str:
    """`./graphs/router.py:graph` -> `graphs.router:graph`."""
    path, _, attribute = path_target.partition(":")
    module = Path(path).with_suffix("").as_posix().removeprefix("./").replace("/", ".")
    return f"{module}:{attribute}"


def test_langgraph_json_lists_exactly_the_registered_patterns(config: dict[str, Any]) -> None:
    graphs = config["graphs"]
    assert list(graphs) == list(PATTERNS)
    assert {name: as_module_target(target) for name, target in graphs.items()} == PATTERNS


def test_langgraph_json_paths_exist(config: dict[str, Any]) -> None:
    for target in config["graphs"].values():
        path = target.partition(":")[0]
        assert path.startswith("./"), f"{target}: paths are relative to langgraph.json"
        assert (REPO / path).is_file(), target


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
