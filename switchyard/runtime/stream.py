"""Streaming: run a graph while showing each agent step, and the tokens, as they happen.

`stream_graph` / `astream_graph` run a compiled graph with LangGraph's streaming
(`stream_mode=["tasks", "messages", "values"]`, `subgraphs=True`, `version="v2"`) and
return exactly what `graph.invoke` would have returned (the final values, with `__interrupt__`
when the run paused), so a caller gets the same result whether it streams or not. Each stream part
goes to a callback. `run(..., progress=...)` takes any `Progress`; the CLI's is
`switchyard.cli.progress.StreamProgress` (a live display on a terminal, a line per finished node
elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import Durability, StreamMode

STREAM_MODES: tuple[StreamMode, ...] = ("tasks", "messages", "values")
"""The LangGraph stream modes a streamed run subscribes to."""

INTERRUPT = "__interrupt__"

OnPart = Callable[[Mapping[str, Any]], None]
"""Receives every v2 stream part: a mapping with `type`, `ns` and `data`."""


class _Final:
    """Collects what `invoke` would return: the root graph's last values and its interrupts."""

    def __init__(self) -> None:
        self.values: Any = None
        self.interrupts: list[Any] = []

    def take(self, part: Mapping[str, Any]) -> None:
        if part.get("ns") or part.get("type") != "values":
            return
        self.values = part.get("data")
        self.interrupts.extend(part.get("interrupts") or ())

    def result(self) -> Any:
        if not self.interrupts:
            return self.values
        if isinstance(self.values, dict):
            return {**self.values, INTERRUPT: self.interrupts}
        return {INTERRUPT: self.interrupts}


# `stream_graph` and `astream_graph` differ in how they iterate (for / async for); what they
# collect is `_Final`, shared.


_STREAMED: dict[str, Any] = {
    "stream_mode": list(STREAM_MODES),
    "subgraphs": True,
    "version": "v2",
}
"""How `stream_graph` and `astream_graph` ask for parts: every mode, subgraphs included."""


def stream_graph(
    graph: Pregel[Any, Any, Any, Any],
    payload: Any,
    config: RunnableConfig | None = None,
    *,
    context: Any = None,
    on_part: OnPart | None = None,
    durability: Durability | None = None,
) -> Any:
    """Run `graph` like `graph.invoke(payload, config, context=context)`, streaming as it goes.

    Args:
        graph: A compiled graph.
        payload: The input (a state update, a `Command`, or None to resume).
        config: The run's config.
        context: The run's context (`context_schema` instance).
        on_part: Called with every stream part (root graph and subgraphs), in order.
        durability: When checkpoints are written (LangGraph's `durability`); None: its default.

    Returns:
        What `invoke` returns: the final values (with `__interrupt__` when the run paused).

    Raises:
        Exception: Whatever the graph raises; parts streamed before the failure were delivered.
    """
    final = _Final()
    for part in graph.stream(payload, config, context=context, durability=durability, **_STREAMED):
        final.take(part)
        if on_part is not None:
            on_part(part)
    return final.result()


async def astream_graph(
    graph: Pregel[Any, Any, Any, Any],
    payload: Any,
    config: RunnableConfig | None = None,
    *,
    context: Any = None,
    on_part: OnPart | None = None,
    durability: Durability | None = None,
) -> Any:
    """Async form of `stream_graph`."""
    final = _Final()
    async for part in graph.astream(
        payload, config, context=context, durability=durability, **_STREAMED
    ):
        final.take(part)
        if on_part is not None:
            on_part(part)
    return final.result()


class Progress(Protocol):
    """Shows a run's progress as it streams: `run(..., progress=...)` takes one.

    The run is streamed inside `with progress:`, and every stream part (see `stream_graph`) goes
    to `handle`; the result is what the run returns unstreamed.
    """

    def __enter__(self) -> Any:
        """The run starts."""

    def __exit__(self, *exc: object) -> None:
        """The run ended (or failed)."""

    def handle(self, part: Mapping[str, Any]) -> None:
        """Show one stream part."""
