"""Streaming: a streamed run returns what `invoke` returns and shows each step as it happens."""

from __future__ import annotations

import io
import operator
from typing import Annotated, Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import interrupt
from rich.console import Console

from switchyard.cli.progress import StreamProgress
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.runtime.registry import PATTERNS, load_graph
from switchyard.runtime.run import RunResult, arun, run
from switchyard.runtime.stream import astream_graph, stream_graph

OPENAI_KEY = "sk-proj-Zt8qW3nV6yB1xK4mR7pL0sD2fG5hJ9cE"


def _console(*, terminal: bool = False) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120), buffer


def _comparable(result: RunResult) -> dict[str, Any]:
    """A result without what differs between two identical runs (timings, correlation id)."""
    data = result.model_dump(exclude={"latency_ms", "correlation_id"})
    for entry in data["usage"].values():
        entry.pop("latency_ms_sum")
        entry.pop("latency_ms_max")
    return data


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_streamed_run_gives_the_same_result(pattern: str) -> None:
    builder = load_graph(pattern).builder
    text = "I was charged twice for my subscription, please refund me"
    plain = run(
        builder.compile(checkpointer=InMemorySaver(), name=pattern),
        text,
        user_id="ada",
        session_id="s1",
        dlq=None,
    )
    console, _ = _console()
    streamed = run(
        builder.compile(checkpointer=InMemorySaver(), name=pattern),
        text,
        user_id="ada",
        session_id="s1",
        dlq=None,
        progress=StreamProgress(console, live=False),
    )
    assert _comparable(streamed) == _comparable(plain)


async def test_an_async_streamed_run_gives_the_same_result() -> None:
    builder = build_router_graph(ROUTER_AGENTS, default_agent="support")
    text = "How do I authenticate with the API?"
    plain = await arun(
        builder.compile(checkpointer=InMemorySaver()), text, session_id="s", dlq=None
    )
    console, buffer = _console()
    streamed = await arun(
        builder.compile(checkpointer=InMemorySaver()),
        text,
        session_id="s",
        dlq=None,
        progress=StreamProgress(console, live=False),
    )
    assert _comparable(streamed) == _comparable(plain)
    assert "ok docs" in buffer.getvalue()


class _State(MessagesState):
    visits: Annotated[int, operator.add]


def _ask(state: _State) -> dict[str, Any]:
    answer = interrupt("approve the refund?")
    return {"visits": 1 if answer == "yes" else 0}


def test_stream_graph_returns_what_invoke_returns_including_interrupts() -> None:
    builder = StateGraph(_State)
    builder.add_node("ask", _ask)
    builder.add_edge(START, "ask")
    graph = builder.compile(checkpointer=InMemorySaver())
    payload = {"messages": [HumanMessage("refund please")]}
    invoked = graph.invoke(payload, {"configurable": {"thread_id": "a"}})
    streamed = stream_graph(graph, payload, {"configurable": {"thread_id": "b"}})
    assert "__interrupt__" in invoked
    assert streamed["__interrupt__"][0].value == invoked["__interrupt__"][0].value
    assert streamed["messages"][0].text == invoked["messages"][0].text
    assert streamed["visits"] == invoked["visits"] == 0


async def test_astream_graph_passes_every_part_to_the_callback() -> None:
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile()
    parts: list[Any] = []
    final = await astream_graph(
        graph, {"messages": [HumanMessage("I need a refund")]}, on_part=parts.append
    )
    kinds = {part["type"] for part in parts}
    assert kinds == {"tasks", "messages", "values"}
    assert final["messages"][-1].name == "support"


def _visit(state: _State) -> dict[str, Any]:
    return {"visits": 1}


def _broken(state: _State) -> dict[str, Any]:
    raise ValueError(f"provider said no to {OPENAI_KEY}")


def test_progress_lines_name_each_step_and_subgraph_node_without_secrets() -> None:
    inner = StateGraph(_State)
    inner.add_node("worker", _visit)
    inner.add_edge(START, "worker")
    outer = StateGraph(_State)
    outer.add_node("team", inner.compile())
    outer.add_node("parse", _broken)
    outer.add_edge(START, "team")
    outer.add_edge("team", "parse")
    console, buffer = _console()
    progress = StreamProgress(console, live=False)
    with progress, pytest.raises(ValueError, match="provider said no"):
        stream_graph(outer.compile(), {"messages": [HumanMessage("go")]}, on_part=progress.handle)
    lines = buffer.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "team"],  # the subgraph's own node finishes first...
        ["ok", "team"],  # ...then the node that runs it
        ["x", "parse"],
    ]
    assert lines[0].startswith("ok team / worker")
    assert "failed after" in lines[2]
    assert OPENAI_KEY not in buffer.getvalue()
    assert "[REDACTED:openai-key]" in lines[2]


def test_progress_reports_route_tokens_and_cost_per_step() -> None:
    console, buffer = _console()
    result = run(
        build_router_graph(ROUTER_AGENTS, default_agent="support").compile(name="router"),
        "I need a refund for my last payment",
        dlq=None,
        progress=StreamProgress(console, live=False),
    )
    classify, support = buffer.getvalue().splitlines()
    assert classify.startswith("ok classify")
    assert f"-> support (confidence {result.confidence:.2f})" in classify
    assert support.startswith("ok support")
    assert f"1 call, {result.input_tokens}/{result.output_tokens} tokens, $0.000000" in support


def test_the_live_display_shows_the_reply_as_it_streams_but_never_a_secret() -> None:
    console, buffer = _console(terminal=True)
    result = run(
        build_router_graph(ROUTER_AGENTS, default_agent="support").compile(name="router"),
        f"I need a refund, my key is {OPENAI_KEY}",
        dlq=None,
        progress=StreamProgress(console),
    )
    assert "[REDACTED" in result.output  # the offline model quotes the request, redacted...
    shown = buffer.getvalue()
    assert "answer it here" in shown  # ...the live display showed the reply...
    assert OPENAI_KEY not in shown  # ...redacted
    assert "ok support" in shown
