"""One firing of a scheduled job: an ordinary run of its pattern, within the job's budgets.

Shared by the process scheduler (`switchyard.runtime.scheduler`), `schedule run-now` and the
Temporal Schedules' Activity: whoever claimed the firing calls `fire`, which runs the job's pattern
with its pinned model, caps the run's spend by the job's per-firing and per-day budgets, and turns
the run's result into the firing's `Outcome`. The run is the same as `switchyard run`'s: usage,
report and dead letter on failure; its spans sit under a `switchyard.schedule.fire` span carrying
the job id, the firing's own log lines name the job, and the run's carry its correlation id, which
the firing's record keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from opentelemetry import trace

from switchyard.core.errors import PersistenceConfigError, SwitchyardError
from switchyard.guardrails.budgets import Budget
from switchyard.observability.telemetry.conventions import TRACER_NAME
from switchyard.observability.telemetry.provider import run_tracer_provider
from switchyard.runtime.sessions import SessionBusyError
from switchyard.storage.persistence import Persistence
from switchyard.storage.schedules import (
    Firing,
    FiringStatus,
    Job,
    Outcome,
    ScheduleStore,
    SchedulingNotAllowedError,
)

logger = logging.getLogger("switchyard.schedule")

JOB_ID = "switchyard.schedule.job_id"
FIRING_ID = "switchyard.schedule.firing_id"

_firing_job: ContextVar[Job | None] = ContextVar("switchyard_firing_job", default=None)
"""The job whose firing is running in this context (None outside scheduled runs)."""


@contextlib.contextmanager
def firing_of(job: Job) -> Iterator[None]:
    """Mark the code inside as `job`'s scheduled run (for `check_may_schedule`)."""
    token = _firing_job.set(job)
    try:
        yield
    finally:
        _firing_job.reset(token)


def check_may_schedule() -> str | None:
    """Refuse to create a schedule from inside a scheduled run whose job does not allow it.

    Returns:
        The id of the job whose run is creating the schedule (None outside scheduled runs).

    Raises:
        SchedulingNotAllowedError: A scheduled run of a job without `allow_scheduling`.
    """
    job = _firing_job.get()
    if job is None:
        return None
    if not job.allow_scheduling:
        raise SchedulingNotAllowedError(
            f"a run of scheduled job {job.id} cannot create schedules; create the job with "
            "allow_scheduling=True (--allow-scheduling) to let it"
        )
    return job.id


def day_start(job: Job, when: float) -> float:
    """Unix time of the midnight, in the job's zone, that starts the day of `when`."""
    moment = datetime.fromtimestamp(when, tz=job.timing.zone())
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def spend_limit(job: Job, firing: Firing, store: ScheduleStore) -> float | Outcome | None:
    """Dollars this firing may spend (None: no dollar limit), or the outcome that skips it.

    A firing starts only while what is left of the day's budget covers what the job's last
    completed firing cost: one that would not fit is skipped, not started and stopped halfway
    (which would count as a failure and pause the job for being on budget). The run's own
    budget is capped at what is left, so the day's budget holds even when a firing costs more
    than the last one did.
    """
    limit = job.budget_usd
    if job.daily_budget_usd is None:
        return limit
    spent = store.spent_since(job.id, day_start(job, firing.scheduled_at))
    left = job.daily_budget_usd - spent
    if left <= 0 or left < store.last_cost(job.id):
        return Outcome(
            status="skipped",
            end_reason="daily_budget",
            error=f"the job spent ${spent:.6f} of its ${job.daily_budget_usd:g} today",
        )
    return left if limit is None else min(limit, left)


async def fire(job: Job, firing: Firing, store: ScheduleStore, persistence: Persistence) -> Outcome:
    """Run `firing` of `job` on `persistence`'s checkpointer and store; its outcome.

    A job that cannot run as configured (its pattern or model does not load, its session belongs
    to someone else) comes back with `pause=True`: retrying it would fail the same way.
    Cancellation (overlap "cancel", the scheduler stopping) propagates to the caller.
    """
    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=run_tracer_provider())
    attributes = {JOB_ID: job.id, FIRING_ID: firing.id, "switchyard.pattern": job.pattern}
    with tracer.start_as_current_span("switchyard.schedule.fire", attributes=attributes) as span:
        try:
            limit = await asyncio.to_thread(spend_limit, job, firing, store)
            if isinstance(limit, Outcome):  # skipped: the day's budget is spent
                outcome = limit
            else:
                outcome = _outcome(await _run(job, firing, persistence, limit))
        except SessionBusyError as exc:  # the fixed session stayed busy: try next time
            outcome = Outcome(status="failed", end_reason="session_busy", error=str(exc))
        except PersistenceConfigError as exc:  # a store failed: the job itself may be fine
            outcome = Outcome(status="failed", end_reason="store_error", error=str(exc))
        except SwitchyardError as exc:
            outcome = Outcome(
                status="failed", end_reason="misconfigured", error=str(exc), pause=True
            )
        except Exception as exc:
            logger.exception("scheduled job %s: firing %s crashed", job.id, firing.id)
            outcome = Outcome(
                status="failed", end_reason="error", error=f"{type(exc).__name__}: {exc}"
            )
        span.set_attribute("switchyard.schedule.outcome", outcome.status)
        if outcome.end_reason:
            span.set_attribute("switchyard.end_reason", outcome.end_reason)
    return outcome


