"""`switchyard prune`: delete old checkpoints by policy (the latest of each thread always stays)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

# The handlers import what they run on (LangGraph's checkpointers) when they run:
# building the parser, for `switchyard --help` or `switchyard graphs`, must not load them.


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `switchyard prune` to the CLI."""
    cmd = subparsers.add_parser(
        "prune",
        help="delete old checkpoints by policy (the latest of each thread always stays)",
        description="Delete checkpoints outside the newest N per thread and/or older than a "
        "duration; with both, a checkpoint goes only when both allow it.",
    )
    cmd.add_argument(
        "--keep-latest", type=int, metavar="N", help="keep the N newest checkpoints of each thread"
    )
    cmd.add_argument(
        "--older-than",
        metavar="DURATION",
        help="delete checkpoints older than this (e.g. 30d, 12h, 1d12h)",
    )
    cmd.add_argument(
        "--thread",
        action="append",
        metavar="THREAD",
        help="only this thread (repeat for more; default: every thread)",
    )
    cmd.add_argument(
        "--user",
        default=None,
        help="act as this user: prune only their threads; every --thread must be theirs "
        "(default: every user's threads, as the operator)",
    )
    cmd.add_argument(
        "--checkpointer",
        default=None,
        help="SQLite path or postgresql:// DSN (default: SWITCHYARD_CHECKPOINTER)",
    )
    cmd.add_argument("--dry-run", action="store_true", help="report, then roll back")
    cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    # Pruning runs no model and takes no session lock: no settings check (see `main`).
    cmd.set_defaults(handler=_prune_command, needs_settings=False)


def _prune_command(args: argparse.Namespace, console: Console) -> int:
    from switchyard.storage.persistence import open_persistence, require_existing
    from switchyard.storage.retention import (
        RetentionError,
        RetentionPolicy,
        parse_duration,
        prune,
        saver_kind,
    )

    if args.keep_latest is None and args.older_than is None:
        raise RetentionError("give --keep-latest N, --older-than DURATION or both")
    policy = RetentionPolicy(
        keep_latest=args.keep_latest,
        older_than=parse_duration(args.older_than) if args.older_than is not None else None,
    )
    require_existing(args.checkpointer)
    with open_persistence(args.checkpointer) as persistence:
        saver_kind(persistence.checkpointer)
        report = prune(
            persistence.checkpointer,
            policy,
            thread_ids=args.thread,
            store=persistence.store,
            dry_run=args.dry_run,
            user_id=args.user,
        )
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    table = Table(show_edge=False, title="dry run: nothing was deleted" if args.dry_run else None)
    columns = ("threads", "pruned", "checkpoints deleted", "kept", "writes", "blobs", "effects")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(
        str(report.threads),
        str(report.threads_pruned),
        str(report.checkpoints_deleted),
        str(report.checkpoints_kept),
        str(report.writes_deleted),
        str(report.blobs_deleted),
        str(report.effects_deleted),
    )
    console.print(table)
    for thread_id, reason in report.skipped.items():
        console.print(f"skipped {thread_id}: {reason}", markup=False, highlight=False)
    return 0
