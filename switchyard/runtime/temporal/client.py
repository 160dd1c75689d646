"""Runs and resumes on Temporal, as the run facade's `Invoke` step (`switchyard.runtime.effects`).

`run(graph, text, engine=TemporalEngine(...))` goes through the facade as every run does (input
checks, the session's owner and spend, the result, the dead-letter queue); only the graph's run
itself becomes a Workflow (`workflow.Turn`) on the engine's task queue:

- its id is the session's thread, the checkpoint the turn starts from and a hash of its message,
  so submitting the same turn twice (a retried request, two clients) attaches to the one
  Workflow instead of running it again, and any other message is a turn of its own;
- it receives the session's state from the session store and returns every checkpoint of the
  turn, which are written back after the session's head (`state.put_history`), so the session,
  its report, a dead letter's replay point and the next turn read it as after an in-process run;
- a turn that waits for a person stays waiting in its Workflow (named in the session's newest
  checkpoint); `resume` sends the answer there, a new message cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel
from langgraph.types import Command, Interrupt, StateSnapshot
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from switchyard.core.errors import ConfigError, InvalidInputError, SwitchyardError
from switchyard.graphs.guarded import as_context
from switchyard.guardrails.scope import RUN_SCOPE_KEY
from switchyard.runtime.effects import Failed, Invoke
from switchyard.runtime.engine import TemporalEngine
from switchyard.runtime.temporal.converter import payload_bytes
from switchyard.runtime.temporal.errors import unpickled_error
from switchyard.runtime.temporal.state import aput_history, aput_values, put_history, put_values
from switchyard.runtime.temporal.tracing import end_turn, turn_span
from switchyard.runtime.temporal.worker import connect
from switchyard.runtime.temporal.workflow import Outcome, Request, Turn
from switchyard.state.outcomes import end_reason_for

SETTLE_GRACE_S = 60.0
"""How long past the run's deadline the client waits for the turn to settle before it reports
that no worker ran it."""

WORKFLOW_KEY = "switchyard_workflow_id"
"""Checkpoint metadata naming the Workflow that ran the turn (a waiting turn is answered there)."""


class TurnFailedError(SwitchyardError, RuntimeError):
    """The turn's Workflow itself failed (not the graph: a worker without the graph, a bug)."""


@dataclass(frozen=True)
class SessionHead:
    """The session before a turn: its state, its newest checkpoint and that one's metadata."""

    values: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshot: StateSnapshot | None) -> SessionHead:
        """The head a `get_state` snapshot describes (None: a graph without a checkpointer)."""
        if snapshot is None:
            return cls()
        configurable = (snapshot.config or {}).get("configurable") or {}
        return cls(
            values=dict(snapshot.values) if snapshot.values else None,
            checkpoint_id=configurable.get("checkpoint_id"),
            metadata=dict(snapshot.metadata or {}),
        )

    @property
    def workflow_id(self) -> str | None:
        """The Workflow of the session's newest Temporal turn, if it ran on Temporal."""
        value = self.metadata.get(WORKFLOW_KEY)
        return value if isinstance(value, str) else None


def workflow_id(thread_id: str, head: SessionHead, payload: Any) -> str:
    """The Workflow id of a turn: the session, the state it starts from, and what it sends.

    Submitting the same message again from the same state (a retried request, two clients)
    names the same Workflow, which Temporal runs once; any other message, or the same one
    later in the session, names another.
    """
    digest = hashlib.sha256(payload_bytes(payload)).hexdigest()[:16]
    return f"switchyard/{thread_id}/{head.checkpoint_id or 'new'}/{digest}"


def _sent_config(config: RunnableConfig) -> dict[str, Any]:
    """What of the run's config crosses to the Workflow: thread, metadata, tags, limits."""
    configurable = {
        k: v for k, v in (config.get("configurable") or {}).items() if k != RUN_SCOPE_KEY
    }
    sent: dict[str, Any] = {"configurable": {"thread_id": configurable["thread_id"]}}
    for key in ("metadata", "tags", "run_name", "recursion_limit"):
        if key in config:
            sent[key] = config[key]
    return sent


def _store_config(config: RunnableConfig, workflow: str | None = None) -> RunnableConfig:
    """The config the turn's state is read and written with: its thread and metadata.

    The metadata names the session's owner and, once the turn ran, its Workflow.
    """
    thread = (config.get("configurable") or {})["thread_id"]
    metadata = dict(config.get("metadata") or {})
    if workflow is not None:
        metadata[WORKFLOW_KEY] = workflow
    return {"configurable": {"thread_id": thread}, "metadata": metadata}


