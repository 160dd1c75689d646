"""One session, one turn at a time: eight turns at once on one session lose nothing.

Eight threads, eight processes or eight tasks send a message to the same user's session at the
same moment, on SQLite and on PostgreSQL. Afterwards the thread holds the eight messages, each
followed by its own answer, and its checkpoints form one line (no checkpoint has two children:
the thread never forked). With `reject`, a turn that finds its session busy is refused and nothing
of it is written.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import PrivateAttr

from switchyard import AgentSpec, build_pipeline_graph, register_chat_model, unregister_chat_model
from switchyard.cli.main import main
from switchyard.core.errors import PersistenceConfigError
from switchyard.runtime.run import RunResult, arun, run
from switchyard.runtime.sessions import (
    SessionBusyError,
    _Advisory,
    _FileRange,
    _lock_for,
    _RedisLease,
    _Unshared,
    aone_turn,
    one_turn,
)
from switchyard.storage.persistence import open_async_persistence, open_persistence

pytestmark = [pytest.mark.server, pytest.mark.enable_socket]

TURNS = 8
USER, SESSION = "ada", "busy"


class Echo(BaseChatModel):
    """Answers each message with its text; the message `hold()` names waits for `release()`."""

    _held: str | None = PrivateAttr(default=None)
    _gate: threading.Event = PrivateAttr(default_factory=threading.Event)
    _inside: threading.Event = PrivateAttr(default_factory=threading.Event)

    @property
    def _llm_type(self) -> str:
        return "echo"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        """Accept an agent's tools; it never calls them."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def hold(self, text: str) -> None:
        self._held = text
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def wait_inside(self) -> None:
        assert self._inside.wait(30), "no turn reached the model"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        last = next(m for m in reversed(messages) if isinstance(m, HumanMessage))
        if last.text == self._held:
            self._inside.set()
            assert self._gate.wait(30), "the test never released the model"
        reply = AIMessage(content=f"answer to {last.text}")
        reply.usage_metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return ChatResult(generations=[ChatGeneration(message=reply)])


def echo_graph(checkpointer: Any, store: Any = None) -> Any:
    stage = AgentSpec(name="echo", description="Echoes the message.", model="fake:echo")
    return build_pipeline_graph([stage]).compile(
        checkpointer=checkpointer, store=store, name="echo"
    )


@pytest.fixture
def echo() -> Iterator[Echo]:
    model = Echo()
    model.release()
    register_chat_model("fake:echo", model)
    yield model
    model.release()
    unregister_chat_model("fake:echo")


def assert_every_turn_kept(graph: Any, thread_id: str, sent: list[str]) -> None:
    """Every message, each followed by its own answer, on one unforked line of checkpoints."""
    config = {"configurable": {"thread_id": thread_id}}
    messages = graph.get_state(config).values["messages"]
    assert [m.type for m in messages] == ["human", "ai"] * len(sent)
    humans = [m.text for m in messages[0::2]]
    assert sorted(humans) == sorted(sent)
    assert [m.text for m in messages[1::2]] == [f"answer to {text}" for text in humans]
    history = list(graph.get_state_history(config))
    children = Counter(
        snapshot.parent_config["configurable"]["checkpoint_id"]
        for snapshot in history
        if snapshot.parent_config is not None
    )
    assert max(children.values()) == 1, "two turns started from the same checkpoint: a fork"


def messages_to_send() -> list[str]:
    return [f"message {i}" for i in range(TURNS)]


# --- threads ------------------------------------------------------------------------------------


def test_turns_from_threads_run_one_at_a_time(persistence_setting: str, echo: Echo) -> None:
    with open_persistence(persistence_setting) as persistence:
        graph = echo_graph(persistence.checkpointer, persistence.store)
        start = threading.Barrier(TURNS)

        def send(text: str) -> RunResult:
            start.wait()
            return run(graph, text, user_id=USER, session_id=SESSION, dlq=None)

        with ThreadPoolExecutor(TURNS) as pool:
            results = list(pool.map(send, messages_to_send()))
        assert all(r.ok for r in results), [r.error for r in results]
        assert [r.output for r in results] == [f"answer to {t}" for t in messages_to_send()]
        assert_every_turn_kept(graph, results[0].thread_id, messages_to_send())


def test_reject_refuses_the_turns_that_find_the_session_busy(
    persistence_setting: str, echo: Echo
) -> None:
    with open_persistence(persistence_setting) as persistence:
        graph = echo_graph(persistence.checkpointer, persistence.store)
        echo.hold("first")
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(run, graph, "first", user_id=USER, session_id=SESSION, dlq=None)
            echo.wait_inside()  # the first turn is running, inside its model call
            refused = 0
            for i in range(TURNS - 1):
                with pytest.raises(SessionBusyError, match="answering another message"):
                    run(
                        graph,
                        f"refused {i}",
                        user_id=USER,
                        session_id=SESSION,
                        dlq=None,
                        multitask_strategy="reject",
                    )
                refused += 1
            # another session of the same user is not held up
            other = run(graph, "elsewhere", user_id=USER, session_id="other", dlq=None)
            echo.release()
            assert first.result().ok
        assert refused == TURNS - 1
        assert other.ok
        assert_every_turn_kept(graph, first.result().thread_id, ["first"])


