"""Scheduled jobs on Temporal: each job a Temporal Schedule, each firing a Workflow on the fleet.

`schedule(..., engine=TemporalEngine(...))` stores the job as every job is stored
(`switchyard.storage.schedules`) and makes a Temporal Schedule `switchyard-job-<job id>` with the
job's timing and policies. Temporal then keeps the time: at each due time it starts a `FireJob`
Workflow on the engine's task queue, which any `switchyard worker --engine temporal` runs. Its one
Activity, `fire_scheduled_job`, claims the firing in the worker's schedules store under its
idempotency key (job id and scheduled time, so a duplicated or retried start runs once), runs it
as the process scheduler does (`switchyard.runtime.firing`), records the outcome, and pauses the
Schedule when that outcome paused the job (too many failures, a misconfigured job).

The job's policies map onto the Schedule's: overlap "skip" is `SKIP`, "queue" is `BUFFER_ALL`,
"cancel" is `CANCEL_OTHER` (the running firing is recorded cancelled); the catch-up window,
jitter and time zone are Temporal's own, and intervals count from the job's creation as the
process scheduler's do. Where Temporal differs: its times are whole seconds, times a Schedule
skips for overlap leave no row in the store (Temporal counts them: `describe().info`), and its
catch-up window is at least 10 s.

The Schedule carries only the job's id: the store's location (a DSN may hold a password) is each
worker's own setting (`--schedules`), as its checkpointer is (`--store`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity, workflow
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from switchyard.core.defaults import DEADLINE_S
from switchyard.core.errors import ConfigError
from switchyard.runtime.engine import TemporalEngine
from switchyard.runtime.firing import fire, keep_lease, record
from switchyard.runtime.temporal.nodes import HEARTBEAT_S, HEARTBEAT_TIMEOUT, LOST_ATTEMPT_RETRIES
from switchyard.runtime.temporal.worker import connect
from switchyard.storage.persistence import open_async_persistence
from switchyard.storage.schedules import (
    LEASE_S,
    Firing,
    Job,
    JobNotFoundError,
    Outcome,
    ScheduleStore,
    default_target,
    firing_id,
)
from switchyard.storage.sql import display

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

WORKFLOW_NAME = "switchyard.FireJob"
"""The Workflow type each firing of a Temporal job runs as."""

ACTIVITY_NAME = "switchyard.fire_scheduled_job"
"""The Activity that runs one firing."""

MIN_CATCHUP_S = 10.0
"""Temporal's shortest catch-up window: the server raises any shorter one to 10 s."""

FIRING_MARGIN_S = 60.0
"""Time one firing's Activity gets beyond the job's deadline and a lost attempt's lease: loading
the pattern, opening the stores, recording the outcome."""

DEADLINE_MEMO = "deadline_s"
"""Memo key of the Schedule's Workflows: the job's deadline, which bounds each firing."""

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
"""Set by Temporal on Workflows a Schedule starts: their nominal time (before jitter, whole
seconds)."""

OVERLAP = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "queue": ScheduleOverlapPolicy.BUFFER_ALL,
    "cancel": ScheduleOverlapPolicy.CANCEL_OTHER,
}
"""A job's overlap policy as a Schedule's."""


def schedule_id(job_id: str) -> str:
    """The id of the Temporal Schedule of job `job_id`."""
    return f"switchyard-job-{job_id}"


def temporal_schedule(job: Job, engine: TemporalEngine) -> Schedule:
    """The Temporal Schedule that fires `job` on `engine`'s task queue."""
    jitter = timedelta(seconds=job.jitter_s)
    if job.cron is not None:
        cron = job.timing.temporal_cron()
        spec = ScheduleSpec(cron_expressions=[cron], time_zone_name=job.tz, jitter=jitter)
    else:
        assert job.every_s is not None  # a job has a cron expression or an interval
        # Temporal counts intervals from the Unix epoch, the process scheduler from the job's
        # creation: the offset makes them agree (to the second, Temporal's resolution).
        phase = math.floor(job.created_at) % job.every_s
        every = ScheduleIntervalSpec(
            every=timedelta(seconds=job.every_s), offset=timedelta(seconds=phase)
        )
        spec = ScheduleSpec(intervals=[every], jitter=jitter)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            FireJob.run,
            job.id,
            id=schedule_id(job.id),
            task_queue=engine.task_queue,
            memo={DEADLINE_MEMO: job.deadline_s},
            static_summary=f"switchyard job {job.id}: {job.pattern}",
        ),
        spec=spec,
        policy=SchedulePolicy(
            overlap=OVERLAP[job.overlap],
            catchup_window=timedelta(seconds=max(job.catchup_s, MIN_CATCHUP_S)),
        ),
        state=ScheduleState(
            paused=job.status == "paused",
            note=job.paused_reason if job.status == "paused" else f"switchyard job {job.id}",
        ),
    )


