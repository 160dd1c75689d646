"""A thread's state written as it is: the turn's final values as one new checkpoint.

A session's state crosses between the session store and a Workflow as values (`get_state`). To
set a thread to those values, LangGraph's `update_state` is the wrong tool: it applies them as a
node's output, through each channel's reducer (appending the messages again) and through the
node's outgoing routers (which read the values as an update). `put_values` writes the values
into a new checkpoint of the thread directly, the way LangGraph itself saves a step: each
channel's value replaced, its version advanced; no task is pending afterwards, so the thread
reads as after a finished run.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    LATEST_VERSION,
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.base.id import uuid6
from langgraph.pregel import Pregel


def _new_checkpoint(now: datetime | None) -> Checkpoint:
    """LangGraph's `empty_checkpoint()`, stamped `now` (a Workflow passes its own clock)."""
    return Checkpoint(
        v=LATEST_VERSION,
        id=str(uuid6(clock_seq=-2)),
        ts=(now or datetime.now(UTC)).isoformat(),
        channel_values={},
        channel_versions={},
        versions_seen={},
        updated_channels=None,
    )


def _checkpoint(
    saver: BaseCheckpointSaver[Any],
    config: RunnableConfig,
    values: dict[str, Any],
    head: CheckpointTuple | None,
    nodes: Iterable[str],
    now: datetime | None,
) -> tuple[RunnableConfig, Checkpoint, CheckpointMetadata, dict[str, Any]]:
    thread = (config.get("configurable") or {})["thread_id"]
    earlier = head.checkpoint if head is not None else _new_checkpoint(now)
    checkpoint = _new_checkpoint(now)
    versions = {
        key: saver.get_next_version(earlier["channel_versions"].get(key), None) for key in values
    }
    checkpoint["channel_values"] = dict(values)
    checkpoint["channel_versions"] = {**earlier["channel_versions"], **versions}
    # Every node has seen every value: nothing is left to run (a node triggered by a state
    # channel, such as a join after parallel branches, would otherwise be pending).
    seen = {**earlier["versions_seen"]}
    for node in nodes:
        seen[node] = {**seen.get(node, {}), **checkpoint["channel_versions"]}
    checkpoint["versions_seen"] = seen
    step = (head.metadata or {}).get("step", -1) if head is not None else -1
    metadata: dict[str, Any] = {
        **(config.get("metadata") or {}),
        "source": "update",
        "step": step + 1,
        "parents": {},
    }
    configurable: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if head is not None:
        configurable["checkpoint_id"] = head.checkpoint["id"]
    return {"configurable": configurable}, checkpoint, metadata, versions  # type: ignore[return-value]


def put_values(
    graph: Pregel[Any, Any, Any, Any],
    config: RunnableConfig,
    values: dict[str, Any],
    *,
    now: datetime | None = None,
) -> str:
    """Make `values` the newest state of `config`'s thread in `graph`'s checkpointer.

    The checkpoint is stamped `now` (default: the current time); its id is returned.
    """
    saver = _saver(graph)
    head = saver.get_tuple({"configurable": {"thread_id": config["configurable"]["thread_id"]}})
    written = saver.put(
        *_checkpoint(saver, config, _channels(graph, values), head, graph.nodes, now)
    )
    return str(written["configurable"]["checkpoint_id"])


async def aput_values(
    graph: Pregel[Any, Any, Any, Any], config: RunnableConfig, values: dict[str, Any]
) -> None:
    """Async form of `put_values`."""
    saver = _saver(graph)
    thread = config["configurable"]["thread_id"]
    head = await saver.aget_tuple({"configurable": {"thread_id": thread}})
    await saver.aput(*_checkpoint(saver, config, _channels(graph, values), head, graph.nodes, None))


def _saver(graph: Pregel[Any, Any, Any, Any]) -> BaseCheckpointSaver[Any]:
    saver = graph.checkpointer
    if not isinstance(saver, BaseCheckpointSaver):
        raise TypeError("put_values needs a graph compiled with a checkpointer")
    return saver


