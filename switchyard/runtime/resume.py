"""Crash-safe resume: finish a run that stopped between steps, without redoing finished steps.

A run killed mid-flight (the process exited, the machine rebooted) leaves its thread at the last
checkpoint it saved, with the steps still to run in `next`. `resume_thread(graph, thread_id)`
continues from there: LangGraph re-executes only the steps that had not finished (a step whose
writes were saved is not run again), and nodes that make side effects skip the ones they already
made with `switchyard.once`. (A run paused for a person's answer is continued with
`switchyard.resume` / `switchyard run --resume ANSWER` instead.)

Only the thread's owner may resume it: another user's thread, a thread with no recorded owner and
a thread that does not exist are refused alike (`ThreadAccessError`), so the answer reveals nothing.
The run's settings (its context and default model) come back from the checkpoint's metadata unless
the caller passes a context. From the shell:

```bash
switchyard resume 7d0c...            # the thread id printed by `switchyard run --json`
switchyard resume --user ada --session s1
```
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from switchyard.core.errors import InvalidInputError, SessionAccessError, SwitchyardError
from switchyard.core.models import default_max_tokens, default_model, load_chat_model
from switchyard.runtime.effects import State, Steps
from switchyard.runtime.run import (
    DEFAULT_DLQ,
    DLQArg,
    Prepared,
    RunResult,
    check_owner,
    execution,
    run_config,
    run_result,
    usage_of,
)
from switchyard.runtime.sessions import MultitaskStrategy, adrive_turn, drive_turn
from switchyard.runtime.settings import restored_context, settings_in
from switchyard.state.context import Context


class ThreadNotFoundError(SwitchyardError, LookupError):
    """No checkpoint exists for the thread a caller asked for."""


class ThreadAccessError(ThreadNotFoundError, SessionAccessError):
    """The caller may not use the thread: it does not exist, has no owner, or is another user's.

    The three are refused in the same words, so the answer reveals neither the thread nor its
    owner; the error is both a `ThreadNotFoundError` and a `SessionAccessError`.
    """


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
    "(switchyard.storage.persistence.open_checkpointer)"
)


def not_yours(thread_id: str, user_id: str) -> str:
    """The one answer for a thread the caller may not use, whether it exists or not."""
    return (
        f"no thread {thread_id!r} of user {user_id!r} in this checkpointer (it does not exist "
        "here, or belongs to another user); check the id (switchyard run --json prints it), the "
        "user and that SWITCHYARD_CHECKPOINTER points at the same database"
    )


def check_access(
    snapshot: StateSnapshot | CheckpointTuple | None, thread_id: str, user_id: str
) -> None:
    """Refuse a thread that is missing, has no owner, or is not `user_id`'s.

    Args:
        snapshot: The thread's newest state or checkpoint (None, or an empty snapshot, when the
            thread does not exist).
        thread_id: The thread, for the message.
        user_id: The caller.

    Raises:
        ThreadAccessError: In all three cases, in the same words.
    """
    missing = snapshot is None or (
        isinstance(snapshot, StateSnapshot) and snapshot.created_at is None
    )
    try:
        check_owner(None if missing else snapshot, user_id, required=True)
    except SessionAccessError:
        raise ThreadAccessError(not_yours(thread_id, user_id)) from None


def _thread_config(graph: Pregel[Any, Any, Any, Any], thread_id: str) -> RunnableConfig:
    if graph.checkpointer is None:
        raise ValueError(_NO_CHECKPOINTER)
    if not isinstance(thread_id, str) or not thread_id.strip():
        raise ThreadNotFoundError(f"thread id must be a non-empty string, got {thread_id!r}")
    return {"configurable": {"thread_id": thread_id}}


def _latest(
    graph: Pregel[Any, Any, Any, Any], thread_id: str, user_id: str | None
) -> StateSnapshot:
    snapshot = graph.get_state(_thread_config(graph, thread_id))
    if user_id is not None:
        check_access(snapshot, thread_id, user_id)
    elif snapshot.created_at is None:
        raise ThreadNotFoundError(
            f"no thread {thread_id!r} in this checkpointer; check the id (switchyard run --json "
            "prints it) and that SWITCHYARD_CHECKPOINTER points at the same database"
        )
    return snapshot


def _deadline_of(head: CheckpointTuple | None, context: Context | None) -> float | None:
    """The deadline the resumed run will have: the caller's, else the one the run started with.

    It bounds the wait for the session (and sizes a Redis lease) before the run itself reads it.
    """
    stored = settings_in(head.metadata if head is not None else None)
    try:
        return (restored_context(stored, context) or Context()).deadline_s
    except InvalidInputError:  # refused later, after the owner check (never before it)
        return (context or Context()).deadline_s


def _pending(snapshot: StateSnapshot) -> tuple[str, ...]:
    # `StateSnapshot.next` leaves out tasks whose writes were saved; a step can finish all its
    # tasks and die before its checkpoint, and still has work: applying them and going on.
    return tuple(task.name for task in snapshot.tasks)


def thread_status(
    graph: Pregel[Any, Any, Any, Any], thread_id: str, *, user_id: str | None = None
) -> ThreadStatus:
    """Read where a thread stands, without running anything.

    Args:
        graph: The compiled graph, with the checkpointer holding the thread.
        thread_id: The thread.
        user_id: The caller; when given, the thread must be theirs (None: no owner check).

    Raises:
        ThreadNotFoundError: The thread has no checkpoint.
        ThreadAccessError: `user_id` is given and the thread is missing, ownerless or not theirs.
        ValueError: The graph has no checkpointer.
    """
    snapshot = _latest(graph, thread_id, user_id)
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
    started: float,
) -> Prepared:
    check_access(snapshot, thread_id, user_id)
    if snapshot.interrupts:
        raise ThreadInterruptedError(
            f"thread {thread_id!r} is waiting for a person's answer; give it with "
            "switchyard.runtime.run.resume(graph, answer, ...) or `switchyard run --resume ANSWER`"
        )
    metadata: dict[str, Any] = dict(snapshot.metadata or {})
    context = restored_context(settings_in(metadata), context) or Context()
    load_chat_model(context.model or default_model())  # fail before touching the thread
    default_max_tokens()  # and on a SWITCHYARD_MAX_TOKENS that is not a number
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
    return Prepared(context, config, user_id, session, "", started=started)


def resuming(
    graph: Pregel[Any, Any, Any, Any],
    thread_id: str,
    user_id: str,
    context: Context | None,
    correlation_id: str | None,
    dlq: DLQArg,
    started: float | None = None,
) -> Steps:
    """`resume_thread` as steps (see `switchyard.runtime.effects`); its `RunResult`.

    `started` (`time.monotonic()` when it was asked for) is where the run's deadline counts from.
    """
    started = time.monotonic() if started is None else started
    snapshot = yield State(_thread_config(graph, thread_id))
    prepared = _prepare(graph, snapshot, thread_id, user_id, context, correlation_id, started)
    if not _pending(snapshot):
        return run_result(
            snapshot.values, usage_of(snapshot), started=time.perf_counter(), prepared=prepared
        )
    result = yield from execution(graph, None, prepared, dlq)
    return result


# `resume_thread` and `aresume_thread` share their signature only: both carry out `resuming`.


def resume_thread(
    graph: Pregel[Any, Any, Any, Any],
    thread_id: str,
    *,
    user_id: str = "local",
    context: Context | None = None,
    correlation_id: str | None = None,
    dlq: DLQArg = DEFAULT_DLQ,
    multitask_strategy: MultitaskStrategy = "enqueue",
) -> RunResult:
    """Continue a thread's interrupted run from its last checkpoint.

    Finished steps are not executed again; a thread whose last run completed is left as it is
    (the result reports its last answer, with no tokens spent). Budgets, the deadline and the
    dead-letter queue apply as in `switchyard.run`.

    Args:
        graph: The compiled graph that ran the thread, with the same checkpointer (and store,
            if its nodes use `switchyard.once`).
        thread_id: The thread (`RunResult.thread_id`, or `thread_id_for(user, session)`).
        user_id: The caller; must own the thread.
        context: Run settings (model, limits); None restores the run's own, as recorded in the
            thread's checkpoint metadata, else the defaults.
        correlation_id: Reuse the caller's id; a new one is made when None.
        dlq: Where a resume that fails again is recorded (as in `run`).
        multitask_strategy: As in `run`: a resume is a turn of the thread's session.

    Raises:
        ThreadAccessError: The thread does not exist, has no owner or belongs to another user
            (refused alike; nothing is written). It is a `ThreadNotFoundError` and a
            `SessionAccessError`.
        ThreadInterruptedError: The run waits for a person's answer.
        ModelConfigError: The model cannot be loaded (nothing is written).
        ValueError: The graph has no checkpointer.

    Example:
        ```python
        result = resume_thread(graph, result.thread_id, user_id="ada")
        ```
    """
    started = time.monotonic()
    config = _thread_config(graph, thread_id)
    head = graph.checkpointer.get_tuple(config)  # type: ignore[union-attr]
    wait_s = _deadline_of(head, context)
    steps = resuming(graph, thread_id, user_id, context, correlation_id, dlq, started)
    result: RunResult = drive_turn(graph, steps, thread_id, multitask_strategy, wait_s)
    return result


async def aresume_thread(
    graph: Pregel[Any, Any, Any, Any],
    thread_id: str,
    *,
    user_id: str = "local",
    context: Context | None = None,
    correlation_id: str | None = None,
    dlq: DLQArg = DEFAULT_DLQ,
    multitask_strategy: MultitaskStrategy = "enqueue",
) -> RunResult:
    """Async form of `resume_thread` (use with an async checkpointer).

    Raises:
        ThreadAccessError: As `resume_thread`.
        ThreadInterruptedError: As `resume_thread`.
        ModelConfigError: As `resume_thread`.
        ValueError: As `resume_thread`.
    """
    started = time.monotonic()
    config = _thread_config(graph, thread_id)
    head = await graph.checkpointer.aget_tuple(config)  # type: ignore[union-attr]
    wait_s = _deadline_of(head, context)
    steps = resuming(graph, thread_id, user_id, context, correlation_id, dlq, started)
    result: RunResult = await adrive_turn(graph, steps, thread_id, multitask_strategy, wait_s)
    return result
