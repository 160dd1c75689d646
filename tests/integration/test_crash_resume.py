"""Crash-safe resume: a process killed between or inside steps is finished by a fresh process.

A child process runs a small graph through the run facade and `os._exit`s at a chosen point; a
second, fresh process resumes every crashed thread. Nodes append to a side-effect ledger (a file,
fsynced) through `once(idempotency_key(...))`, and to an execution log. Afterwards each node's
effect happened exactly once, steps saved before the crash were not executed again, and the
thread completed. The same runs on SQLite and on PostgreSQL.

The module doubles as the child program: `python -m tests.integration.test_crash_resume ...`.
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.store.memory import InMemoryStore
from langgraph.types import RetryPolicy
from typing_extensions import TypedDict

from switchyard.core.errors import SessionAccessError
from switchyard.guardrails.idempotency import IdempotencyError, aonce, idempotency_key, once
from switchyard.runtime.resume import ThreadNotFoundError, resume_thread, thread_status
from switchyard.runtime.run import run, thread_id_for
from switchyard.storage.persistence import open_persistence
from tests.integration.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
NODES = ("a", "b1", "b2", "c")
PARALLEL = {"b1": "b2", "b2": "b1"}
LEDGER_ENV = "SWITCHYARD_TEST_LEDGER"
CRASH_ENV = "SWITCHYARD_TEST_CRASH"
CRASH_EXIT = 86
USER = "ada"
CHILD_TIMEOUT_S = 300
CHILD = (sys.executable, "-m", "tests.integration.test_crash_resume")

SCENARIOS = (
    "before_effect:a",  # the first step dies before its effect
    "after_effect:b2",  # one branch of a parallel step dies after its effect
    "before_effect:c",  # between steps: the parallel step finished, the next one starts
    "after_effect:c",  # the last step made its effect but never returned
)


# -- the graph under test (module level, so the child processes import the same code) ---------


class LedgerState(MessagesState):
    done: Annotated[list[str], operator.add]


def _append(kind: str, node: str, thread_id: str) -> None:
    path = Path(os.environ[LEDGER_ENV]) / f"{thread_id}.{kind}"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{node}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _crash_if(point: str, node: str, thread_id: str) -> None:
    if os.environ.get(CRASH_ENV) != f"{point}:{node}":
        return
    sibling = PARALLEL.get(node)
    if sibling is not None:
        # Die after the other branch has recorded its effect, not at a random point inside it:
        # between an effect and its record, a crash repeats the effect (see `once`).
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while sibling not in ledger(Path(os.environ[LEDGER_ENV]), thread_id, "recorded"):
            assert time.monotonic() < deadline, f"{sibling} never recorded its effect"
            time.sleep(0.01)
    os._exit(CRASH_EXIT)


def step(state: LedgerState, config: RunnableConfig) -> dict[str, Any]:
    node = config["metadata"]["langgraph_node"]
    thread_id = config["configurable"]["thread_id"]
    _append("executions", node, thread_id)
    _crash_if("before_effect", node, thread_id)

    def effect() -> str:
        _append("effects", node, thread_id)
        return node

    assert once(idempotency_key("effect"), effect) == node
    _append("recorded", node, thread_id)
    _crash_if("after_effect", node, thread_id)
    return {"done": [node]}


def build_ledger_graph() -> StateGraph[LedgerState]:
    builder = StateGraph(LedgerState)
    for node in NODES:
        builder.add_node(node, step)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b1")
    builder.add_edge("a", "b2")
    builder.add_edge(["b1", "b2"], "c")
    builder.add_edge("c", END)
    return builder


# -- the child program ------------------------------------------------------------------------


def _child(argv: list[str]) -> int:
    mode, setting, *rest = argv
    with open_persistence(setting) as persistence:
        if mode == "router-start":
            return _router_start(persistence, rest[0])
        graph = build_ledger_graph().compile(
            checkpointer=persistence.checkpointer, store=persistence.store, name="ledger"
        )
        if mode == "start":
            # As the run facade calls it, with each step's checkpoint saved before the step's
            # tasks run (durability="sync"): the idempotency key of a task is then the same
            # after a crash. Under "async" a crash in the first moments of a step can lose the
            # checkpoint the step started from, and the resumed step gets a new key.
            graph.invoke(
                {"messages": [HumanMessage("go")]},
                {
                    "configurable": {"thread_id": thread_id_for(USER, rest[0])},
                    "metadata": {"user_id": USER, "session_id": rest[0], "pattern": "ledger"},
                },
                durability="sync",
            )
            return 0  # not reached when the crash point is hit
        for index, thread_id in enumerate(rest):
            if index % 2 == 0:  # the resume command's function
                result = resume_thread(graph, thread_id, user_id=USER, dlq=None)
                assert result.ok, result
            else:  # "re-running": plain LangGraph continues from the last checkpoint
                graph.invoke(None, {"configurable": {"thread_id": thread_id}})
    return 0


def _router_start(persistence: Any, session: str) -> int:
    """Run the router and die right after its third checkpoint (classify's) is saved."""
    from switchyard.graphs.demos import ROUTER_AGENTS
    from switchyard.graphs.router import build_router_graph

    saver = persistence.checkpointer
    original = saver.put
    saved = 0

    def put(*args: Any, **kwargs: Any) -> Any:
        nonlocal saved
        result = original(*args, **kwargs)
        saved += 1
        if saved == 3:  # input, __start__, classify: the agent step has not run
            os._exit(CRASH_EXIT)
        return result

    saver.put = put
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=saver, store=persistence.store, name="router"
    )
    run(graph, "I need a refund for my last payment", user_id=USER, session_id=session, dlq=None)
    return 0


