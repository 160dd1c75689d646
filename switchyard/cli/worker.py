"""`switchyard worker`: run Switchyard's turns and agents for a Temporal task queue."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from rich.console import Console

from switchyard.cli.engine import add_engine_arguments, engine_of


def add_command(commands: Any) -> None:
    """Add the `worker` subcommand to the CLI's subparsers."""
    cmd = commands.add_parser(
        "worker",
        help="run turns and agents for a Temporal task queue (the temporal extra)",
        description="Poll a Temporal task queue and run what `switchyard run --engine temporal` "
        "submits: each turn's Workflow and its agents' Activities. Start as many as you like, "
        "on any machines; a worker that dies loses nothing. Stops on SIGINT or SIGTERM.",
    )
    add_engine_arguments(cmd, default="temporal")
    cmd.add_argument(
        "--graph",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="also serve this compiled graph, under its name (repeatable); the seven patterns "
        "are always served",
    )
    cmd.add_argument(
        "--store",
        default=None,
        metavar="SETTING",
        help="where agents' side effects are recorded once (`once()`) and scheduled firings keep "
        "their sessions: as --checkpointer of `run` (default: SWITCHYARD_CHECKPOINTER); use the "
        "PostgreSQL DSN every worker shares",
    )
    cmd.add_argument(
        "--schedules",
        default=None,
        metavar="TARGET",
        help="the store of the scheduled jobs this worker fires (`schedule add --engine "
        "temporal`): a SQLite path or PostgreSQL DSN (default: SWITCHYARD_SCHEDULES, else a "
        "PostgreSQL SWITCHYARD_CHECKPOINTER, else .switchyard/schedules.sqlite)",
    )
    cmd.add_argument(
        "--max-concurrent-activities",
        type=int,
        default=None,
        metavar="N",
        help="agent nodes this worker runs at once (default: Temporal's, 100)",
    )
    cmd.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace, console: Console) -> int:
    from switchyard.core.errors import ConfigError
    from switchyard.observability.logs import configure_logging
    from switchyard.observability.telemetry import configure_tracing

    engine = engine_of(args)
    if engine is None:  # argparse allows only "temporal" here
        raise ConfigError("switchyard worker needs --engine temporal")
    try:
        from switchyard.runtime.temporal.worker import serve
    except ImportError as exc:
        raise ConfigError(
            f"the Temporal engine needs the temporal extra ({exc.name} is missing): "
            "pip install 'switchyard-agents[temporal]'"
        ) from None
    configure_logging()
    configure_tracing()  # the OTEL_* variables, as for `switchyard run`

    def ready(graphs: list[str]) -> None:
        console.print(
            f"worker ready: {engine.address}, task queue {engine.task_queue!r}, graphs "
            f"{', '.join(graphs)}; Ctrl-C stops it",
            highlight=False,
        )

    asyncio.run(
        serve(
            engine,
            graphs=args.graph,
            store=args.store,
            schedules=args.schedules,
            max_concurrent_activities=args.max_concurrent_activities,
            on_ready=ready,
        )
    )
    return 0
