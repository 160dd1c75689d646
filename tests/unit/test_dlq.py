"""The dead-letter queue: the store (SQLite and PostgreSQL), replay, and `switchyard dlq`."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from switchyard.cli import main
from switchyard.core.errors import InvalidInputError, PersistenceConfigError
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OfflineChatModel
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.runtime.run import replay, run
from switchyard.state import Context
from switchyard.storage import dlq as dlq_module
from switchyard.storage.dlq import DeadLetter, DeadLetterNotFoundError, DeadLetterQueue

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
TEXT = "I need a refund for my last payment"


class Clock:
    """Stands in for `time` in `switchyard.storage.dlq`: one second between records."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(dlq_module, "time", fake)
    return fake


def record(queue: DeadLetterQueue, **fields: Any) -> DeadLetter:
    values: dict[str, Any] = {
        "pattern": "router",
        "thread_id": "thread-1",
        "checkpoint_id": "checkpoint-1",
        "correlation_id": uuid.uuid4().hex,
        "user_id": "ada",
        "session_id": "s1",
        "input": TEXT,
        "error": "InternalServerError: injected 503",
        "end_reason": "agent_failed",
        **fields,
    }
    return queue.record(**values)


# --- the store ----------------------------------------------------------------------------------


def test_a_record_round_trips(tmp_path: Path, clock: Clock) -> None:
    queue = DeadLetterQueue(str(tmp_path / "dlq.sqlite"))
    letter = record(queue, detail={"usage": {"support/offline": {"calls": 1}}})
    assert len(letter.id) == 12
    assert (letter.status, letter.replays, letter.created_at) == ("open", 0, 1_700_000_001.0)
    assert queue.get(letter.id) == letter
    assert queue.get(letter.id).detail == {"usage": {"support/offline": {"calls": 1}}}


def test_list_is_newest_first_and_filters_by_status(tmp_path: Path, clock: Clock) -> None:
    queue = DeadLetterQueue(str(tmp_path / "dlq.sqlite"))
    first, second, third = (record(queue, input=f"message {n}") for n in range(3))
    queue.mark(second.id, status="replayed")
    assert [d.id for d in queue.list()] == [third.id, second.id, first.id]
    assert [d.id for d in queue.list(status="open")] == [third.id, first.id]
    assert [d.id for d in queue.list(status="replayed")] == [second.id]
    assert [d.id for d in queue.list(limit=1)] == [third.id]


def test_mark_counts_replays(tmp_path: Path) -> None:
    queue = DeadLetterQueue(str(tmp_path / "dlq.sqlite"))
    letter = record(queue)
    queue.mark(letter.id, status="open")
    queue.mark(letter.id, status="replayed")
    assert (queue.get(letter.id).status, queue.get(letter.id).replays) == ("replayed", 2)


def test_an_unknown_id_says_where_to_find_the_ids(tmp_path: Path) -> None:
    queue = DeadLetterQueue(str(tmp_path / "dlq.sqlite"))
    with pytest.raises(DeadLetterNotFoundError) as raised:
        queue.get("nope")
    assert str(raised.value) == "no dead letter with id 'nope'; `switchyard dlq list` shows the ids"


def test_records_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "dlq.sqlite")
    letter = record(DeadLetterQueue(path))
    assert DeadLetterQueue(path).get(letter.id) == letter


def test_the_location_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWITCHYARD_DLQ", str(tmp_path / "from-env.sqlite"))
    assert DeadLetterQueue().target == str(tmp_path / "from-env.sqlite")
    monkeypatch.delenv("SWITCHYARD_DLQ")
    monkeypatch.setenv("SWITCHYARD_CHECKPOINTER", POSTGRES)
    assert dlq_module._default_target() == POSTGRES
    monkeypatch.setenv("SWITCHYARD_CHECKPOINTER", str(tmp_path / "state.sqlite"))
    assert dlq_module._default_target() == str(Path(".switchyard") / "dlq.sqlite")


def test_an_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(PersistenceConfigError) as raised:
        DeadLetterQueue(str(blocker / "dlq.sqlite"))
    assert "cannot open the dead-letter queue at" in str(raised.value)
    assert "set SWITCHYARD_DLQ to a writable path" in str(raised.value)


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture
def postgres_queue() -> Iterator[DeadLetterQueue]:
    """The queue on the local PostgreSQL; skips (CI=true: fails) when it is not running."""
    try:
        queue = DeadLetterQueue(POSTGRES)
    except PersistenceConfigError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES} is required in CI: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES}: {exc}")
    ids: list[str] = []
    original = queue.record

    def tracked(**fields: Any) -> DeadLetter:
        letter = original(**fields)
        ids.append(letter.id)
        return letter

    queue.record = tracked  # type: ignore[method-assign]
    yield queue
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        for letter_id in ids:
            connection.execute("DELETE FROM switchyard_dead_letters WHERE id = %s", (letter_id,))