def _end_reason(outcome: Outcome) -> str:
    """How a turn ended, as its result will say (for its span)."""
    if outcome.status == "waiting":
        return "escalated"
    if outcome.status == "failed" and outcome.error is not None:
        return end_reason_for(unpickled_error(outcome.error), default="error")
    return str(outcome.values.get("end_reason") or "completed")


def _result(outcome: Outcome) -> Any:
    """What the facade expects of `invoke`: the output, `Failed`, or an output that waits."""
    if outcome.status == "failed" and outcome.error is not None:
        return Failed(cast(Exception, unpickled_error(outcome.error)))
    if outcome.status == "waiting":
        return {**outcome.values, "__interrupt__": [Interrupt(value=outcome.interrupt)]}
    return outcome.values


async def _settled(handle: WorkflowHandle[Any, Any]) -> Outcome:
    """How the turn stands once it finished, failed or waits for a person."""
    try:
        outcome: Outcome = await handle.execute_update(Turn.settled)
        return outcome
    except (RPCError, WorkflowUpdateFailedError):  # the Workflow closed: its result says how
        pass
    try:
        result: Outcome = await handle.result()
    except WorkflowFailureError as exc:
        cause = exc.cause if exc.cause is not None else exc
        raise TurnFailedError(f"the turn's Workflow {handle.id} failed: {cause}") from None
    return result


async def _settle(handle: WorkflowHandle[Any, Any], wait_s: float | None) -> Outcome:
    """`_settled`, given up after `wait_s` (the turn keeps running; a resubmit attaches to it)."""
    bound = asyncio.timeout(wait_s)
    try:
        async with bound:
            return await _settled(handle)
    except (TimeoutError, RPCTimeoutOrCancelledError):
        if not bound.expired():  # cancelled (Ctrl-C): stop as a cancelled task does
            raise asyncio.CancelledError() from None
        raise ConfigError(
            f"no Temporal worker finished turn {handle.id} in {wait_s:.0f}s; is `switchyard "
            "worker --engine temporal` running on this task queue?"
        ) from None


