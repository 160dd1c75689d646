"""Resume and replay finish a run the way it started: same graph, same models, same context.

A dead letter records the import path of its graph and the run's settings; `dlq replay` rebuilds
exactly that graph with those settings unless `--model` overrides them, and refuses (one line, exit
code 2, nothing run) when the graph cannot be found, never running a demo graph of the same name.
Resume reads the settings from the thread's checkpoint metadata.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph

from switchyard.cli import main
from switchyard.core.errors import GraphNotFoundError, InvalidInputError
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OFFLINE_MARKER, OfflineChatModel
from switchyard.guardrails.budgets import Budget
from switchyard.runtime.registry import graph_reference, load_graph
from switchyard.runtime.resume import resume_thread
from switchyard.runtime.run import replay, run, thread_id_for
from switchyard.runtime.settings import (
    SETTINGS_KEY,
    restored_context,
    run_settings,
    settings_in,
    settings_text,
)
from switchyard.state.context import Context, current_context
from switchyard.storage.dlq import DeadLetter, DeadLetterQueue
from switchyard.storage.persistence import open_persistence

TEXT = "I need a refund for my last payment"
HERE = "tests.unit.test_replay_restore"

# -- a user's own graph, importable as tests.unit.test_replay_restore:STAGED --------------------

FAILING = {"stage_two": True}
SEEN: list[str | None] = []
"""The `Context.model` each run of stage_two saw."""


def stage_one(state: MessagesState) -> dict[str, Any]:
    return {"messages": [AIMessage("stage one done", name="stage_one")]}


def stage_two(state: MessagesState) -> dict[str, Any]:
    SEEN.append(current_context().model)
    if FAILING["stage_two"]:
        raise RuntimeError("stage two is down")
    return {"messages": [AIMessage("stage two done", name="stage_two")]}


def build_staged() -> StateGraph[MessagesState, Context, MessagesState, MessagesState]:
    builder = StateGraph(MessagesState, context_schema=Context)
    builder.add_node(stage_one)
    builder.add_node(stage_two)
    builder.add_edge(START, "stage_one")
    builder.add_edge("stage_one", "stage_two")
    builder.add_edge("stage_two", END)
    return builder


STAGED = build_staged().compile(name="staged")


@pytest.fixture(autouse=True)
def _stage_two_fails() -> Iterator[None]:
    FAILING["stage_two"] = True
    SEEN.clear()
    yield
    FAILING["stage_two"] = True
    SEEN.clear()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SWITCHYARD_SECRET", "0123456789abcdef0123456789abcdef")
    return str(tmp_path / "state.sqlite")


@pytest.fixture
def flaky() -> Iterator[OfflineChatModel]:
    """`offline:flaky`: its first call fails (HTTP 400, not retried); later calls answer."""
    model = OfflineChatModel(fail_on_calls=(1,), failure_status=400)
    register_chat_model("offline:flaky", model)
    yield model
    unregister_chat_model("offline:flaky")


def failed_cli_run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> DeadLetter:
    assert main([*argv, "--json", "--quiet"]) == 1
    result = json.loads(capsys.readouterr().out)
    return DeadLetterQueue().get(result["dead_letter_id"])


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- settings -----------------------------------------------------------------------------------


def test_settings_round_trip_and_an_explicit_context_wins() -> None:
    context = Context(model="offline:x", recursion_limit=9, session_budget=Budget(max_usd=1.5))
    stored = json.loads(settings_text(context))
    assert stored == run_settings(context)
    assert restored_context(stored, None) == context
    override = Context(model="offline")
    assert restored_context(stored, override) is override
    assert restored_context(None, None) is None
    assert restored_context({}, None) is None


def test_the_runs_default_model_comes_back_when_this_process_has_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWITCHYARD_MODEL", "offline:run-default")
    stored = run_settings(Context())
    monkeypatch.delenv("SWITCHYARD_MODEL")
    restored = restored_context(stored, None)
    assert restored is not None
    assert restored.model == "offline:run-default"


def test_stored_settings_that_no_longer_fit_are_one_error() -> None:
    with pytest.raises(InvalidInputError, match="stored settings no longer fit Context"):
        restored_context({"context": {"recursion_limit": "many"}}, None)


# -- dlq replay: the model ----------------------------------------------------------------------


def test_replay_restores_the_model_the_run_failed_with(
    db: str, flaky: OfflineChatModel, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "router", TEXT, "--model", "offline:flaky", "--checkpointer", db]
    letter = failed_cli_run(capsys, argv)
    assert letter.settings["context"]["model"] == "offline:flaky"
    assert letter.graph == "switchyard.graphs.demos:router"
    assert main(["dlq", "replay", letter.id, "--checkpointer", db]) == 0
    out = capsys.readouterr().out
    assert f"replay of {letter.id}: completed" in out
    assert flaky.calls == 2  # the replay's call went to the run's model, not the default


def test_replay_restores_the_runs_default_model(
    db: str,
    flaky: OfflineChatModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SWITCHYARD_MODEL", "offline:flaky")
    letter = failed_cli_run(capsys, ["run", "router", TEXT, "--checkpointer", db])
    monkeypatch.delenv("SWITCHYARD_MODEL")  # a later shell without the setting
    assert main(["dlq", "replay", letter.id, "--checkpointer", db]) == 0
    assert flaky.calls == 2


def test_an_explicit_model_overrides_the_stored_one(
    db: str, flaky: OfflineChatModel, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "router", TEXT, "--model", "offline:flaky", "--checkpointer", db]
    letter = failed_cli_run(capsys, argv)
    assert main(["dlq", "replay", letter.id, "--model", "offline", "--checkpointer", db]) == 0
    assert OFFLINE_MARKER in capsys.readouterr().out
    assert flaky.calls == 1  # the failed call only


# -- dlq replay: the graph ----------------------------------------------------------------------


def test_replay_rebuilds_a_user_graph_from_its_import_path(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    letter = failed_cli_run(capsys, ["run", f"{HERE}:STAGED", "go", "--checkpointer", db])
    assert (letter.pattern, letter.graph) == ("staged", f"{HERE}:STAGED")
    FAILING["stage_two"] = False
    assert main(["dlq", "replay", letter.id, "--checkpointer", db]) == 0
    out = capsys.readouterr().out
    assert f"replay of {letter.id}: completed" in out
    assert "stage two done" in out
    assert len(SEEN) == 2  # stage two ran again; stage one did not need to


def test_replay_refuses_a_graph_it_cannot_rebuild_and_never_runs_a_demo(
    db: str, flaky: OfflineChatModel, capsys: pytest.CaptureFixture[str]
) -> None:
    # The user's own graph, named like the demo, compiled in Python: no import path to record.
    with open_persistence(db) as persistence:
        own = build_staged().compile(checkpointer=persistence.checkpointer, name="router")
        result = run(own, "go", user_id="ada", session_id="s1")
    letter = DeadLetterQueue().get(result.dead_letter_id or "")
    assert (letter.pattern, letter.graph) == ("router", None)

    line = refused(capsys, ["dlq", "replay", letter.id, "--checkpointer", db])
    assert line == (
        f"switchyard: error: dead letter {letter.id} does not record how to rebuild its graph "
        "('router' was not loaded by name or import path); replay it from Python: "
        "switchyard.replay(graph, DeadLetterQueue().get(id))"
    )
    with open_persistence(db) as persistence:
        demo = load_graph("router").builder.compile(
            checkpointer=persistence.checkpointer, name="router"
        )
        with pytest.raises(GraphNotFoundError, match="has nothing to run at dead letter"):
            replay(demo, letter)
        assert flaky.calls == 0  # the demo's agents never ran
        pipeline = load_graph("pipeline").builder.compile(
            checkpointer=persistence.checkpointer, name="pipeline"
        )
        with pytest.raises(GraphNotFoundError, match="failed in graph 'router', not 'pipeline'"):
            replay(pipeline, letter)
        assert DeadLetterQueue().get(letter.id).replays == 0

        FAILING["stage_two"] = False
        own = build_staged().compile(checkpointer=persistence.checkpointer, name="router")
        replayed = replay(own, letter)  # the graph that failed, given by its owner's code
    assert (replayed.ok, replayed.output) == (True, "stage two done")
    assert DeadLetterQueue().get(letter.id).status == "replayed"


def test_replay_refuses_an_import_path_that_is_gone(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    letter = DeadLetterQueue().record(
        pattern="router",
        thread_id=str(uuid.uuid4()),
        checkpoint_id="1",
        correlation_id=uuid.uuid4().hex,
        user_id="ada",
        session_id="s1",
        input=TEXT,
        error="boom",
        end_reason="error",
        graph="tests.unit.no_such_module:router",
    )
    line = refused(capsys, ["dlq", "replay", letter.id, "--checkpointer", db])
    assert line.startswith(
        "switchyard: error: cannot import graph 'tests.unit.no_such_module:router': "
        "ModuleNotFoundError"
    )
    assert DeadLetterQueue().get(letter.id).replays == 0


def test_graphs_loaded_by_name_or_path_know_where_they_came_from() -> None:
    demo = load_graph("router")
    assert graph_reference(demo) == "switchyard.graphs.demos:router"
    assert graph_reference(demo.builder.compile(name="router")) == "switchyard.graphs.demos:router"
    assert graph_reference(load_graph(f"{HERE}:STAGED")) == f"{HERE}:STAGED"
    assert graph_reference(build_staged().compile(name="staged")) is None
    with pytest.raises(GraphNotFoundError, match="has no NOPE"):
        load_graph(f"{HERE}:NOPE")
    with pytest.raises(GraphNotFoundError, match="not a compiled LangGraph graph"):
        load_graph(f"{HERE}:TEXT")


# -- resume ------------------------------------------------------------------------------------


def test_resume_restores_the_context_recorded_with_the_thread(db: str) -> None:
    chosen = Context(model="offline:chosen", recursion_limit=12)
    thread_id = thread_id_for("ada", "s1")
    config: RunnableConfig = {
        "configurable": {"thread_id": thread_id},
        "metadata": {
            "user_id": "ada",
            "session_id": "s1",
            "pattern": "staged",
            SETTINGS_KEY: settings_text(chosen),  # as the run facade records it
        },
    }
    with open_persistence(db) as persistence:
        graph = build_staged().compile(checkpointer=persistence.checkpointer, name="staged")
        with pytest.raises(RuntimeError, match="stage two is down"):
            graph.invoke({"messages": [HumanMessage("go")]}, config, context=chosen)
        FAILING["stage_two"] = False
        finished = resume_thread(graph, thread_id, user_id="ada", dlq=None)  # no context given
        head = graph.get_state({"configurable": {"thread_id": thread_id}})
    assert (finished.ok, finished.output) == (True, "stage two done")
    assert SEEN == ["offline:chosen", "offline:chosen"]
    # The resumed run's own checkpoints carry the settings on, for a later resume.
    assert restored_context(settings_in(head.metadata), None) == chosen


def test_switchyard_resume_restores_the_model_unless_told_otherwise(
    db: str, flaky: OfflineChatModel, capsys: pytest.CaptureFixture[str]
) -> None:
    counting = OfflineChatModel()
    register_chat_model("offline:counting", counting)
    try:
        threads = []
        with open_persistence(db) as persistence:
            graph = load_graph("router").builder.compile(checkpointer=persistence.checkpointer)
            for session in ("s1", "s2"):
                thread_id = thread_id_for("ada", session)
                metadata = {
                    "user_id": "ada",
                    "session_id": session,
                    "pattern": "router",
                    SETTINGS_KEY: settings_text(Context(model="offline:counting")),
                }
                # As a run killed after classify leaves it: the agent's step is still to run.
                graph.invoke(
                    {"messages": [HumanMessage(TEXT)]},
                    {"configurable": {"thread_id": thread_id}, "metadata": metadata},
                    interrupt_after=["classify"],
                )
                threads.append(thread_id)
        base = ["--user", "ada", "--checkpointer", db, "--json"]
        assert main(["resume", threads[0], *base]) == 0
        assert json.loads(capsys.readouterr().out)["ok"] is True
        assert counting.calls == 1  # the run's own model
        assert main(["resume", threads[1], *base, "--model", "offline"]) == 0
        assert OFFLINE_MARKER in json.loads(capsys.readouterr().out)["output"]
        assert counting.calls == 1  # overridden: the run's model was not called
    finally:
        unregister_chat_model("offline:counting")


# -- the queue's new columns ---------------------------------------------------------------------


def test_a_sqlite_queue_from_an_earlier_release_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE switchyard_dead_letters (id TEXT PRIMARY KEY, created_at DOUBLE "
            "PRECISION NOT NULL, pattern TEXT NOT NULL, thread_id TEXT NOT NULL, checkpoint_id "
            "TEXT, correlation_id TEXT NOT NULL, user_id TEXT NOT NULL, session_id TEXT NOT NULL, "
            "input TEXT NOT NULL, error TEXT, end_reason TEXT NOT NULL, status TEXT NOT NULL, "
            "replays INTEGER NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '{}')"
        )
        conn.execute(
            "INSERT INTO switchyard_dead_letters (id, created_at, pattern, thread_id, "
            "correlation_id, user_id, session_id, input, end_reason, status) VALUES "
            "('old', 1, 'router', 't', 'c', 'ada', 's', 'hi', 'error', 'open')"
        )
    queue = DeadLetterQueue(str(path))
    assert (queue.get("old").graph, queue.get("old").settings) == (None, {})
    DeadLetterQueue(str(path))  # opening again changes nothing
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(switchyard_dead_letters)")]
    assert columns[-2:] == ["graph", "settings"]


def test_switchyard_resume_never_resumes_a_thread_with_a_same_named_demo(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    thread_id = thread_id_for("ada", "s1")
    with open_persistence(db) as persistence:
        own = build_staged().compile(checkpointer=persistence.checkpointer, name="router")
        failed = run(own, "go", user_id="ada", session_id="s1", dlq=None)
        assert failed.ok is False
        history = len(list(own.get_state_history({"configurable": {"thread_id": thread_id}})))
    line = refused(capsys, ["resume", thread_id, "--user", "ada", "--checkpointer", db])
    assert line == (
        f"switchyard: error: thread {thread_id!r} was not written by the registered 'router' "
        "graph; resume it from Python with switchyard.resume_thread(graph, ...) and the graph "
        "that started it"
    )
    with open_persistence(db) as persistence:
        own = build_staged().compile(checkpointer=persistence.checkpointer, name="router")
        after = len(list(own.get_state_history({"configurable": {"thread_id": thread_id}})))
    assert after == history
    assert SEEN == [None]  # stage two ran once, in the failed run; nothing ran since


def test_a_resumed_turn_waits_for_its_session_as_long_as_its_own_deadline() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from switchyard.graphs.pipeline import build_pipeline_graph
    from switchyard.runtime.resume import _deadline_of
    from switchyard.state.agents import AgentSpec

    saver = InMemorySaver()
    graph = build_pipeline_graph([AgentSpec(name="a", description="x")]).compile(checkpointer=saver)
    done = run(
        graph, "hi", user_id="ada", session_id="s", dlq=None, context=Context(deadline_s=900)
    )
    head = saver.get_tuple({"configurable": {"thread_id": done.thread_id}})
    assert _deadline_of(head, None) == 900  # the run's own, restored
    assert _deadline_of(head, Context(deadline_s=5)) == 5  # the caller's wins
    assert _deadline_of(None, None) == Context().deadline_s


def test_resume_thread_without_a_checkpointer_says_so() -> None:
    from switchyard.graphs.pipeline import build_pipeline_graph
    from switchyard.state.agents import AgentSpec

    graph = build_pipeline_graph([AgentSpec(name="a", description="x")]).compile()
    with pytest.raises(ValueError, match="checkpointer"):
        resume_thread(graph, "some-thread", user_id="ada")