# -- helpers for the tests --------------------------------------------------------------------


def child_env(ledger: Path, crash: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHYARD_TEST_CRASH",))}
    env[LEDGER_ENV] = str(ledger)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if crash is not None:
        env[CRASH_ENV] = crash
    return env


def run_child(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHILD, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


def ledger(directory: Path, thread_id: str, kind: str) -> Counter[str]:
    path = directory / f"{thread_id}.{kind}"
    return Counter(path.read_text().split()) if path.exists() else Counter()


@pytest.fixture
def setting(persistence_setting: str) -> str:
    return persistence_setting


def test_each_effect_happens_once_and_saved_steps_are_not_redone(
    setting: str, tmp_path: Path
) -> None:
    ledger_dir = tmp_path / "ledger"
    ledger_dir.mkdir()
    run_id = uuid.uuid4().hex[:6]
    sessions = {scenario: f"crash-{i}-{run_id}" for i, scenario in enumerate(SCENARIOS)}
    threads = {scenario: thread_id_for(USER, s) for scenario, s in sessions.items()}

    children = [
        subprocess.Popen(
            [*CHILD, "start", setting, sessions[scenario]],
            cwd=REPO,
            env=child_env(ledger_dir, scenario),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for scenario in SCENARIOS
    ]
    for scenario, child in zip(SCENARIOS, children, strict=True):
        _, stderr = child.communicate(timeout=CHILD_TIMEOUT_S)
        assert child.returncode == CRASH_EXIT, f"{scenario}: exit {child.returncode}\n{stderr}"

    # What survived each crash, read before anything resumes.
    survived: dict[str, set[str]] = {}
    executions_before: dict[str, Counter[str]] = {}
    with open_persistence(setting) as persistence:
        graph = build_ledger_graph().compile(checkpointer=persistence.checkpointer, name="ledger")
        for scenario, thread_id in threads.items():
            point, node = scenario.split(":")
            executions = ledger(ledger_dir, thread_id, "executions")
            effects = ledger(ledger_dir, thread_id, "effects")
            assert executions[node] == 1, (scenario, executions)  # it died where we said
            assert effects[node] == (1 if point == "after_effect" else 0), (scenario, effects)
            snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
            assert snapshot.tasks, f"{scenario}: nothing left to resume"
            assert thread_status(graph, thread_id).resumable
            # Steps whose results were saved: in the state, or as pending writes of the step.
            survived[scenario] = set(snapshot.values.get("done", [])) | {
                task.name for task in snapshot.tasks if task.result is not None
            }
            executions_before[scenario] = executions

    resumed = run_child(["resume", setting, *threads.values()], child_env(ledger_dir))
    assert resumed.returncode == 0, resumed.stderr

    with open_persistence(setting) as persistence:
        graph = build_ledger_graph().compile(checkpointer=persistence.checkpointer, name="ledger")
        for scenario, thread_id in threads.items():
            effects = ledger(ledger_dir, thread_id, "effects")
            assert effects == Counter(NODES), f"{scenario}: effects {effects}"
            snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
            assert snapshot.next == ()
            assert sorted(snapshot.values["done"]) == sorted(NODES), scenario
            executions = ledger(ledger_dir, thread_id, "executions")
            for node in NODES:
                expected = executions_before[scenario][node] + (node not in survived[scenario])
                assert executions[node] == expected, (scenario, node, dict(executions))


def test_switchyard_resume_finishes_a_crashed_router_run(postgres_dsn: str, tmp_path: Path) -> None:
    """The command line, end to end, on the scale-out backend (the ledger test covers SQLite)."""
    setting = postgres_dsn
    session = f"router-{uuid.uuid4().hex[:8]}"
    thread_id = thread_id_for(USER, session)
    crashed = run_child(["router-start", setting, session], child_env(tmp_path))
    assert crashed.returncode == CRASH_EXIT, crashed.stderr

    from switchyard.graphs.demos import ROUTER_AGENTS
    from switchyard.graphs.router import build_router_graph

    with open_persistence(setting) as persistence:
        graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
            checkpointer=persistence.checkpointer, name="router"
        )
        status = thread_status(graph, thread_id)
        assert status.next == ("support",), status  # classify was saved; the agent was not run
        assert status.user_id == USER
        assert status.pattern == "router"

    argv = ["cli", "resume", "--user", USER, "--session", session, "--checkpointer", setting]
    resumed = run_child([*argv, "--json"], child_env(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["ok"] is True
    assert result["agent_name"] == "support"
    assert result["thread_id"] == thread_id

    with open_persistence(setting) as persistence:
        graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
            checkpointer=persistence.checkpointer, name="router"
        )
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        messages = graph.get_state(config).values["messages"]
        assert [m.type for m in messages] == ["human", "ai"]
        assert messages[1].text == result["output"]
        steps = [s.metadata["step"] for s in graph.get_state_history(config) if s.metadata]
        assert sorted(steps) == [-1, 0, 1, 2]  # classify ran once: no second step-1 checkpoint

        # Resuming a completed thread is a no-op that says so.
        again = run_child(
            ["cli", "resume", thread_id, "--user", USER, "--checkpointer", setting],
            child_env(tmp_path),
        )
        assert again.returncode == 0, again.stderr
        assert "nothing to resume" in again.stdout
        assert len(graph.get_state(config).values["messages"]) == 2


def test_resume_refuses_unknown_and_foreign_threads_without_writing(
    setting: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path))
    with open_persistence(setting) as persistence:
        graph = build_ledger_graph().compile(
            checkpointer=persistence.checkpointer, store=persistence.store, name="ledger"
        )
        with pytest.raises(ThreadNotFoundError, match="no thread 'nope'"):
            resume_thread(graph, "nope", user_id=USER, dlq=None)
        assert graph.checkpointer is not None
        assert graph.checkpointer.get_tuple({"configurable": {"thread_id": "nope"}}) is None

        # A thread of another user is refused before anything is read or written.
        result = run(graph, "go", user_id="grace", session_id="g1", dlq=None)
        assert result.ok
        foreign = result.thread_id
        history = len(list(graph.get_state_history({"configurable": {"thread_id": foreign}})))
        with pytest.raises(SessionAccessError):
            resume_thread(graph, foreign, user_id=USER, dlq=None)
        after = len(list(graph.get_state_history({"configurable": {"thread_id": foreign}})))
        assert after == history

    # The command line says the same in one line, exit code 2.
    assert run_cli(["resume", "nope", "--checkpointer", setting]) == 2
    assert "no thread 'nope'" in capsys.readouterr().err
    assert run_cli(["resume", foreign, "--user", USER, "--checkpointer", setting]) == 2
    assert "belongs to another user" in capsys.readouterr().err
    assert run_cli(["resume", "--checkpointer", setting]) == 2
    assert "either a THREAD id or --session" in capsys.readouterr().err
    missing = tmp_path / "typo.sqlite"
    assert run_cli(["resume", "t", "--checkpointer", str(missing)]) == 2
    assert "no SQLite database at" in capsys.readouterr().err
    assert not missing.exists()  # nothing was created


# -- the ledger itself ------------------------------------------------------------------------


class Calls(TypedDict):
    n: Annotated[int, operator.add]


def test_once_runs_an_effect_once_per_step_across_retries_and_turns() -> None:
    effects: list[str] = []
    attempts = Counter[str]()

    def flaky(state: Calls) -> dict[str, Any]:
        key = idempotency_key("mail")
        once(key, lambda: effects.append(key))
        attempts[key] += 1
        if attempts[key] == 1:
            raise ConnectionError("the provider dropped the connection")  # after the effect
        return {"n": 1}

    builder = StateGraph(Calls)
    builder.add_node("flaky", flaky, retry_policy=RetryPolicy(max_attempts=2, initial_interval=0))
    builder.add_edge(START, "flaky")
    builder.add_edge("flaky", END)
    graph = builder.compile(checkpointer=InMemorySaver(), store=InMemoryStore())
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    graph.invoke({"n": 0}, config)
    graph.invoke({"n": 0}, config)
    assert len(effects) == 2  # one per turn, not one per attempt
    assert len(set(effects)) == 2
    assert all(key.startswith("t/") for key in effects)
    assert graph.get_state(config).values["n"] == 2


async def test_aonce_returns_the_recorded_result() -> None:
    store = InMemoryStore()
    calls: list[int] = []

    async def effect() -> dict[str, int]:
        calls.append(1)
        return {"receipt": len(calls)}

    assert await aonce("t/c/task/x", effect, store=store) == {"receipt": 1}
    assert await aonce("t/c/task/x", effect, store=store) == {"receipt": 1}
    assert calls == [1]


def test_misuse_of_the_ledger_is_explained() -> None:
    with pytest.raises(IdempotencyError, match="inside a graph node"):
        idempotency_key()
    with pytest.raises(IdempotencyError, match="records effects in the graph's store"):
        once("k", lambda: None)
    with pytest.raises(IdempotencyError, match="non-empty string"):
        once("", lambda: None, store=InMemoryStore())

    def no_store(state: Calls) -> dict[str, Any]:
        once(idempotency_key(), lambda: None)
        return {"n": 1}

    builder = StateGraph(Calls)
    builder.add_node("no_store", no_store)
    builder.add_edge(START, "no_store")
    with pytest.raises(IdempotencyError, match="compile the graph with store="):
        builder.compile(checkpointer=InMemorySaver()).invoke(
            {"n": 0}, {"configurable": {"thread_id": "t"}}
        )
    with pytest.raises(IdempotencyError, match="need a thread"):
        builder.compile(store=InMemoryStore()).invoke({"n": 0})

    store = InMemoryStore()
    effects: list[int] = []
    with pytest.raises(IdempotencyError, match="can only record JSON data"):
        once("k", lambda: effects.append(1) or object(), store=store)
    assert once("k", lambda: effects.append(1) or object(), store=store) is None
    assert effects == [1]  # recorded, so never run twice


if __name__ == "__main__":
    if sys.argv[1] == "cli":
        sys.exit(run_cli(sys.argv[2:]))
    sys.exit(_child(sys.argv[1:]))
