"""Scheduled runs: make jobs (`schedule`), and the process that fires them (`Scheduler`).

`schedule("events", "check the queues", cron="*/5 * * * *")` stores a job in the session store;
`switchyard scheduler` (or `Scheduler(...).run()`) fires its due firings, each an ordinary run.
Any number of schedulers may run against one PostgreSQL store: each due time is claimed by exactly
one of them (`switchyard.storage.schedules`). With a `TemporalEngine`, the job is a Temporal
Schedule instead, fired by Temporal on the worker fleet (`switchyard.runtime.temporal.schedules`).

Why hand-written and not APScheduler or Celery beat: their job stores lock the whole scheduler
(APScheduler 3) or assume one beat process (Celery), and neither knows a run's budgets, sessions or
dead letters; the timing itself is `cronsim`'s, the locking PostgreSQL's.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import os
import random
import socket
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

from switchyard.core.defaults import CATCHUP_S, DEADLINE_S, MAX_FAILURES, OVERLAP_POLICIES
from switchyard.core.errors import ConfigError, InvalidInputError
from switchyard.runtime.engine import Engine, TemporalEngine
from switchyard.runtime.firing import check_may_schedule, fire, keep_lease, record
from switchyard.storage.persistence import Persistence, open_async_persistence
from switchyard.storage.schedules import (
    Firing,
    Job,
    JobNotFoundError,
    Outcome,
    ScheduleStore,
    new_job_id,
)
from switchyard.storage.sql import display

logger = logging.getLogger("switchyard.schedule")

POLL_S = 0.5
"""Seconds between a scheduler's claims (and lease renewals)."""

MAX_JITTER_S = 3600.0
"""Most jitter: an hour (spreading firings further is a different schedule)."""

MAX_CATCHUP_S = 366 * 86_400.0
"""Longest catch-up window: a year, as Temporal's default."""

GRACE_S = 10.0
"""Seconds a stopping scheduler lets its running firings finish before it cancels them."""


def schedule(
    pattern: str,
    message: str,
    *,
    cron: str | None = None,
    every_s: float | None = None,
    tz: str = "UTC",
    user_id: str = "local",
    session_id: str | None = None,
    model: str | None = None,
    budget_usd: float | None = None,
    daily_budget_usd: float | None = None,
    overlap: str = "skip",
    catchup_s: float = CATCHUP_S,
    jitter_s: float = 0.0,
    max_failures: int = MAX_FAILURES,
    allow_scheduling: bool = False,
    deadline_s: float = DEADLINE_S,
    engine: Engine = None,
    store: ScheduleStore | None = None,
) -> Job:
    """Schedule a pattern to run `message` on a cron schedule or at a fixed interval.

    Args:
        pattern: A pattern name (`switchyard graphs`) or an import path `module:attribute`.
        message: What each firing sends; `{scheduled_at}` becomes the firing's time.
        cron: Cron expression, 5 fields (minute resolution) or 6 (seconds first).
        every_s: Or: an interval in seconds (at least 1).
        tz: IANA time zone the cron expression is read in.
        user_id: Owner of the firings' sessions.
        session_id: Run every firing in this session; None: a fresh session per firing.
        model: The model every firing uses; None pins today's default (`SWITCHYARD_MODEL`, else
            offline), so a later change of the environment does not change the job.
        budget_usd: Most dollars one firing may spend.
        daily_budget_usd: Most dollars the job may spend per day (in `tz`); then it skips.
        overlap: A firing due while the previous runs: "skip", "queue" or "cancel" (the previous).
        catchup_s: After downtime, times missed by at most this many seconds still fire.
        jitter_s: Spread each firing over [0, jitter_s) seconds after its time.
        max_failures: Consecutive failed firings that pause the job (with a log line; each
            failed run has its dead letter).
        allow_scheduling: Let the job's runs create schedules (refused by default).
        deadline_s: Seconds one firing may take.
        engine: None: fired by `switchyard scheduler`; a `TemporalEngine`: a Temporal Schedule.
        store: Where the job is kept (default: `ScheduleStore()`, the session store).

    Returns:
        The stored job, with its first firing time.

    Raises:
        InvalidInputError: A setting is invalid (the message says which and why).
        GraphNotFoundError: The pattern names no graph.
        ModelConfigError: The model cannot be loaded (e.g. its key is missing).
        SchedulingNotAllowedError: Called from a scheduled run whose job does not allow it.
        ConfigError: The Temporal engine does not answer.
    """
    from switchyard.core.models import default_model, load_chat_model
    from switchyard.runtime.registry import load_graph
    from switchyard.runtime.run import check_text
    from switchyard.state.context import Context

    created_by = check_may_schedule()
    check_text(message, Context().max_input_chars)
    _check_settings(
        overlap=overlap,
        budget_usd=budget_usd,
        daily_budget_usd=daily_budget_usd,
        catchup_s=catchup_s,
        jitter_s=jitter_s,
        max_failures=max_failures,
        deadline_s=deadline_s,
        user_id=user_id,
        session_id=session_id,
        every_s=every_s,
    )
    load_graph(pattern)  # an unknown pattern is refused now, not at 3 a.m.
    pinned = (model or default_model()).strip()
    load_chat_model(pinned)
    job = Job(
        id=new_job_id(),
        pattern=pattern,
        message=message,
        cron=cron,
        every_s=every_s,
        tz=tz,
        user_id=user_id,
        session_id=session_id,
        model=pinned,
        budget_usd=budget_usd,
        daily_budget_usd=daily_budget_usd,
        overlap=overlap,  # checked by _check_settings
        catchup_s=catchup_s,
        jitter_s=jitter_s,
        max_failures=max_failures,
        allow_scheduling=allow_scheduling,
        deadline_s=deadline_s,
        created_by=created_by,
    )
    job.timing  # noqa: B018 - checks the cron expression and zone before anything is stored
    store = store or ScheduleStore()
    if engine is None:
        return store.add(job)
    if cron is not None and _both_days(cron):
        raise InvalidInputError(
            f"cron expression {cron!r} restricts both the day of the month and the day of the "
            "week: cron fires on either, a Temporal Schedule only on both; make two jobs (one "
            "per field), or leave out --engine temporal"
        )
    temporal = _temporal()
    job = job.model_copy(
        update={
            "engine": "temporal",
            "temporal_address": engine.address,
            "temporal_namespace": engine.namespace,
            "task_queue": engine.task_queue,
        }
    )
    job = store.add(job)
    try:
        temporal.create_schedule(job, engine, store.target)
    except BaseException:
        store.remove(job.id)
        raise
    return job