def _channels(graph: Pregel[Any, Any, Any, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The entries of `values` that are channels of `graph` (what a checkpoint holds)."""
    return {key: value for key, value in values.items() if key in graph.channels}


Entry = dict[str, Any]
"""One checkpoint of a turn, as it crosses from the Workflow to the client (`history_after`)."""

HISTORY_LIMIT_BYTES = 1_500_000
"""Largest turn history sent back whole; Temporal refuses payloads over 2 MB. A larger turn
sends its final state only (`put_values`): the session continues, its report shows the turn
without steps."""


def history_after(
    saver: BaseCheckpointSaver[Any], thread_id: str, seed_id: str | None
) -> list[Entry]:
    """The turn's checkpoints in a Workflow's saver, oldest first, without the seeded one.

    Each entry holds the checkpoint, its metadata, its parent's id, its namespace and the
    writes pending on it (a failed task's error, an interrupt, a finished task's output).
    """
    entries: list[Entry] = []
    for item in saver.list({"configurable": {"thread_id": thread_id}}):
        configurable = item.config["configurable"]
        if configurable["checkpoint_id"] == seed_id:
            continue
        parent = (item.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        entries.append(
            {
                "checkpoint": item.checkpoint,
                "metadata": dict(item.metadata or {}),
                "parent": parent,
                "namespace": configurable.get("checkpoint_ns", ""),
                "writes": list(item.pending_writes or ()),
            }
        )
    entries.sort(key=lambda entry: entry["checkpoint"]["id"])  # ids are time-ordered (uuid6)
    return entries


def _placed(
    entry: Entry, thread: str, seed_id: str | None, head_id: str | None, extra: dict[str, Any]
) -> tuple[RunnableConfig, Checkpoint, CheckpointMetadata, Any, list[tuple[str, list[Any]]]]:
    """Where `entry` goes in the session's saver: under the session's head instead of the seed."""
    parent = head_id if entry["parent"] == seed_id else entry["parent"]
    configurable: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": entry["namespace"]}
    if parent is not None:
        configurable["checkpoint_id"] = parent
    checkpoint: Checkpoint = entry["checkpoint"]
    metadata: Any = {**entry["metadata"], **extra}
    by_task: dict[str, list[Any]] = {}
    for task_id, channel, value in entry["writes"]:
        by_task.setdefault(task_id, []).append((channel, value))
    config: RunnableConfig = {"configurable": configurable}
    return config, checkpoint, metadata, checkpoint["channel_versions"], list(by_task.items())


def put_history(
    graph: Pregel[Any, Any, Any, Any],
    config: RunnableConfig,
    entries: list[Entry],
    *,
    seed_id: str | None,
    head_id: str | None,
    extra: dict[str, Any],
) -> None:
    """Write a turn's checkpoints (`history_after`) into the session, after its head.

    The session then holds the turn step by step, as after an in-process run: its report, a
    dead letter's replay point and a question waiting for a person are all there. `extra` is
    added to every checkpoint's metadata.
    """
    saver = _saver(graph)
    thread = config["configurable"]["thread_id"]
    for entry in entries:
        target, checkpoint, metadata, versions, writes = _placed(
            entry, thread, seed_id, head_id, extra
        )
        written = saver.put(target, checkpoint, metadata, versions)
        for task_id, task_writes in writes:
            saver.put_writes(written, task_writes, task_id)


async def aput_history(
    graph: Pregel[Any, Any, Any, Any],
    config: RunnableConfig,
    entries: list[Entry],
    *,
    seed_id: str | None,
    head_id: str | None,
    extra: dict[str, Any],
) -> None:
    """Async form of `put_history`."""
    saver = _saver(graph)
    thread = config["configurable"]["thread_id"]
    for entry in entries:
        target, checkpoint, metadata, versions, writes = _placed(
            entry, thread, seed_id, head_id, extra
        )
        written = await saver.aput(target, checkpoint, metadata, versions)
        for task_id, task_writes in writes:
            await saver.aput_writes(written, task_writes, task_id)
