"""The live progress names the slow one-time loads (`switchyard.core.loading`) a run waits for."""

from __future__ import annotations

import io
import operator
import time
from typing import Annotated, Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import START, MessagesState, StateGraph
from rich.console import Console

from switchyard.cli.progress import StreamProgress
from switchyard.core.loading import loading
from switchyard.runtime.stream import stream_graph

PAYLOAD = {"messages": [HumanMessage("go")]}


class _State(MessagesState):
    visits: Annotated[int, operator.add]


def _loads_a_model(state: _State) -> dict[str, Any]:
    with loading("embedding model"):
        pass
    return {"visits": 1}


def _fails_to_load(state: _State) -> dict[str, Any]:
    with loading("fitted classifier"):
        raise OSError("no such file")


def _visit(state: _State) -> dict[str, Any]:
    return {"visits": 1}


def _graph(**nodes: Any) -> Any:
    builder = StateGraph(_State)
    previous = START
    for name, node in nodes.items():
        builder.add_node(name, node)
        builder.add_edge(previous, name)
        previous = name
    return builder.compile()


def _console(*, terminal: bool = False) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=200), buffer


def test_a_finished_node_says_what_it_waited_for() -> None:
    console, buffer = _console()
    progress = StreamProgress(console, live=False)
    with progress:
        stream_graph(
            _graph(classify=_loads_a_model, answer=_visit), PAYLOAD, on_part=progress.handle
        )
    classify, answer = buffer.getvalue().splitlines()
    assert classify.startswith("ok classify  ")
    assert "ms (loading embedding model " in classify
    assert answer.startswith("ok answer  ")
    assert "loading" not in answer


def test_a_load_in_a_subgraph_node_is_shown_under_that_node() -> None:
    console, buffer = _console()
    progress = StreamProgress(console, live=False)
    team = _graph(worker=_loads_a_model)
    with progress:
        stream_graph(_graph(team=team), PAYLOAD, on_part=progress.handle)
    worker, team_line = buffer.getvalue().splitlines()
    assert worker.startswith("ok team / worker  ")
    assert "(loading embedding model " in worker
    assert "loading" not in team_line


def test_a_failed_load_is_named_in_the_failed_node_line() -> None:
    console, buffer = _console()
    progress = StreamProgress(console, live=False)
    with progress, pytest.raises(OSError, match="no such file"):
        stream_graph(_graph(classify=_fails_to_load), PAYLOAD, on_part=progress.handle)
    (line,) = buffer.getvalue().splitlines()
    assert line.startswith("x classify failed after ")
    assert "(loading fitted classifier failed after " in line


def test_a_load_outside_any_node_gets_its_own_line_and_none_after_the_run() -> None:
    console, buffer = _console()
    with StreamProgress(console, live=False), loading("embedding model"):
        pass
    with loading("tokenizer"):  # the run is over: nobody is watching
        pass
    (line,) = buffer.getvalue().splitlines()
    assert line.startswith(".. loading embedding model ")
    assert line.endswith(" s")


def test_the_live_display_shows_the_load_under_the_running_node() -> None:
    console, buffer = _console(terminal=True)
    progress = StreamProgress(console)
    seen: list[bool] = []

    def waits_for_the_display(state: _State) -> dict[str, Any]:
        with loading("embedding model"):
            # The display redraws itself several times a second; wait (at most 10 s) for a frame.
            deadline = time.monotonic() + 10
            while "classify  loading embedding model" not in buffer.getvalue():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            seen.append("classify  loading embedding model" in buffer.getvalue())
        return {"visits": 1}

    with progress:
        stream_graph(_graph(classify=waits_for_the_display), PAYLOAD, on_part=progress.handle)
    assert seen == [True]
    assert "ok classify" in buffer.getvalue()
    assert "(loading embedding model " in buffer.getvalue()
