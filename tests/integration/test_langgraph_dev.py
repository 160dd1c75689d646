"""`langgraph dev` serves every graph in langgraph.json, and each one answers through the SDK.

This is what proves LangGraph Studio can load and run the patterns: the server is started from
langgraph.json on a free loopback port, exactly as `make studio` does, and every graph is called
through `langgraph-sdk`. Patterns add a demo input and a check to `DEMOS`; the default sends one
user message and expects an offline AI reply as the last message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from switchyard.core.offline import OFFLINE_MARKER
from tests.servers import langgraph_dev

REPO = Path(__file__).resolve().parents[2]
GRAPHS: dict[str, str] = json.loads((REPO / "langgraph.json").read_text())["graphs"]
RUN_TIMEOUT_S = 120.0

pytestmark = [pytest.mark.server, pytest.mark.enable_socket]

Output = dict[str, Any]


def last_message_is_an_offline_reply(output: Output) -> None:
    """The default check: the run ended with an AI message from the offline model."""
    messages = output["messages"]
    assert messages, output
    last = messages[-1]
    assert last["type"] == "ai", last
    assert last["content"].startswith(OFFLINE_MARKER), last


def answered_by(agent: str) -> Callable[[Output], None]:
    """Check that `agent` answered (its name is on the reply) and was the route, if any."""

    def check(output: Output) -> None:
        last_message_is_an_offline_reply(output)
        assert output["messages"][-1]["name"] == agent
        if output.get("route") is not None:
            assert output["route"]["agent"] == agent

    return check


@dataclass(frozen=True)
class Demo:
    """What to send a pattern's graph and how to check its answer.

    Attributes:
        text: The user message sent as `{"messages": [...]}`.
        check: Assertions on the run's output (the graph's output schema, as JSON).
        payload: A whole input instead, for patterns whose input is not a message list.
    """

    text: str = "Hello, I need some help with my account."
    check: Callable[[Output], None] = field(default=last_message_is_an_offline_reply)
    payload: dict[str, Any] | None = None

    def input(self) -> dict[str, Any]:
        if self.payload is not None:
            return self.payload
        return {"messages": [{"role": "user", "content": self.text}]}


DEMOS: dict[str, Demo] = {
    "router": Demo("How do I authenticate with the API using the Python SDK?", answered_by("docs")),
    "pipeline": Demo("Write a short note on heat pumps in cold climates", answered_by("edit")),
    "fanout": Demo("Should we migrate billing to PostgreSQL?", answered_by("synthesizer")),
    "hierarchical": Demo(
        "Write a short article about Python asyncio with a code example", answered_by("manager")
    ),
    "events": Demo("Why Python asyncio matters for web backends", answered_by("publisher")),
    "supervisor": Demo(
        "Calculate the percentage growth from 120 to 150", answered_by("supervisor")
    ),
    "swarm": Demo(
        "I was charged twice on my invoice, please refund one charge", answered_by("billing")
    ),
}
"""Per-pattern demo input and check; a pattern without an entry gets `Demo()`."""


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`langgraph dev` on this repository's langgraph.json, as `make studio` starts it."""
    log = tmp_path_factory.mktemp("langgraph-dev") / "server.log"
    with langgraph_dev(REPO / "langgraph.json", cwd=REPO, log=log) as url:
        yield url


@pytest.fixture(scope="module")
def client(server_url: str) -> SyncLangGraphClient:
    return get_sync_client(url=server_url, timeout=RUN_TIMEOUT_S)


def test_server_serves_every_graph_in_langgraph_json(client: SyncLangGraphClient) -> None:
    assistants = client.assistants.search(limit=100)
    assert sorted({a["graph_id"] for a in assistants}) == sorted(GRAPHS)


@pytest.mark.parametrize("graph_id", list(GRAPHS))
def test_graph_runs_through_the_sdk(client: SyncLangGraphClient, graph_id: str) -> None:
    demo = DEMOS.get(graph_id, Demo())
    thread = client.threads.create()
    output = client.runs.wait(thread["thread_id"], graph_id, input=demo.input())
    assert isinstance(output, dict), output
    assert "__error__" not in output, output["__error__"]
    demo.check(output)
    # the thread keeps the run, as Studio's thread view shows it
    state = client.threads.get_state(thread["thread_id"])
    assert state["next"] == []
    values = state["values"]
    assert isinstance(values, dict)
    if demo.payload is None:
        assert values["messages"][0]["content"] == demo.text


@pytest.mark.parametrize("graph_id", list(GRAPHS))
def test_studio_can_read_each_graph(client: SyncLangGraphClient, graph_id: str) -> None:
    (assistant,) = [
        a for a in client.assistants.search(graph_id=graph_id) if a["graph_id"] == graph_id
    ]
    schemas = client.assistants.get_schemas(assistant["assistant_id"])
    assert schemas["input_schema"] is not None
    assert "messages" in schemas["input_schema"]["properties"]
    context = schemas.get("context_schema") or {}
    assert "model" in context.get("properties", {}), "Studio shows Context as configuration"
    drawn = client.assistants.get_graph(assistant["assistant_id"])
    node_ids = {node["id"] for node in drawn["nodes"]}
    assert {"__start__", "__end__"} <= node_ids
