"""The scheduler firing real jobs: in this process, and as three processes on PostgreSQL.

Each firing is an ordinary run of a real graph on a real checkpointer; the tests wait for
conditions (never for a duration) and then check what the store, the checkpointer, the dead-letter
queue, the logs and the spans recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchyard import OfflineChatModel, register_chat_model, unregister_chat_model
from switchyard.core.errors import PersistenceConfigError
from switchyard.core.pricing import Price, set_price
from switchyard.observability.telemetry import use_tracer_provider
from switchyard.runtime.firing import day_start
from switchyard.runtime.scheduler import Scheduler, arun_job_now, schedule
from switchyard.storage.dlq import DeadLetterQueue
from switchyard.storage.persistence import open_persistence
from switchyard.storage.schedules import Firing, Job, ScheduleStore
from tests.integration.schedule_graphs import RECORD_ENV, SLOW_ENV
from tests.servers import offline_environment

GRAPHS = "tests.integration.schedule_graphs"
WAIT_S = 90.0


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sessions, dead letters and schedules of this test in its own folder."""
    monkeypatch.setenv("SWITCHYARD_CHECKPOINTER", str(tmp_path / "state.sqlite"))
    monkeypatch.setenv("SWITCHYARD_DLQ", str(tmp_path / "dlq.sqlite"))
    monkeypatch.setenv("SWITCHYARD_SCHEDULES", str(tmp_path / "schedules.sqlite"))
    return tmp_path


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    """`scheduler` running in this loop until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        yield scheduler
    finally:
        stop.set()
        await task


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (polling) until `condition()` holds; fail naming `what` if it never does."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


def ended(store: ScheduleStore, job: Job, *status: str) -> list[Firing]:
    """The job's firings with one of `status`, oldest first."""
    wanted = status or ("ok",)
    return sorted(
        store.firings(job.id, limit=10_000, status=wanted),  # type: ignore[arg-type]
        key=lambda f: f.scheduled_at,
    )


def turns(thread_setting: str, job: Job, firing: Firing) -> int:
    """Messages the firing's session holds (a run that ran once: 2, the question and answer)."""
    from switchyard.runtime.run import thread_id_for

    with open_persistence(thread_setting) as persistence:
        config = {
            "configurable": {"thread_id": thread_id_for(job.user_id, firing.session_id or "")}
        }
        snapshot = persistence.checkpointer.get(config)  # type: ignore[arg-type]
    assert snapshot is not None, f"firing {firing.id} left no session"
    return len(snapshot["channel_values"]["messages"])


def head_correlation(thread_setting: str, job: Job, firing: Firing) -> str | None:
    """The correlation id in the latest checkpoint of the firing's session (None: none yet)."""
    from switchyard.runtime.run import thread_id_for

    with open_persistence(thread_setting) as persistence:
        thread = thread_id_for(job.user_id, firing.session_id or "")
        head = persistence.checkpointer.get_tuple({"configurable": {"thread_id": thread}})
    return None if head is None else head.metadata.get("correlation_id")


async def test_a_job_every_second_fires_once_per_second_each_in_a_fresh_session(
    places: Path,
) -> None:
    store = ScheduleStore()
    job = schedule("pipeline", "queue depth at {scheduled_at}?", every_s=1, store=store)
    async with running(Scheduler(store, poll_s=0.1)):
        await until(lambda: len(ended(store, job, "ok", "skipped")) >= 6, "six firings")
    firings = ended(store, job, "ok", "skipped", "failed", "running")
    times = [f.scheduled_at for f in firings]
    assert times == [times[0] + n for n in range(len(times))]  # every second, none twice
    ok = ended(store, job)
    assert len(ok) >= 4  # the first run loads the pattern; later ones take milliseconds
    sessions = {f.session_id for f in ok}
    assert len(sessions) == len(ok)  # a fresh session per firing
    for firing in ok:
        assert turns(str(places / "state.sqlite"), job, firing) == 2
        assert firing.tokens > 0
        assert firing.cost_usd == 0.0
        assert firing.end_reason == "completed"