def create_schedule(job: Job, engine: TemporalEngine, store_target: str) -> None:
    """Make the Temporal Schedule of `job`, stored at `store_target`.

    `store_target` stays out of the Schedule (a DSN may hold a password): the workers that run
    the firings must be started with the same store (`switchyard worker --schedules`).

    Raises:
        ConfigError: No Temporal server answers, or it refuses the Schedule (the message says why).
    """
    _run_sync(_create(job, engine, store_target))


async def _create(job: Job, engine: TemporalEngine, store_target: str) -> None:
    client = await connect(engine)
    try:
        await client.create_schedule(schedule_id(job.id), temporal_schedule(job, engine))
    except ScheduleAlreadyRunningError:
        raise ConfigError(
            f"a Temporal Schedule {schedule_id(job.id)} exists already; remove it "
            f"(`temporal schedule delete --schedule-id {schedule_id(job.id)}`) or schedule again"
        ) from None
    except RPCError as exc:
        raise ConfigError(
            f"Temporal at {engine.address} refused the Schedule of job {job.id}: {exc.message}"
        ) from None
    logger.info(
        "job %s: Temporal Schedule %s on %s, task queue %s; workers need --schedules %s",
        job.id,
        schedule_id(job.id),
        engine.address,
        engine.task_queue,
        display(store_target),
    )


def set_paused(job: Job, engine: TemporalEngine, *, paused: bool, note: str) -> None:
    """Pause or unpause `job`'s Temporal Schedule, with `note` on it.

    A Schedule already gone is paused for good; resuming it is an error.

    Raises:
        ConfigError: No Temporal server answers, or the Schedule to resume is gone.
    """
    _run_sync(_set_paused(job, engine, paused=paused, note=note))


async def _set_paused(job: Job, engine: TemporalEngine, *, paused: bool, note: str) -> None:
    handle = (await connect(engine)).get_schedule_handle(schedule_id(job.id))
    try:
        if paused:
            await handle.pause(note=note)
        else:
            await handle.unpause(note=note)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND and paused:
            return  # nothing fires it any more: paused already
        raise ConfigError(
            f"cannot {'pause' if paused else 'resume'} the Temporal Schedule "
            f"{schedule_id(job.id)} of job {job.id}: {exc.message}"
        ) from None


def delete_schedule(job: Job, engine: TemporalEngine) -> None:
    """Delete `job`'s Temporal Schedule (one already gone is not an error).

    A firing running at that moment finishes; its record goes with the job.

    Raises:
        ConfigError: No Temporal server answers, or it refuses the deletion.
    """
    _run_sync(_delete(job, engine))


async def _delete(job: Job, engine: TemporalEngine) -> None:
    handle = (await connect(engine)).get_schedule_handle(schedule_id(job.id))
    try:
        await handle.delete()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return
        raise ConfigError(
            f"cannot delete the Temporal Schedule {schedule_id(job.id)}: {exc.message}"
        ) from None


@dataclass(frozen=True)
class TemporalState:
    """What Temporal says of a job's Schedule (for `schedule list` and `show`).

    Attributes:
        paused: Whether the Schedule is paused.
        note: The note on its state (why it was paused).
        next_at: Unix time of its next firing (None: none coming, e.g. paused).
        fired: Firings it started.
        skipped_overlap: Times it skipped because a firing still ran (overlap "skip").
        missed_catchup: Times it missed by more than the catch-up window.
    """

    paused: bool
    note: str
    next_at: float | None
    fired: int
    skipped_overlap: int
    missed_catchup: int


def describe_schedule(job: Job, engine: TemporalEngine) -> TemporalState:
    """Temporal's view of `job`'s Schedule: its state, next time and counts.

    Raises:
        ConfigError: No Temporal server answers, or the Schedule is gone.
    """
    return _run_sync(_describe(job, engine))