class TemporalInvoker:
    """Carries out a facade's `Invoke` as a Temporal Workflow (sync and async forms)."""

    def __init__(self, engine: TemporalEngine, *, client: Client | None = None) -> None:
        """Use `engine` (connecting on first use) or an already connected `client`."""
        self.engine = engine
        self._client = client

    async def _connected(self) -> Client:
        if self._client is None:
            self._client = await connect(self.engine)
        return self._client

    async def _turn(
        self, graph: Pregel[Any, Any, Any, Any], effect: Invoke, head: SessionHead
    ) -> tuple[str, Outcome]:
        thread = effect.config["configurable"]["thread_id"]
        metadata = {**(effect.config.get("metadata") or {}), "thread_id": thread}
        with turn_span(graph.name, metadata) as span:
            wid, outcome = await self._submit(graph, effect, head)
            end_turn(span, _end_reason(outcome))
        return wid, outcome

    async def _submit(
        self, graph: Pregel[Any, Any, Any, Any], effect: Invoke, head: SessionHead
    ) -> tuple[str, Outcome]:
        client = await self._connected()
        thread = effect.config["configurable"]["thread_id"]
        context = as_context(effect.context)
        wait_s = None if context.deadline_s is None else context.deadline_s + SETTLE_GRACE_S
        if isinstance(effect.payload, Command) and effect.payload.resume is not None:
            handle = await _waiting_turn(client, head)
            await handle.signal(Turn.answer, effect.payload.resume)
            return handle.id, await _settle(handle, wait_s)
        if head.workflow_id is not None:
            # A new message instead of an answer drops the question, as in one process: the
            # Workflow that waits for it is cancelled rather than left waiting for good.
            await _cancel_if_waiting(client.get_workflow_handle(head.workflow_id))
        request = Request(
            graph=graph.name,
            payload=effect.payload,
            context=effect.context,
            config=_sent_config(effect.config),
            prior=head.values,
            head_id=head.checkpoint_id,
        )
        wid = workflow_id(thread, head, effect.payload)
        try:
            handle = await client.start_workflow(
                Turn.run,
                request,
                id=wid,
                task_queue=self.engine.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                # a turn whose Workflow failed may be sent again; one that ran answers again
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            )
        except WorkflowAlreadyStartedError:  # this turn ran already: its outcome, not a rerun
            handle = client.get_workflow_handle(wid)
        return wid, await _settle(handle, wait_s)

    async def _fresh(
        self, graph: Pregel[Any, Any, Any, Any], effect: Invoke, head: SessionHead
    ) -> tuple[str, Outcome]:
        """`_turn` on a client of its own: each sync call runs in an event loop of its own."""
        return await TemporalInvoker(self.engine)._turn(graph, effect, head)

    async def acheck(self) -> None:
        """Connect now, so an unreachable server is one `ConfigError` before anything runs."""
        await self._connected()

    def check(self) -> None:
        """Sync form of `acheck` (its connection is not kept: each sync call has its own loop)."""
        _run_coroutine(connect(self.engine))

    async def arequire_waiting(
        self, graph: Pregel[Any, Any, Any, Any], config: RunnableConfig
    ) -> None:
        """Refuse an answer when the session's current turn waits for no person.

        Raises:
            InvalidInputError: Nothing waits (as the in-process `resume` refuses it).
        """
        head = await _ahead(graph, config)
        await _waiting_turn(await self._connected(), head)

    def require_waiting(self, graph: Pregel[Any, Any, Any, Any], config: RunnableConfig) -> None:
        """Sync form of `arequire_waiting`."""
        head = _head(graph, config)

        async def check() -> None:
            await _waiting_turn(await connect(self.engine), head)

        _run_coroutine(check())

    def __call__(self, graph: Pregel[Any, Any, Any, Any], effect: Invoke) -> Any:
        """Run the turn on Temporal; write its state back to the session store; its output."""
        head = _head(graph, effect.config)
        wid, outcome = _run_coroutine(self._fresh(graph, effect, head))
        if isinstance(graph.checkpointer, BaseCheckpointSaver):
            config = _store_config(effect.config, wid)
            if outcome.history is None:
                put_values(graph, config, outcome.values)
            else:
                put_history(graph, config, outcome.history, seed_id=outcome.seed_id,
                            head_id=outcome.head_id, extra={WORKFLOW_KEY: wid})  # fmt: skip
        return _result(outcome)

    async def ainvoke(self, graph: Pregel[Any, Any, Any, Any], effect: Invoke) -> Any:
        """Async form of calling the invoker (use with an async checkpointer)."""
        head = await _ahead(graph, effect.config)
        wid, outcome = await self._turn(graph, effect, head)
        if isinstance(graph.checkpointer, BaseCheckpointSaver):
            config = _store_config(effect.config, wid)
            if outcome.history is None:
                await aput_values(graph, config, outcome.values)
            else:
                await aput_history(graph, config, outcome.history, seed_id=outcome.seed_id,
                                   head_id=outcome.head_id, extra={WORKFLOW_KEY: wid})  # fmt: skip
        return _result(outcome)


def _head(graph: Pregel[Any, Any, Any, Any], config: RunnableConfig) -> SessionHead:
    if not isinstance(graph.checkpointer, BaseCheckpointSaver):
        return SessionHead()
    return SessionHead.of(graph.get_state(_store_config(config)))


async def _ahead(graph: Pregel[Any, Any, Any, Any], config: RunnableConfig) -> SessionHead:
    if not isinstance(graph.checkpointer, BaseCheckpointSaver):
        return SessionHead()
    return SessionHead.of(await graph.aget_state(_store_config(config)))


async def _waiting_turn(client: Client, head: SessionHead) -> WorkflowHandle[Any, Any]:
    """The Workflow of the session's turn that waits for a person.

    Raises:
        InvalidInputError: No turn of the session waits (or it did not run on Temporal).
    """
    if head.workflow_id is not None:
        handle = client.get_workflow_handle(head.workflow_id)
        with contextlib.suppress(RPCError, WorkflowQueryFailedError):
            if await handle.query(Turn.waiting) is not None:
                return handle
    raise InvalidInputError(
        "this session has no run waiting for a person; send a new message instead"
    )


async def _cancel_if_waiting(handle: WorkflowHandle[Any, Any]) -> None:
    """Cancel a turn's Workflow if it still waits for a person's answer."""
    with contextlib.suppress(RPCError, WorkflowQueryFailedError):
        if await handle.query(Turn.waiting) is not None:
            await handle.cancel()


def _run_coroutine(coroutine: Any) -> Any:
    """Run `coroutine` to its end from sync code, also when this thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="switchyard-temporal-client")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
