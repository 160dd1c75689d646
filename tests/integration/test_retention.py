"""Retention on SQLite and PostgreSQL: what a policy keeps, and that what it keeps still works.

Every test runs on both backends (a SQLite file, a fresh PostgreSQL schema). The invariants: the
latest checkpoint of every thread survives, every kept checkpoint loads to exactly the state it
had before the prune, no pending write or blob is left without its checkpoint, a thread can be
continued afterwards, and nothing outside the policy (other threads, dry runs, bad requests) is
touched.
"""

from __future__ import annotations

import json
import operator
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated, Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.guardrails.idempotency import effects_namespace, idempotency_key, once
from switchyard.runtime.run import run
from switchyard.storage import retention
from switchyard.storage.persistence import Persistence, open_async_persistence, open_persistence
from switchyard.storage.retention import (
    PruneReport,
    RetentionError,
    RetentionPolicy,
    aprune,
    checkpoint_created_at,
    parse_duration,
    prune,
    thread_storage_bytes,
)
from tests.integration.conftest import run_cli

USER = "ada"
ROUTER_TEXTS = (
    "I need a refund for my last payment",
    "How do I authenticate with the API?",
    "Write a Python function that parses a CSV file",
    "I was charged twice this month",
    "Which endpoint lists all projects?",
)


# -- graphs -----------------------------------------------------------------------------------


def router(persistence: Persistence) -> CompiledStateGraph[Any, Any, Any, Any]:
    return build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=persistence.checkpointer, store=persistence.store, name="router"
    )


class CounterState(TypedDict):
    count: Annotated[int, operator.add]
    last: str


def bump(state: CounterState) -> dict[str, Any]:
    return {"count": 1, "last": f"turn {state['count'] + 1}"}


def counter(persistence: Persistence) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A state that does not grow: what a bounded session looks like."""
    builder = StateGraph(CounterState)
    builder.add_node(bump)
    builder.add_edge(START, "bump")
    builder.add_edge("bump", END)
    return builder.compile(checkpointer=persistence.checkpointer, name="counter")


class Outer(TypedDict):
    log: Annotated[list[str], operator.add]


def inner_step(state: Outer) -> dict[str, Any]:
    return {"log": ["inner"]}


def with_subgraph(persistence: Persistence) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A parent whose node is a subgraph: its checkpoints live in a `child:<task>` namespace."""
    inner = StateGraph(Outer)
    inner.add_node("inner_step", inner_step)
    inner.add_edge(START, "inner_step")
    inner.add_edge("inner_step", END)
    outer = StateGraph(Outer)
    outer.add_node("child", inner.compile())
    outer.add_edge(START, "child")
    outer.add_edge("child", END)
    return outer.compile(checkpointer=persistence.checkpointer, name="nested")


def append_all(state: list[str], writes: Sequence[list[str]]) -> list[str]:
    return [*state, *(item for write in writes for item in write)]


class DeltaState(TypedDict):
    items: Annotated[list[str], DeltaChannel(append_all)]


def add_item(state: DeltaState) -> dict[str, Any]:
    return {"items": [f"item {len(state.get('items') or [])}"]}


def delta_graph(persistence: Persistence) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(DeltaState)
    builder.add_node(add_item)
    builder.add_edge(START, "add_item")
    builder.add_edge("add_item", END)
    return builder.compile(checkpointer=persistence.checkpointer, name="delta")


class EffectState(TypedDict):
    done: Annotated[list[str], operator.add]


def charge(state: EffectState) -> dict[str, Any]:
    receipt = once(idempotency_key("charge"), lambda: f"receipt {len(state['done'])}")
    return {"done": [receipt]}


def effects_graph(persistence: Persistence) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(EffectState)
    builder.add_node(charge)
    builder.add_edge(START, "charge")
    builder.add_edge("charge", END)
    return builder.compile(
        checkpointer=persistence.checkpointer, store=persistence.store, name="effects"
    )


# -- helpers ----------------------------------------------------------------------------------