async def _run_or_resume(compiled: Any, job: Job, firing: Firing, context: Any) -> Any:
    """Run the firing's message; or, when a runner that died had started the run, resume it.

    A taken-over firing (its scheduler or worker was killed) whose run left checkpoints goes on
    from the last one: the agents that finished are not called again, the message is not sent
    twice. The run is recognised by its correlation id in the session's latest checkpoint.
    """
    from switchyard.runtime.resume import aresume_thread
    from switchyard.runtime.run import arun, thread_id_for

    session = firing.session_id or job.session_for(firing.scheduled_at)
    thread = thread_id_for(job.user_id, session)
    if int(firing.detail.get("attempts", 1)) > 1:
        head = await compiled.aget_state({"configurable": {"thread_id": thread}})
        if (head.metadata or {}).get("correlation_id") == firing.correlation_id:
            return await aresume_thread(
                compiled,
                thread,
                user_id=job.user_id,
                context=context,
                correlation_id=firing.correlation_id,
            )
    return await arun(
        compiled,
        job.text_for(firing.scheduled_at),
        user_id=job.user_id,
        session_id=session,
        context=context,
        correlation_id=firing.correlation_id,
    )


async def _run(job: Job, firing: Firing, persistence: Persistence, limit: float | None) -> Any:
    """The firing's run, on the job's pattern and pinned model, its spend capped at `limit`."""
    from switchyard.runtime.registry import load_graph
    from switchyard.state.context import Context

    # Building a pattern may fit its classifier (a second): not on the event loop.
    graph = await asyncio.to_thread(load_graph, job.pattern)
    compiled = graph.builder.compile(
        checkpointer=persistence.checkpointer, store=persistence.store, name=graph.name
    )
    base = Context().run_budget or Budget()
    context = Context(
        model=job.model,
        deadline_s=job.deadline_s,
        run_budget=Budget(max_tokens=base.max_tokens, max_usd=limit),
    )
    with firing_of(job):
        return await _run_or_resume(compiled, job, firing, context)


def _outcome(result: Any) -> Outcome:
    """A firing's outcome from its run's `RunResult`."""
    status: FiringStatus
    if result.ok:
        status = "ok"
    elif result.end_reason == "escalated":
        status = "escalated"
    else:
        status = "failed"
    return Outcome(
        status=status,
        end_reason=result.end_reason,
        cost_usd=result.cost_usd,
        tokens=result.total_tokens,
        dead_letter_id=result.dead_letter_id,
        error=result.error,
        detail={"agent": result.agent_name} if result.agent_name else None,
    )


async def keep_lease(
    store: ScheduleStore,
    owner: str,
    firing_id: str,
    on_lost: Callable[[], None],
    *,
    every_s: float,
    beat: Callable[[], None] | None = None,
) -> None:
    """Renew `owner`'s lease on a firing every `every_s` seconds until cancelled.

    `beat` is called first each time (a Temporal Activity's heartbeat). Once the firing is no
    longer `owner`'s (its job was removed, or a runner took it over after a stall), `on_lost`
    is called and the keeping ends. A renewal that fails (the store is briefly down) is logged
    and tried again: the lease outlasts several renewals.
    """
    while True:
        if beat is not None:
            beat()
        try:
            ended = await asyncio.to_thread(store.renew, owner, [firing_id])
        except Exception:
            logger.warning("firing %s: could not renew its lease", firing_id, exc_info=True)
        else:
            if firing_id in ended:
                on_lost()
                return
        await asyncio.sleep(every_s)


def record(store: ScheduleStore, job: Job, firing: Firing, outcome: Outcome) -> Job | None:
    """Store `outcome`, log it, and log once more, as an error, if it paused the job.

    Returns:
        The job when this outcome paused it.
    """
    paused = store.finish(firing, outcome)
    cost = "unknown" if outcome.cost_usd is None else f"${outcome.cost_usd:.6f}"
    logger.info(
        "scheduled job %s: firing %s %s (%s, %s)",
        job.id,
        firing.id,
        outcome.status,
        outcome.end_reason or "-",
        cost,
        extra={"job_id": job.id, "correlation_id": firing.correlation_id},
    )
    if paused is not None:
        logger.error(
            "scheduled job %s paused: %s; fix it, then `switchyard schedule resume %s`",
            job.id,
            paused.paused_reason,
            job.id,
            extra={"job_id": job.id},
        )
    return paused


__all__ = [
    "check_may_schedule",
    "day_start",
    "fire",
    "firing_of",
    "keep_lease",
    "record",
    "spend_limit",
]