def test_enqueue_gives_up_at_the_deadline(persistence_setting: str, echo: Echo) -> None:
    from switchyard import Context

    with open_persistence(persistence_setting) as persistence:
        graph = echo_graph(persistence.checkpointer, persistence.store)
        echo.hold("first")
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(run, graph, "first", user_id=USER, session_id=SESSION, dlq=None)
            echo.wait_inside()
            with pytest.raises(SessionBusyError, match="still answering another message"):
                run(
                    graph,
                    "too late",
                    user_id=USER,
                    session_id=SESSION,
                    dlq=None,
                    context=Context(deadline_s=0.2),
                )
            echo.release()
            assert first.result().ok
        assert_every_turn_kept(graph, first.result().thread_id, ["first"])


# --- processes ----------------------------------------------------------------------------------


def send_from_a_process(setting: str, text: str, start: Any) -> str:
    """One turn, from a process of its own (spawned: nothing shared with the test's process)."""
    register_chat_model("fake:echo", _released_echo())
    with open_persistence(setting) as persistence:
        graph = echo_graph(persistence.checkpointer, persistence.store)
        start.wait()
        result = run(graph, text, user_id=USER, session_id=SESSION, dlq=None)
    assert result.ok, result.error
    return result.thread_id


def _released_echo() -> Echo:
    model = Echo()
    model.release()
    return model


def test_turns_from_processes_run_one_at_a_time(persistence_setting: str, echo: Echo) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(TURNS)
        with context.Pool(TURNS) as pool:
            args = [(persistence_setting, text, start) for text in messages_to_send()]
            threads = pool.starmap(send_from_a_process, args, chunksize=1)
    assert len(set(threads)) == 1
    with open_persistence(persistence_setting) as persistence:
        graph = echo_graph(persistence.checkpointer, persistence.store)
        assert_every_turn_kept(graph, threads[0], messages_to_send())


# --- tasks on one event loop -----------------------------------------------------------------


async def test_turns_from_async_tasks_run_one_at_a_time(
    persistence_setting: str, echo: Echo
) -> None:
    async with open_async_persistence(persistence_setting) as persistence:
        graph = echo_graph(persistence.checkpointer, persistence.store)
        results = await asyncio.gather(
            *(
                arun(graph, text, user_id=USER, session_id=SESSION, dlq=None)
                for text in messages_to_send()
            )
        )
        assert all(r.ok for r in results), [r.error for r in results]
        # tasks of one process go in the order they arrived
        state = await graph.aget_state({"configurable": {"thread_id": results[0].thread_id}})
        humans = [m.text for m in state.values["messages"] if isinstance(m, HumanMessage)]
        assert humans == messages_to_send()
    with open_persistence(persistence_setting) as persistence:
        graph = echo_graph(persistence.checkpointer, persistence.store)
        assert_every_turn_kept(graph, results[0].thread_id, messages_to_send())


# --- the CLI ------------------------------------------------------------------------------------


def test_the_cli_refuses_a_busy_session_in_one_line(
    persistence_setting: str, echo: Echo, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--user", USER, "--session", SESSION, "--checkpointer", persistence_setting]
    common += ["--model", "fake:echo", "--quiet"]
    echo.hold("first")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(main, ["run", "router", "first", *common])
        echo.wait_inside()
        code = main(["run", "router", "second", *common, "--multitask", "reject"])
        echo.release()
        assert first.result() == 0
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "answering another message" in line]) == 1
    assert not any("Traceback" in line for line in err)


# --- a checkpointer that locks nothing itself: a lease in Redis ------------------------------


class SharedElsewhere:
    """Stands for a checkpointer other hosts share that has no lock of its own (a Redis saver)."""


