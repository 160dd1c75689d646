"""Guardrails hold however a run is started: `run()`, `graph.invoke` and `langgraph dev`.

For every pattern, one budget, one deadline and one loop-limit scenario, each run three ways:
through the run facade, through the compiled graph's own `invoke` (a user's code, a notebook),
and through langgraph-sdk against `langgraph dev` (what Studio and the Agent Server do, with the
context sent as JSON). The guardrails live inside the compiled graph, so each scenario ends the
same way on every path. A run that LangGraph itself stops (its recursion limit) raises
`GraphRecursionError` from `invoke` and fails on the server with that error; the end reason is
read from it the way the run facade reads it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from switchyard import Context, run
from switchyard.state.outcomes import end_reason_for
from tests.integration import entry_graphs
from tests.servers import langgraph_dev

pytestmark = [pytest.mark.server, pytest.mark.enable_socket]

REPO = Path(__file__).resolve().parents[2]
PATTERNS = ("router", "pipeline", "fanout", "hierarchical", "events", "supervisor", "swarm")
TEXT = "Write a short note on Python asyncio, and I was charged twice: please refund one charge"

BUDGET: dict[str, Any] = {"run_budget": {"max_tokens": 20}}
DEADLINE: dict[str, Any] = {"deadline_s": 1e-6}
LOOPS: dict[str, tuple[dict[str, Any], str]] = {
    "router": ({"recursion_limit": 1}, "recursion_limit"),
    "pipeline": ({"recursion_limit": 2}, "recursion_limit"),
    "fanout": ({"recursion_limit": 2}, "recursion_limit"),
    "hierarchical": ({"recursion_limit": 2}, "recursion_limit"),
    "events": ({}, "max_events"),  # ping, pong, ping, ... past max_events=4
    "supervisor": ({"recursion_limit": 2}, "recursion_limit"),  # no room for a worker round
    "swarm": ({}, "ping_pong"),  # ping -> pong -> ping -> pong
}

SCENARIOS = [
    *((pattern, "budget", BUDGET, "budget_exceeded") for pattern in PATTERNS),
    *((pattern, "deadline", DEADLINE, "deadline") for pattern in PATTERNS),
    *((pattern, "loop", *LOOPS[pattern]) for pattern in PATTERNS),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncLangGraphClient]:
    """`langgraph dev` serving the graphs of `entry_graphs`, as Studio would load them."""
    folder = tmp_path_factory.mktemp("entry-paths")
    module = "./tests/integration/entry_graphs.py"
    config = folder / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "python_version": "3.11",
                "dependencies": ["."],
                "graphs": {name: f"{module}:{name}" for name in PATTERNS},
            }
        )
    )
    with langgraph_dev(config, cwd=REPO, log=folder / "server.log") as url:
        yield get_sync_client(url=url, timeout=120.0)


def through_run(pattern: str, context: dict[str, Any]) -> str:
    graph = getattr(entry_graphs, pattern).builder.compile(checkpointer=InMemorySaver())
    return run(graph, TEXT, context=Context(**context), dlq=None).end_reason


def through_invoke(pattern: str, context: dict[str, Any]) -> str:
    graph = getattr(entry_graphs, pattern).builder.compile(checkpointer=InMemorySaver())
    try:
        output = graph.invoke(
            {"messages": [HumanMessage(TEXT)]},
            {"configurable": {"thread_id": "t"}},
            context=Context(**context),
        )
    except Exception as exc:  # LangGraph's own stop: its recursion limit
        return end_reason_for(exc, default="error")
    return str(output.get("end_reason") or "completed")


def through_server(client: SyncLangGraphClient, pattern: str, context: dict[str, Any]) -> str:
    thread = client.threads.create()
    output = client.runs.wait(
        thread["thread_id"],
        pattern,
        input={"messages": [{"role": "user", "content": TEXT}]},
        context=context,
        raise_error=False,
    )
    assert isinstance(output, dict), output
    error = output.get("__error__")
    if error is not None:
        return "recursion_limit" if error.get("error") == "GraphRecursionError" else repr(error)
    return str(output.get("end_reason") or "completed")


@pytest.mark.parametrize(
    ("pattern", "scenario", "context", "expected"),
    SCENARIOS,
    ids=[f"{pattern}-{scenario}" for pattern, scenario, _, _ in SCENARIOS],
)
def test_every_entry_path_ends_the_same_way(
    client: SyncLangGraphClient,
    pattern: str,
    scenario: str,
    context: dict[str, Any],
    expected: str,
) -> None:
    outcomes = {
        "run()": through_run(pattern, context),
        "graph.invoke": through_invoke(pattern, context),
        "langgraph dev": through_server(client, pattern, context),
    }
    assert outcomes == dict.fromkeys(outcomes, expected)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_without_a_limit_every_entry_path_completes(
    client: SyncLangGraphClient, pattern: str
) -> None:
    """The scenarios' graphs run to the end when nothing stops them (the loops excepted)."""
    expected = LOOPS[pattern][1] if pattern in ("events", "swarm") else "completed"
    assert through_invoke(pattern, {}) == expected
    assert through_server(client, pattern, {}) == expected
