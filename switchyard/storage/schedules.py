"""Scheduled jobs and their firings, in the session store; claimed exactly once across schedulers.

A job says what to run (a pattern and a message, for a user, in a fresh or fixed session, with a
model pinned when the job was made) and when (`switchyard.core.cron.Timing`), with its policies:
overlap, catch-up window, jitter, spend per firing and per day, pause after N failures.

Each firing is a row whose id is its idempotency key, `job id @ scheduled time`. A scheduler
claims due firings in one transaction: it locks the due jobs' rows (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, so schedulers side by side each take different jobs and never wait on one another;
the database write lock on SQLite), inserts one row per due time (`ON CONFLICT DO NOTHING` on the
key) and moves the job's next time on before it commits. A due time is therefore claimed by exactly
one scheduler, however many run. The claimer then keeps a lease on its running firings; a firing
whose lease lapses (its scheduler was killed) is taken over by the next claim, and its run resumes
from its last checkpoint (`switchyard.runtime.firing`); after `MAX_ATTEMPTS` runners it is
recorded `lost`.

Storage: SQLite (`.switchyard/schedules.sqlite` by default, or `SWITCHYARD_SCHEDULES`), or
PostgreSQL when `SWITCHYARD_SCHEDULES` (else `SWITCHYARD_CHECKPOINTER`) is a `postgresql://` DSN.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from switchyard.core.cron import Timing, jitter, stamp
from switchyard.core.defaults import CATCHUP_S, DEADLINE_S, MAX_FAILURES, OverlapPolicy
from switchyard.core.errors import SwitchyardError
from switchyard.storage.sql import is_postgres, transaction

SCHEDULES_ENV = "SWITCHYARD_SCHEDULES"
DEFAULT_SCHEDULES_PATH = Path(".switchyard") / "schedules.sqlite"

LEASE_S = 30.0
"""Seconds a running firing stays its scheduler's without a renewal (renewed every poll)."""

MISFIRE_GRACE_S = 10.0
"""Seconds late a firing may be claimed and still run whatever its catch-up window: schedulers
poll every fraction of a second, and a busy or briefly stalled one is a few seconds late."""

MAX_ATTEMPTS = 3
"""Runs one firing may get. A firing whose scheduler (or Temporal worker) died is taken over by
the next claim and resumed from its last checkpoint; after this many runners it is recorded lost
(a firing that kills every process that runs it must not take the fleet down one by one)."""

MAX_CATCHUP_FIRINGS = 1_000
"""Most missed times one claim walks through one by one (past that they are counted in a jump),
and most due times one claim records for one job (the rest wait for the next claim)."""

FiringStatus = Literal[
    "queued", "running", "ok", "failed", "escalated", "skipped", "missed", "cancelled", "lost"
]
JobStatus = Literal["active", "paused"]
Engine = Literal["local", "temporal"]

_ENDED: tuple[FiringStatus, ...] = (
    "ok",
    "failed",
    "escalated",
    "skipped",
    "missed",
    "cancelled",
    "lost",
)


class Job(BaseModel):
    """One scheduled job.

    Attributes:
        id: Short id, for the CLI.
        pattern: Pattern name (`router`) or import path `module:attribute` of the graph.
        message: The message each firing sends; `{scheduled_at}` is replaced by the firing's
            time (ISO 8601, in the job's zone).
        cron: Cron expression (or None with `every_s`).
        every_s: Interval in seconds (or None with `cron`).
        tz: IANA zone the cron expression is read in.
        user_id: Owner of the firings' sessions.
        session_id: Every firing continues this session; None: each firing in a fresh one.
        model: The model every firing uses, pinned when the job was made.
        budget_usd: Most US dollars one firing may spend (None: the run's default token limit).
        daily_budget_usd: Most US dollars the job's firings may spend per day in its zone;
            once spent, firings are skipped until the next day.
        overlap: What a firing due while the previous one runs does (see `OverlapPolicy`).
        catchup_s: A time missed (scheduler down) fires late if at most this many seconds old.
        jitter_s: Each firing waits a stable pseudo-random [0, jitter_s) after its time.
        max_failures: Consecutive failed firings after which the job pauses.
        allow_scheduling: Whether the job's runs may create schedules themselves.
        deadline_s: Seconds one firing may take.
        engine: "local" (fired by `switchyard scheduler`) or "temporal" (a Temporal Schedule).
        temporal_address: The Temporal frontend of a "temporal" job.
        temporal_namespace: Its Temporal namespace.
        task_queue: The task queue its firings run on.
        status: "active" or "paused".
        paused_reason: Why it paused (a person, or the failures that paused it).
        failures: Consecutive failed firings so far.
        next_fire_at: Unix time of the next firing (as scheduled, before jitter).
        next_due_at: Unix time the next firing starts (with jitter).
        created_at: Unix time the job was made.
        created_by: The job whose run made this one (None when made by a person).
    """

    id: str
    pattern: str
    message: str
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    user_id: str = "local"
    session_id: str | None = None
    model: str = "offline"
    budget_usd: float | None = None
    daily_budget_usd: float | None = None
    overlap: OverlapPolicy = "skip"
    catchup_s: float = CATCHUP_S
    jitter_s: float = 0.0
    max_failures: int = MAX_FAILURES
    allow_scheduling: bool = False
    deadline_s: float = DEADLINE_S
    engine: Engine = "local"
    temporal_address: str | None = None
    temporal_namespace: str | None = None
    task_queue: str | None = None
    status: JobStatus = "active"
    paused_reason: str | None = None
    failures: int = 0
    next_fire_at: float = 0.0
    next_due_at: float = 0.0
    created_at: float = Field(default_factory=time.time)
    created_by: str | None = None

    @property
    def timing(self) -> Timing:
        """When the job fires."""
        # Intervals count from the whole second the job was made in, as Temporal's do.
        anchor = float(math.floor(self.created_at))
        return Timing(cron=self.cron, every_s=self.every_s, tz=self.tz, anchor=anchor)

    def text_for(self, scheduled_at: float) -> str:
        """The message of the firing scheduled at `scheduled_at`."""
        moment = datetime.fromtimestamp(scheduled_at, tz=self.timing.zone()).isoformat()
        return self.message.replace("{scheduled_at}", moment)

    def session_for(self, scheduled_at: float) -> str:
        """The session of the firing at `scheduled_at`: fresh, unless the job fixes one."""
        return self.session_id or f"{self.id}-{stamp(scheduled_at)}"


