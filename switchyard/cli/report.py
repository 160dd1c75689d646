"""`switchyard report`: per-agent usage, timing and failures of a stored session (text, HTML, JSON).

A cost some model call's unknown price makes unknown is "unknown" in the tables and `null` in the
JSON, never $0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from switchyard.cli.tables import usage_table

if TYPE_CHECKING:
    from switchyard.observability.report import SessionReport

# The handlers import what they run on (LangGraph, LangChain, the PII detector) when they run:
# building the parser, for `switchyard --help` or `switchyard graphs`, must not load them.


def print_session(report: SessionReport, console: Console) -> None:
    """Print a stored session: the per-agent table, then one line per run (and its failure)."""
    from switchyard.core.pricing import format_cost
    from switchyard.core.redact import redact

    console.print(
        f"session {report.session_id or '-'} of {report.user_id or '-'} "
        f"({report.pattern or 'unknown pattern'}, thread {report.thread_id})",
        markup=False,
        highlight=False,
    )
    console.print(usage_table(report.usage))
    runs = Table(show_edge=False, title=None)
    for column in (
        "run",
        "started",
        "duration",
        "end reason",
        "nodes",
        "tokens",
        "cost",
        "message",
    ):
        runs.add_column(
            column, justify="right" if column in ("duration", "tokens", "cost") else "left"
        )
    for index, run in enumerate(report.runs):
        cost = run.cost
        runs.add_row(
            str(index + 1),
            run.started.strftime("%Y-%m-%d %H:%M:%S"),
            f"{run.duration_ms:.1f} ms",
            run.end_reason,
            redact(" > ".join(t.label + ("!" if t.error else "") for t in run.tasks)),
            str(sum(e["total_tokens"] for e in run.usage.values())),
            format_cost(cost.cost_usd, known=cost.known_cost_usd),
            redact(run.input[:40]),
        )
    console.print()
    console.print(runs)
    for index, run in enumerate(report.runs):
        if run.error:
            console.print(
                f"run {index + 1} failed at {run.failed_node}: {redact(run.error)}",
                markup=False,
                highlight=False,
            )


def add_command(commands: Any) -> None:
    """Add the `report` subcommand to the CLI's subparsers."""
    report = commands.add_parser(
        "report", help="per-agent usage, timing and failures of a stored session"
    )
    report.add_argument("thread", help="the session's thread id, or its session id (with --user)")
    report.add_argument(
        "--user",
        default=None,
        help="act as this user: only their sessions are reported, and a SESSION id is theirs "
        "(default: any session, as the operator; a SESSION id is then local's)",
    )
    report.add_argument(
        "--checkpointer",
        default=None,
        help="where sessions are stored (default: as for `run`)",
    )
    report.add_argument(
        "--html", default=None, metavar="FILE", help="also write a self-contained HTML report"
    )
    report.add_argument(
        "--json", action="store_true", help="print the report as JSON instead of tables"
    )
    # A report runs no model and takes no session lock: no settings check (see `main`).
    report.set_defaults(handler=_handle, needs_settings=False)


def _find(saver: Any, reference: str, user_id: str | None) -> tuple[str, Any]:
    """The thread `reference` names (a thread id, else a session of the user) and its head.

    Given a user, only their threads count; anything else gets the same one line.
    """
    from switchyard.observability.report import ReportAccessError, SessionNotFoundError, not_yours
    from switchyard.runtime.run import thread_id_for

    for thread_id in (reference, thread_id_for(user_id or "local", reference)):
        found = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
        owner = (found.metadata or {}).get("user_id") if found is not None else None
        if found is not None and (user_id is None or owner == user_id):
            return thread_id, found
    if user_id is not None:
        raise ReportAccessError(not_yours(reference, user_id))
    raise SessionNotFoundError(
        f"no stored session {reference!r}: not a thread id, nor a session of user 'local'; pass "
        "the thread id, or the session id with the right --user and --checkpointer"
    )


def _handle(args: argparse.Namespace, console: Console) -> int:
    from switchyard.observability.report import (
        ReportError,
        SessionNotFoundError,
        render_html,
        report_json,
        session_report,
    )
    from switchyard.runtime.registry import load_graph
    from switchyard.storage.persistence import open_checkpointer

    with open_checkpointer(args.checkpointer) as saver:
        thread_id, found = _find(saver, args.thread, args.user)
        pattern = (found.metadata or {}).get("pattern")
        if not isinstance(pattern, str):
            raise SessionNotFoundError(
                f"session {args.thread!r} does not say which pattern wrote it; it was not stored "
                "by `switchyard run`"
            )
        graph = load_graph(pattern).builder.compile(checkpointer=saver, name=pattern)
        report = session_report(graph, thread_id, user_id=args.user)
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print_session(report, console)
    if args.html:
        path = Path(args.html)
        try:
            path.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            raise ReportError(
                f"cannot write the HTML report to {str(path)!r}: {exc.strerror or exc}; "
                "choose a writable path"
            ) from None
        # With --json, standard output holds the JSON alone.
        note = Console(stderr=True) if args.json else console
        note.print(f"wrote {path}", markup=False, highlight=False)
    return 0
