"""Many workers, one PostgreSQL: sessions served by whichever worker is free stay whole and apart.

Four worker processes (spawned, as separate machines would be) each open the same database and
serve turns of 40 sessions through the run facade. A session's next turn is queued when its
previous turn finished, so consecutive turns of one session usually land on different workers.
Afterwards every session's history holds exactly its own three turns, in order, each answered,
and nothing of any other session. (The benchmark measures the same at a larger scale.)
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from typing import Any

from switchyard.runtime.run import run, thread_id_for
from switchyard.storage.persistence import Persistence, open_persistence

WORKERS = 4
SESSIONS = 40
TURNS = 3
USER = "tenant"
DEADLINE_S = 600.0  # a bound, not a measurement: the pool is torn down if it is reached

_persistence: Any = None
_graph: Any = None
_startup_error: str | None = None


def router(persistence: Persistence) -> Any:
    from switchyard.graphs.demos import ROUTER_AGENTS
    from switchyard.graphs.router import build_router_graph

    return build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=persistence.checkpointer, store=persistence.store, name="router"
    )


def start_worker(dsn: str) -> None:
    """Pool initializer: one persistence (a small pool of connections) per worker process.

    A failure is kept and reported by the first turn: an initializer that raises would make the
    pool respawn workers forever.
    """
    global _persistence, _graph, _startup_error
    try:
        _persistence = open_persistence(dsn)
        _graph = router(_persistence.__enter__())
    except Exception as exc:
        _startup_error = f"{type(exc).__name__}: {exc}"


def message(session: str, turn: int) -> str:
    return f"[{session} turn {turn}] I need a refund for order {session}-{turn}"


def serve_turn(session: str, turn: int) -> dict[str, Any]:
    if _startup_error is not None:
        raise RuntimeError(f"worker {os.getpid()} could not start: {_startup_error}")
    result = run(_graph, message(session, turn), user_id=USER, session_id=session, dlq=None)
    outcome = {"session": session, "turn": turn, "ok": result.ok, "error": result.error}
    return {**outcome, "pid": os.getpid()}


def test_workers_share_sessions_without_mixing_them(postgres_dsn: str) -> None:
    prefix = uuid.uuid4().hex[:6]
    sessions = [f"{prefix}-{i:02d}" for i in range(SESSIONS)]
    served: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    finished = threading.Event()
    context = multiprocessing.get_context("spawn")

    with context.Pool(WORKERS, initializer=start_worker, initargs=(postgres_dsn,)) as pool:

        def submit(session: str, turn: int) -> None:
            pool.apply_async(
                serve_turn,
                (session, turn),
                callback=done,
                error_callback=failed,
            )

        def done(outcome: dict[str, Any]) -> None:
            with lock:
                served.append(outcome)
                complete = len(served) == SESSIONS * TURNS
            if outcome["turn"] < TURNS:
                submit(outcome["session"], outcome["turn"] + 1)  # the next turn, any worker
            if complete:
                finished.set()

        def failed(exc: BaseException) -> None:
            failures.append(exc)
            finished.set()

        for session in sessions:
            submit(session, 1)
        assert finished.wait(DEADLINE_S), f"only {len(served)} turns served"
        assert not failures, failures

    assert all(o["ok"] for o in served), [o for o in served if not o["ok"]][:3]
    pids = {o["pid"] for o in served}
    assert len(pids) > 1, "every turn ran in one worker"

    with open_persistence(postgres_dsn) as persistence:
        graph = router(persistence)
        for session in sessions:
            thread_id = thread_id_for(USER, session)
            config = {"configurable": {"thread_id": thread_id}}
            messages = graph.get_state(config).values["messages"]
            assert [m.type for m in messages] == ["human", "ai"] * TURNS, session
            humans = [m.text for m in messages if m.type == "human"]
            assert humans == [message(session, t) for t in range(1, TURNS + 1)], session
            others = [s for s in sessions if s != session]
            text = " ".join(m.text for m in messages)
            leaked = [s for s in others if f"[{s} " in text or f"order {s}-" in text]
            assert not leaked, f"{session} contains turns of {leaked}"
            history = list(graph.get_state_history(config))
            assert {s.metadata["session_id"] for s in history} == {session}
            assert len({s.metadata["correlation_id"] for s in history}) == TURNS
