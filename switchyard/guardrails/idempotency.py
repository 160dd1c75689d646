"""Side effects that survive a crash and a resume without happening twice.

A run resumed from its last checkpoint re-executes the step that was in flight when the process
died. A node whose step sends an e-mail, charges a card or writes to another system would do it
again. `idempotency_key()` names the current attempt of a step in a way that a resumed or retried
run reproduces exactly: thread + the checkpoint the step started from + the task id (LangGraph
derives task ids deterministically from the checkpoint, the namespace, the step and the node).
`once(key, fn)` runs `fn` only if no effect is recorded under `key` in the graph's store, records
its JSON result, and returns the recorded result on every later call.

The guarantee: an effect recorded before a crash is never repeated, provided the step's starting
checkpoint was saved before the step ran, which is what `durability="sync"` does (each step's
checkpoint is written before its tasks start). Under LangGraph's default `"async"` durability a
crash in the first moments of a step can lose that checkpoint; the resumed step then starts from
a new checkpoint, gets a new key and repeats the effect. A crash in the short window after `fn`
returned and before its record is written also repeats `fn` on resume; pass the key to the other
system (most payment and mail APIs take an idempotency key) to close that window too.

Example:
    ```python
    def send_invoice(state: State) -> dict[str, Any]:
        receipt = once(idempotency_key("invoice"), lambda: mailer.send(state["invoice"]))
        return {"receipt": receipt}

    graph = builder.compile(checkpointer=p.checkpointer, store=p.store)
    graph.invoke(inputs, config, durability="sync")
    ```
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from langgraph.runtime import get_runtime
from langgraph.store.base import BaseStore

from switchyard.core.errors import SwitchyardError

T = TypeVar("T")

EFFECTS_NAMESPACE = ("switchyard", "effects")
"""Store namespace prefix of the effect ledger; the thread id is the next label."""


class IdempotencyError(SwitchyardError, RuntimeError):
    """An idempotency key or the effect ledger is used where it cannot work."""


@dataclass(frozen=True)
class StepIdentity:
    """The identity of one step of one thread, as a resumed run reproduces it.

    Attributes:
        thread_id: The thread the step belongs to.
        checkpoint_id: The checkpoint the step started from.
        task_id: LangGraph's deterministic id of the task (node run) within that step.
    """

    thread_id: str
    checkpoint_id: str
    task_id: str

    def key(self, label: str = "") -> str:
        """The idempotency key of this step, with an optional label per effect."""
        base = f"{self.thread_id}/{self.checkpoint_id}/{self.task_id}"
        return f"{base}/{label}" if label else base


def current_step() -> StepIdentity:
    """The identity of the step running now; call it inside a graph node or task.

    Raises:
        IdempotencyError: Called outside a running graph, or the graph has no checkpointer (so
            there is no thread to resume and no stable key).
    """
    try:
        info = get_runtime().execution_info
    except RuntimeError:
        info = None
    if info is None:
        raise IdempotencyError(
            "idempotency keys are read from the running step: call idempotency_key() or once() "
            "inside a graph node"
        )
    if not info.thread_id:
        raise IdempotencyError(
            "idempotency keys need a thread: compile the graph with a checkpointer and pass a "
            "thread_id"
        )
    return StepIdentity(info.thread_id, info.checkpoint_id, info.task_id)


def idempotency_key(label: str = "") -> str:
    """The current step's idempotency key: `thread/checkpoint/task[/label]`.

    The same step re-executed after a crash, or retried by a `RetryPolicy`, gets the same key; a
    later turn of the conversation, or another node, gets a different one.

    Args:
        label: Tells apart several effects of one node ("email", "charge").

    Raises:
        IdempotencyError: See `current_step`.
    """
    return current_step().key(label)


def _namespace(thread_id: str) -> tuple[str, ...]:
    # Store namespace labels cannot contain "."; escape it reversibly.
    label = thread_id.replace("%", "%25").replace(".", "%2E") or "%00"
    return (*EFFECTS_NAMESPACE, label)


def effects_namespace(thread_id: str) -> tuple[str, ...]:
    """The store namespace that holds a thread's effect records (retention prunes it)."""
    return _namespace(thread_id)


def _target(key: str, store: BaseStore | None) -> tuple[BaseStore, tuple[str, ...], str]:
    if not isinstance(key, str) or not key:
        raise IdempotencyError(f"an idempotency key must be a non-empty string, got {key!r}")
    step: StepIdentity | None
    try:
        step = current_step()
    except IdempotencyError:
        step = None
    if store is None:
        try:
            store = get_runtime().store
        except RuntimeError:
            store = None
    if store is None:
        raise IdempotencyError(
            "once() records effects in the graph's store: compile the graph with store=... "
            "(switchyard.storage.persistence.open_persistence gives one) or pass store="
        )
    thread_id = step.thread_id if step is not None else key.split("/", 1)[0]
    return store, _namespace(thread_id), key


def _record(key: str, result: Any) -> dict[str, Any]:
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        raise IdempotencyError(
            f"the effect under {key!r} ran, but once() can only record JSON data and it "
            f"returned {type(result).__name__}; return a dict, list, str, number, bool or None "
            "(the effect is recorded with result None and will not run again)"
        ) from None
    step: StepIdentity | None
    try:
        step = current_step()
    except IdempotencyError:
        step = None
    return {
        "key": key,
        "result": result,
        "checkpoint_id": step.checkpoint_id if step else None,
        "task_id": step.task_id if step else None,
        "recorded_at": datetime.now(UTC).isoformat(),
    }


def _unrecordable(key: str) -> dict[str, Any]:
    return {"key": key, "result": None, "recorded_at": datetime.now(UTC).isoformat()}


def once(key: str, fn: Callable[[], T], *, store: BaseStore | None = None) -> T:
    """Run `fn` unless an effect is already recorded under `key`; return its (recorded) result.

    Args:
        key: Usually `idempotency_key("label")`; any stable string works.
        fn: The side effect. Its result must be JSON data (it is stored and replayed).
        store: Where the ledger lives; defaults to the running graph's store.

    Returns:
        `fn()`'s result the first time, the recorded result on every later call.

    Raises:
        IdempotencyError: No store, an empty key, or a result that is not JSON data.

    Example:
        ```python
        receipt = once(idempotency_key("charge"), lambda: payments.charge(order))
        ```
    """
    target, namespace, item_key = _target(key, store)
    existing = target.get(namespace, item_key)
    if existing is not None:
        recorded: T = existing.value["result"]
        return recorded
    result = fn()
    try:
        value = _record(key, result)
    except IdempotencyError:
        target.put(namespace, item_key, _unrecordable(key))
        raise
    target.put(namespace, item_key, value)
    return result


async def aonce(key: str, fn: Callable[[], Awaitable[T]], *, store: BaseStore | None = None) -> T:
    """Async form of `once`: `fn` returns an awaitable.

    Raises:
        IdempotencyError: As `once`.
    """
    target, namespace, item_key = _target(key, store)
    existing = await target.aget(namespace, item_key)
    if existing is not None:
        recorded: T = existing.value["result"]
        return recorded
    result = await fn()
    try:
        value = _record(key, result)
    except IdempotencyError:
        await target.aput(namespace, item_key, _unrecordable(key))
        raise
    await target.aput(namespace, item_key, value)
    return result