class Firing(BaseModel):
    """One firing of a job: due, running or ended.

    Attributes:
        id: The idempotency key, `job id @ scheduled time`.
        job_id: The job.
        scheduled_at: Unix time the firing was scheduled for (before jitter).
        status: queued, running, then ok / failed / escalated (waiting for a person); or
            skipped (overlap or daily budget), missed (too late to catch up), cancelled, lost.
        started_at: Unix time its run started (None if it never ran).
        finished_at: Unix time it ended.
        owner: The scheduler running it.
        lease_until: The owner must renew its lease before this Unix time.
        cancel: Set when a newer firing cancels this one (overlap "cancel").
        end_reason: The run's end reason, or why the firing did not run.
        cost_usd: What the run spent (None: unknown price).
        tokens: Tokens the run used.
        session_id: The run's session.
        correlation_id: The run's id in logs, traces and the dead-letter queue.
        dead_letter_id: The run's dead letter, when it failed.
        error: One line on the failure.
        detail: Anything else (how many times were missed, the run's agent).
    """

    id: str
    job_id: str
    scheduled_at: float
    status: FiringStatus
    started_at: float | None = None
    finished_at: float | None = None
    owner: str | None = None
    lease_until: float | None = None
    cancel: bool = False
    end_reason: str | None = None
    cost_usd: float | None = 0.0
    tokens: int = 0
    session_id: str | None = None
    correlation_id: str | None = None
    dead_letter_id: str | None = None
    error: str | None = None
    detail: dict[str, Any] = {}


@dataclass(frozen=True)
class Outcome:
    """How a firing ended, as its runner reports it.

    Attributes:
        status: ok, failed, escalated, skipped or cancelled.
        end_reason: The run's end reason, or why it did not run.
        cost_usd: Dollars spent (None: unknown).
        tokens: Tokens used.
        dead_letter_id: The failed run's dead letter.
        error: One line on the failure.
        pause: Pause the job now whatever its failure count (it is misconfigured).
        detail: Anything else worth showing.
    """

    status: FiringStatus
    end_reason: str | None = None
    cost_usd: float | None = 0.0
    tokens: int = 0
    dead_letter_id: str | None = None
    error: str | None = None
    pause: bool = False
    detail: dict[str, Any] | None = None


class JobNotFoundError(SwitchyardError, LookupError):
    """No job has the given id."""


class SchedulingNotAllowedError(SwitchyardError):
    """A scheduled run tried to create a schedule, and its job does not allow that."""


_JOB_COLUMNS = tuple(Job.model_fields)
_FIRING_COLUMNS = tuple(Firing.model_fields)