@pytest.mark.enable_socket
def test_the_postgres_queue_records_lists_and_marks(postgres_queue: DeadLetterQueue) -> None:
    mine = f"pg-{uuid.uuid4().hex}"
    letter = record(postgres_queue, user_id=mine, detail={"k": [1, 2]})
    assert postgres_queue.get(letter.id) == letter
    postgres_queue.mark(letter.id, status="replayed")
    stored = postgres_queue.get(letter.id)
    assert (stored.status, stored.replays, stored.detail) == ("replayed", 1, {"k": [1, 2]})
    assert letter.id in {d.id for d in postgres_queue.list(status="replayed", limit=1000)}
    with pytest.raises(DeadLetterNotFoundError):
        postgres_queue.get(f"missing-{mine}")


# --- replay -------------------------------------------------------------------------------------


def test_a_letter_without_a_checkpoint_cannot_be_replayed(tmp_path: Path) -> None:
    queue = DeadLetterQueue(str(tmp_path / "dlq.sqlite"))
    letter = record(queue, checkpoint_id=None)
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )
    with pytest.raises(InvalidInputError, match="has no checkpoint to resume from"):
        replay(graph, letter, dlq=queue)


def test_a_run_without_a_dlq_records_nothing() -> None:
    register_chat_model("offline:down", OfflineChatModel(fail_on_calls=(1,), failure_status=400))
    try:
        graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
            checkpointer=InMemorySaver(), name="router"
        )
        result = run(graph, TEXT, context=Context(model="offline:down"), dlq=None)
    finally:
        unregister_chat_model("offline:down")
    assert (result.ok, result.dead_letter_id) == (False, None)
    assert DeadLetterQueue().list() == []


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def flaky_default_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[OfflineChatModel]:
    """Every CLI run uses an offline model whose first call fails (HTTP 400, not retried)."""
    model = OfflineChatModel(fail_on_calls=(1,), failure_status=400)
    register_chat_model("offline:flaky", model)
    monkeypatch.setenv("SWITCHYARD_MODEL", "offline:flaky")
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps the table to the terminal's width
    yield model
    unregister_chat_model("offline:flaky")


def test_the_cli_lists_shows_and_replays_a_failed_run(
    tmp_path: Path, flaky_default_model: OfflineChatModel, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = str(tmp_path / "sessions.sqlite")
    base = ["run", "router", TEXT, "--user", "ada", "--session", "s1", "--checkpointer", sessions]
    assert main(base) == 1
    failed = capsys.readouterr().out
    assert "run ended: agent_failed" in failed
    [letter] = DeadLetterQueue().list()
    assert f"recorded as dead letter {letter.id}: switchyard dlq replay {letter.id}" in failed

    assert main(["dlq", "list"]) == 0
    listing = capsys.readouterr().out
    assert letter.id in listing
    assert "agent_failed" in listing

    assert main(["dlq", "show", letter.id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == letter.id
    assert (shown["pattern"], shown["input"], shown["status"]) == ("router", TEXT, "open")
    assert (shown["user_id"], shown["session_id"]) == ("ada", "s1")
    assert shown["checkpoint_id"]

    assert main(["dlq", "replay", letter.id, "--checkpointer", sessions]) == 0
    replayed = capsys.readouterr().out
    assert f"replay of {letter.id}: completed" in replayed
    assert "Customer support agent" in replayed
    assert flaky_default_model.calls == 2
    assert DeadLetterQueue().get(letter.id).status == "replayed"

    assert main(["dlq", "list", "--status", "open"]) == 0
    assert letter.id not in capsys.readouterr().out

    # the session goes on from the replayed turn
    follow_up = [*base[:2], "And my invoice?", *base[3:], "--json"]
    assert main(follow_up) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_the_cli_reports_a_replay_that_fails_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_chat_model("offline:down", OfflineChatModel(fail_on_calls=(1, 2), failure_status=400))
    monkeypatch.setenv("SWITCHYARD_MODEL", "offline:down")
    sessions = str(tmp_path / "sessions.sqlite")
    try:
        assert main(["run", "router", TEXT, "--checkpointer", sessions]) == 1
        [letter] = DeadLetterQueue().list()
        capsys.readouterr()
        assert main(["dlq", "replay", letter.id, "--checkpointer", sessions]) == 1
    finally:
        unregister_chat_model("offline:down")
    assert f"replay of {letter.id}: failed again (agent_failed:" in capsys.readouterr().out
    assert (DeadLetterQueue().get(letter.id).status, DeadLetterQueue().get(letter.id).replays) == (
        "open",
        1,
    )


def test_the_cli_names_an_unknown_dead_letter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "show", "nope"]) == 2
    assert capsys.readouterr().err.strip() == (
        "switchyard: error: no dead letter with id 'nope'; `switchyard dlq list` shows the ids"
    )
