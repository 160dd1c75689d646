"""Scheduled jobs as Temporal Schedules, fired by a real worker process on a real dev server.

One `temporal server start-dev` and one `switchyard worker --engine temporal` serve the module;
the worker and the tests share a schedules store (SQLite) and a session store. The tests make
jobs with `schedule(..., engine=...)`, then wait (polling, never for a fixed duration before an
assertion) for what the store, the sessions, the worker's record of its runs and Temporal's own
description of the Schedule show.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

if os.environ.get("CI") != "true":
    pytest.importorskip("temporalio", reason="the temporal extra is not installed")

from temporalio.api.workflowservice.v1 import DescribeScheduleRequest
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleOverlapPolicy,
    ScheduleRange,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from switchyard.cli.main import main
from switchyard.runtime.engine import TemporalEngine
from switchyard.runtime.scheduler import pause_job, remove_job, resume_job, schedule
from switchyard.runtime.temporal.converter import data_converter
from switchyard.runtime.temporal.devserver import stop_process
from switchyard.runtime.temporal.schedules import (
    WORKFLOW_NAME,
    create_schedule,
    delete_schedule,
    schedule_id,
)
from switchyard.storage.persistence import open_persistence
from switchyard.storage.schedules import Firing, Job, JobNotFoundError, ScheduleStore
from tests.integration.schedule_graphs import RECORD_ENV, SLOW_ENV
from tests.temporal_server import start_worker_process, temporal_dev_server, wait_for_worker

pytestmark = pytest.mark.server

GRAPHS = "tests.integration.schedule_graphs"
WAIT_S = 90.0
PAUSED_S = 5.0
"""How long a paused job stays paused: five of its one-second times pass meanwhile."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class Fleet:
    """The module's worker: its engine, the stores it shares with the tests, its run record."""

    engine: TemporalEngine
    store: ScheduleStore
    sessions: str
    runs: Path
    log: Path


@pytest.fixture(scope="module")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal dev server for the module's tests."""
    with temporal_dev_server(tmp_path_factory.mktemp("temporal")) as address:
        yield address