_REAL = "DOUBLE PRECISION"
_SCHEMA = (
    f"""
CREATE TABLE IF NOT EXISTS switchyard_schedules (
    id TEXT PRIMARY KEY, pattern TEXT NOT NULL, message TEXT NOT NULL, cron TEXT,
    every_s {_REAL}, tz TEXT NOT NULL, user_id TEXT NOT NULL, session_id TEXT,
    model TEXT NOT NULL, budget_usd {_REAL}, daily_budget_usd {_REAL}, overlap TEXT NOT NULL,
    catchup_s {_REAL} NOT NULL, jitter_s {_REAL} NOT NULL, max_failures INTEGER NOT NULL,
    allow_scheduling BOOLEAN NOT NULL, deadline_s {_REAL} NOT NULL, engine TEXT NOT NULL,
    temporal_address TEXT, temporal_namespace TEXT, task_queue TEXT, status TEXT NOT NULL,
    paused_reason TEXT, failures INTEGER NOT NULL,
    next_fire_at {_REAL} NOT NULL, next_due_at {_REAL} NOT NULL, created_at {_REAL} NOT NULL,
    created_by TEXT
)""",
    f"""
CREATE TABLE IF NOT EXISTS switchyard_firings (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL, scheduled_at {_REAL} NOT NULL,
    status TEXT NOT NULL, started_at {_REAL}, finished_at {_REAL}, owner TEXT,
    lease_until {_REAL}, cancel BOOLEAN NOT NULL, end_reason TEXT, cost_usd {_REAL},
    tokens INTEGER NOT NULL, session_id TEXT, correlation_id TEXT, dead_letter_id TEXT,
    error TEXT, detail TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS switchyard_firings_job ON switchyard_firings (job_id, status)",
    "CREATE INDEX IF NOT EXISTS switchyard_schedules_due ON switchyard_schedules "
    "(status, next_due_at)",
)


class ScheduleStore:
    """Jobs and firings on SQLite or PostgreSQL (see the module docstring)."""

    def __init__(self, target: str | None = None, *, lease_s: float = LEASE_S) -> None:
        """Open (and create if needed) the tables.

        Args:
            target: SQLite path or `postgresql://` DSN; None reads `SWITCHYARD_SCHEDULES`, then a
                PostgreSQL `SWITCHYARD_CHECKPOINTER`, then the default SQLite file.
            lease_s: Seconds a firing stays its scheduler's without a renewal: how long a
                killed scheduler's firing shows as running before it is recorded lost. Keep it
                well above the schedulers' poll interval.

        Raises:
            PersistenceConfigError: The store cannot be opened; says which and how to fix it.
        """
        self.target = target or default_target()
        self.lease_s = lease_s
        self._postgres = is_postgres(self.target)
        self._mark = "%s" if self._postgres else "?"
        self._lock = threading.Lock()
        with self._tx() as connection:
            if self._postgres:
                present = connection.execute(
                    "SELECT to_regclass('switchyard_schedules_due') IS NOT NULL"
                ).fetchone()[0]
                if present:  # made already: CREATE INDEX would wait for every open claim
                    return
                # Concurrent CREATE IF NOT EXISTS can still collide on PostgreSQL.
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (0x5343_4845_44,))
            for statement in _SCHEMA:
                connection.execute(statement)

    def _tx(self) -> AbstractContextManager[Any]:
        # SQLite: every transaction takes the write lock at its start. A deferred one that reads
        # and then writes can be refused (SQLITE_BUSY) at once, without waiting, when another
        # process writes meanwhile.
        return transaction(
            self.target,
            what="the schedules",
            env=SCHEDULES_ENV,
            lock=self._lock,
            exclusive=True,
        )

    # -- jobs ------------------------------------------------------------------------------

    def add(self, job: Job, *, now: float | None = None) -> Job:
        """Store a new job, its first firing computed from `now` (default: the current time)."""
        now = time.time() if now is None else now
        first = job.timing.next_after(now)
        job = job.model_copy(
            update={"next_fire_at": first, "next_due_at": first + self._jitter(job, first)}
        )
        with self._tx() as connection:
            self._insert(connection, "switchyard_schedules", _JOB_COLUMNS, _job_row(job))
        return job

    def get(self, job_id: str) -> Job:
        """One job.

        Raises:
            JobNotFoundError: No job has this id.
        """
        with self._tx() as connection:
            job = self._job(connection, job_id)
        if job is None:
            raise JobNotFoundError(f"no scheduled job {job_id!r}; `switchyard schedule list`")
        return job

    def jobs(self, *, user_id: str | None = None) -> list[Job]:
        """Every job (or one user's), oldest first."""
        query = f"SELECT {', '.join(_JOB_COLUMNS)} FROM switchyard_schedules"
        params: tuple[Any, ...] = ()
        if user_id is not None:
            query += f" WHERE user_id = {self._mark}"
            params = (user_id,)
        with self._tx() as connection:
            rows = connection.execute(query + " ORDER BY created_at, id", params).fetchall()
        return [_job(row) for row in rows]

    def set_status(
        self, job_id: str, status: JobStatus, *, reason: str | None = None, now: float | None = None
    ) -> Job:
        """Pause or resume a job; resumed, its failures restart from 0, its next time from now.

        Raises:
            JobNotFoundError: No job has this id.
        """
        job = self.get(job_id)
        changes: dict[str, Any] = {"status": status, "paused_reason": reason}
        if status == "active":
            first = job.timing.next_after(time.time() if now is None else now)
            changes |= {
                "failures": 0,
                "next_fire_at": first,
                "next_due_at": first + self._jitter(job, first),
            }
        with self._tx() as connection:
            self._update_job(connection, job_id, changes)
        return job.model_copy(update=changes)

    def remove(self, job_id: str) -> None:
        """Delete a job and its firings.

        Raises:
            JobNotFoundError: No job has this id.
        """
        with self._tx() as connection:
            # The job's row first, as a claim locks it: no claim adds a firing meanwhile.
            if self._job(connection, job_id, lock=True) is None:
                raise JobNotFoundError(f"no scheduled job {job_id!r}; `switchyard schedule list`")
            for table, column in (("switchyard_firings", "job_id"), ("switchyard_schedules", "id")):
                connection.execute(f"DELETE FROM {table} WHERE {column} = {self._mark}", (job_id,))

    # -- firings ---------------------------------------------------------------------------

    def firings(
        self, job_id: str, *, limit: int = 20, status: Sequence[FiringStatus] = ()
    ) -> list[Firing]:
        """A job's firings, most recently scheduled first."""
        query = f"SELECT {', '.join(_FIRING_COLUMNS)} FROM switchyard_firings WHERE job_id = "
        query += self._mark
        params: list[Any] = [job_id]
        if status:
            query += f" AND status IN ({', '.join([self._mark] * len(status))})"
            params += list(status)
        query += f" ORDER BY scheduled_at DESC, id DESC LIMIT {int(limit)}"
        with self._tx() as connection:
            rows = connection.execute(query, tuple(params)).fetchall()
        return [_firing(row) for row in rows]

    def firing(self, firing_id: str) -> Firing:
        """One firing by its id.

        Raises:
            JobNotFoundError: No firing has this id (its job was removed).
        """
        with self._tx() as connection:
            row = connection.execute(
                f"SELECT {', '.join(_FIRING_COLUMNS)} FROM switchyard_firings "
                f"WHERE id = {self._mark}",
                (firing_id,),
            ).fetchone()
        if row is None:
            raise JobNotFoundError(f"no firing {firing_id!r}; its job may have been removed")
        return _firing(row)

    def last_cost(self, job_id: str) -> float:
        """Dollars the job's most recent completed firing of known cost spent (0: none has).

        Firings whose cost is unknown (a model with no known price) are passed over: a job with
        a daily budget runs each firing under a dollar limit, which refuses such a model before
        it is called, so they come only from runs no dollar limit applied to.
        """
        with self._tx() as connection:
            row = connection.execute(
                "SELECT cost_usd FROM switchyard_firings WHERE job_id = "
                f"{self._mark} AND status = 'ok' AND cost_usd IS NOT NULL "
                "ORDER BY scheduled_at DESC LIMIT 1",
                (job_id,),
            ).fetchone()
        return 0.0 if row is None else float(row[0])

    def spent_since(self, job_id: str, since: float) -> float:
        """Dollars the job's firings scheduled from `since` on have spent, where it is known.

        A firing of unknown cost (stored as NULL) adds nothing; under a daily budget there are
        none (see `last_cost`).
        """
        with self._tx() as connection:
            row = connection.execute(
                "SELECT COALESCE(SUM(cost_usd), 0) FROM switchyard_firings "
                f"WHERE job_id = {self._mark} AND scheduled_at >= {self._mark}",
                (job_id, since),
            ).fetchone()
        return float(row[0])

    def claim(
        self,
        owner: str,
        *,
        now: float | None = None,
        limit: int = 50,
        running: set[str] | frozenset[str] = frozenset(),
    ) -> list[Firing]:
        """Claim what is due for `owner` to run: new firings, orphans, queued ones whose turn came.

        In one transaction: firings whose runner died (lease lapsed) are taken over, or recorded
        `lost` after `MAX_ATTEMPTS` runners; every active local job due by
        `now` gets one row per due time (missed, skipped, queued, or running for `owner`, by its
        policies) and its next time; a queued firing whose job runs nothing is started.

        At most `limit` firings are started (`Scheduler.max_running` holds after an outage).
        `running` names the firings `owner` is running: a lapsed lease of one of those is only
        renewed (the owner stalled), while any other lapsed firing of `owner`'s is an orphan of
        an earlier life (a restart under the same name) and is taken over like any other.

        Returns:
            The firings `owner` must now run (status "running", leased to `owner`).
        """
        started: list[Firing] = []
        with self._tx() as connection:
            # The clock is read once the transaction holds its locks: a firing queued behind
            # one that just finished starts, on record, after that one's finish.
            at = time.time() if now is None else now
            # At most `limit` in all (each due job starts at most one firing): orphans first.
            started += self._expire_leases(connection, owner, at, running, limit)
            if len(started) < limit:
                for job in self._lock_due(connection, at, limit - len(started)):
                    started += self._fire_due(connection, job, owner, at)
            if len(started) < limit:
                started += self._start_queued(connection, owner, now, limit - len(started))
        return started

    def claim_now(self, job_id: str, owner: str, *, now: float | None = None) -> Firing:
        """A firing of `job_id` at `now`, outside its schedule (`schedule run-now`), for `owner`.

        Raises:
            JobNotFoundError: No job has this id.
        """
        job = self.get(job_id)
        now = time.time() if now is None else now
        firing = self._new_firing(job, now, "running", owner, now)
        # An id of its own: a run-now never takes the key of a scheduled time.
        firing = firing.model_copy(update={"id": f"{firing.id}/run-now"})
        with self._tx() as connection:
            self._insert(connection, "switchyard_firings", _FIRING_COLUMNS, _firing_row(firing))
        return firing

    def claim_at(
        self, job_id: str, scheduled_at: float, owner: str, *, now: float | None = None
    ) -> Firing | None:
        """Claim the firing of `job_id` scheduled at `scheduled_at` for `owner`, if nobody has.

        For firings timed elsewhere (a Temporal Schedule): the row is inserted under its
        idempotency key, so a duplicated start runs it once. A firing still marked running whose
        lease lapsed (its runner died) is taken over. A retry must claim under a name of its own
        (a Temporal Activity signs with its attempt): an earlier attempt that only stalled keeps
        its claim until its lease lapses, then finds it gone and stops.

        Returns:
            The firing, now running for `owner`; None when it already ran or runs elsewhere.

        Raises:
            JobNotFoundError: No job has this id.
        """
        now = time.time() if now is None else now
        with self._tx() as connection:
            job = self._job(connection, job_id, lock=True)
            if job is None:
                raise JobNotFoundError(f"no scheduled job {job_id!r}; `switchyard schedule list`")
            firing = self._record(connection, job, scheduled_at, "running", owner, now)
            if firing is not None:
                return firing
            row = connection.execute(
                f"SELECT {', '.join(_FIRING_COLUMNS)} FROM switchyard_firings WHERE id = "
                f"{self._mark} AND status = 'running' AND lease_until < {self._mark}",
                (firing_id(job.id, scheduled_at), now),
            ).fetchone()
            if row is None:  # ran already, or its runner is alive
                return None
            lapsed = _firing(row)
            if _attempts(lapsed) >= MAX_ATTEMPTS:
                self._lose(connection, job, lapsed, now)
                return None
            return self._take_over(connection, lapsed, owner, now)

    def renew(self, owner: str, firing_ids: Sequence[str], *, now: float | None = None) -> set[str]:
        """Extend `owner`'s leases on its running firings.

        Returns:
            The ids among them a newer firing asked to cancel (overlap "cancel"), or that are no
            longer `owner`'s (lost after a stall): their runs must stop.
        """
        if not firing_ids:
            return set()
        now = time.time() if now is None else now
        marks = ", ".join([self._mark] * len(firing_ids))
        with self._tx() as connection:
            connection.execute(
                f"UPDATE switchyard_firings SET lease_until = {self._mark} WHERE owner = "
                f"{self._mark} AND status = 'running' AND id IN ({marks})",
                (now + self.lease_s, owner, *firing_ids),
            )
            rows = connection.execute(
                f"SELECT id, status, owner, cancel FROM switchyard_firings WHERE id IN ({marks})",
                tuple(firing_ids),
            ).fetchall()
        keep = {row[0] for row in rows if row[1] == "running" and row[2] == owner and not row[3]}
        return set(firing_ids) - keep

    def finish(self, firing: Firing, outcome: Outcome, *, now: float | None = None) -> Job | None:
        """Record how running `firing` ended and count the job's consecutive failures.

        A firing no longer this runner's (taken over, or recorded lost, after its lease lapsed)
        keeps the record its new runner writes.

        A failure (or a lost firing) that reaches the job's `max_failures`, or an outcome that
        asks to pause (a misconfigured job), pauses the job.

        Returns:
            The job when this firing paused it, else None.
        """
        with self._tx() as connection:
            # The job's row first, as a claim locks it: one lock order, no deadlock.
            job = self._job(connection, firing.job_id, lock=True)
            changes: dict[str, Any] = {
                "status": outcome.status,
                "finished_at": time.time() if now is None else now,
                "end_reason": outcome.end_reason,
                "cost_usd": outcome.cost_usd,
                "tokens": outcome.tokens,
                "dead_letter_id": outcome.dead_letter_id,
                "error": outcome.error,
                "lease_until": None,
                "detail": json.dumps({**firing.detail, **(outcome.detail or {})}, default=str),
            }
            sets = ", ".join(f"{name} = {self._mark}" for name in changes)
            cursor = connection.execute(
                f"UPDATE switchyard_firings SET {sets} WHERE id = {self._mark} "
                f"AND status = 'running' AND owner = {self._mark}",
                (*changes.values(), firing.id, firing.owner),
            )
            # Removed, recorded lost, or taken over by another runner meanwhile: theirs to say.
            if job is None or cursor.rowcount != 1:
                return None
            job, paused = self._count(connection, job, outcome)
            return job if paused else None

    # -- inside a claim --------------------------------------------------------------------

    def _lock_due(self, connection: Any, now: float, limit: int) -> list[Job]:
        query = (
            f"SELECT {', '.join(_JOB_COLUMNS)} FROM switchyard_schedules WHERE status = 'active' "
            f"AND engine = 'local' AND next_due_at <= {self._mark} ORDER BY next_due_at "
            f"LIMIT {int(limit)}"
        )
        if self._postgres:
            query += " FOR UPDATE SKIP LOCKED"  # each scheduler takes jobs no other one holds
        return [_job(row) for row in connection.execute(query, (now,)).fetchall()]

    def _fire_due(self, connection: Any, job: Job, owner: str, now: float) -> list[Firing]:
        timing = job.timing
        when = job.next_fire_at
        # Missed: due (with its jitter) longer ago than the catch-up window, plus a grace for a
        # scheduler that is a poll or a busy moment late (so a window of 0 still fires).
        oldest = now - job.catchup_s - MISFIRE_GRACE_S
        missed, last_missed, jumped = 0, None, False
        while when + self._jitter(job, when) < oldest:
            if missed >= MAX_CATCHUP_FIRINGS and not jumped:  # too many to walk: the count
                jumped = True  # stays a floor, and the walk goes on near the window's start
                # (the first time whose due time may fall inside the window; a millisecond
                # earlier, as next_after is strictly after)
                start = timing.next_after(oldest - job.jitter_s - 1e-3)
                when = max(start, timing.next_after(when))
                continue
            missed, last_missed, when = missed + 1, when, timing.next_after(when)
        due: list[float] = []
        # Bounded per claim: a long catch-up window on a frequent job goes on at the next claim.
        while when + self._jitter(job, when) <= now and len(due) < MAX_CATCHUP_FIRINGS:
            due.append(when)
            when = timing.next_after(when)
        started: list[Firing] = []
        if last_missed is not None:
            note = {"missed": missed, "since": job.next_fire_at}
            self._record(connection, job, last_missed, "missed", owner, now, note)
        if job.overlap == "cancel" and len(due) > 1:  # only the newest would survive anyway
            for scheduled in due[:-1]:
                self._record(connection, job, scheduled, "skipped", owner, now)
            due = due[-1:]
        # Busy: a firing runs, or older ones wait their turn (queued firings start in order).
        busy = self._has(connection, job.id, "running") or self._has(connection, job.id, "queued")
        for scheduled in due:
            if not busy:
                status: FiringStatus = "running"
            elif job.overlap == "skip":
                status = "skipped"
            elif job.overlap == "queue":
                status = "queued"
            else:  # cancel: the running firings stop at their next lease renewal
                connection.execute(
                    f"UPDATE switchyard_firings SET cancel = {self._true} WHERE job_id = "
                    f"{self._mark} AND status = 'running'",
                    (job.id,),
                )
                status = "running"
            firing = self._record(connection, job, scheduled, status, owner, now)
            if firing is not None and status == "running":
                started.append(firing)
                busy = True
        self._update_job(
            connection,
            job.id,
            {"next_fire_at": when, "next_due_at": when + self._jitter(job, when)},
        )
        return started

    def _start_queued(
        self, connection: Any, owner: str, now: float | None, limit: int
    ) -> list[Firing]:
        rows = connection.execute(
            "SELECT DISTINCT job_id FROM switchyard_firings WHERE status = 'queued'"
        ).fetchall()
        started: list[Firing] = []
        for (job_id,) in rows:
            if len(started) >= limit:  # the rest wait for room here or another scheduler
                break
            lock = " FOR UPDATE SKIP LOCKED" if self._postgres else ""
            held = connection.execute(
                f"SELECT status FROM switchyard_schedules WHERE id = {self._mark}{lock}",
                (job_id,),
            ).fetchone()
            # Held by another scheduler, paused (its queue waits for the resume), or busy.
            if held is None or held[0] != "active" or self._has(connection, job_id, "running"):
                continue
            # Read with the job's row held: a runner's finish that let go of it came before.
            at = time.time() if now is None else now
            row = connection.execute(
                f"SELECT {', '.join(_FIRING_COLUMNS)} FROM switchyard_firings WHERE job_id = "
                f"{self._mark} AND status = 'queued' ORDER BY scheduled_at LIMIT 1",
                (job_id,),
            ).fetchone()
            firing = _firing(row).model_copy(
                update={
                    "status": "running",
                    "owner": owner,
                    "lease_until": at + self.lease_s,
                    "started_at": at,
                }
            )
            connection.execute(
                f"UPDATE switchyard_firings SET status = 'running', owner = {self._mark}, "
                f"lease_until = {self._mark}, started_at = {self._mark} WHERE id = {self._mark}",
                (owner, firing.lease_until, at, firing.id),
            )
            started.append(firing)
        return started

    def _expire_leases(
        self,
        connection: Any,
        owner: str,
        now: float,
        running: set[str] | frozenset[str],
        limit: int,
    ) -> list[Firing]:
        """Take over (for `owner`) or record lost the running firings whose leases lapsed."""
        rows = connection.execute(
            f"SELECT DISTINCT job_id FROM switchyard_firings WHERE status = 'running' "
            f"AND lease_until < {self._mark}",
            (now,),
        ).fetchall()
        taken: list[Firing] = []
        for (job_id,) in rows:
            job = self._job(connection, job_id, lock=True, skip_locked=True)
            # Held by another scheduler (it deals with them), or a Temporal job's: a retried
            # Activity takes those over (`claim_at`), not a local scheduler.
            if job is None or job.engine != "local":
                continue
            lapsed = connection.execute(
                f"SELECT {', '.join(_FIRING_COLUMNS)} FROM switchyard_firings WHERE job_id = "
                f"{self._mark} AND status = 'running' AND lease_until < {self._mark}",
                (job_id, now),
            ).fetchall()
            for row in lapsed:
                firing = _firing(row)
                if firing.owner == owner and firing.id in running:  # it stalled; still runs
                    connection.execute(
                        f"UPDATE switchyard_firings SET lease_until = {self._mark} "
                        f"WHERE id = {self._mark}",
                        (now + self.lease_s, firing.id),
                    )
                elif len(taken) >= limit and _attempts(firing) < MAX_ATTEMPTS:
                    continue  # no room here: another scheduler (or a later claim) takes it
                elif job.status == "active" and _attempts(firing) < MAX_ATTEMPTS:
                    taken.append(self._take_over(connection, firing, owner, now))
                else:
                    job = self._lose(connection, job, firing, now)
        return taken

    def _take_over(self, connection: Any, firing: Firing, owner: str, now: float) -> Firing:
        """Make `owner` the runner of a firing whose runner died; its run resumes (`fire`)."""
        detail = {**firing.detail, "attempts": _attempts(firing) + 1, "taken_from": firing.owner}
        connection.execute(
            f"UPDATE switchyard_firings SET owner = {self._mark}, lease_until = {self._mark}, "
            f"detail = {self._mark} WHERE id = {self._mark}",
            (owner, now + self.lease_s, json.dumps(detail, default=str), firing.id),
        )
        return firing.model_copy(
            update={"owner": owner, "lease_until": now + self.lease_s, "detail": detail}
        )

    def _lose(self, connection: Any, job: Job, firing: Firing, now: float) -> Job:
        """Record a firing lost (its runners kept dying, or its job is paused); a failure."""
        error = (
            f"scheduler {firing.owner} stopped renewing its lease (attempt {_attempts(firing)} "
            f"of {MAX_ATTEMPTS}); its session {firing.session_id} keeps the checkpoints "
            "(`switchyard resume`)"
        )
        connection.execute(
            f"UPDATE switchyard_firings SET status = 'lost', finished_at = {self._mark}, "
            f"end_reason = 'lost', error = {self._mark}, lease_until = NULL "
            f"WHERE id = {self._mark}",
            (now, error, firing.id),
        )
        job, _paused = self._count(connection, job, Outcome(status="lost", error=error))
        return job

    def _count(self, connection: Any, job: Job, outcome: Outcome) -> tuple[Job, bool]:
        """Count a firing's outcome against `job` (its row locked by the caller).

        Returns:
            The job as it now is, and whether this outcome paused it.
        """
        job_id = job.id
        if outcome.status in ("skipped", "cancelled", "escalated"):
            return job, False
        if outcome.status == "ok":
            self._update_job(connection, job_id, {"failures": 0})
            return job.model_copy(update={"failures": 0}), False
        failures = job.failures + 1
        changes: dict[str, Any] = {"failures": failures}
        pausing = job.status == "active" and (outcome.pause or failures >= job.max_failures)
        if pausing:
            why = outcome.error or outcome.end_reason or outcome.status
            count = "a misconfigured firing" if outcome.pause else f"{failures} failed firings"
            changes |= {"status": "paused", "paused_reason": f"paused after {count}: {why}"}
        self._update_job(connection, job_id, changes)
        return job.model_copy(update=changes), pausing

    def _has(self, connection: Any, job_id: str, status: FiringStatus) -> bool:
        """Whether the job has a firing with `status`."""
        row = connection.execute(
            f"SELECT COUNT(*) FROM switchyard_firings WHERE job_id = {self._mark} "
            f"AND status = {self._mark}",
            (job_id, status),
        ).fetchone()
        return bool(row[0])

    def _record(
        self,
        connection: Any,
        job: Job,
        scheduled: float,
        status: FiringStatus,
        owner: str,
        now: float,
        detail: dict[str, Any] | None = None,
    ) -> Firing | None:
        """Insert a firing unless one with its key exists; the inserted firing, else None."""
        firing = self._new_firing(job, scheduled, status, owner, now, detail)
        row = _firing_row(firing)
        inserted = self._insert(
            connection, "switchyard_firings", _FIRING_COLUMNS, row, unless_exists=True
        )
        return firing if inserted else None

    def _new_firing(
        self,
        job: Job,
        scheduled: float,
        status: FiringStatus,
        owner: str,
        now: float,
        detail: dict[str, Any] | None = None,
    ) -> Firing:
        running = status == "running"
        ended = status in _ENDED
        return Firing(
            id=firing_id(job.id, scheduled),
            job_id=job.id,
            scheduled_at=scheduled,
            status=status,
            owner=owner if running else None,
            lease_until=now + self.lease_s if running else None,
            started_at=now if running else None,
            finished_at=now if ended else None,
            end_reason={"skipped": "overlap", "missed": "missed"}.get(status),
            session_id=job.session_for(scheduled),
            correlation_id=uuid.uuid4().hex,
            detail=detail or {},
        )

    # -- rows ------------------------------------------------------------------------------

    @property
    def _true(self) -> str:
        return "TRUE" if self._postgres else "1"

    def _jitter(self, job: Job, when: float) -> float:
        return jitter(firing_id(job.id, when), job.jitter_s)

    def _job(
        self, connection: Any, job_id: str, *, lock: bool = False, skip_locked: bool = False
    ) -> Job | None:
        suffix = ""
        if lock and self._postgres:
            suffix = " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
        row = connection.execute(
            f"SELECT {', '.join(_JOB_COLUMNS)} FROM switchyard_schedules "
            f"WHERE id = {self._mark}{suffix}",
            (job_id,),
        ).fetchone()
        return None if row is None else _job(row)

    def _update_job(self, connection: Any, job_id: str, changes: dict[str, Any]) -> None:
        sets = ", ".join(f"{name} = {self._mark}" for name in changes)
        connection.execute(
            f"UPDATE switchyard_schedules SET {sets} WHERE id = {self._mark}",
            (*changes.values(), job_id),
        )

    def _insert(
        self,
        connection: Any,
        table: str,
        columns: Sequence[str],
        row: dict[str, Any],
        *,
        unless_exists: bool = False,
    ) -> bool:
        """Insert `row`; with `unless_exists`, not when its id is taken. Whether it went in."""
        marks = ", ".join([self._mark] * len(columns))
        skip = " ON CONFLICT (id) DO NOTHING" if unless_exists else ""
        cursor = connection.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}){skip}",
            tuple(row[name] for name in columns),
        )
        return bool(cursor.rowcount == 1)