def test_a_checkpointer_without_its_own_lock_is_held_through_redis(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_REDIS_URL", redis_url)
    saver, thread_id = SharedElsewhere(), f"thread-{uuid.uuid4().hex}"
    other_host = _lock_for(saver, thread_id, 30.0)
    assert isinstance(other_host, _RedisLease)
    assert other_host.try_lock()  # another host's turn holds the session
    try:
        with (
            pytest.raises(SessionBusyError, match="answering another message"),
            one_turn(saver, thread_id, "reject", 30.0),
        ):
            pytest.fail("a second turn ran beside the first")
    finally:
        other_host.unlock()
    with one_turn(saver, thread_id, "reject", 30.0):  # free again: this turn runs
        assert not _lock_for(saver, thread_id, 30.0).try_lock()
    after = _lock_for(saver, thread_id, 30.0)
    assert after.try_lock()  # and released after it
    after.unlock()


def test_an_in_memory_checkpointer_needs_no_redis(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_REDIS_URL", redis_url)
    assert isinstance(_lock_for(InMemorySaver(), "t", 30.0), _Unshared)


# --- faults around the lock ---------------------------------------------------------------------


def _hold_from_a_forked_child(setting: str, thread_id: str, inside: Any, done: Any) -> None:
    with (
        open_persistence(setting) as persistence,
        one_turn(persistence.checkpointer, thread_id, "reject", 5.0),
    ):
        inside.set()
        done.wait(30)


def _try_from_a_forked_child(setting: str, thread_id: str, answer: Any) -> None:
    with open_persistence(setting) as persistence:
        try:
            with one_turn(persistence.checkpointer, thread_id, "reject", 5.0):
                answer.put("ran")
        except SessionBusyError:
            answer.put("refused")


def test_forked_children_do_not_share_their_parents_lock_connection(
    persistence_setting: str,
) -> None:
    context = multiprocessing.get_context("fork")
    answer, inside, done = context.SimpleQueue(), context.Event(), context.Event()
    with open_persistence(persistence_setting) as persistence:
        # a turn in the parent opens its lock connection (PostgreSQL) or lock file (SQLite)
        with one_turn(persistence.checkpointer, "warm-up", "reject", 5.0):
            pass
        holder = context.Process(
            target=_hold_from_a_forked_child, args=(persistence_setting, "forked", inside, done)
        )
        holder.start()
        assert inside.wait(30)
        other = context.Process(
            target=_try_from_a_forked_child, args=(persistence_setting, "forked", answer)
        )
        other.start()
        other.join(30)
        done.set()
        holder.join(30)
    assert (holder.exitcode, other.exitcode) == (0, 0)
    assert answer.get() == "refused"


async def test_a_turn_cancelled_while_it_takes_the_lock_gives_it_back(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_REDIS_URL", redis_url)
    saver, thread_id = SharedElsewhere(), f"thread-{uuid.uuid4().hex}"
    entered, gate, taken = threading.Event(), threading.Event(), threading.Event()
    take = _RedisLease.try_lock

    def slow_take(self: _RedisLease) -> bool:  # the server is slow to answer this one
        entered.set()
        gate.wait(30)
        try:
            return take(self)
        finally:
            taken.set()

    monkeypatch.setattr(_RedisLease, "try_lock", slow_take)

    async def turn() -> None:
        async with aone_turn(saver, thread_id, "enqueue", 30.0):
            pytest.fail("the cancelled turn ran")

    task = asyncio.create_task(turn())
    assert await asyncio.to_thread(entered.wait, 30)  # taking the lock, on a worker thread
    task.cancel()
    gate.set()  # ... and it gets the lock after all
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(taken.wait, 30)
    monkeypatch.setattr(_RedisLease, "try_lock", take)
    free = _lock_for(saver, thread_id, 30.0)
    for _ in range(500):  # the lease it won is given back as soon as its try ends
        if free.try_lock():
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the cancelled turn kept the session's lease")
    free.unlock()


def test_an_unusable_lock_file_is_a_config_error_not_a_busy_session(
    tmp_path: Path, echo: Echo
) -> None:
    database = tmp_path / "state.sqlite"
    (tmp_path / "state.sqlite.locks").mkdir()  # the lock file's place is taken by a folder
    with open_persistence(str(database)) as persistence:
        graph = echo_graph(persistence.checkpointer, persistence.store)
        with pytest.raises(PersistenceConfigError, match=r"state\.sqlite\.locks"):
            run(graph, "hello", user_id=USER, session_id=SESSION, dlq=None)


def test_a_lock_that_cannot_be_given_back_does_not_lose_the_turn(
    persistence_setting: str, echo: Echo, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any) -> None:
        raise OSError("the lock's server went away")

    monkeypatch.setattr(_Advisory, "unlock", broken)
    monkeypatch.setattr(_FileRange, "unlock", broken)
    with open_persistence(persistence_setting) as persistence:
        graph = echo_graph(persistence.checkpointer, persistence.store)
        result = run(graph, "hello", user_id=USER, session_id=SESSION, dlq=None)
    assert result.ok
    assert result.output == "answer to hello"


@pytest.mark.filterwarnings("ignore:ShallowPostgresSaver is deprecated:DeprecationWarning")
def test_every_postgres_saver_gets_the_advisory_lock(postgres_dsn: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.postgres.shallow import ShallowPostgresSaver

    with PostgresSaver.from_conn_string(postgres_dsn) as full:
        assert isinstance(_lock_for(full, "t", 5.0), _Advisory)
    with ShallowPostgresSaver.from_conn_string(postgres_dsn) as shallow:
        assert isinstance(_lock_for(shallow, "t", 5.0), _Advisory)
