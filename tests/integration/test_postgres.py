"""PostgreSQL persistence: selected by a DSN, tables made on first use, bad settings explained.

`SWITCHYARD_CHECKPOINTER=postgresql://...` (or the same string in code) opens LangGraph's
PostgreSQL checkpointer and store, sync and async; SQLite stays the default and `memory` is for
tests. A malformed DSN, an unreachable server or a missing database fail before anything is
written, with one message that names the problem.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.postgres import PostgresStore
from langgraph.store.postgres.aio import AsyncPostgresStore

from switchyard.core.errors import PersistenceConfigError
from switchyard.runtime.run import arun, run
from switchyard.storage.persistence import (
    CHECKPOINTER_ENV,
    backend_of,
    open_async_checkpointer,
    open_async_persistence,
    open_async_store,
    open_checkpointer,
    open_persistence,
    open_store,
    parse_postgres_dsn,
)

TABLES = {
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "checkpoint_migrations",
    "store",
    "store_migrations",
}


def router(persistence: Any) -> Any:
    from switchyard.graphs.demos import ROUTER_AGENTS
    from switchyard.graphs.router import build_router_graph

    return build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=persistence.checkpointer, store=persistence.store, name="router"
    )


def open_and_close(setting: str, **kwargs: Any) -> None:
    with open_persistence(setting, **kwargs):
        pass


def tables(dsn: str) -> set[str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return {r[0] for r in rows}


def test_the_environment_selects_postgres_and_tables_appear_on_first_use(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tables(postgres_dsn) == set()
    monkeypatch.setenv(CHECKPOINTER_ENV, postgres_dsn)
    with open_persistence() as persistence:
        assert persistence.backend == "postgres"
        assert isinstance(persistence.checkpointer, PostgresSaver)
        assert isinstance(persistence.store, PostgresStore)
        assert "@" in persistence.location
        graph = router(persistence)
        first = run(graph, "I need a refund", user_id="ada", session_id="s1", dlq=None)
        assert first.ok
        persistence.store.put(("ada", "prefs"), "tone", {"value": "brief"})
    assert tables(postgres_dsn) >= TABLES

    # A second process (here: a second open) sees the same session and memory.
    with open_persistence(postgres_dsn) as persistence:
        graph = router(persistence)
        second = run(graph, "And my invoice?", user_id="ada", session_id="s1", dlq=None)
        assert second.ok
        messages = graph.get_state({"configurable": {"thread_id": second.thread_id}}).values[
            "messages"
        ]
        assert [m.type for m in messages] == ["human", "ai", "human", "ai"]
        item = persistence.store.get(("ada", "prefs"), "tone")
        assert item is not None
        assert item.value == {"value": "brief"}


def test_checkpointer_and_store_open_on_their_own(postgres_dsn: str) -> None:
    with open_checkpointer(postgres_dsn) as saver:
        assert isinstance(saver, PostgresSaver)
    with open_store(postgres_dsn) as store:
        assert isinstance(store, PostgresStore)
        store.put(("ns",), "k", {"v": 1})
    assert tables(postgres_dsn) >= TABLES


async def test_async_savers_and_the_async_run_facade(postgres_dsn: str) -> None:
    async with open_async_persistence(postgres_dsn) as persistence:
        assert isinstance(persistence.checkpointer, AsyncPostgresSaver)
        assert isinstance(persistence.store, AsyncPostgresStore)
        graph = router(persistence)
        results = await asyncio.gather(
            *(
                arun(graph, f"refund for order {i}", user_id="ada", session_id=f"s{i}", dlq=None)
                for i in range(5)
            )
        )
        assert all(r.ok for r in results)
        assert len({r.thread_id for r in results}) == 5
        await persistence.store.aput(("ada",), "k", {"v": 2})
    async with open_async_checkpointer(postgres_dsn) as saver:
        assert isinstance(saver, AsyncPostgresSaver)
        assert await saver.aget_tuple({"configurable": {"thread_id": results[0].thread_id}})
    async with open_async_store(postgres_dsn) as store:
        item = await store.aget(("ada",), "k")
        assert item is not None
        assert item.value == {"v": 2}


def open_in_a_worker(dsn: str) -> str:
    with open_persistence(dsn) as persistence:
        return type(persistence.checkpointer).__name__


def test_workers_starting_together_create_the_tables_once(postgres_dsn: str) -> None:
    """Migrations run under an advisory lock: concurrent first opens neither fail nor hang."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        names = pool.map(open_in_a_worker, [postgres_dsn] * 4, chunksize=1)
    assert names == ["PostgresSaver"] * 4
    import psycopg

    with psycopg.connect(postgres_dsn) as conn:
        versions = conn.execute("SELECT v FROM checkpoint_migrations ORDER BY v").fetchall()
    assert [v[0] for v in versions] == list(range(len(versions)))  # each migration once


def test_sqlite_stays_the_default_and_memory_is_for_tests(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert backend_of() == ("sqlite", ".switchyard/state.sqlite")
    with open_checkpointer() as saver:
        assert isinstance(saver, SqliteSaver)
    assert (tmp_path / ".switchyard" / "state.sqlite").exists()
    with open_checkpointer("memory") as saver:
        assert isinstance(saver, InMemorySaver)


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://postgres@127.0.0.1:notaport/test", "port 'notaport' is not a number"),
        ("postgresql://postgres@127.0.0.1:70000/test", "port '70000' is not a number"),
        ("postgresql://[::1/test", "malformed PostgreSQL DSN"),
        ("postgresql://h/db?nonsense=1", "malformed PostgreSQL DSN"),
        ("mysql://root@localhost/db", "unsupported checkpointer scheme 'mysql://'"),
    ],
)
def test_malformed_settings_are_refused_before_connecting(dsn: str, message: str) -> None:
    with pytest.raises(PersistenceConfigError, match=message.replace("[", r"\[")):
        open_and_close(dsn)


def test_malformed_dsn_names_the_expected_form() -> None:
    with pytest.raises(PersistenceConfigError, match=r"expected postgresql://USER"):
        parse_postgres_dsn("postgresql://u@h:x/db")
    target = parse_postgres_dsn("postgresql://bob:secret@db.example:6543/app")
    assert target.display == "postgresql://bob@db.example:6543/app"  # no password in messages


def test_an_unreachable_server_is_named_by_host_and_port() -> None:
    dsn = "postgresql://postgres@127.0.0.1:1/test?connect_timeout=3"  # nothing listens on 1
    with pytest.raises(
        PersistenceConfigError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:1 "
    ):
        open_and_close(dsn)


async def test_an_unreachable_server_is_named_in_async_too() -> None:
    dsn = "postgresql://postgres@127.0.0.1:1/test?connect_timeout=3"
    with pytest.raises(PersistenceConfigError, match=r"127\.0\.0\.1:1 \(database 'test'"):
        async with open_async_checkpointer(dsn):
            pass


def test_a_missing_database_is_named_and_nothing_is_created(postgres_server: str) -> None:
    missing = f"nope_{uuid.uuid4().hex[:8]}"
    dsn = postgres_server.rsplit("/", 1)[0] + f"/{missing}"
    with pytest.raises(PersistenceConfigError, match=rf'database "{missing}" does not exist'):
        open_and_close(dsn)


def test_pool_size_must_be_positive(postgres_dsn: str) -> None:
    with pytest.raises(PersistenceConfigError, match="pool_size must be at least 1"):
        open_and_close(postgres_dsn, pool_size=0)
    assert tables(postgres_dsn) == set()  # refused before anything was created