async def _describe(job: Job, engine: TemporalEngine) -> TemporalState:
    handle = (await connect(engine)).get_schedule_handle(schedule_id(job.id))
    try:
        described = await handle.describe()
    except RPCError as exc:
        raise ConfigError(
            f"cannot describe the Temporal Schedule {schedule_id(job.id)}: {exc.message}"
        ) from None
    info, state = described.info, described.schedule.state
    upcoming = [moment.timestamp() for moment in info.next_action_times]
    return TemporalState(
        paused=state.paused,
        note=state.note or "",
        next_at=min(upcoming) if upcoming else None,
        fired=info.num_actions,
        skipped_overlap=info.num_actions_skipped_overlap,
        missed_catchup=info.num_actions_missed_catchup_window,
    )


def _run_sync(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run `coroutine` to its end from sync code, also when this thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # A loop runs here (an async caller of the sync API): a loop of its own in another thread.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchyard-schedule") as pool:
        return pool.submit(asyncio.run, coroutine).result()


class Firings:
    """The Activity that runs a Temporal job's firing, with the worker's stores.

    Args:
        schedules: The schedules store (a SQLite path or a `postgresql://` DSN); None: the
            default (`SWITCHYARD_SCHEDULES`, then a PostgreSQL checkpointer, then SQLite).
        checkpointer: Where the firings' sessions live (as `SWITCHYARD_CHECKPOINTER`).
    """

    def __init__(self, schedules: str | None = None, checkpointer: str | None = None) -> None:
        self.schedules = schedules or default_target()
        self.checkpointer = checkpointer
        self._store: ScheduleStore | None = None
        self._lock = threading.Lock()

    def store(self) -> ScheduleStore:
        """The schedules store, opened (its tables made) on first use."""
        with self._lock:
            if self._store is None:
                self._store = ScheduleStore(self.schedules)
            return self._store

    @activity.defn(name=ACTIVITY_NAME)
    async def fire_scheduled_job(self, job_id: str, scheduled_at: float) -> str:
        """Run the firing of job `job_id` scheduled at Unix time `scheduled_at`, once.

        Returns:
            The firing's status ("ok", "failed", ...), or why it did not run here: "paused",
            "duplicate" (it ran or runs elsewhere), "lost" (taken over by a later attempt).

        Raises:
            ApplicationError: The job is not in this worker's store (not retried).
            CancelledError: Cancelled (overlap "cancel"); the firing is recorded cancelled.
        """
        info = activity.info()
        run_id = info.workflow_id or info.activity_id
        # Each attempt signs its claim: a later attempt knows an earlier one's claim as its own.
        owner = f"{run_id}#{info.attempt}"
        store = await asyncio.to_thread(self.store)
        try:
            job = await asyncio.to_thread(store.get, job_id)
        except JobNotFoundError:
            raise ApplicationError(
                f"scheduled job {job_id} is not in this worker's schedules store "
                f"({display(store.target)}): it was removed, or the worker needs --schedules "
                "naming the store the job was made in",
                type="JobNotFound",
                non_retryable=True,
            ) from None
        if job.status == "paused":  # paused here before Temporal's Schedule heard of it
            return "paused"
        firing = await _claim(store, job, scheduled_at, owner, f"{run_id}#")
        if firing is None:
            return "duplicate"
        return await self._run(store, job, firing, owner)

    async def _run(self, store: ScheduleStore, job: Job, firing: Firing, owner: str) -> str:
        """Run a claimed firing while keeping its lease, and record how it ended."""
        runner = asyncio.current_task()
        assert runner is not None  # an Activity runs as a task
        lost = threading.Event()

        def stop() -> None:
            lost.set()
            runner.cancel()

        keeper = asyncio.create_task(
            keep_lease(store, owner, firing.id, stop, every_s=HEARTBEAT_S, beat=activity.heartbeat)
        )
        try:
            async with open_async_persistence(self.checkpointer) as persistence:
                outcome = await fire(job, firing, store, persistence)
            await _record(store, job, firing, outcome)
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            if lost.is_set():  # the firing is no longer this attempt's to record
                logger.warning(
                    "firing %s: its lease is gone (its job was removed, or a later attempt took "
                    "it over); stopped",
                    firing.id,
                )
                if details is not None and details.cancel_requested:
                    raise
                runner.uncancel()  # stopped by us, not by Temporal: this attempt just ends
                return "lost"
            if details is not None and (details.worker_shutdown or details.timed_out):
                raise  # Temporal retries it: the retry takes the firing over once the lease lapses
            cancelled = Outcome(status="cancelled", end_reason="cancelled")
            try:
                await asyncio.to_thread(record, store, job, firing, cancelled)
            except Exception:  # the cancellation goes on, recorded or not
                logger.exception("firing %s: could not record its cancellation", firing.id)
            raise
        except Exception as exc:  # a store failed: the firing ran (or failed) once; no retry
            failed = Outcome(
                status="failed", end_reason="error", error=f"{type(exc).__name__}: {exc}"
            )
            try:
                await _record(store, job, firing, failed)
            except Exception:
                logger.exception("firing %s: could not record its failure", firing.id)
            raise ApplicationError(
                f"firing {firing.id} failed: {failed.error}",
                type="FiringFailed",
                non_retryable=True,
            ) from exc
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        return outcome.status


async def _claim(
    store: ScheduleStore, job: Job, scheduled_at: float, owner: str, own_prefix: str
) -> Firing | None:
    """Claim the firing for `owner`; None when it ran, or runs, elsewhere.

    A firing held by an earlier attempt of the same Workflow was lost (Temporal retries only
    then), unless that attempt still lives: wait while its lease holds, then take it over (or
    find it finished by that attempt).
    """
    key = firing_id(job.id, scheduled_at)  # the store's idempotency key of the firing
    while True:
        activity.heartbeat()
        try:
            firing = await asyncio.to_thread(store.claim_at, job.id, scheduled_at, owner)
            if firing is not None:
                return firing
            held = await asyncio.to_thread(store.firing, key)
        except JobNotFoundError:  # removed meanwhile
            return None
        if held.status != "running" or not (held.owner or "").startswith(own_prefix):
            return None
        await asyncio.sleep(HEARTBEAT_S)


async def _record(store: ScheduleStore, job: Job, firing: Firing, outcome: Outcome) -> None:
    """Record `outcome`; pause the job's Temporal Schedule when it paused the job."""
    paused = await asyncio.to_thread(record, store, job, firing, outcome)
    if paused is None:
        return
    handle = activity.client().get_schedule_handle(schedule_id(job.id))
    try:
        await handle.pause(note=paused.paused_reason or "paused after failed firings")
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:  # gone: nothing fires the job any more
            raise


@workflow.defn(name=WORKFLOW_NAME)
class FireJob:
    """One firing of a Temporal job: its `fire_scheduled_job` Activity at the scheduled time.

    The Activity is retried only when its attempt was lost (its worker died or stalled; as agent
    Activities are, `nodes.LOST_ATTEMPT_RETRIES`) or when the store failed before the firing was
    claimed (nothing ran yet): a failed run is an outcome, not an error, and a store failing
    after the claim fails the Workflow rather than running the firing twice.
    Cancelled (overlap "cancel"), the Workflow waits until the Activity has recorded the firing
    cancelled, so the next firing starts after that.
    """

    @workflow.run
    async def run(self, job_id: str) -> str:
        """Fire job `job_id` at this Workflow's scheduled time; the firing's status."""
        nominal = workflow.info().typed_search_attributes.get(SCHEDULED_START)
        scheduled_at = (nominal or workflow.now()).timestamp()  # now: started by hand
        deadline_s = float(workflow.memo_value(DEADLINE_MEMO, DEADLINE_S))
        result: str = await workflow.execute_activity_method(
            Firings.fire_scheduled_job,
            args=[job_id, scheduled_at],
            # the run stops at its deadline; a retry may first wait out a lost attempt's lease
            start_to_close_timeout=timedelta(seconds=deadline_s + LEASE_S + FIRING_MARGIN_S),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=LOST_ATTEMPT_RETRIES,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"job {job_id}",
        )
        return result


__all__ = [
    "ACTIVITY_NAME",
    "WORKFLOW_NAME",
    "FireJob",
    "Firings",
    "TemporalState",
    "create_schedule",
    "delete_schedule",
    "describe_schedule",
    "schedule_id",
    "set_paused",
    "temporal_schedule",
]
