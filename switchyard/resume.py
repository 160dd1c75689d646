"""Crash-safe resume: finish a run that stopped between steps, without redoing finished steps.

A run killed mid-flight (the process exited, the machine rebooted) leaves its thread at the last
checkpoint it saved, with the steps still to run in `next`. `resume_thread(graph, thread_id)`
continues from there: LangGraph re-executes only the steps that had not finished (a step whose
writes were saved is not run again), and nodes that make side effects skip the ones they already
made with `switchyard.idempotency.once`. (A run paused for a person's answer is continued with
`switchyard.run.resume` / `switchyard run --resume ANSWER` instead.) From the shell:

```bash
switchyard resume 7d0c...            # the thread id printed by `switchyard run --json`
switchyard resume --user ada --session s1
```
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot
from rich.console import Console

from state.context import Context
from switchyard.errors import (
    GraphNotFoundError,
    InvalidInputError,
    SessionAccessError,
    SwitchyardError,
)
from switchyard.models import default_model, load_chat_model
from switchyard.run import (
    DEFAULT_DLQ,
    DLQArg,
    RunResult,
    _aexecute,
    _check_owner,
    _execute,
    _Prepared,
    _result,
    _usage_of,
    run_config,
    thread_id_for,
)


class ThreadNotFoundError(SwitchyardError, LookupError):
    """No checkpoint exists for the thread a caller asked for."""


class ThreadInterruptedError(SwitchyardError, RuntimeError):
    """The thread waits for human input (an `interrupt()`), which a plain resume cannot supply."""


@dataclass(frozen=True)
class ThreadStatus:
    """Where a thread stands.

    Attributes:
        thread_id: The thread.
        user_id: Its owner, as recorded by `run` (None for threads started elsewhere).
        session_id: Its session, as recorded by `run`.
        pattern: The pattern that ran it, as recorded by `run`.
        step: The step number of the latest checkpoint.
        next: Tasks of the latest checkpoint not yet folded into a newer one: nodes still to
            run, or that finished but whose step was not closed by a checkpoint; empty when the
            last run completed.
        waiting_for_input: Whether the run stopped at an `interrupt()`.
    """

    thread_id: str
    user_id: str | None
    session_id: str | None
    pattern: str | None
    step: int | None
    next: tuple[str, ...]
    waiting_for_input: bool

    @property
    def resumable(self) -> bool:
        """Whether `resume` has work to do."""
        return bool(self.next) and not self.waiting_for_input


_NO_CHECKPOINTER = (
    "resuming needs the graph's checkpointer: compile it with checkpointer=... "
    "(switchyard.persistence.open_checkpointer)"
)


def _not_found(thread_id: str) -> str:
    return (
        f"no thread {thread_id!r} in this checkpointer; check the id (switchyard run --json "
        "prints it) and that SWITCHYARD_CHECKPOINTER points at the same database"
    )


def _latest(graph: Pregel[Any, Any, Any, Any], thread_id: str) -> StateSnapshot:
    if graph.checkpointer is None:
        raise ValueError(_NO_CHECKPOINTER)
    if not isinstance(thread_id, str) or not thread_id.strip():
        raise ThreadNotFoundError(f"thread id must be a non-empty string, got {thread_id!r}")
    snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
    if snapshot.created_at is None:
        raise ThreadNotFoundError(_not_found(thread_id))
    return snapshot


def _pending(snapshot: StateSnapshot) -> tuple[str, ...]:
    # `StateSnapshot.next` leaves out tasks whose writes were saved; a step can finish all its
    # tasks and die before its checkpoint, and still has work: applying them and going on.
    return tuple(task.name for task in snapshot.tasks)


def thread_status(graph: Pregel[Any, Any, Any, Any], thread_id: str) -> ThreadStatus:
    """Read where a thread stands, without running anything.

    Raises:
        ThreadNotFoundError: The thread has no checkpoint.
        ValueError: The graph has no checkpointer.
    """
    snapshot = _latest(graph, thread_id)
    metadata: dict[str, Any] = dict(snapshot.metadata or {})
    return ThreadStatus(
        thread_id=thread_id,
        user_id=metadata.get("user_id"),
        session_id=metadata.get("session_id"),
        pattern=metadata.get("pattern"),
        step=metadata.get("step"),
        next=_pending(snapshot),
        waiting_for_input=bool(snapshot.interrupts),
    )


def _prepare(
    graph: Pregel[Any, Any, Any, Any],
    snapshot: StateSnapshot,
    thread_id: str,
    user_id: str,
    context: Context | None,
    correlation_id: str | None,
) -> _Prepared:
    _check_owner(snapshot, user_id)
    if snapshot.interrupts:
        raise ThreadInterruptedError(
            f"thread {thread_id!r} is waiting for a person's answer; give it with "
            "switchyard.run.resume(graph, answer, ...) or `switchyard run --resume ANSWER`"
        )
    context = context or Context()
    load_chat_model(context.model or default_model())  # fail before touching the thread
    metadata: dict[str, Any] = dict(snapshot.metadata or {})
    session = str(metadata.get("session_id") or thread_id)
    config = run_config(
        graph,
        context,
        thread_id=thread_id,
        user_id=user_id,
        session_id=session,
        correlation_id=correlation_id or uuid.uuid4().hex,
        resumed=True,
    )
    return _Prepared(context, config, user_id, session, "")


def resume_thread(
    graph: Pregel[Any, Any, Any, Any],
    thread_id: str,
    *,
    user_id: str = "local",
    context: Context | None = None,
    correlation_id: str | None = None,
    dlq: DLQArg = DEFAULT_DLQ,
) -> RunResult:
    """Continue a thread's interrupted run from its last checkpoint.

    Finished steps are not executed again; a thread whose last run completed is left as it is
    (the result reports its last answer, with no tokens spent). Budgets, the deadline and the
    dead-letter queue apply as in `switchyard.run.run`.

    Args:
        graph: The compiled graph that ran the thread, with the same checkpointer (and store,
            if its nodes use `switchyard.idempotency.once`).
        thread_id: The thread (`RunResult.thread_id`, or `thread_id_for(user, session)`).
        user_id: The caller; must own the thread.
        context: Run settings (model, limits); defaults when None.
        correlation_id: Reuse the caller's id; a new one is made when None.
        dlq: Where a resume that fails again is recorded (as in `run`).

    Raises:
        ThreadNotFoundError: The thread has no checkpoint (nothing is written).
        SessionAccessError: The thread belongs to another user (nothing is read or written).
        ThreadInterruptedError: The run waits for a person's answer.
        ModelConfigError: The model cannot be loaded (nothing is written).

    Example:
        ```python
        result = resume_thread(graph, result.thread_id, user_id="ada")
        ```
    """
    snapshot = _latest(graph, thread_id)
    prepared = _prepare(graph, snapshot, thread_id, user_id, context, correlation_id)
    if not _pending(snapshot):
        return _result(
            snapshot.values, _usage_of(snapshot), started=time.perf_counter(), prepared=prepared
        )
    return _execute(graph, None, prepared, dlq)


async def aresume_thread(
    graph: Pregel[Any, Any, Any, Any],
    thread_id: str,
    *,
    user_id: str = "local",
    context: Context | None = None,
    correlation_id: str | None = None,
    dlq: DLQArg = DEFAULT_DLQ,
) -> RunResult:
    """Async form of `resume_thread` (use with an async checkpointer).

    Raises:
        ThreadNotFoundError: As `resume_thread`.
        SessionAccessError: As `resume_thread`.
        ThreadInterruptedError: As `resume_thread`.
        ModelConfigError: As `resume_thread`.
    """
    if graph.checkpointer is None:
        raise ValueError(_NO_CHECKPOINTER)
    snapshot = await graph.aget_state({"configurable": {"thread_id": thread_id}})
    if snapshot.created_at is None:
        raise ThreadNotFoundError(_not_found(thread_id))
    prepared = _prepare(graph, snapshot, thread_id, user_id, context, correlation_id)
    if not _pending(snapshot):
        return _result(
            snapshot.values, _usage_of(snapshot), started=time.perf_counter(), prepared=prepared
        )
    return await _aexecute(graph, None, prepared, dlq)


# -- command line -------------------------------------------------------------------------------


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
        "--model", default=None, help="'offline' or 'provider:model' (default: SWITCHYARD_MODEL)"
    )
    cmd.add_argument(
        "--checkpointer",
        default=None,
        help="SQLite path, 'memory' or postgresql:// DSN (default: SWITCHYARD_CHECKPOINTER)",
    )
    cmd.add_argument("--json", action="store_true", help="print the RunResult as JSON")
    cmd.set_defaults(handler=_resume_command)


def _resume_command(args: argparse.Namespace, console: Console) -> int:
    from switchyard.persistence import open_persistence, require_existing
    from switchyard.registry import load_graph

    if (args.thread is None) == (args.session is None):
        raise InvalidInputError("give either a THREAD id or --session (with --user)")
    thread_id = args.thread or thread_id_for(args.user, args.session)
    require_existing(args.checkpointer)
    with open_persistence(args.checkpointer) as persistence:
        # The latest checkpoint's metadata names the owner and the pattern that ran the thread.
        probe = persistence.checkpointer.get_tuple({"configurable": {"thread_id": thread_id}})
        if probe is None:
            raise ThreadNotFoundError(
                f"no thread {thread_id!r} in {persistence.location}; check the id and "
                "--checkpointer / SWITCHYARD_CHECKPOINTER"
            )
        owner = probe.metadata.get("user_id")
        if owner is not None and owner != args.user:
            raise SessionAccessError(
                f"thread {thread_id!r} belongs to another user; pass --user with its owner"
            )
        pattern = probe.metadata.get("pattern")
        if not isinstance(pattern, str):
            raise GraphNotFoundError(
                f"thread {thread_id!r} records no pattern (it was not started by switchyard "
                "run); resume it from Python with switchyard.resume.resume_thread(graph, ...)"
            )
        registered = load_graph(pattern)
        graph = registered.builder.compile(
            checkpointer=persistence.checkpointer, store=persistence.store, name=registered.name
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
            graph, thread_id, user_id=args.user, context=Context(model=args.model)
        )
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    elif result.ok:
        console.print(result.output, markup=False, highlight=False)
    else:
        console.print(f"run ended: {result.end_reason}: {result.error}", markup=False)
    return 0 if result.ok else 1
