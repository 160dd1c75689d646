"""Ownership on every command and API that touches a session, and keyed thread ids.

Bob asks for Alice's session through every command (CLI and Python): he is refused with exit code 2
and one line that reads exactly as the answer for a session that does not exist, nothing of
Alice's is read out, and nothing is written.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig

from switchyard.cli import main
from switchyard.core.errors import InvalidInputError, PersistenceConfigError, SessionAccessError
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OfflineChatModel
from switchyard.observability.report import ReportAccessError, session_report
from switchyard.runtime.registry import load_graph
from switchyard.runtime.resume import (
    ThreadAccessError,
    aresume_thread,
    resume_thread,
    thread_status,
)
from switchyard.runtime.run import replay, thread_id_for
from switchyard.storage import secret as secret_module
from switchyard.storage.dlq import DeadLetter, DeadLetterAccessError, DeadLetterQueue
from switchyard.storage.persistence import open_async_persistence, open_persistence
from switchyard.storage.retention import RetentionPolicy, aprune, prune
from switchyard.storage.secret import SECRET_ENV, installation_secret

TEXT = "I need a refund for my last payment"
SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps tables to the terminal's width
    return str(tmp_path / "state.sqlite")


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI, expect one line on stderr and exit code 2; return the line."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert out == ""
    assert "alice" not in err  # the owner is never named
    return lines[0]


def same_answer(first: str, first_id: str, second: str, second_id: str) -> None:
    """Two refusals read the same, apart from the id the caller gave."""
    assert first.replace(first_id, "ID") == second.replace(second_id, "ID")


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert main([*argv, "--json", "--quiet"]) in (0, 1)
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def checkpoints(db: str, thread_id: str) -> int:
    with open_persistence(db) as persistence:
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        return len(list(persistence.checkpointer.list(config)))


@pytest.fixture
def alice(db: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Alice's session s1 (two turns); returns its thread id."""
    base = ["--user", "alice", "--session", "s1", "--checkpointer", db]
    run_cli(capsys, ["run", "router", TEXT, *base])
    result = run_cli(capsys, ["run", "router", "And my invoice?", *base])
    assert result["ok"] is True
    thread_id: str = result["thread_id"]
    return thread_id


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Iterator[OfflineChatModel]:
    """Every run's first model call fails (HTTP 400, not retried); later calls answer."""
    model = OfflineChatModel(fail_on_calls=(1,), failure_status=400)
    register_chat_model("offline:flaky", model)
    monkeypatch.setenv("SWITCHYARD_MODEL", "offline:flaky")
    yield model
    unregister_chat_model("offline:flaky")


@pytest.fixture
def alice_letter(
    db: str, flaky: OfflineChatModel, capsys: pytest.CaptureFixture[str]
) -> DeadLetter:
    """A dead letter of Alice's failed run (session s2)."""
    result = run_cli(
        capsys, ["run", "router", TEXT, "--user", "alice", "--session", "s2", "--checkpointer", db]
    )
    assert result["ok"] is False
    letter = DeadLetterQueue().get(result["dead_letter_id"])
    assert letter.user_id == "alice"
    return letter


# --- thread ids --------------------------------------------------------------------------------


def test_thread_ids_are_keyed_by_the_installation_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    first = thread_id_for("alice", "s1")
    assert first == thread_id_for("alice", "s1")
    assert uuid.UUID(first).version == 8
    assert first not in (thread_id_for("bob", "s1"), thread_id_for("alice", "s2"))
    monkeypatch.setenv(SECRET_ENV, SECRET[::-1])
    assert thread_id_for("alice", "s1") != first  # another installation: another id


def test_a_short_secret_is_one_config_error(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(SECRET_ENV, "short")
    with pytest.raises(PersistenceConfigError, match="SWITCHYARD_SECRET is 5 characters"):
        thread_id_for("alice", "s1")
    line = refused(capsys, ["run", "router", TEXT, "--session", "s1", "--checkpointer", db])
    assert line.startswith("switchyard: error: SWITCHYARD_SECRET is 5 characters")


def test_the_generated_secret_is_private_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    first = thread_id_for("alice", "s1")
    path = tmp_path / ".switchyard" / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret_module._cache.clear()  # as a new process would: read back from the file
    assert thread_id_for("alice", "s1") == first
    assert [p.name for p in path.parent.iterdir()] == ["secret"]  # no temporary file left


def test_a_damaged_secret_file_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("not a secret\n")
    with pytest.raises(PersistenceConfigError, match="does not hold a Switchyard secret"):
        installation_secret(path)


def _secret_in(path: str) -> bytes:
    return installation_secret(Path(path))


def test_processes_and_threads_racing_to_create_the_secret_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    path = str(tmp_path / "state" / "secret")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=context) as pool:
        in_processes = list(pool.map(_secret_in, [path] * 8))
    with ThreadPoolExecutor(8) as threads:
        in_threads = list(threads.map(_secret_in, [path] * 8))
    assert len(set(in_processes + in_threads)) == 1
    assert os.listdir(tmp_path / "state") == ["secret"]


