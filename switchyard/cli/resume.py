"""`switchyard resume`: finish a run that stopped mid-flight, from its last checkpoint."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rich.console import Console

from switchyard.core.errors import GraphNotFoundError, InvalidInputError

if TYPE_CHECKING:
    from switchyard.state.context import Context

# The handlers import what they run on (LangGraph, LangChain, the PII detector) when they run:
# building the parser, for `switchyard --help` or `switchyard graphs`, must not load them.


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `switchyard resume` to the CLI."""
    cmd = subparsers.add_parser(
        "resume",
        help="finish a run that stopped mid-flight, from its last checkpoint",
        description="Continue a thread from its last checkpoint; finished steps are not re-run.",
    )
    cmd.add_argument("thread", nargs="?", default=None, help="thread id (or use --session)")
    cmd.add_argument("--user", default="local", help="user id owning the session")
    cmd.add_argument("--session", default=None, help="resume this session of --user")
    cmd.add_argument(
        "--model",
        default=None,
        help="'offline' or 'provider:model' (default: the model the run started with)",
    )
    cmd.add_argument(
        "--checkpointer",
        default=None,
        help="SQLite path, 'memory' or postgresql:// DSN (default: SWITCHYARD_CHECKPOINTER)",
    )
    cmd.add_argument("--json", action="store_true", help="print the RunResult as JSON")
    cmd.set_defaults(handler=_resume_command)


def _resume_command(args: argparse.Namespace, console: Console) -> int:
    from switchyard.core.redact import redact, redact_value
    from switchyard.runtime.registry import load_graph
    from switchyard.runtime.resume import check_access, resume_thread, thread_status
    from switchyard.runtime.run import thread_id_for
    from switchyard.storage.persistence import open_persistence, require_existing

    if (args.thread is None) == (args.session is None):
        raise InvalidInputError("give either a THREAD id or --session (with --user)")
    thread_id = args.thread or thread_id_for(args.user, args.session)
    require_existing(args.checkpointer)
    with open_persistence(args.checkpointer) as persistence:
        # The latest checkpoint's metadata names the owner and the pattern that ran the thread.
        probe = persistence.checkpointer.get_tuple({"configurable": {"thread_id": thread_id}})
        # Missing, ownerless and foreign threads get the same one line: nothing is revealed.
        check_access(probe, thread_id, args.user)
        metadata: dict[str, Any] = dict(probe.metadata) if probe is not None else {}
        pattern = metadata.get("pattern")
        if not isinstance(pattern, str):
            raise GraphNotFoundError(
                f"thread {thread_id!r} records no pattern (it was not started by switchyard "
                "run); resume it from Python with switchyard.resume_thread(graph, ...)"
            )
        registered = load_graph(pattern)
        graph = registered.builder.compile(
            checkpointer=persistence.checkpointer, store=persistence.store, name=registered.name
        )
        # The metadata names the pattern, not the graph: a graph of the user's own with the same
        # name writes state the registered one lacks, and is never resumed with the wrong graph.
        if probe is not None and set(probe.checkpoint["channel_versions"]) - set(graph.channels):
            raise GraphNotFoundError(
                f"thread {thread_id!r} was not written by the registered {pattern!r} graph; "
                "resume it from Python with switchyard.resume_thread(graph, ...) and the graph "
                "that started it"
            )
        status = thread_status(graph, thread_id)
        if not args.json:
            message = (
                f"resuming thread {thread_id} at step {status.step}: {', '.join(status.next)}"
                if status.next
                else f"thread {thread_id}: nothing to resume (its last run completed)"
            )
            console.print(message, markup=False, highlight=False)
            if not status.next:
                return 0
        result = resume_thread(
            graph, thread_id, user_id=args.user, context=_context(metadata, args.model)
        )
    # Like `switchyard run`: secrets and personal data are masked in all that is printed.
    if args.json:
        print(json.dumps(redact_value(result.model_dump(mode="json")), indent=2))
    elif result.ok:
        console.print(redact(result.output), markup=False, highlight=False)
    else:
        console.print(f"run ended: {result.end_reason}: {redact(result.error or '')}", markup=False)
    return 0 if result.ok else 1


def _context(metadata: dict[str, Any], model: str | None) -> Context | None:
    """The run's stored settings, with `--model` (when given) as the one override."""
    from switchyard.runtime.settings import restored_context, settings_in
    from switchyard.state.context import Context

    if model is None:
        return None  # resume_thread restores the run's own settings
    stored = restored_context(settings_in(metadata), None) or Context()
    return replace(stored, model=model)