async def test_a_store_error_in_one_firing_fails_it_and_the_job_goes_on(
    places: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ScheduleStore()
    job = schedule("router", "status?", every_s=1, daily_budget_usd=5.0, store=store)
    real = store.spent_since
    calls = iter(range(1_000_000))

    def flaky(job_id: str, since: float) -> float:
        if next(calls) == 0:
            raise PersistenceConfigError("the schedules at test: server closed the connection")
        return real(job_id, since)

    monkeypatch.setattr(store, "spent_since", flaky)
    async with running(Scheduler(store, poll_s=0.1)) as scheduler:
        await until(lambda: len(ended(store, job)) >= 2, "two firings after the failure")
    assert scheduler.running == []
    [failed] = ended(store, job, "failed")
    assert failed.end_reason == "store_error"
    assert ended(store, job, "running") == []
    assert store.get(job.id).status == "active"  # a store error is not the job's fault


async def test_run_now_keeps_its_lease_while_a_scheduler_runs_beside_it(
    places: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SLOW_ENV, "4")
    store = ScheduleStore(lease_s=1.5)
    job = schedule(f"{GRAPHS}:slow", "tick", every_s=3600, store=store)
    async with running(Scheduler(store, poll_s=0.2)):
        firing = await arun_job_now(job.id, store=store)
    assert firing.status == "ok"
    assert firing.owner is not None
    assert firing.owner.startswith("run-now@")
    assert "attempts" not in firing.detail  # never taken over


async def test_a_fixed_session_collects_every_firing(places: Path) -> None:
    store = ScheduleStore()
    job = schedule("router", "status?", every_s=1, session_id="ops", overlap="queue", store=store)
    async with running(Scheduler(store, poll_s=0.1)):
        await until(lambda: len(ended(store, job)) >= 3, "three firings")
    ok = ended(store, job)[:3]
    assert {f.session_id for f in ok} == {"ops"}
    assert turns(str(places / "state.sqlite"), job, ok[-1]) >= 6


async def test_overlap_queue_runs_firings_one_after_another_in_their_order(
    places: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SLOW_ENV, "1.5")
    store = ScheduleStore()
    job = schedule(f"{GRAPHS}:slow", "tick", every_s=1, overlap="queue", store=store)
    async with running(Scheduler(store, poll_s=0.1)):
        await until(lambda: len(ended(store, job)) >= 3, "three queued firings to complete")
    ok = ended(store, job)
    times = [f.scheduled_at for f in ok]
    assert times == [times[0] + n for n in range(len(times))]  # none skipped, in order
    for before, after in itertools.pairwise(ok):
        assert after.started_at is not None
        assert before.finished_at is not None
        assert after.started_at >= before.finished_at  # never two at once
    assert ended(store, job, "queued"), "firings due meanwhile wait their turn"


async def test_overlap_cancel_stops_the_running_firing_for_the_new_one(
    places: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SLOW_ENV, "30")
    store = ScheduleStore()
    job = schedule(f"{GRAPHS}:slow", "tick", every_s=1, overlap="cancel", store=store)
    async with running(Scheduler(store, poll_s=0.1)):
        await until(lambda: len(ended(store, job, "cancelled")) >= 2, "two cancelled firings")
    cancelled = ended(store, job, "cancelled")
    assert all(f.end_reason == "cancelled" for f in cancelled[:2])
    assert all(f.finished_at is not None for f in cancelled)
    assert ended(store, job, "ok") == []  # none of them got to finish
    # The last one was cancelled when the scheduler stopped: recorded, not left "running".
    assert ended(store, job, "running") == []
    assert ended(store, job, "cancelled")[-1].end_reason == "scheduler_stopped"


async def test_overlap_skip_skips_the_times_that_come_while_a_firing_runs(
    places: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SLOW_ENV, "2.5")
    store = ScheduleStore()
    job = schedule(f"{GRAPHS}:slow", "tick", every_s=1, overlap="skip", store=store)
    async with running(Scheduler(store, poll_s=0.1)):
        await until(lambda: len(ended(store, job)) >= 2, "two firings to complete")
    ok = ended(store, job)
    skipped = ended(store, job, "skipped")
    assert len(skipped) >= 2
    assert all(f.end_reason == "overlap" for f in skipped)
    first, second = ok[0], ok[1]
    between = [f for f in skipped if first.scheduled_at < f.scheduled_at < second.scheduled_at]
    assert between, "the times between two slow runs are skipped"


async def test_failing_firings_pause_the_job_with_dead_letters_and_one_log_line(
    places: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ScheduleStore()
    job = schedule(f"{GRAPHS}:failing", "check", every_s=1, max_failures=3, store=store)
    with caplog.at_level(logging.INFO, logger="switchyard.schedule"):
        async with running(Scheduler(store, poll_s=0.1)):
            await until(lambda: store.get(job.id).status == "paused", "the job to pause")
    failed = ended(store, job, "failed")
    assert len(failed) == 3
    letters = DeadLetterQueue()
    for firing in failed:
        assert firing.dead_letter_id is not None
        letter = letters.get(firing.dead_letter_id)
        assert letter.correlation_id == firing.correlation_id
        assert "the monitored service is down" in (letter.error or "")
    paused = store.get(job.id)
    assert paused.paused_reason is not None
    assert paused.paused_reason.startswith("paused after 3 failed firings")
    alerts = [r for r in caplog.records if r.levelno == logging.ERROR and job.id in r.getMessage()]
    assert len(alerts) == 1
    assert "schedule resume" in alerts[0].getMessage()


async def test_a_job_whose_pinned_model_went_away_pauses_at_its_first_firing(
    places: Path,
) -> None:
    register_chat_model("sched-test:gone", OfflineChatModel(model_name="gone"))
    store = ScheduleStore()
    try:
        job = schedule("router", "hi", every_s=1, model="sched-test:gone", store=store)
    finally:
        unregister_chat_model("sched-test:gone")
    assert job.model == "sched-test:gone"
    async with running(Scheduler(store, poll_s=0.1)):
        await until(lambda: store.get(job.id).status == "paused", "the job to pause")
    [firing] = ended(store, job, "failed")
    assert firing.end_reason == "misconfigured"
    assert "paused after a misconfigured firing" in (store.get(job.id).paused_reason or "")


async def test_the_model_is_pinned_when_the_job_is_made(
    places: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_chat_model("sched-test:pinned", OfflineChatModel(model_name="pinned"))
    monkeypatch.setenv("SWITCHYARD_MODEL", "sched-test:pinned")
    try:
        job = schedule("router", "hi", cron="0 9 * * 1-5", store=ScheduleStore())
    finally:
        unregister_chat_model("sched-test:pinned")
    monkeypatch.setenv("SWITCHYARD_MODEL", "offline")
    assert ScheduleStore().get(job.id).model == "sched-test:pinned"


async def test_the_daily_budget_skips_firings_once_the_day_is_spent(places: Path) -> None:
    register_chat_model("sched-test:priced", OfflineChatModel(model_name="priced"))
    set_price("sched-test:priced", Price(input_per_mtok=1_000.0, output_per_mtok=1_000.0))
    store = ScheduleStore()
    try:
        job = schedule(
            "pipeline",
            "queue depth?",
            every_s=1,
            model="sched-test:priced",
            overlap="queue",
            store=store,
            daily_budget_usd=1.0,
        )
        async with running(Scheduler(store, poll_s=0.1)):
            await until(lambda: bool(ended(store, job, "skipped")), "a firing over the budget")
    finally:
        unregister_chat_model("sched-test:priced")
    ok = ended(store, job)
    spent = sum(f.cost_usd or 0.0 for f in ok)
    assert ok
    assert all((f.cost_usd or 0) > 0 for f in ok)
    assert spent <= 1.0 < spent + ok[-1].cost_usd  # type: ignore[operator]
    skipped = ended(store, job, "skipped")[0]
    assert skipped.end_reason == "daily_budget"
    assert skipped.scheduled_at > ok[-1].scheduled_at
    assert store.get(job.id).status == "active"  # on budget is not a failure


async def test_the_budget_per_firing_stops_a_firing_that_would_spend_more(places: Path) -> None:
    register_chat_model("sched-test:dear", OfflineChatModel(model_name="dear"))
    set_price("sched-test:dear", Price(input_per_mtok=1_000.0, output_per_mtok=1_000.0))
    store = ScheduleStore()
    try:
        job = schedule(
            "pipeline",
            "queue depth?",
            every_s=3600,
            model="sched-test:dear",
            budget_usd=0.01,
            max_failures=2,
            store=store,
        )
        firing = await arun_job_now(job.id, store=store)
    finally:
        unregister_chat_model("sched-test:dear")
    assert firing.status == "failed"
    assert firing.end_reason == "budget_exceeded"
    assert (firing.cost_usd or 0.0) <= 0.01
    assert firing.dead_letter_id is not None
    assert store.get(job.id).failures == 1


def test_the_day_of_the_daily_budget_starts_at_midnight_in_the_jobs_zone() -> None:
    job = Job(id="j", pattern="router", message="m", cron="0 * * * *", tz="Europe/Zurich")
    late_evening_utc = datetime(2027, 1, 15, 23, 30, tzinfo=UTC).timestamp()  # 00:30 in Zurich
    assert day_start(job, late_evening_utc) == datetime(2027, 1, 15, 23, 0, tzinfo=UTC).timestamp()


async def test_a_scheduled_run_cannot_make_schedules_unless_its_job_allows_it(
    places: Path,
) -> None:
    store = ScheduleStore()
    refused = schedule(f"{GRAPHS}:scheduling", "go", every_s=3600, store=store)
    allowed = schedule(
        f"{GRAPHS}:scheduling", "go", every_s=3600, allow_scheduling=True, store=store
    )
    no = await arun_job_now(refused.id, store=store)
    yes = await arun_job_now(allowed.id, store=store)
    assert no.status == "failed"
    assert "cannot create schedules" in (no.error or "")
    assert yes.status == "ok"
    made = [job for job in store.jobs() if job.created_by is not None]
    assert [job.created_by for job in made] == [allowed.id]


async def test_a_firing_is_one_trace_under_a_span_naming_the_job(places: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    try:
        job = schedule("router", "I was charged twice", every_s=3600, store=ScheduleStore())
        firing = await arun_job_now(job.id)
    finally:
        use_tracer_provider(None)
        provider.shutdown()
    spans = exporter.get_finished_spans()
    [fire_span] = [s for s in spans if s.name == "switchyard.schedule.fire"]
    attributes = fire_span.attributes or {}
    assert attributes["switchyard.schedule.job_id"] == job.id
    assert attributes["switchyard.schedule.firing_id"] == firing.id
    assert attributes["switchyard.schedule.outcome"] == "ok"
    run_spans = [s for s in spans if s is not fire_span]
    assert run_spans, "the run itself is traced"
    assert {s.context.trace_id for s in run_spans} == {fire_span.context.trace_id}


async def test_a_killed_schedulers_firing_is_resumed_by_another_scheduler(
    places: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SLOW_ENV, "60")  # the first scheduler's run hangs until it is killed
    store = ScheduleStore(lease_s=2.0)
    job = schedule(f"{GRAPHS}:slow", "tick", every_s=1, max_failures=1, store=store)
    env = offline_environment(
        {
            name: os.environ[name]
            for name in ("SWITCHYARD_CHECKPOINTER", "SWITCHYARD_DLQ", "SWITCHYARD_SCHEDULES")
        }
        | {"PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    )
    log = tmp_path / "killed.log"
    doomed = subprocess.Popen(
        [sys.executable, "-m", "switchyard", "scheduler", "--poll", "0.2", "--lease", "2"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    firing_id = ""
    try:
        await until(lambda: bool(ended(store, job, "running")), "a firing to start")
        [orphan] = ended(store, job, "running")
        firing_id = orphan.id
        # Killed once its run has written a checkpoint: the survivor must resume, not resend.
        await until(
            lambda: (
                head_correlation(str(places / "state.sqlite"), job, orphan) == orphan.correlation_id
            ),
            "the run's first checkpoint",
        )
    finally:
        doomed.kill()  # SIGKILL: no drain, no record, the lease simply stops being renewed
        doomed.wait(timeout=30)
    monkeypatch.setenv(SLOW_ENV, "0.1")
    async with running(Scheduler(store, poll_s=0.2)) as survivor:
        await until(lambda: store.firing(firing_id).status == "ok", "the orphan to complete")
    done = store.firing(firing_id)
    assert done.owner == survivor.name
    assert done.detail["attempts"] == 2
    assert done.detail["taken_from"] == orphan.owner
    # Resumed, not sent again: the session holds one question and one answer.
    assert turns(str(places / "state.sqlite"), job, done) == 2
    assert store.get(job.id).failures == 0


@pytest.fixture
def postgres_places(postgres_dsn: str, tmp_path: Path) -> dict[str, str]:
    """Environment of scheduler processes sharing one PostgreSQL database."""
    return offline_environment(
        {
            "SWITCHYARD_CHECKPOINTER": postgres_dsn,
            "SWITCHYARD_SCHEDULES": postgres_dsn,
            "SWITCHYARD_DLQ": postgres_dsn,
            RECORD_ENV: str(tmp_path / "record.txt"),
            "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]),
        }
    )


async def test_three_schedulers_on_postgres_fire_each_due_time_exactly_once(
    postgres_places: dict[str, str], tmp_path: Path
) -> None:
    dsn = postgres_places["SWITCHYARD_SCHEDULES"]
    store = ScheduleStore(dsn)
    job = schedule(
        f"{GRAPHS}:recorded", "fired {scheduled_at}", every_s=1, overlap="queue", store=store
    )
    logs = [tmp_path / f"scheduler-{n}.log" for n in range(3)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "switchyard", "scheduler", "--poll", "0.2"],
            env=postgres_places,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    try:
        await until(lambda: len(ended(store, job)) >= 20, "20 firings by three schedulers")
    finally:
        store.set_status(job.id, "paused", reason="test over")
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    assert [p.returncode for p in processes] == [0, 0, 0], [log.read_text() for log in logs]
    firings = ended(store, job, "ok", "skipped", "failed", "cancelled", "lost", "queued")
    times = [f.scheduled_at for f in firings]
    assert times == [times[0] + n for n in range(len(times))]  # each second once, no gap
    ok = ended(store, job)
    assert len(ok) >= 20
    assert len({f.owner for f in ok}) >= 2, "the schedulers share the work"
    lines = (tmp_path / "record.txt").read_text().splitlines()
    assert len(lines) == len(set(lines)) == len(ok)  # every firing's run happened exactly once
    expected = {job.text_for(f.scheduled_at) for f in ok}
    assert set(lines) == expected
