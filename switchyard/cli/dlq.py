"""`switchyard dlq list | show ID | replay ID`: the dead-letter queue from the command line.

`--user` acts as that user: `list` shows only their records, and `show` / `replay` refuse another
user's record in the same words as an unknown id. Without it the commands act as the queue's
operator, on every user's records. `replay` rebuilds exactly the graph the run failed in (from the
import path the record keeps) with the run's own settings, unless `--model` overrides the model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from switchyard.core.defaults import DLQ_MAX_LIMIT as MAX_LIMIT
from switchyard.core.errors import GraphNotFoundError, InvalidInputError

if TYPE_CHECKING:
    from switchyard.storage.dlq import DeadLetter, DeadLetterQueue

# The handlers import what they run on (pydantic, LangGraph, the PII detector) when they run:
# building the parser, for `switchyard --help` or `switchyard graphs`, must not load them.

DEFAULT_LIMIT = 50


def add_command(commands: Any) -> None:
    """Add the `dlq` subcommand to the CLI's subparsers."""
    dlq = commands.add_parser("dlq", help="list, inspect and replay failed runs")
    dlq.add_argument("--dlq", default=None, help="queue location (default: SWITCHYARD_DLQ)")
    actions = dlq.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="failed runs, newest first")
    # Only `replay` runs a model and takes a session lock: the others skip the settings check.
    listing.set_defaults(needs_settings=False)
    listing.add_argument("--status", choices=("open", "replayed"), default=None)
    listing.add_argument(
        "--limit",
        default=str(DEFAULT_LIMIT),
        metavar="N",
        help=f"most records shown, 1 to {MAX_LIMIT:,} (default: {DEFAULT_LIMIT})",
    )
    show = actions.add_parser("show", help="one failed run, in full (JSON)")
    show.set_defaults(needs_settings=False)
    show.add_argument("id")
    again = actions.add_parser("replay", help="resume a failed run from its last good checkpoint")
    again.add_argument("id")
    again.add_argument(
        "--checkpointer", default=None, help="where the sessions are (default as for `run`)"
    )
    again.add_argument(
        "--model",
        default=None,
        help="'offline' or 'provider:model' (default: the model the run failed with)",
    )
    for action in (listing, show, again):
        action.add_argument(
            "--user",
            default=None,
            help="act as this user: only their records (default: every user's, as the operator)",
        )
    dlq.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, console: Console) -> int:
    from switchyard.storage.dlq import DeadLetterQueue

    limit = _limit(args.limit) if args.dlq_action == "list" else DEFAULT_LIMIT
    queue = DeadLetterQueue(args.dlq)
    if args.dlq_action == "list":
        console.print(_table(queue.list(status=args.status, limit=limit, user_id=args.user)))
        return 0
    letter = queue.get(args.id, user_id=args.user)
    if args.dlq_action == "show":
        print(json.dumps(letter.model_dump(mode="json"), indent=2))
        return 0
    return _replay(letter, queue, args, console)


def _limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(
            f"--limit must be a whole number from 1 to {MAX_LIMIT:,}, got {text!r}"
        )
    return limit


def _table(letters: list[DeadLetter]) -> Table:
    table = Table(show_edge=False)
    for column in ("id", "when", "pattern", "end reason", "status", "input", "error"):
        table.add_column(column, no_wrap=column in ("id", "when"))
    for letter in letters:
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
    return table


def _replay(
    letter: DeadLetter, queue: DeadLetterQueue, args: argparse.Namespace, console: Console
) -> int:
    from switchyard.core.redact import redact
    from switchyard.runtime.registry import load_target
    from switchyard.runtime.run import replay
    from switchyard.runtime.settings import restored_context
    from switchyard.state.context import Context
    from switchyard.storage.persistence import open_persistence

    if letter.graph is None:
        raise GraphNotFoundError(
            f"dead letter {letter.id} does not record how to rebuild its graph "
            f"({letter.pattern!r} was not loaded by name or import path); replay it from Python: "
            "switchyard.replay(graph, DeadLetterQueue().get(id))"
        )
    loaded = load_target(letter.graph)
    context = None
    if args.model is not None:
        stored = restored_context(letter.settings, None) or Context()
        context = replace(stored, model=args.model)
    with open_persistence(args.checkpointer) as persistence:
        compiled = loaded.builder.compile(
            checkpointer=persistence.checkpointer, store=persistence.store, name=loaded.name
        )
        result = replay(compiled, letter, context=context, dlq=queue, user_id=args.user)
    error = redact(result.error or "")  # masked like all `switchyard run` prints
    status = "completed" if result.ok else f"failed again ({result.end_reason}: {error})"
    console.print(f"replay of {letter.id}: {status}", markup=False, highlight=False)
    if result.ok:
        console.print(redact(result.output), markup=False, highlight=False)
    return 0 if result.ok else 1