# --- run -------------------------------------------------------------------------------------


def test_run_keeps_users_with_the_same_session_name_apart(
    db: str, alice: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = run_cli(
        capsys, ["run", "router", "Hi", "--user", "bob", "--session", "s1", "--checkpointer", db]
    )
    assert bob["thread_id"] != alice
    with open_persistence(db) as persistence:
        graph = load_graph("router").builder.compile(checkpointer=persistence.checkpointer)
        config: RunnableConfig = {"configurable": {"thread_id": bob["thread_id"]}}
        humans = [m.text for m in graph.get_state(config).values["messages"] if m.type == "human"]
    assert humans == ["Hi"]


def test_run_refuses_a_thread_recorded_as_another_users(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Alice's checkpoint at the address of Bob's session (a forged or migrated thread).
    planted = thread_id_for("bob", "s1")
    with open_persistence(db) as persistence:
        graph = load_graph("router").builder.compile(checkpointer=persistence.checkpointer)
        graph.invoke(
            {"messages": [HumanMessage("alice's refund")]},
            {"configurable": {"thread_id": planted}, "metadata": {"user_id": "alice"}},
        )
    before = checkpoints(db, planted)
    line = refused(
        capsys, ["run", "router", "Hi", "--user", "bob", "--session", "s1", "--checkpointer", db]
    )
    assert line == ("switchyard: error: this session belongs to another user; start a new session")
    assert checkpoints(db, planted) == before


# --- report ----------------------------------------------------------------------------------


def test_report_refuses_another_users_session_as_if_it_did_not_exist(
    db: str, alice: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--user", "bob", "--checkpointer", db]
    foreign = refused(capsys, ["report", alice, *base])
    unknown_id = str(uuid.uuid4())
    unknown = refused(capsys, ["report", unknown_id, *base])
    same_answer(foreign, alice, unknown, unknown_id)
    assert foreign.startswith("switchyard: error: no stored session")
    by_session = refused(capsys, ["report", "s1", *base])  # Alice's session name, Bob's user
    same_answer(by_session, "'s1'", foreign, f"'{alice}'")

    assert main(["report", alice, "--user", "alice", "--checkpointer", db]) == 0
    assert "session s1 of alice" in capsys.readouterr().out


def test_session_report_refuses_another_user(db: str, alice: str) -> None:
    with open_persistence(db) as persistence:
        graph = load_graph("router").builder.compile(checkpointer=persistence.checkpointer)
        with pytest.raises(ReportAccessError) as raised:
            session_report(graph, alice, user_id="bob")
        assert isinstance(raised.value, SessionAccessError)
        assert session_report(graph, alice, user_id="alice").user_id == "alice"


# --- resume ----------------------------------------------------------------------------------


def test_resume_refuses_another_users_thread_and_an_ownerless_one(
    db: str, alice: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_persistence(db) as persistence:
        graph = load_graph("router").builder.compile(
            checkpointer=persistence.checkpointer, name="router"
        )
        ownerless = str(uuid.uuid4())
        # Started outside `run` (plain LangGraph), paused after classify: work is pending.
        graph.invoke(
            {"messages": [HumanMessage(TEXT)]},
            {"configurable": {"thread_id": ownerless}, "metadata": {"pattern": "router"}},
            interrupt_after=["classify"],
        )
        assert thread_status(graph, ownerless).next == ("support",)
        for thread_id in (alice, ownerless):
            with pytest.raises(ThreadAccessError) as raised:
                resume_thread(graph, thread_id, user_id="bob", dlq=None)
            assert isinstance(raised.value, SessionAccessError)
            with pytest.raises(ThreadAccessError):
                thread_status(graph, thread_id, user_id="bob")
        with pytest.raises(ThreadAccessError):  # no user may resume a thread without an owner
            resume_thread(graph, ownerless, user_id="local", dlq=None)
    before = checkpoints(db, ownerless)

    base = ["--user", "bob", "--checkpointer", db]
    foreign = refused(capsys, ["resume", alice, *base])
    without_owner = refused(capsys, ["resume", ownerless, *base])
    unknown_id = str(uuid.uuid4())
    unknown = refused(capsys, ["resume", unknown_id, *base])
    same_answer(foreign, alice, unknown, unknown_id)
    same_answer(without_owner, ownerless, unknown, unknown_id)
    assert checkpoints(db, ownerless) == before  # nothing was written


# --- the dead-letter queue -------------------------------------------------------------------


def test_dlq_list_shows_a_user_only_their_letters(
    alice_letter: DeadLetter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dlq", "list", "--user", "bob"]) == 0
    assert alice_letter.id not in capsys.readouterr().out
    assert main(["dlq", "list", "--user", "alice"]) == 0
    assert alice_letter.id in capsys.readouterr().out
    assert DeadLetterQueue().list(user_id="bob") == []
    assert [d.id for d in DeadLetterQueue().list(user_id="alice")] == [alice_letter.id]


def test_dlq_show_and_replay_refuse_another_users_letter(
    db: str, alice_letter: DeadLetter, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = refused(capsys, ["dlq", "show", alice_letter.id, "--user", "bob"])
    unknown = refused(capsys, ["dlq", "show", "0123456789ab", "--user", "bob"])
    same_answer(shown, alice_letter.id, unknown, "0123456789ab")
    replayed = refused(
        capsys, ["dlq", "replay", alice_letter.id, "--user", "bob", "--checkpointer", db]
    )
    same_answer(replayed, alice_letter.id, unknown, "0123456789ab")
    stored = DeadLetterQueue().get(alice_letter.id)
    assert (stored.status, stored.replays) == ("open", 0)  # nothing ran

    with pytest.raises(DeadLetterAccessError) as raised:
        DeadLetterQueue().get(alice_letter.id, user_id="bob")
    assert isinstance(raised.value, SessionAccessError)
    with open_persistence(db) as persistence:
        graph = load_graph("router").builder.compile(
            checkpointer=persistence.checkpointer, name="router"
        )
        with pytest.raises(DeadLetterAccessError):
            replay(graph, alice_letter, user_id="bob")
    assert DeadLetterQueue().get(alice_letter.id).replays == 0

    # Alice, naming herself, replays her own.
    assert main(["dlq", "replay", alice_letter.id, "--user", "alice", "--checkpointer", db]) == 0
    assert f"replay of {alice_letter.id}: completed" in capsys.readouterr().out


@pytest.mark.parametrize("limit", ["-1", "0", "abc", "1.5", "1000001", "99999999999999999999"])
def test_dlq_list_refuses_a_limit_out_of_range(
    limit: str, alice_letter: DeadLetter, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(capsys, ["dlq", "list", "--limit", limit])
    assert line == (
        f"switchyard: error: --limit must be a whole number from 1 to 1,000,000, got {limit!r}"
    )


def test_dlq_list_limits_in_python(alice_letter: DeadLetter) -> None:
    with pytest.raises(InvalidInputError, match="from 1 to 1,000,000, got -1"):
        DeadLetterQueue().list(limit=-1)
    assert len(DeadLetterQueue().list(limit=1)) == 1


# --- prune -----------------------------------------------------------------------------------


def test_prune_refuses_another_users_thread_and_keeps_it_whole(
    db: str, alice: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = run_cli(
        capsys, ["run", "router", TEXT, "--user", "bob", "--session", "b1", "--checkpointer", db]
    )
    kept = checkpoints(db, alice)
    assert kept > 1
    base = ["prune", "--keep-latest", "1", "--user", "bob", "--checkpointer", db]
    foreign = refused(capsys, [*base, "--thread", alice])
    unknown_id = str(uuid.uuid4())
    unknown = refused(capsys, [*base, "--thread", unknown_id])
    same_answer(foreign, alice, unknown, unknown_id)
    refused(capsys, [*base, "--thread", bob["thread_id"], "--thread", alice])  # all or nothing
    assert checkpoints(db, alice) == kept
    assert checkpoints(db, bob["thread_id"]) > 1

    # Bob's prune of "every thread" is a prune of his threads.
    assert main([*base, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 1
    assert checkpoints(db, bob["thread_id"]) == 1
    assert checkpoints(db, alice) == kept

    with open_persistence(db) as persistence:
        with pytest.raises(SessionAccessError):
            prune(
                persistence.checkpointer,
                RetentionPolicy(keep_latest=1),
                thread_ids=[alice],
                user_id="bob",
            )
        report = prune(persistence.checkpointer, RetentionPolicy(keep_latest=1), user_id="alice")
    assert report.threads == 1
    assert checkpoints(db, alice) == 1


# --- the async forms -------------------------------------------------------------------------


async def test_the_async_forms_refuse_another_user_too(db: str, alice: str) -> None:
    async with open_async_persistence(db) as persistence:
        graph = load_graph("router").builder.compile(
            checkpointer=persistence.checkpointer, name="router"
        )
        with pytest.raises(ThreadAccessError):
            await aresume_thread(graph, alice, user_id="bob", dlq=None)
        with pytest.raises(SessionAccessError):
            await aprune(
                persistence.checkpointer,
                RetentionPolicy(keep_latest=1),
                thread_ids=[alice],
                user_id="bob",
            )
        report = await aprune(
            persistence.checkpointer, RetentionPolicy(keep_latest=1), user_id="bob"
        )
    assert report.threads == 0
    assert checkpoints(db, alice) > 1
