"""`switchyard dlq list | show ID | replay ID`: the dead-letter queue from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from switchyard.runtime.registry import load_graph
from switchyard.runtime.run import replay
from switchyard.storage.dlq import DeadLetterQueue
from switchyard.storage.persistence import open_persistence


def add_command(commands: Any) -> None:
    """Add the `dlq` subcommand to the CLI's subparsers."""
    dlq = commands.add_parser("dlq", help="list, inspect and replay failed runs")
    dlq.add_argument("--dlq", default=None, help="queue location (default: SWITCHYARD_DLQ)")
    actions = dlq.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="failed runs, newest first")
    listing.add_argument("--status", choices=("open", "replayed"), default=None)
    listing.add_argument("--limit", type=int, default=50)
    show = actions.add_parser("show", help="one failed run, in full (JSON)")
    show.add_argument("id")
    again = actions.add_parser("replay", help="resume a failed run from its last good checkpoint")
    again.add_argument("id")
    again.add_argument(
        "--checkpointer", default=None, help="where the sessions are (default as for `run`)"
    )
    dlq.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, console: Console) -> int:
    queue = DeadLetterQueue(args.dlq)
    if args.dlq_action == "list":
        table = Table(show_edge=False)
        for column in ("id", "when", "pattern", "end reason", "status", "input", "error"):
            table.add_column(column, no_wrap=column in ("id", "when"))
        for letter in queue.list(status=args.status, limit=args.limit):
            when = dt.datetime.fromtimestamp(letter.created_at).strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(
                letter.id,
                when,
                letter.pattern,
                letter.end_reason,
                letter.status,
                letter.input[:40],
                (letter.error or "")[:60],
            )
        console.print(table)
        return 0
    letter = queue.get(args.id)
    if args.dlq_action == "show":
        print(json.dumps(letter.model_dump(mode="json"), indent=2))
        return 0
    graph = load_graph(letter.pattern)
    with open_persistence(args.checkpointer) as persistence:
        compiled = graph.builder.compile(
            checkpointer=persistence.checkpointer, store=persistence.store, name=graph.name
        )
        result = replay(compiled, letter, dlq=queue)
    status = "completed" if result.ok else f"failed again ({result.end_reason}: {result.error})"
    console.print(f"replay of {letter.id}: {status}", markup=False, highlight=False)
    if result.ok:
        console.print(result.output, markup=False, highlight=False)
    return 0 if result.ok else 1