@pytest.fixture(scope="module")
def fleet(temporal: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One worker process on a queue of its own, firing the jobs of a SQLite schedules store."""
    folder = tmp_path_factory.mktemp("fleet")
    schedules, sessions = folder / "schedules.sqlite", folder / "sessions.sqlite"
    queue = f"schedules-{uuid.uuid4().hex[:8]}"
    log = folder / "worker.log"
    env = {"SWITCHYARD_DLQ": str(folder / "dlq.sqlite"), RECORD_ENV: str(folder / "runs.txt")}
    worker = start_worker_process(
        temporal, queue, log, "--schedules", str(schedules), "--store", str(sessions), env=env
    )
    try:
        wait_for_worker(worker, log)
        engine = TemporalEngine(address=temporal, task_queue=queue)
        yield Fleet(engine, ScheduleStore(str(schedules)), str(sessions), folder / "runs.txt", log)
    finally:
        stop_process(worker)


def until(fleet: Fleet, condition: Callable[[], _T | None], what: str) -> _T:
    """Poll `condition` until it returns something true; that value. Fails naming `what`."""
    deadline = time.monotonic() + WAIT_S
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = "\n".join(fleet.log.read_text(errors="replace").splitlines()[-40:])
            pytest.fail(f"gave up waiting for {what}; the worker's log ends:\n{tail}")
        time.sleep(0.2)


def firings(fleet: Fleet, job: Job, *status: str) -> list[Firing]:
    """The job's firings (with one of `status`, if given), oldest first."""
    found = fleet.store.firings(job.id, limit=10_000, status=status)  # type: ignore[arg-type]
    return sorted(found, key=lambda f: f.scheduled_at)


def at_least(fleet: Fleet, job: Job, count: int, *status: str) -> Callable[[], list[Firing]]:
    """A condition: the job's firings with `status`, once there are `count` of them."""

    def check() -> list[Firing]:
        found = firings(fleet, job, *status)
        return found if len(found) >= count else []

    return check


def describe(engine: TemporalEngine, job_id: str) -> ScheduleDescription:
    """Temporal's description of the job's Schedule."""

    async def go() -> ScheduleDescription:
        client = await Client.connect(engine.address, data_converter=data_converter)
        return await client.get_schedule_handle(schedule_id(job_id)).describe()

    return asyncio.run(go())


def raw_schedule(engine: TemporalEngine, job_id: str) -> str:
    """The Schedule as Temporal stores it (every field, the action's arguments included)."""

    async def go() -> str:
        client = await Client.connect(engine.address)
        request = DescribeScheduleRequest(namespace="default", schedule_id=schedule_id(job_id))
        return str(await client.workflow_service.describe_schedule(request))

    return asyncio.run(go())


def messages_in_session(fleet: Fleet, job: Job, firing: Firing) -> int:
    """Messages the firing's session holds on the worker's store (one run: 2)."""
    from switchyard.runtime.run import thread_id_for

    with open_persistence(fleet.sessions) as persistence:
        thread = thread_id_for(job.user_id, firing.session_id or "")
        snapshot = persistence.checkpointer.get({"configurable": {"thread_id": thread}})
    assert snapshot is not None, f"firing {firing.id} left no session"
    return len(snapshot["channel_values"]["messages"])


def test_a_job_every_second_fires_on_the_worker_once_per_scheduled_second(
    fleet: Fleet,
) -> None:
    tag = f"every-{uuid.uuid4().hex[:6]}"
    job = schedule(f"{GRAPHS}:recorded", f"{tag} {{scheduled_at}}", every_s=1, overlap="queue",
                   engine=fleet.engine, store=fleet.store)  # fmt: skip
    assert (job.engine, job.task_queue) == ("temporal", fleet.engine.task_queue)
    try:
        ok = until(fleet, at_least(fleet, job, 4, "ok"), "four ok firings")
        sessions = {f.id: messages_in_session(fleet, job, f) for f in ok}
        others = firings(fleet, job, "failed", "lost", "cancelled", "skipped")
    finally:
        remove_job(job.id, store=fleet.store)
    times = [f.scheduled_at for f in ok]
    assert times == [times[0] + n for n in range(len(times))]  # every second, none missing
    assert all(t == int(t) for t in times)  # Temporal's nominal times: whole seconds
    assert times[0] > job.created_at - 1  # none before the job was made
    assert len({f.id for f in ok}) == len(ok)
    assert others == []
    for firing in ok:
        assert firing.end_reason == "completed"
        assert firing.owner is not None
        assert firing.owner.startswith(f"{schedule_id(job.id)}-")  # its FireJob Workflow
        assert sessions[firing.id] == 2  # a fresh session each, one run in it
    runs = collections.Counter(
        line for line in fleet.runs.read_text().splitlines() if line.startswith(tag)
    )
    assert max(runs.values()) == 1  # no scheduled time ran twice
    assert all(runs[job.text_for(f.scheduled_at)] == 1 for f in ok)


def test_pause_stops_the_schedule_resume_restarts_it_and_remove_deletes_it(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    job = schedule(f"{GRAPHS}:recorded", "paused? {scheduled_at}", every_s=1,
                   engine=fleet.engine, store=fleet.store)  # fmt: skip
    try:
        until(fleet, at_least(fleet, job, 1, "ok"), "a first firing")
        pause_job(job.id, reason="maintenance window", store=fleet.store)
        paused_at = time.time()
        state = describe(fleet.engine, job.id).schedule.state
        assert state.paused
        assert state.note == "maintenance window"
        time.sleep(PAUSED_S)  # due times pass while the job is paused
        resume_job(job.id, store=fleet.store)
        resumed_at = time.time()
        assert not describe(fleet.engine, job.id).schedule.state.paused
        after = until(
            fleet,
            lambda: [f for f in firings(fleet, job, "ok") if f.scheduled_at > resumed_at],
            "a firing after the job was resumed",
        )
        assert after
        # Nothing fired while paused (a time just before the resume may still come through).
        during = [f for f in firings(fleet, job) if paused_at < f.scheduled_at < resumed_at - 2]
        assert during == []
        assert fleet.store.get(job.id).status == "active"
        # The CLI shows Temporal's side of the job: its count and next time.
        assert main(["schedule", "--store", fleet.store.target, "show", job.id, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["temporal"]["paused"] is False
        assert shown["temporal"]["fired"] >= 2
        assert shown["temporal"]["next_at"] > resumed_at
        assert main(["schedule", "--store", fleet.store.target, "list"]) == 0
        assert job.id in capsys.readouterr().out
    finally:
        remove_job(job.id, store=fleet.store)
    with pytest.raises(RPCError) as gone:
        describe(fleet.engine, job.id)
    assert gone.value.status == RPCStatusCode.NOT_FOUND
    with pytest.raises(JobNotFoundError):
        fleet.store.get(job.id)
    delete_schedule(job, fleet.engine)  # a Schedule already gone is not an error


def _calendar(second: int, minute: int, hour: int, weekdays: tuple[int, int]) -> Any:
    """The calendar Temporal makes of a cron expression on every day of month and month."""
    return ScheduleCalendarSpec(
        second=(ScheduleRange(second),),
        minute=(ScheduleRange(minute),),
        hour=(ScheduleRange(hour),),
        day_of_month=(ScheduleRange(1, 31),),
        month=(ScheduleRange(1, 12),),
        day_of_week=(ScheduleRange(*weekdays),),
    )


def test_a_jobs_timing_and_policies_are_its_temporal_schedules(fleet: Fleet) -> None:
    made = [
        schedule("router", "weekday report", cron="0 9 * * 1-5", tz="Europe/Zurich",
                 catchup_s=3, engine=fleet.engine, store=fleet.store),
        schedule("router", "monday report", cron="30 0 9 * * 1", tz="America/New_York",
                 overlap="queue", catchup_s=120, jitter_s=7.5, engine=fleet.engine,
                 store=fleet.store),
        schedule("router", "hourly check", every_s=3600, overlap="cancel", catchup_s=600,
                 engine=fleet.engine, store=fleet.store),
    ]  # fmt: skip
    paused = made[2].model_copy(
        update={"id": f"{made[2].id}p", "status": "paused", "paused_reason": "made paused"}
    )
    create_schedule(paused, fleet.engine, fleet.store.target)
    try:
        weekdays, monday, hourly = (describe(fleet.engine, job.id).schedule for job in made)
        assert weekdays.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert weekdays.policy.catchup_window is not None
        assert weekdays.policy.catchup_window.total_seconds() == 10  # Temporal's minimum
        assert weekdays.spec.time_zone_name == "Europe/Zurich"
        assert weekdays.spec.jitter is None
        assert list(weekdays.spec.calendars) == [_calendar(0, 0, 9, (1, 5))]
        assert monday.policy.overlap == ScheduleOverlapPolicy.BUFFER_ALL
        assert monday.policy.catchup_window is not None
        assert monday.policy.catchup_window.total_seconds() == 120
        assert monday.spec.jitter is not None
        assert monday.spec.jitter.total_seconds() == 7.5
        assert monday.spec.time_zone_name == "America/New_York"
        assert list(monday.spec.calendars) == [_calendar(30, 0, 9, (1, 1))]
        assert hourly.policy.overlap == ScheduleOverlapPolicy.CANCEL_OTHER
        assert hourly.policy.catchup_window is not None
        assert hourly.policy.catchup_window.total_seconds() == 600
        (interval,) = hourly.spec.intervals
        assert interval.every == timedelta(hours=1)
        # counted from the job's creation, as the process scheduler counts
        phase = (interval.offset or timedelta(0)).total_seconds()
        assert phase == int(made[2].created_at) % 3600
        for job, described in zip(made, (weekdays, monday, hourly), strict=True):
            assert not described.state.paused
            action = described.action
            assert isinstance(action, ScheduleActionStartWorkflow)
            assert action.workflow == WORKFLOW_NAME
            assert action.task_queue == fleet.engine.task_queue
            assert action.id == schedule_id(job.id)
            args = asyncio.run(data_converter.decode(list(action.args)))
            assert args == [job.id]  # the job's id alone: each worker knows its own store
            assert fleet.store.target not in raw_schedule(fleet.engine, job.id)
        state = describe(fleet.engine, paused.id).schedule.state
        assert state.paused
        assert state.note == "made paused"
    finally:
        for job in made:
            remove_job(job.id, store=fleet.store)
        delete_schedule(paused, fleet.engine)


def paused_job(fleet: Fleet, job: Job) -> Job | None:
    """The job as stored, once it is paused."""
    stored = fleet.store.get(job.id)
    return stored if stored.status == "paused" else None


def paused_schedule(fleet: Fleet, job: Job) -> ScheduleState | None:
    """The state of the job's Temporal Schedule, once it is paused."""
    state = describe(fleet.engine, job.id).schedule.state
    return state if state.paused else None


def test_a_failing_job_pauses_after_max_failures_and_so_does_its_schedule(
    fleet: Fleet,
) -> None:
    job = schedule(f"{GRAPHS}:failing", "check {scheduled_at}", every_s=1, max_failures=2,
                   engine=fleet.engine, store=fleet.store)  # fmt: skip
    try:
        stopped = until(fleet, lambda: paused_job(fleet, job), "the job to pause")
        assert stopped.paused_reason is not None
        assert stopped.paused_reason.startswith("paused after 2 failed firings")
        failed = firings(fleet, job, "failed")
        assert len(failed) == 2  # one at a time (overlap "skip"): the third saw the job paused
        assert all(f.dead_letter_id for f in failed)  # each failed run left its dead letter
        assert firings(fleet, job, "ok") == []
        state = until(
            fleet,
            lambda: paused_schedule(fleet, job),
            "the Temporal Schedule to pause",
        )
        assert state.note == stopped.paused_reason
    finally:
        remove_job(job.id, store=fleet.store)


def test_overlap_cancel_cancels_the_running_firing_and_records_it(fleet: Fleet) -> None:
    job = schedule(f"{GRAPHS}:slow", "long check {scheduled_at}", every_s=2, overlap="cancel",
                   engine=fleet.engine, store=fleet.store)  # fmt: skip
    try:
        cancelled = until(fleet, at_least(fleet, job, 2, "cancelled"), "two cancelled firings")
        assert {f.end_reason for f in cancelled} == {"cancelled"}
        assert all(f.finished_at is not None for f in cancelled)
        # each was cancelled for a later one, which then ran
        later = firings(fleet, job)
        assert later[-1].scheduled_at > cancelled[0].scheduled_at
        assert firings(fleet, job, "ok", "failed", "lost") == []  # the slow run never ended
    finally:
        remove_job(job.id, store=fleet.store)


def test_a_firing_whose_worker_dies_is_run_by_the_retry_on_another_worker(
    temporal: str, fleet: Fleet, tmp_path: Path
) -> None:
    """The Activity's attempt is lost with its worker; Temporal retries it on the other worker,
    which waits for the dead attempt's lease to lapse, takes the firing over and runs it."""
    queue = f"takeover-{uuid.uuid4().hex[:8]}"
    engine = TemporalEngine(address=temporal, task_queue=queue)
    env = {SLOW_ENV: "5", "SWITCHYARD_DLQ": str(tmp_path / "dlq.sqlite")}
    args = ("--schedules", fleet.store.target, "--store", fleet.sessions)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = start_worker_process(temporal, queue, logs[0], *args, env=env)
    second = None
    job = schedule(f"{GRAPHS}:slow", "survive {scheduled_at}", every_s=86_400, engine=engine,
                   store=fleet.store)  # fmt: skip
    try:
        wait_for_worker(first, logs[0])
        asyncio.run(trigger(engine, job.id))
        (running,) = until(fleet, at_least(fleet, job, 1, "running"), "the firing to start")
        assert (running.owner or "").endswith("#1")
        os.killpg(first.pid, signal.SIGKILL)
        second = start_worker_process(temporal, queue, logs[1], *args, env=env)
        wait_for_worker(second, logs[1])
        (done,) = until(fleet, at_least(fleet, job, 1, "ok"), "the retry to run the firing")
        assert done.id == running.id  # the same firing, not a second one
        assert (done.owner or "").endswith("#2")  # run by the retry
        assert firings(fleet, job) == [done]
    finally:
        remove_job(job.id, store=fleet.store)
        stop_process(first)
        if second is not None:
            stop_process(second)


async def trigger(engine: TemporalEngine, job_id: str) -> None:
    """Fire the job's Schedule now, whatever its times."""
    client = await Client.connect(engine.address, data_converter=data_converter)
    await client.get_schedule_handle(schedule_id(job_id)).trigger()
