"""`switchyard run`: send one message through a pattern, or answer a run waiting for a person."""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from switchyard.cli.engine import add_engine_arguments, engine_of
from switchyard.core.defaults import DEADLINE_S, DEFAULT_TIMEOUT_S, MULTITASK_STRATEGIES
from switchyard.core.errors import InvalidInputError

if TYPE_CHECKING:
    from switchyard.runtime.run import RunResult

# The handlers import what they run on (LangGraph, LangChain, the PII detector) when they run:
# building the parser, for `switchyard --help` or `switchyard graphs`, must not load them.


def add_command(commands: Any) -> None:
    """Add the `run` subcommand to the CLI's subparsers."""
    run_cmd = commands.add_parser("run", help="send one message through a pattern")
    run_cmd.add_argument("pattern", help="pattern name (see `switchyard graphs`)")
    run_cmd.add_argument("text", nargs="?", default=None, help="the user's message")
    run_cmd.add_argument(
        "--resume",
        default=None,
        metavar="ANSWER",
        help="answer a run paused for a person (needs --session), instead of sending text",
    )
    run_cmd.add_argument("--user", default="local", help="user id owning the session")
    run_cmd.add_argument(
        "--session", default=None, help="continue this session (default: start a new one)"
    )
    run_cmd.add_argument(
        "--model", default=None, help="'offline' or 'provider:model' (default: SWITCHYARD_MODEL)"
    )
    run_cmd.add_argument(
        "--checkpointer",
        default=None,
        help="SQLite path, 'memory' or postgresql:// DSN (default: SWITCHYARD_CHECKPOINTER, "
        "else .switchyard/state.sqlite)",
    )
    run_cmd.add_argument(
        "--deadline",
        type=_seconds,
        default=DEADLINE_S,
        metavar="SECONDS",
        help="the run ends (end reason 'deadline') after this long, calls in flight included "
        "(default: %(default)s)",
    )
    run_cmd.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="longest one model or tool call may take, for every agent (default: each agent's "
        f"own timeout_s, {DEFAULT_TIMEOUT_S:g} unless it sets another)",
    )
    run_cmd.add_argument(
        "--multitask",
        choices=MULTITASK_STRATEGIES,
        default="enqueue",
        help="when the session is answering another message: wait for it (at most the "
        "deadline) or refuse this one (exit 2) (default: %(default)s)",
    )
    add_engine_arguments(run_cmd)
    run_cmd.add_argument("--json", action="store_true", help="print the RunResult as JSON")
    run_cmd.add_argument(
        "--trace",
        action="store_true",
        help="print OpenTelemetry spans to stderr (OTEL_* variables configure other exporters)",
    )
    run_cmd.add_argument(
        "--log-json", action="store_true", help="log to stderr as one JSON object per line"
    )
    run_cmd.add_argument(
        "--quiet", action="store_true", help="no live progress (steps and tokens) on stderr"
    )
    run_cmd.set_defaults(handler=_run)


def _print_result(result: RunResult, console: Console) -> None:
    from switchyard.cli.tables import usage_table
    from switchyard.core.pricing import format_cost
    from switchyard.core.redact import redact

    if result.ok:
        console.print(redact(result.output), markup=False, highlight=False)
    elif result.end_reason == "escalated":
        console.print(f"waiting for a person: {redact(json.dumps(result.interrupt))}", markup=False)
        console.print(
            f"answer with: switchyard run PATTERN --resume ANSWER --user {result.user_id} "
            f"--session {result.session_id}",
            markup=False,
            highlight=False,
        )
    else:
        console.print(f"run ended: {result.end_reason}: {redact(result.error or '')}", markup=False)
        if result.dead_letter_id:
            console.print(
                f"recorded as dead letter {result.dead_letter_id}: "
                f"switchyard dlq replay {result.dead_letter_id}",
                markup=False,
                highlight=False,
            )
    table = Table(title=None, show_edge=False)
    for column in ("agent", "confidence", "latency", "tokens in/out/total", "cost"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    confidence = "-" if result.confidence is None else f"{result.confidence:.2f}"
    table.add_row(
        result.agent_name or "-",
        confidence,
        f"{result.latency_ms:.1f} ms",
        f"{result.input_tokens}/{result.output_tokens}/{result.total_tokens}",
        format_cost(result.cost_usd, known=result.known_cost_usd),  # "unknown", never $0
    )
    console.print()
    console.print(table)
    if result.usage:
        console.print()
        console.print(usage_table(result.usage))
    if result.route_reason:
        console.print(f"route: {result.route_reason}", markup=False, highlight=False)
    console.print(
        f"session: {result.session_id} (continue with --user {result.user_id} "
        f"--session {result.session_id})",
        markup=False,
        highlight=False,
    )


def _seconds(text: str) -> float:
    """A positive number of seconds, for `--deadline` and `--timeout`."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _run(args: argparse.Namespace, console: Console) -> int:
    from switchyard.cli.progress import StreamProgress
    from switchyard.core.redact import redact_value
    from switchyard.observability.logs import configure_logging
    from switchyard.observability.telemetry import configure_tracing
    from switchyard.runtime.registry import load_graph
    from switchyard.runtime.run import check_text, resume, run
    from switchyard.state.context import Context
    from switchyard.storage.dlq import DeadLetterQueue
    from switchyard.storage.persistence import open_persistence

    progress = None if args.quiet else StreamProgress(Console(stderr=True))
    # Building the graph may fit its router's classifier (a second, once): the display says so.
    with progress if progress is not None else contextlib.nullcontext():
        graph = load_graph(args.pattern)
    context = Context(model=args.model, deadline_s=args.deadline, timeout_s=args.timeout)
    if (args.text is None) == (args.resume is None):
        raise InvalidInputError("give either a message or --resume ANSWER (with --session)")
    if args.resume is not None and args.session is None:
        raise InvalidInputError("--resume needs --session: the session whose run is paused")
    if args.session is not None and not args.session.strip():  # not a silent new session
        raise InvalidInputError("--session is empty: name a session, or leave it out for a new one")
    if not args.user.strip():
        raise InvalidInputError("--user is empty: name the user who owns the session")
    if args.text is not None:  # before any file is opened: bad input leaves no trace
        check_text(args.text, context.max_input_chars)
    engine = engine_of(args)
    DeadLetterQueue()  # an unusable SWITCHYARD_DLQ is a config error now, not after a failed run
    configure_logging(json_lines=args.log_json)
    configure_tracing(console=args.trace)
    with open_persistence(args.checkpointer) as persistence:
        # The store backs idempotent side effects (`switchyard.guardrails.idempotency.once`).
        compiled = graph.builder.compile(
            checkpointer=persistence.checkpointer, store=persistence.store, name=graph.name
        )
        if args.resume is not None:
            result = resume(
                compiled,
                args.resume,
                user_id=args.user,
                session_id=args.session,
                context=context,
                progress=progress,
                multitask_strategy=args.multitask,
                engine=engine,
            )
        else:
            result = run(
                compiled,
                args.text,
                user_id=args.user,
                session_id=args.session,
                context=context,
                progress=progress,
                multitask_strategy=args.multitask,
                engine=engine,
            )
    if args.json:
        print(json.dumps(redact_value(result.model_dump(mode="json")), indent=2))
    else:
        _print_result(result, console)
    return 0 if result.ok else 1