def cfg(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def converse(graph: Any, session: str, turns: int) -> str:
    result = None
    for turn in range(turns):
        text = ROUTER_TEXTS[turn % len(ROUTER_TEXTS)]
        result = run(graph, text, user_id=USER, session_id=session, dlq=None)
        assert result.ok, result.error
    assert result is not None
    return result.thread_id


def snapshots(graph: Any, thread_id: str) -> dict[str, Any]:
    """Checkpoint id -> the state it loads, for every checkpoint of the thread."""
    return {
        s.config["configurable"]["checkpoint_id"]: s.values
        for s in graph.get_state_history(cfg(thread_id))
    }


@contextmanager
def raw(persistence: Persistence) -> Iterator[Any]:
    """A cursor-like `execute(sql, params) -> rows` on the backend's own connection."""
    saver: Any = persistence.checkpointer
    if persistence.backend == "sqlite":
        with saver.lock:
            yield lambda sql, params=(): saver.conn.execute(
                sql.replace("%s", "?"), params
            ).fetchall()
    else:
        with saver.conn.connection() as conn:
            yield lambda sql, params=(): [tuple(r.values()) for r in conn.execute(sql, params)]


def unloadable(persistence: Persistence) -> set[tuple[str, ...]]:
    """On PostgreSQL, channel versions a checkpoint names with neither an inline value nor a blob.

    Some are legitimate (an empty channel has a version and no value), so tests compare this set
    before and after a prune: a prune must not add to it.
    """
    if persistence.backend != "postgres":
        return set()
    with raw(persistence) as execute:
        rows = execute(
            "SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, v.key FROM checkpoints c "
            "CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') v "
            "WHERE NOT (c.checkpoint -> 'channel_values' ? v.key) AND NOT EXISTS (SELECT 1 "
            "FROM checkpoint_blobs b WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = "
            "c.checkpoint_ns AND b.channel = v.key AND b.version = v.value)"
        )
    return {tuple(r) for r in rows}


def assert_no_orphans(persistence: Persistence) -> None:
    """No write without its checkpoint; on PostgreSQL no blob that no checkpoint references."""
    writes = "writes" if persistence.backend == "sqlite" else "checkpoint_writes"
    with raw(persistence) as execute:
        orphans = execute(
            f"SELECT count(*) FROM {writes} w WHERE NOT EXISTS (SELECT 1 FROM checkpoints c "
            "WHERE c.thread_id = w.thread_id AND c.checkpoint_ns = w.checkpoint_ns "
            "AND c.checkpoint_id = w.checkpoint_id)"
        )
        assert orphans[0][0] == 0
        if persistence.backend == "postgres":
            unreferenced = execute(
                "SELECT count(*) FROM checkpoint_blobs b WHERE NOT EXISTS (SELECT 1 FROM "
                "checkpoints c WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = "
                "b.checkpoint_ns AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)"
            )
            assert unreferenced[0][0] == 0


# -- tests ------------------------------------------------------------------------------------


def test_keep_latest_keeps_the_newest_checkpoints_exactly_as_they_were(
    persistence_setting: str,
) -> None:
    with open_persistence(persistence_setting) as persistence:
        graph = router(persistence)
        long_thread = converse(graph, "long", 5)
        short_thread = converse(graph, "short", 2)
        before = {t: snapshots(graph, t) for t in (long_thread, short_thread)}
        gaps = unloadable(persistence)

        report = prune(persistence.checkpointer, RetentionPolicy(keep_latest=3))

        assert report.threads == 2
        assert report.threads_pruned == 2
        assert report.checkpoints_kept == 6
        assert report.checkpoints_deleted == sum(len(b) for b in before.values()) - 6
        assert report.writes_deleted > 0
        assert (report.blobs_deleted > 0) == (persistence.backend == "postgres")
        for thread_id, old in before.items():
            after = snapshots(graph, thread_id)
            newest = sorted(old, reverse=True)[:3]
            assert sorted(after, reverse=True) == newest
            assert all(after[i] == old[i] for i in newest), "a kept checkpoint changed"
            history = list(graph.get_state_history(cfg(thread_id)))
            assert history[-1].parent_config is None  # the oldest kept one lost its parent
        assert_no_orphans(persistence)
        assert unloadable(persistence) <= gaps  # no blob a kept checkpoint needs was deleted

        # The session goes on as if nothing happened.
        result = run(graph, "Is there a Python SDK?", user_id=USER, session_id="long", dlq=None)
        assert result.ok
        messages = graph.get_state(cfg(long_thread)).values["messages"]
        assert len(messages) == 12
        assert [m.type for m in messages] == ["human", "ai"] * 6


def test_older_than_deletes_only_checkpoints_before_the_cutoff(persistence_setting: str) -> None:
    with open_persistence(persistence_setting) as persistence:
        graph = router(persistence)
        thread_id = converse(graph, "s", 3)
        ids = sorted(snapshots(graph, thread_id))  # oldest first
        boundary = ids[5]
        created = checkpoint_created_at(boundary)
        assert created is not None
        now = created + timedelta(days=2)

        report = prune(
            persistence.checkpointer, RetentionPolicy(older_than=timedelta(days=2)), now=now
        )

        assert report.checkpoints_deleted == 5
        assert sorted(snapshots(graph, thread_id)) == ids[5:]

        # Seen from just after the first checkpoint, nothing is two days old.
        first = checkpoint_created_at(ids[5])
        assert first is not None
        report = prune(
            persistence.checkpointer, RetentionPolicy(older_than=timedelta(days=2)), now=first
        )
        assert report.checkpoints_deleted == 0
        assert sorted(snapshots(graph, thread_id)) == ids[5:]

        # However old, the latest checkpoint stays.
        report = prune(
            persistence.checkpointer,
            RetentionPolicy(older_than=timedelta(seconds=1)),
            now=first + timedelta(days=365),
        )
        assert sorted(snapshots(graph, thread_id)) == ids[-1:]


def test_combined_policy_keeps_the_union(persistence_setting: str) -> None:
    with open_persistence(persistence_setting) as persistence:
        graph = router(persistence)
        thread_id = converse(graph, "s", 3)
        ids = sorted(snapshots(graph, thread_id))
        created = checkpoint_created_at(ids[8])
        assert created is not None
        # Newer than the cutoff: ids[8:] (4 checkpoints); newest 6: ids[6:]. Union: ids[6:].
        report = prune(
            persistence.checkpointer,
            RetentionPolicy(keep_latest=6, older_than=timedelta(hours=1)),
            now=created + timedelta(hours=1),
        )
        assert report.checkpoints_deleted == 6
        assert sorted(snapshots(graph, thread_id)) == ids[6:]
        # Everything older than an hour before a later `now`: only keep_latest=2 remains.
        report = prune(
            persistence.checkpointer,
            RetentionPolicy(keep_latest=2, older_than=timedelta(hours=1)),
            now=created + timedelta(days=1),
        )
        assert sorted(snapshots(graph, thread_id)) == ids[-2:]


def test_dry_run_reports_the_same_and_changes_nothing(persistence_setting: str) -> None:
    with open_persistence(persistence_setting) as persistence:
        graph = router(persistence)
        thread_id = converse(graph, "s", 3)
        before = snapshots(graph, thread_id)
        size = thread_storage_bytes(persistence.checkpointer, thread_id)

        dry = prune(persistence.checkpointer, RetentionPolicy(keep_latest=1), dry_run=True)

        assert dry.dry_run
        assert snapshots(graph, thread_id) == before
        assert thread_storage_bytes(persistence.checkpointer, thread_id) == size
        real = prune(persistence.checkpointer, RetentionPolicy(keep_latest=1))
        assert (dry.checkpoints_deleted, dry.writes_deleted, dry.blobs_deleted) == (
            real.checkpoints_deleted,
            real.writes_deleted,
            real.blobs_deleted,
        )
        assert thread_storage_bytes(persistence.checkpointer, thread_id) < size


def test_named_threads_only_and_unknown_threads_refused_before_any_delete(
    persistence_setting: str,
) -> None:
    with open_persistence(persistence_setting) as persistence:
        graph = router(persistence)
        a = converse(graph, "a", 2)
        b = converse(graph, "b", 2)
        before_b = snapshots(graph, b)

        with pytest.raises(RetentionError, match="no checkpoints for thread"):
            prune(persistence.checkpointer, RetentionPolicy(keep_latest=1), thread_ids=[a, "nope"])
        assert len(snapshots(graph, a)) == 8  # nothing was pruned

        report = prune(persistence.checkpointer, RetentionPolicy(keep_latest=1), thread_ids=[a])
        assert report.threads == 1
        assert len(snapshots(graph, a)) == 1
        assert snapshots(graph, b) == before_b

        with pytest.raises(RetentionError, match="list of thread ids"):
            prune(persistence.checkpointer, RetentionPolicy(keep_latest=1), thread_ids=a)


def test_subgraph_checkpoints_go_with_the_parent_checkpoint(persistence_setting: str) -> None:
    with open_persistence(persistence_setting) as persistence:
        graph = with_subgraph(persistence)
        pruned, control = str(uuid.uuid4()), str(uuid.uuid4())
        for _ in range(3):
            for thread_id in (pruned, control):
                graph.invoke({"log": ["outer"]}, cfg(thread_id))
        namespaces = "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = %s"
        with raw(persistence) as execute:
            before = {r[0] for r in execute(namespaces, (pruned,))}
        assert any(ns.startswith("child:") for ns in before), before

        prune(persistence.checkpointer, RetentionPolicy(keep_latest=1), thread_ids=[pruned])

        with raw(persistence) as execute:
            after = {r[0] for r in execute(namespaces, (pruned,))}
        assert after == {""}  # the calls started from deleted root checkpoints are gone
        assert graph.get_state(cfg(pruned)).values == graph.get_state(cfg(control)).values
        assert_no_orphans(persistence)
        for thread_id in (pruned, control):
            graph.invoke({"log": ["outer"]}, cfg(thread_id))
        assert graph.get_state(cfg(pruned)).values == graph.get_state(cfg(control)).values


def test_threads_with_a_delta_channel_are_skipped_not_broken(persistence_setting: str) -> None:
    with open_persistence(persistence_setting) as persistence:
        graph = delta_graph(persistence)
        thread_id = str(uuid.uuid4())
        for _ in range(3):
            graph.invoke({"items": []}, cfg(thread_id))
        before = snapshots(graph, thread_id)

        report = prune(persistence.checkpointer, RetentionPolicy(keep_latest=1))

        assert list(report.skipped) == [thread_id]
        assert "DeltaChannel" in report.skipped[thread_id]
        assert report.checkpoints_deleted == 0
        assert snapshots(graph, thread_id) == before
        assert graph.get_state(cfg(thread_id)).values["items"] == ["item 0", "item 1", "item 2"]


def test_effect_records_of_deleted_checkpoints_are_deleted(persistence_setting: str) -> None:
    with open_persistence(persistence_setting) as persistence:
        graph = effects_graph(persistence)
        thread_id = str(uuid.uuid4())
        for _ in range(4):
            graph.invoke({"done": []}, cfg(thread_id))
        namespace = effects_namespace(thread_id)
        assert len(persistence.store.search(namespace, limit=100)) == 4

        report = prune(
            persistence.checkpointer, RetentionPolicy(keep_latest=2), store=persistence.store
        )

        kept = set(snapshots(graph, thread_id))
        records = persistence.store.search(namespace, limit=100)
        assert report.effects_deleted == 4 - len(records)
        assert all(r.value["checkpoint_id"] in kept for r in records)
        assert graph.get_state(cfg(thread_id)).values["done"] == [f"receipt {i}" for i in range(4)]


def test_storage_of_a_long_session_stays_bounded(persistence_setting: str) -> None:
    """A session whose state does not grow keeps a constant size when pruned every turn."""
    with open_persistence(persistence_setting) as persistence:
        graph = counter(persistence)
        pruned, unpruned = str(uuid.uuid4()), str(uuid.uuid4())
        sizes: list[int] = []
        for _ in range(40):
            graph.invoke({"count": 0}, cfg(pruned))
            graph.invoke({"count": 0}, cfg(unpruned))
            prune(persistence.checkpointer, RetentionPolicy(keep_latest=3), thread_ids=[pruned])
            sizes.append(thread_storage_bytes(persistence.checkpointer, pruned))
        unbounded = thread_storage_bytes(persistence.checkpointer, unpruned)
        assert graph.get_state(cfg(pruned)).values["count"] == 40
        assert max(sizes[5:]) <= sizes[5] * 1.05  # flat after the first turns
        assert unbounded > 8 * sizes[-1]  # without retention it keeps growing


@pytest.mark.parametrize("keep_latest", [1, 2])  # PostgreSQL: the saver's own prune, then ours
def test_prune_while_a_session_keeps_running(persistence_setting: str, keep_latest: int) -> None:
    """Pruning in one thread while another keeps appending loses no turn and breaks no state."""
    with open_persistence(persistence_setting) as persistence:
        graph = counter(persistence)
        thread_id = str(uuid.uuid4())
        graph.invoke({"count": 0}, cfg(thread_id))
        failures: list[BaseException] = []

        def keep_running() -> None:
            try:
                for _ in range(30):
                    graph.invoke({"count": 0}, cfg(thread_id))
            except BaseException as exc:  # surfaced below
                failures.append(exc)

        runner = threading.Thread(target=keep_running)
        runner.start()
        reports: list[PruneReport] = []
        while runner.is_alive():
            reports.append(
                prune(persistence.checkpointer, RetentionPolicy(keep_latest=keep_latest))
            )
        runner.join()
        reports.append(prune(persistence.checkpointer, RetentionPolicy(keep_latest=keep_latest)))
        assert not failures, failures
        assert graph.get_state(cfg(thread_id)).values["count"] == 31
        assert len(snapshots(graph, thread_id)) == keep_latest
        # Every checkpoint the 31 turns saved was either counted as deleted or is still there.
        assert sum(r.checkpoints_deleted for r in reports) + keep_latest == 31 * 3
        assert_no_orphans(persistence)


async def test_async_prune_on_async_savers(persistence_setting: str) -> None:
    async with open_async_persistence(persistence_setting) as persistence:
        graph = counter(persistence)
        thread_id = str(uuid.uuid4())
        for _ in range(5):
            await graph.ainvoke({"count": 0}, cfg(thread_id))
        report = await aprune(persistence.checkpointer, RetentionPolicy(keep_latest=2))
        assert report.checkpoints_deleted == 15 - 2
        history = [s async for s in graph.aget_state_history(cfg(thread_id))]
        assert len(history) == 2
        assert (await graph.aget_state(cfg(thread_id))).values["count"] == 5
        with pytest.raises(RetentionError, match="no checkpoints for thread"):
            await aprune(
                persistence.checkpointer, RetentionPolicy(keep_latest=1), thread_ids=["nope"]
            )
        with pytest.raises(RetentionError, match=r"await aprune"):
            prune(persistence.checkpointer, RetentionPolicy(keep_latest=1))


def test_keep_latest_1_on_postgres_is_the_savers_own_prune_and_agrees_with_ours(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upstream's keep_latest and ours, on two threads with the same history, leave the same."""
    calls: list[list[str]] = []
    upstream = PostgresSaver.prune

    def spy(self: PostgresSaver, thread_ids: Sequence[str], **kwargs: Any) -> None:
        calls.append(list(thread_ids))
        upstream(self, thread_ids, **kwargs)

    monkeypatch.setattr(PostgresSaver, "prune", spy)
    with open_persistence(postgres_dsn) as persistence:
        chat, nested = router(persistence), with_subgraph(persistence)
        pairs = [(converse(chat, "theirs", 3), converse(chat, "ours", 3))]
        pairs.append((str(uuid.uuid4()), str(uuid.uuid4())))
        for _ in range(3):
            for thread_id in pairs[1]:
                nested.invoke({"log": ["outer"]}, cfg(thread_id))
        theirs, ours = ([pair[i] for pair in pairs] for i in (0, 1))
        policy = RetentionPolicy(keep_latest=1)

        dry = prune(persistence.checkpointer, policy, thread_ids=theirs, dry_run=True)
        by_upstream = prune(persistence.checkpointer, policy, thread_ids=theirs)
        assert calls == [[t] for t in theirs] * 2
        monkeypatch.setattr(retention, "_upstream_keep_latest_matches", lambda: False)
        by_us = prune(persistence.checkpointer, policy, thread_ids=ours)
        assert len(calls) == 4  # ours did not call it

        for name in ("threads_pruned", "checkpoints_deleted", "checkpoints_kept", "writes_deleted"):
            assert getattr(dry, name) == getattr(by_upstream, name) == getattr(by_us, name), name
        assert dry.blobs_deleted == by_upstream.blobs_deleted == by_us.blobs_deleted > 0
        for graph, pair in zip((chat, nested), pairs, strict=True):
            assert [len(snapshots(graph, thread_id)) for thread_id in pair] == [1, 1]
        messages = [chat.get_state(cfg(t)).values["messages"] for t in pairs[0]]
        assert [[(m.type, m.content) for m in ms] for ms in messages] == [
            [(m.type, m.content) for m in messages[0]]
        ] * 2
        assert (
            nested.get_state(cfg(pairs[1][0])).values == nested.get_state(cfg(pairs[1][1])).values
        )
        assert_no_orphans(persistence)


async def test_async_keep_latest_1_on_postgres_is_the_savers_own_aprune(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    upstream = AsyncPostgresSaver.aprune

    async def spy(self: AsyncPostgresSaver, thread_ids: Sequence[str], **kwargs: Any) -> None:
        calls.append(list(thread_ids))
        await upstream(self, thread_ids, **kwargs)

    monkeypatch.setattr(AsyncPostgresSaver, "aprune", spy)
    async with open_async_persistence(postgres_dsn) as persistence:
        graph = counter(persistence)
        thread_id = str(uuid.uuid4())
        for _ in range(5):
            await graph.ainvoke({"count": 0}, cfg(thread_id))
        policy = RetentionPolicy(keep_latest=1)
        dry = await aprune(persistence.checkpointer, policy, dry_run=True)
        assert len([s async for s in graph.aget_state_history(cfg(thread_id))]) == 15
        report = await aprune(persistence.checkpointer, policy, store=persistence.store)
        assert calls == [[thread_id], [thread_id]]
        assert dry.checkpoints_deleted == report.checkpoints_deleted == 15 - 1
        assert report.checkpoints_kept == 1
        history = [s async for s in graph.aget_state_history(cfg(thread_id))]
        assert len(history) == 1
        assert (await graph.aget_state(cfg(thread_id))).values["count"] == 5


def test_prune_command(persistence_setting: str, capsys: pytest.CaptureFixture[str]) -> None:
    with open_persistence(persistence_setting) as persistence:
        graph = router(persistence)
        thread_id = converse(graph, "s", 2)
    argv = ["prune", "--checkpointer", persistence_setting]

    assert run_cli([*argv, "--keep-latest", "2", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True
    assert dry["checkpoints_deleted"] == 6

    assert run_cli([*argv, "--older-than", "30d", "--thread", thread_id]) == 0
    assert "checkpoints deleted" in capsys.readouterr().out  # nothing is 30 days old

    assert run_cli([*argv, "--keep-latest", "2"]) == 0
    with open_persistence(persistence_setting) as persistence:
        assert len(snapshots(router(persistence), thread_id)) == 2

    for bad, message in (
        ([*argv], "give --keep-latest N, --older-than DURATION or both"),
        ([*argv, "--keep-latest", "0"], "keep_latest must be a whole number of at least 1"),
        ([*argv, "--older-than", "soon"], "cannot read duration 'soon'"),
        ([*argv, "--keep-latest", "1", "--thread", "nope"], "no checkpoints for thread(s) nope"),
        (["prune", "--checkpointer", "memory", "--keep-latest", "1"], "in-memory checkpointer"),
        (["prune", "--checkpointer", "/nowhere/x.sqlite", "--keep-latest", "1"], "no SQLite"),
    ):
        assert run_cli(bad) == 2, bad
        assert message in capsys.readouterr().err


def test_bad_policies_and_durations_name_the_fix() -> None:
    with pytest.raises(RetentionError, match="needs keep_latest, older_than or both"):
        RetentionPolicy()
    with pytest.raises(RetentionError, match="at least 1"):
        RetentionPolicy(keep_latest=0)
    with pytest.raises(RetentionError, match="positive duration"):
        RetentionPolicy(older_than=timedelta(0))
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2w") == timedelta(weeks=2)
    for text in ("", "12", "3 days", "1x", "0s"):
        with pytest.raises(RetentionError):
            parse_duration(text)
    assert checkpoint_created_at("not-a-uuid") is None
    assert checkpoint_created_at(str(uuid.uuid4())) is None  # v4: never treated as old


def test_sqlite_thread_storage_counts_a_real_file(tmp_path: Any) -> None:
    path = tmp_path / "s.sqlite"
    with open_persistence(str(path)) as persistence:
        graph = counter(persistence)
        graph.invoke({"count": 0}, cfg("t"))
        size = thread_storage_bytes(persistence.checkpointer, "t")
    with sqlite3.connect(path) as conn:
        stored = conn.execute("SELECT sum(length(checkpoint)) FROM checkpoints").fetchone()[0]
    assert stored < size < stored + 2000
