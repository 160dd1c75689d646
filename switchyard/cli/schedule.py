"""`switchyard schedule add | list | show | pause | resume | remove | run-now`; `scheduler`.

Jobs live in the schedules store (`--store`, else `SWITCHYARD_SCHEDULES`, else a PostgreSQL
`SWITCHYARD_CHECKPOINTER`, else `.switchyard/schedules.sqlite`). `schedule add --engine temporal`
makes the job a Temporal Schedule; the other actions follow the job wherever it lives.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from switchyard.cli.engine import add_engine_arguments, engine_of
from switchyard.core.defaults import CATCHUP_S, DEADLINE_S, MAX_FAILURES, OVERLAP_POLICIES

if TYPE_CHECKING:
    from switchyard.storage.schedules import Firing, Job, ScheduleStore

STORE_HELP = (
    "where jobs live: SQLite path or postgresql:// DSN (default: SWITCHYARD_SCHEDULES, else a "
    "PostgreSQL SWITCHYARD_CHECKPOINTER, else .switchyard/schedules.sqlite)"
)


def add_command(commands: Any) -> None:
    """Add the `schedule` and `scheduler` subcommands to the CLI's subparsers."""
    sched = commands.add_parser("schedule", help="run patterns on a cron schedule")
    sched.add_argument("--store", default=None, help=STORE_HELP)
    actions = sched.add_subparsers(dest="schedule_action", required=True, metavar="ACTION")
    _add_add(actions)
    listing = actions.add_parser("list", help="every job, with its next firing")
    listing.add_argument("--user", default=None, help="only this user's jobs")
    listing.add_argument("--json", action="store_true", help="print the jobs as JSON")
    listing.set_defaults(handler=_list, needs_settings=False)
    show = actions.add_parser("show", help="one job and its recent firings, with outcome and cost")
    show.add_argument("job")
    show.add_argument("--limit", type=_count, default=20, metavar="N", help="firings shown")
    show.add_argument("--json", action="store_true", help="print the job and firings as JSON")
    show.set_defaults(handler=_show, needs_settings=False)
    for name, text, handler in (
        ("pause", "stop firing a job until it is resumed", _pause),
        ("resume", "fire a paused job again, from now on", _resume),
        ("remove", "delete a job and its firings' records", _remove),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("job")
        if name == "pause":
            action.add_argument("--reason", default="paused by a person")
        action.set_defaults(handler=handler, needs_settings=False)
    now = actions.add_parser("run-now", help="fire a job once now, in this process")
    now.add_argument("job")
    now.add_argument("--checkpointer", default=None, help="where sessions live (as for `run`)")
    now.set_defaults(handler=_run_now)

    runner = commands.add_parser("scheduler", help="fire due scheduled jobs until stopped")
    runner.add_argument("--store", default=None, help=STORE_HELP)
    runner.add_argument("--checkpointer", default=None, help="where sessions live (as for `run`)")
    runner.add_argument(
        "--poll", type=_positive, default=0.5, metavar="SECONDS", help="seconds between claims"
    )
    runner.add_argument(
        "--lease",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="a killed scheduler's firing is recorded lost this long after its last renewal "
        "(default: %(default)s)",
    )
    runner.add_argument(
        "--max-running", type=_count, default=8, metavar="N", help="most firings at once here"
    )
    runner.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    runner.add_argument("--trace", action="store_true", help="print OpenTelemetry spans")
    runner.set_defaults(handler=_scheduler)


def _add_add(actions: Any) -> None:
    add = actions.add_parser("add", help="schedule a pattern to run a message")
    add.add_argument("pattern", help="pattern name (see `switchyard graphs`) or module:attribute")
    add.add_argument("message", help="what each firing sends; {scheduled_at} becomes its time")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", default=None, help='cron expression, e.g. "0 9 * * 1-5"')
    when.add_argument(
        "--every",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="or a fixed interval, in whole seconds",
    )
    add.add_argument("--tz", default="UTC", help="IANA time zone of --cron (default: UTC)")
    add.add_argument("--user", default="local", help="user owning the firings' sessions")
    session = add.add_mutually_exclusive_group()
    session.add_argument("--session", default=None, help="run every firing in this session")
    session.add_argument(
        "--fresh-session", action="store_true", help="a new session per firing (the default)"
    )
    add.add_argument("--model", default=None, help="pinned model (default: SWITCHYARD_MODEL now)")
    add.add_argument("--budget-usd", type=_positive, default=None, help="most $ per firing")
    add.add_argument("--daily-budget-usd", type=_positive, default=None, help="most $ per day")
    add.add_argument(
        "--overlap",
        choices=OVERLAP_POLICIES,
        default="skip",
        help="a firing due while the last runs: skip it, queue it, or cancel the last "
        "(default: %(default)s)",
    )
    add.add_argument(
        "--catchup",
        type=_seconds,
        default=CATCHUP_S,
        metavar="SECONDS",
        help="after downtime, times missed by at most this long still fire (default: %(default)s)",
    )
    add.add_argument(
        "--jitter", type=_seconds, default=0.0, metavar="SECONDS", help="spread firings by up to"
    )
    add.add_argument(
        "--max-failures",
        type=_count,
        default=MAX_FAILURES,
        metavar="N",
        help="pause after N failed firings in a row (default: %(default)s)",
    )
    add.add_argument(
        "--allow-scheduling", action="store_true", help="let the job's runs create schedules"
    )
    add.add_argument(
        "--deadline",
        type=_positive,
        default=DEADLINE_S,
        metavar="SECONDS",
        help="seconds one firing may take (default: %(default)s)",
    )
    add.add_argument("--json", action="store_true", help="print the job as JSON")
    add_engine_arguments(add)
    add.set_defaults(handler=_add)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _store(args: argparse.Namespace) -> ScheduleStore:
    from switchyard.storage.schedules import ScheduleStore

    return ScheduleStore(args.store)


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    try:
        return dt.datetime.fromtimestamp(value, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):  # out of the calendar's range: show the number
        return f"{value:g} (Unix time)"


def _add(args: argparse.Namespace, console: Console) -> int:
    from switchyard.runtime.scheduler import schedule

    job = schedule(
        args.pattern,
        args.message,
        cron=args.cron,
        every_s=args.every,
        tz=args.tz,
        user_id=args.user,
        session_id=args.session,
        model=args.model,
        budget_usd=args.budget_usd,
        daily_budget_usd=args.daily_budget_usd,
        overlap=args.overlap,
        catchup_s=args.catchup,
        jitter_s=args.jitter,
        max_failures=args.max_failures,
        allow_scheduling=args.allow_scheduling,
        deadline_s=args.deadline,
        engine=engine_of(args),
        store=_store(args),
    )
    if args.json:
        print(json.dumps(job.model_dump(mode="json"), indent=2))
        return 0
    console.print(
        f"scheduled job {job.id}: {job.pattern} {job.timing.describe()}, model {job.model}, "
        f"next at {_when(job.next_due_at)}"
        + (" (a Temporal Schedule)" if job.engine == "temporal" else ""),
        markup=False,
        highlight=False,
    )
    return 0


def _list(args: argparse.Namespace, console: Console) -> int:
    store = _store(args)
    jobs = store.jobs(user_id=args.user)
    if args.json:
        print(json.dumps([job.model_dump(mode="json") for job in jobs], indent=2))
        return 0
    if not jobs:
        console.print("no scheduled jobs: `switchyard schedule add` makes one")
        return 0
    table = Table(show_edge=False)
    for column in ("id", "pattern", "when", "status", "next", "last firing", "model", "engine"):
        table.add_column(column, no_wrap=column in ("id", "status"))  # ids are what users copy
    for job in jobs:
        next_at = _next_at(job)
        latest = store.firings(job.id, limit=1)
        last = f"{latest[0].status} {_when(latest[0].scheduled_at)}" if latest else "-"
        table.add_row(
            job.id,
            job.pattern,
            job.timing.describe(),
            job.status,
            _when(next_at) if job.status == "active" else "-",
            last,
            job.model,
            job.engine,
        )
    console.print(table)
    return 0


def _next_at(job: Job) -> float | None:
    """The job's next firing: the store's, or for a Temporal job Temporal's (None: unknown)."""
    if job.engine != "temporal":
        return job.next_due_at
    temporal = _temporal_state(job)
    return None if temporal is None else temporal.next_at


def _temporal_state(job: Job) -> Any:
    """Temporal's view of a Temporal job's Schedule; None when Temporal cannot be asked."""
    from switchyard.core.errors import ConfigError
    from switchyard.runtime.scheduler import engine_of_job

    engine = engine_of_job(job)
    if engine is None:
        return None
    try:
        from switchyard.runtime.temporal.schedules import describe_schedule

        return describe_schedule(job, engine)
    except (ConfigError, ImportError):  # the list still shows what the store knows
        return None


def _show(args: argparse.Namespace, console: Console) -> int:
    store = _store(args)
    job = store.get(args.job)
    firings = store.firings(job.id, limit=args.limit)
    temporal = _temporal_state(job)
    if args.json:
        shown: dict[str, Any] = {
            "job": job.model_dump(mode="json"),
            "firings": [firing.model_dump(mode="json") for firing in firings],
        }
        if temporal is not None:
            shown["temporal"] = dataclasses.asdict(temporal)
        print(json.dumps(shown, indent=2))
        return 0
    _print_job(job, console, temporal)
    console.print()
    console.print(_firings_table(firings))
    return 0


def _print_job(job: Job, console: Console, temporal: Any) -> None:
    next_at = job.next_due_at if job.engine != "temporal" else getattr(temporal, "next_at", None)
    lines = [
        f"job {job.id}: {job.pattern} <- {job.message!r}",
        f"when: {job.timing.describe()}; next {_when(next_at)}",
        f"status: {job.status}" + (f" ({job.paused_reason})" if job.paused_reason else ""),
        f"user {job.user_id}, session {job.session_id or 'fresh per firing'}, model {job.model}",
        f"overlap {job.overlap}, catch-up {job.catchup_s:g} s, jitter {job.jitter_s:g} s, "
        f"pause after {job.max_failures} failures (now {job.failures})",
        "budget: "
        + ", ".join(
            [
                f"${job.budget_usd:g} per firing" if job.budget_usd else "no $ limit per firing",
                f"${job.daily_budget_usd:g} per day" if job.daily_budget_usd else "none per day",
            ]
        ),
        f"engine: {job.engine}" + (f" ({job.temporal_address})" if job.temporal_address else ""),
    ]
    if temporal is not None:
        lines.append(
            f"Temporal Schedule: {'paused' if temporal.paused else 'active'}, "
            f"{temporal.fired} fired, {temporal.skipped_overlap} skipped for overlap, "
            f"{temporal.missed_catchup} missed the catch-up window"
        )
    elif job.engine == "temporal":
        lines.append("Temporal Schedule: Temporal does not answer")
    for line in lines:
        console.print(line, markup=False, highlight=False)


def _firings_table(firings: list[Firing]) -> Table:
    table = Table(title="recent firings", show_edge=False)
    for column in ("scheduled", "status", "end reason", "cost", "tokens", "session", "dead letter"):
        table.add_column(column, no_wrap=column in ("status", "dead letter"))
    for firing in firings:
        cost = "unknown" if firing.cost_usd is None else f"${firing.cost_usd:.6f}"
        table.add_row(
            _when(firing.scheduled_at),
            firing.status,
            firing.end_reason or "-",
            cost,
            str(firing.tokens),
            firing.session_id or "-",
            firing.dead_letter_id or "-",
        )
    return table


def _pause(args: argparse.Namespace, console: Console) -> int:
    from switchyard.runtime.scheduler import pause_job

    job = pause_job(args.job, reason=args.reason, store=_store(args))
    console.print(f"paused job {job.id}", markup=False, highlight=False)
    return 0


def _resume(args: argparse.Namespace, console: Console) -> int:
    from switchyard.runtime.scheduler import resume_job

    job = resume_job(args.job, store=_store(args))
    console.print(
        f"resumed job {job.id}: next at {_when(job.next_due_at)}", markup=False, highlight=False
    )
    return 0


def _remove(args: argparse.Namespace, console: Console) -> int:
    from switchyard.runtime.scheduler import remove_job

    remove_job(args.job, store=_store(args))
    console.print(f"removed job {args.job}", markup=False, highlight=False)
    return 0


def _run_now(args: argparse.Namespace, console: Console) -> int:
    from switchyard.runtime.scheduler import run_job_now

    firing = run_job_now(args.job, store=_store(args), checkpointer=args.checkpointer)
    console.print(_firings_table([firing]))
    return 0 if firing.status == "ok" else 1


def _scheduler(args: argparse.Namespace, console: Console) -> int:
    from switchyard.observability.logs import configure_logging
    from switchyard.observability.telemetry import configure_tracing
    from switchyard.runtime.scheduler import Scheduler
    from switchyard.storage.schedules import ScheduleStore

    configure_logging(json_lines=args.log_json)
    # Each firing's outcome is worth a line; the runs' own records stay at the CLI's threshold.
    logging.getLogger("switchyard.schedule").setLevel(logging.INFO)
    configure_tracing(console=args.trace)
    scheduler = Scheduler(
        ScheduleStore(args.store, lease_s=args.lease),
        checkpointer=args.checkpointer,
        poll_s=args.poll,
        max_running=args.max_running,
    )
    asyncio.run(_serve(scheduler))  # its first log line says where it is ready
    return 0


async def _serve(scheduler: Any) -> None:
    import contextlib
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    await scheduler.run(stop)