def _temporal() -> ModuleType:
    """The Temporal Schedules module.

    Raises:
        ConfigError: The `temporal` extra is not installed.
    """
    try:
        return importlib.import_module("switchyard.runtime.temporal.schedules")
    except ImportError as exc:
        raise ConfigError(
            f"Temporal jobs need the temporal extra ({exc.name} is missing): "
            "pip install 'switchyard-agents[temporal]'"
        ) from None


def _both_days(cron: str) -> bool:
    """Whether a cron expression restricts both day fields (read as OR by cron, AND by Temporal)."""
    fields = cron.split()
    day_of_month, day_of_week = fields[-3], fields[-1]
    return not day_of_month.startswith("*") and not day_of_week.startswith("*")


def _check_settings(
    *,
    overlap: str,
    budget_usd: float | None,
    daily_budget_usd: float | None,
    catchup_s: float,
    jitter_s: float,
    max_failures: int,
    deadline_s: float,
    user_id: str,
    session_id: str | None,
    every_s: float | None,
) -> None:
    """One clear error for the first invalid setting of a job."""
    if overlap not in OVERLAP_POLICIES:
        raise InvalidInputError(
            f"overlap must be one of {', '.join(OVERLAP_POLICIES)}, got {overlap!r}"
        )
    for name, value in (("budget_usd", budget_usd), ("daily_budget_usd", daily_budget_usd)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InvalidInputError(f"{name} must be a positive number of dollars, got {value!r}")
    for name, value, most in (
        ("catchup_s", catchup_s, MAX_CATCHUP_S),
        ("jitter_s", jitter_s, MAX_JITTER_S),
    ):
        if not (math.isfinite(value) and 0 <= value <= most):
            raise InvalidInputError(f"{name} must be from 0 to {most:,g} seconds, got {value!r}")
    if every_s is not None and every_s >= 1 and jitter_s >= every_s:
        raise InvalidInputError(
            f"jitter_s ({jitter_s:g}) must be shorter than the interval ({every_s:g} s), or "
            "firings would overtake each other"
        )
    if not (math.isfinite(deadline_s) and deadline_s > 0):
        raise InvalidInputError(f"deadline_s must be a positive number, got {deadline_s!r}")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 1:
        raise InvalidInputError(f"max_failures must be a whole number >= 1, got {max_failures!r}")
    if not user_id.strip():
        raise InvalidInputError("user_id is empty: name the user who owns the firings' sessions")
    if session_id is not None and not session_id.strip():
        raise InvalidInputError("session_id is empty: name a session, or leave it out")


def engine_of_job(job: Job) -> TemporalEngine | None:
    """The Temporal engine a "temporal" job lives on (None for a local job)."""
    if job.engine != "temporal":
        return None
    return TemporalEngine(
        address=job.temporal_address or TemporalEngine().address,
        namespace=job.temporal_namespace or "default",
        task_queue=job.task_queue or TemporalEngine().task_queue,
    )


def pause_job(
    job_id: str, *, reason: str = "paused by a person", store: ScheduleStore | None = None
) -> Job:
    """Pause a job: no firing starts until it is resumed (running ones finish).

    Raises:
        JobNotFoundError: No job has this id.
    """
    store = store or ScheduleStore()
    job = store.set_status(job_id, "paused", reason=reason)
    engine = engine_of_job(job)
    if engine is not None:
        _temporal().set_paused(job, engine, paused=True, note=reason)
    return job


def resume_job(job_id: str, *, store: ScheduleStore | None = None) -> Job:
    """Resume a paused job from now on (times missed while paused do not fire).

    Raises:
        JobNotFoundError: No job has this id.
    """
    store = store or ScheduleStore()
    job = store.set_status(job_id, "active")
    engine = engine_of_job(job)
    if engine is not None:
        _temporal().set_paused(job, engine, paused=False, note="resumed")
    return job


def remove_job(job_id: str, *, store: ScheduleStore | None = None) -> None:
    """Delete a job and its firings' records (a Temporal job's Schedule too).

    Raises:
        JobNotFoundError: No job has this id.
    """
    store = store or ScheduleStore()
    job = store.get(job_id)
    engine = engine_of_job(job)
    if engine is not None:
        _temporal().delete_schedule(job, engine)
    store.remove(job_id)


async def arun_job_now(
    job_id: str, *, store: ScheduleStore | None = None, checkpointer: str | None = None
) -> Firing:
    """Fire a job once now, in this process, whatever its schedule; the firing as recorded.

    The firing keeps its lease while it runs, so no scheduler takes it over; interrupted
    (Ctrl-C), it is recorded cancelled.

    Raises:
        JobNotFoundError: No job has this id.
        PersistenceConfigError: The checkpointer cannot be opened (nothing is claimed).
    """
    store = store or ScheduleStore()
    owner = f"run-now@{_host()}-{os.getpid()}"
    job = await asyncio.to_thread(store.get, job_id)
    async with open_async_persistence(checkpointer) as persistence:
        firing = await asyncio.to_thread(store.claim_now, job_id, owner)
        runner = asyncio.current_task()
        assert runner is not None  # called in a task, as every coroutine run by a loop is
        lost = asyncio.Event()

        def stop() -> None:  # the job was removed meanwhile
            lost.set()
            runner.cancel()

        keeper = asyncio.create_task(
            keep_lease(store, owner, firing.id, stop, every_s=store.lease_s / 3)
        )
        try:
            outcome = await fire(job, firing, store, persistence)
        except asyncio.CancelledError:
            if not lost.is_set():
                interrupted = Outcome(status="cancelled", end_reason="interrupted")
                await asyncio.to_thread(record, store, job, firing, interrupted)
                raise
            runner.uncancel()
            raise JobNotFoundError(f"job {job_id} was removed while it ran") from None
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
    await asyncio.to_thread(record, store, job, firing, outcome)
    return await asyncio.to_thread(store.firing, firing.id)


def run_job_now(
    job_id: str, *, store: ScheduleStore | None = None, checkpointer: str | None = None
) -> Firing:
    """Sync form of `arun_job_now` (not from inside a running event loop).

    Raises:
        JobNotFoundError: No job has this id.
    """
    return asyncio.run(arun_job_now(job_id, store=store, checkpointer=checkpointer))


class Scheduler:
    """Fires due jobs from one store until stopped; run as many side by side as you like.

    Every `poll_s` it claims what is due (`ScheduleStore.claim`), starts each claimed firing as a
    task, and renews its leases; a firing a newer one cancels (overlap "cancel") is cancelled at
    the next renewal. Stopping lets running firings finish for `grace_s`, then cancels them.
    """

    def __init__(
        self,
        store: ScheduleStore | None = None,
        *,
        checkpointer: str | None = None,
        poll_s: float = POLL_S,
        grace_s: float = GRACE_S,
        max_running: int = 8,
        name: str | None = None,
    ) -> None:
        """Prepare a scheduler (nothing runs until `run`).

        Args:
            store: The jobs (default: `ScheduleStore()`).
            checkpointer: Where the firings' sessions live (as `SWITCHYARD_CHECKPOINTER`).
            poll_s: Seconds between claims.
            grace_s: Seconds running firings get to finish when the scheduler stops.
            max_running: Most firings this scheduler runs at once; due ones beyond wait for
                room here or are claimed by another scheduler.
            name: How this scheduler signs its claims (default: host, pid and a random suffix).
        """
        if not (math.isfinite(poll_s) and poll_s > 0):
            raise InvalidInputError(f"poll_s must be a positive number, got {poll_s!r}")
        if max_running < 1:
            raise InvalidInputError(f"max_running must be at least 1, got {max_running!r}")
        self.store = store or ScheduleStore()
        if poll_s * 3 > self.store.lease_s:  # polls renew the leases: several per lease
            raise InvalidInputError(
                f"poll_s ({poll_s:g}) must be at most a third of the store's lease_s "
                f"({self.store.lease_s:g}), or live firings would be recorded lost"
            )
        self.checkpointer = checkpointer
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.max_running = max_running
        self.name = name or f"{_host()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._why: dict[str, str] = {}

    @property
    def running(self) -> list[str]:
        """Ids of the firings this scheduler is running."""
        return list(self._tasks)

    async def run(
        self, stop: asyncio.Event | None = None, *, on_ready: Callable[[], Any] | None = None
    ) -> None:
        """Fire due jobs until `stop` is set.

        Raises:
            PersistenceConfigError: The checkpointer cannot be opened.
        """
        stop = stop or asyncio.Event()
        async with open_async_persistence(self.checkpointer) as persistence:
            logger.info("scheduler %s ready on %s", self.name, display(self.store.target))
            if on_ready is not None:
                on_ready()
            failing = False
            try:
                while not stop.is_set():
                    try:
                        await self.tick(persistence)
                    except Exception:  # the store is down: retry next poll, do not exit
                        if not failing:  # one line per outage, not one per poll
                            logger.exception("scheduler %s: cannot reach the store", self.name)
                        failing = True
                    else:
                        if failing:
                            logger.warning("scheduler %s: the store answers again", self.name)
                        failing = False
                    # Spread the polls: schedulers started together would otherwise claim in the
                    # same order every time, and one would win every firing.
                    wait = self.poll_s * random.uniform(0.5, 1.5)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
            finally:
                await self._drain()

    async def tick(self, persistence: Persistence) -> list[Firing]:
        """Claim and start what is due, renew leases, cancel what must stop; the started firings."""
        claimed: list[Firing] = []
        if len(self._tasks) < self.max_running:
            claimed = await asyncio.to_thread(
                self.store.claim,
                self.name,
                limit=self.max_running - len(self._tasks),
                running=set(self._tasks),
            )
        for firing in claimed:
            if firing.id not in self._tasks:  # never two tasks for one firing
                self._tasks[firing.id] = asyncio.create_task(self._fire(firing, persistence))
        stopping = await asyncio.to_thread(self.store.renew, self.name, list(self._tasks))
        for firing_id in stopping:
            task = self._tasks.get(firing_id)
            if task is not None and firing_id not in self._why:
                self._why[firing_id] = "cancelled"  # by a newer firing (overlap "cancel")
                task.cancel()
        return claimed

    async def _fire(self, firing: Firing, persistence: Persistence) -> None:
        """Run one claimed firing and record it; whatever fails, the task leaves `_tasks`."""
        try:
            job = await asyncio.to_thread(self.store.get, firing.job_id)
            try:
                outcome = await fire(job, firing, self.store, persistence)
            except asyncio.CancelledError:
                outcome = Outcome(
                    status="cancelled", end_reason=self._why.get(firing.id, "scheduler_stopped")
                )
            await asyncio.to_thread(record, self.store, job, firing, outcome)
        except LookupError:  # removed since the claim: its firings went with it
            pass
        except Exception:  # the store is down: the lease lapses and the firing is taken over
            logger.exception("scheduled job %s: firing %s not recorded", firing.job_id, firing.id)
        finally:
            if self._tasks.get(firing.id) is asyncio.current_task():
                del self._tasks[firing.id]
            self._why.pop(firing.id, None)

    async def _drain(self) -> None:
        """Let running firings finish for `grace_s` (their leases renewed), then cancel the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace_s
        pending = set(self._tasks.values())
        while pending and loop.time() < deadline:
            _done, pending = await asyncio.wait(
                pending, timeout=min(self.poll_s, deadline - loop.time())
            )
            if pending:
                with contextlib.suppress(Exception):  # best effort: the store may be down
                    await asyncio.to_thread(self.store.renew, self.name, list(self._tasks))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _host() -> str:
    return socket.gethostname().split(".")[0] or "host"


__all__ = [
    "Scheduler",
    "arun_job_now",
    "engine_of_job",
    "pause_job",
    "remove_job",
    "resume_job",
    "run_job_now",
    "schedule",
]
