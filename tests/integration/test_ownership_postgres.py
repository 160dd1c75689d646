"""Ownership and dead-letter records on PostgreSQL (a fresh schema per test).

The queue created by an earlier release gains its new columns in place (also when several
processes open it at once), and `--user` scopes `dlq` and `prune` on the scale-out backend as on
SQLite.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from langchain_core.runnables import RunnableConfig

from switchyard.cli import main
from switchyard.storage.dlq import DeadLetterAccessError, DeadLetterQueue
from switchyard.storage.persistence import open_persistence

OLD_SCHEMA = """
CREATE TABLE switchyard_dead_letters (
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    pattern TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    checkpoint_id TEXT,
    correlation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    input TEXT NOT NULL,
    error TEXT,
    end_reason TEXT NOT NULL,
    status TEXT NOT NULL,
    replays INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '{}'
)
"""


def letter_fields(user_id: str) -> dict[str, Any]:
    return {
        "pattern": "router",
        "thread_id": str(uuid.uuid4()),
        "checkpoint_id": "1",
        "correlation_id": uuid.uuid4().hex,
        "user_id": user_id,
        "session_id": "s1",
        "input": "refund please",
        "error": "boom",
        "end_reason": "agent_failed",
    }


def test_a_queue_from_an_earlier_release_gains_the_new_columns(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO switchyard_dead_letters (id, created_at, pattern, thread_id, "
            "correlation_id, user_id, session_id, input, end_reason, status) VALUES "
            "('old', 1, 'router', 't', 'c', 'alice', 's', 'hi', 'error', 'open')"
        )
    # Several processes opening the old queue at once all succeed.
    with ThreadPoolExecutor(6) as pool:
        queues = list(pool.map(lambda _: DeadLetterQueue(postgres_dsn), range(6)))
    old = queues[0].get("old")
    assert (old.graph, old.settings, old.user_id) == (None, {}, "alice")

    settings = {"context": {"model": "offline:x"}, "default_model": "offline"}
    new = queues[1].record(
        **letter_fields("bob"), graph="switchyard.graphs.demos:router", settings=settings
    )
    assert queues[2].get(new.id) == new
    assert [d.id for d in queues[3].list(user_id="bob")] == [new.id]
    assert [d.id for d in queues[3].list(user_id="alice")] == ["old"]
    with pytest.raises(DeadLetterAccessError):
        queues[4].get("old", user_id="bob")


def test_dlq_and_prune_are_scoped_by_user_on_postgres(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWITCHYARD_SECRET", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("SWITCHYARD_DLQ", postgres_dsn)
    threads = {}
    for user in ("alice", "bob"):
        argv = ["run", "router", "I need a refund", "--user", user, "--session", "s1"]
        for _ in range(2):
            assert main([*argv, "--checkpointer", postgres_dsn, "--json", "--quiet"]) == 0
            threads[user] = json.loads(capsys.readouterr().out)["thread_id"]
    letter = DeadLetterQueue().record(**letter_fields("alice"))

    def count(thread_id: str) -> int:
        with open_persistence(postgres_dsn) as persistence:
            config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
            return len(list(persistence.checkpointer.list(config)))

    alice_before = count(threads["alice"])
    prune = ["prune", "--keep-latest", "1", "--user", "bob", "--checkpointer", postgres_dsn]
    for argv in (
        [*prune, "--thread", threads["alice"]],
        ["dlq", "show", letter.id, "--user", "bob"],
        ["dlq", "replay", letter.id, "--user", "bob", "--checkpointer", postgres_dsn],
    ):
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert (out, len(err.strip().splitlines())) == ("", 1)
        assert "alice" not in err
    assert count(threads["alice"]) == alice_before

    assert main([*prune, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 1
    assert count(threads["bob"]) == 1
    assert count(threads["alice"]) == alice_before