def firing_id(job_id: str, scheduled_at: float) -> str:
    """A firing's id and idempotency key: the job and the time it was scheduled for."""
    return f"{job_id}@{stamp(scheduled_at)}"


def _attempts(firing: Firing) -> int:
    return int(firing.detail.get("attempts", 1))


def _job_row(job: Job) -> dict[str, Any]:
    return job.model_dump()


def _job(row: Sequence[Any]) -> Job:
    values = dict(zip(_JOB_COLUMNS, row, strict=True))
    values["allow_scheduling"] = bool(values["allow_scheduling"])
    return Job(**values)


def _firing_row(firing: Firing) -> dict[str, Any]:
    row = firing.model_dump()
    row["detail"] = json.dumps(row["detail"], default=str)
    return row


def _firing(row: Sequence[Any]) -> Firing:
    values = dict(zip(_FIRING_COLUMNS, row, strict=True))
    values["cancel"] = bool(values["cancel"])
    values["detail"] = json.loads(values["detail"] or "{}")
    return Firing(**values)


def default_target() -> str:
    """Where jobs live: `SWITCHYARD_SCHEDULES`, else a PostgreSQL checkpointer, else SQLite."""
    explicit = os.environ.get(SCHEDULES_ENV, "").strip()
    if explicit:
        return explicit
    checkpointer = os.environ.get("SWITCHYARD_CHECKPOINTER", "").strip()
    if is_postgres(checkpointer):
        return checkpointer
    return str(DEFAULT_SCHEDULES_PATH)


def new_job_id() -> str:
    """A fresh short job id."""
    return uuid.uuid4().hex[:10]


__all__ = [
    "Firing",
    "Job",
    "JobNotFoundError",
    "Outcome",
    "ScheduleStore",
    "SchedulingNotAllowedError",
    "default_target",
    "new_job_id",
]
