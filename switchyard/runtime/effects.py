"""What the run facade asks of a graph, and the two drivers that carry it out, sync and async.

The facade's logic (`run`, `resume`, `replay`, `resume_thread`) is written once, as generators of
the reads and runs they need (`Head`, `State`, `History`, `Invoke`); `drive` carries one out with
the graph's sync methods, `adrive` with its async ones. This is the only place the two differ.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel
from langgraph.types import Durability

from switchyard.runtime.stream import Progress, astream_graph, stream_graph


@dataclass(frozen=True)
class Head:
    """The thread's newest checkpoint: a `CheckpointTuple` (or a snapshot from other savers).

    The saver's `get_tuple` is one read of the newest checkpoint, where `get_state` would also
    rebuild every channel and plan the next tasks (about a fifth of a router run).
    """

    config: RunnableConfig


@dataclass(frozen=True)
class State:
    """The thread's state (`get_state`)."""

    config: RunnableConfig


@dataclass(frozen=True)
class History:
    """The thread's checkpoints, newest first, as a list (`get_state_history`)."""

    config: RunnableConfig


@dataclass(frozen=True)
class Invoke:
    """A run of the graph: what `invoke` returns, or `Failed` with what it raised."""

    payload: Any
    config: RunnableConfig
    context: Any
    durability: Durability | None
    progress: Progress | None = None


@dataclass(frozen=True)
class Failed:
    """An `Invoke` that raised."""

    error: Exception


Effect = Head | State | History | Invoke
Steps = Generator[Effect, Any, Any]
"""A facade operation: yields effects, is sent their results, returns its own result."""

Invoker = Callable[[Pregel[Any, Any, Any, Any], Invoke], Any]
"""Carries out an `Invoke` elsewhere than in this process (an engine: Temporal)."""
AsyncInvoker = Callable[[Pregel[Any, Any, Any, Any], Invoke], Awaitable[Any]]
"""Async form of `Invoker`."""


def _head(graph: Pregel[Any, Any, Any, Any], effect: Head) -> Any:
    saver = graph.checkpointer
    if isinstance(saver, BaseCheckpointSaver):
        return saver.get_tuple(effect.config)
    return graph.get_state(effect.config) if saver is not None else None


async def _ahead(graph: Pregel[Any, Any, Any, Any], effect: Head) -> Any:
    saver = graph.checkpointer
    if isinstance(saver, BaseCheckpointSaver):
        return await saver.aget_tuple(effect.config)
    return await graph.aget_state(effect.config) if saver is not None else None


def _invoke(graph: Pregel[Any, Any, Any, Any], run: Invoke) -> Any:
    if run.progress is None:
        return graph.invoke(run.payload, run.config, context=run.context, durability=run.durability)
    with run.progress:  # the same run, streamed step by step
        return stream_graph(
            graph,
            run.payload,
            run.config,
            context=run.context,
            durability=run.durability,
            on_part=run.progress.handle,
        )


async def _ainvoke(graph: Pregel[Any, Any, Any, Any], run: Invoke) -> Any:
    if run.progress is None:
        return await graph.ainvoke(
            run.payload, run.config, context=run.context, durability=run.durability
        )
    with run.progress:
        return await astream_graph(
            graph,
            run.payload,
            run.config,
            context=run.context,
            durability=run.durability,
            on_part=run.progress.handle,
        )


def _perform(graph: Pregel[Any, Any, Any, Any], effect: Effect, invoker: Invoker | None) -> Any:
    if isinstance(effect, Head):
        return _head(graph, effect)
    if isinstance(effect, State):
        return graph.get_state(effect.config)
    if isinstance(effect, History):
        return list(graph.get_state_history(effect.config))
    try:
        return _invoke(graph, effect) if invoker is None else invoker(graph, effect)
    except Exception as exc:  # reported in the result; the checkpoint keeps it resumable
        return Failed(exc)


async def _aperform(
    graph: Pregel[Any, Any, Any, Any], effect: Effect, invoker: AsyncInvoker | None
) -> Any:
    if isinstance(effect, Head):
        return await _ahead(graph, effect)
    if isinstance(effect, State):
        return await graph.aget_state(effect.config)
    if isinstance(effect, History):
        return [snapshot async for snapshot in graph.aget_state_history(effect.config)]
    try:
        return await (_ainvoke(graph, effect) if invoker is None else invoker(graph, effect))
    except Exception as exc:
        return Failed(exc)


def drive(graph: Pregel[Any, Any, Any, Any], steps: Steps, invoker: Invoker | None = None) -> Any:
    """Carry out `steps` with the graph's sync methods; returns what they return.

    Runs happen in this process, or through `invoker` (an engine such as Temporal).
    """
    result = None
    while True:
        try:
            effect = steps.send(result)
        except StopIteration as done:
            return done.value
        result = _perform(graph, effect, invoker)


async def adrive(
    graph: Pregel[Any, Any, Any, Any], steps: Steps, invoker: AsyncInvoker | None = None
) -> Any:
    """Carry out `steps` with the graph's async methods (use with an async checkpointer)."""
    result = None
    while True:
        try:
            effect = steps.send(result)
        except StopIteration as done:
            return done.value
        result = await _aperform(graph, effect, invoker)
