"""Runs and resumes on Temporal, as the run facade's `Invoke` step (`switchyard.runtime.effects`).

`run(graph, text, engine=TemporalEngine(...))` goes through the facade as every run does (input
checks, the session's owner and spend, the result, the dead-letter queue); only the graph's run
itself becomes a Workflow (`workflow.Turn`) on the engine's task queue:

- its id is derived from the session's thread and turn number, so submitting the same turn twice
  (a retried request, two clients) attaches to the one Workflow instead of running it again;
- it receives the session's state from the session store and returns the turn's final state,
  which is written back there (with each channel set, not merged), so the session, its report,
  `prune` and the next turn read it as after an in-process run;
- a turn that waits for a person stays waiting in its Workflow; `resume` sends the answer there.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel
from langgraph.types import Command, Interrupt
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from switchyard.core.errors import ConfigError, InvalidInputError
from switchyard.graphs.guarded import as_context
from switchyard.guardrails.scope import RUN_SCOPE_KEY
from switchyard.runtime.effects import Failed, Invoke
from switchyard.runtime.engine import TemporalEngine
from switchyard.runtime.temporal.errors import unpickled_error
from switchyard.runtime.temporal.state import aput_values, put_values
from switchyard.runtime.temporal.tracing import end_turn, turn_span
from switchyard.runtime.temporal.worker import connect
from switchyard.runtime.temporal.workflow import Outcome, Request, Turn
from switchyard.state.outcomes import end_reason_for

SETTLE_GRACE_S = 60.0
"""How long past the run's deadline the client waits for the turn to settle before it reports
that no worker ran it."""


def workflow_id(thread_id: str, turn: int) -> str:
    """The Workflow id of a session's `turn`-th turn (the same for every submit of that turn)."""
    return f"switchyard/{thread_id}/{turn}"


def turns_in(values: dict[str, Any] | None) -> int:
    """How many turns a session's state holds (its user messages)."""
    return sum(isinstance(m, HumanMessage) for m in (values or {}).get("messages") or ())


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


def _store_config(config: RunnableConfig) -> RunnableConfig:
    """The config the turn's state is written back with: its thread and metadata (the owner)."""
    thread = (config.get("configurable") or {})["thread_id"]
    return {"configurable": {"thread_id": thread}, "metadata": dict(config.get("metadata") or {})}


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


async def _settle(handle: WorkflowHandle[Any, Any], wait_s: float | None) -> Outcome:
    """How the turn stands once it finished, failed or waits for a person."""

    async def settle() -> Outcome:
        try:
            outcome: Outcome = await handle.execute_update(Turn.settled)
        except Exception:  # the Workflow already closed: its result says how it ended
            outcome = await handle.result()
        return outcome

    try:
        return await asyncio.wait_for(settle(), timeout=wait_s)
    except TimeoutError:
        raise ConfigError(
            f"no Temporal worker finished turn {handle.id} in {wait_s:.0f}s; is `switchyard "
            "worker --engine temporal` running on this task queue?"
        ) from None


async def _require_waiting(handle: WorkflowHandle[Any, Any]) -> None:
    """Refuse to answer a turn that waits for no person (or that never ran)."""
    try:
        question = await handle.query(Turn.waiting)
    except Exception:  # no such Workflow, or it closed
        question = None
    if question is None:
        raise InvalidInputError(
            "this session has no run waiting for a person; send a new message instead"
        )


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
        self, graph: Pregel[Any, Any, Any, Any], effect: Invoke, prior: dict[str, Any] | None
    ) -> Outcome:
        thread = effect.config["configurable"]["thread_id"]
        metadata = {**(effect.config.get("metadata") or {}), "thread_id": thread}
        with turn_span(graph.name, metadata) as span:
            outcome = await self._submit(graph, effect, prior)
            end_turn(span, _end_reason(outcome))
        return outcome

    async def _submit(
        self, graph: Pregel[Any, Any, Any, Any], effect: Invoke, prior: dict[str, Any] | None
    ) -> Outcome:
        client = await self._connected()
        thread = effect.config["configurable"]["thread_id"]
        context = as_context(effect.context)
        wait_s = None if context.deadline_s is None else context.deadline_s + SETTLE_GRACE_S
        if isinstance(effect.payload, Command) and effect.payload.resume is not None:
            handle = client.get_workflow_handle(workflow_id(thread, turns_in(prior)))
            await _require_waiting(handle)
            await handle.signal(Turn.answer, effect.payload.resume)
            return await _settle(handle, wait_s)
        request = Request(
            graph=graph.name,
            payload=effect.payload,
            context=effect.context,
            config=_sent_config(effect.config),
            prior=prior,
        )
        wid = workflow_id(thread, turns_in(prior) + 1)
        try:
            handle = await client.start_workflow(
                Turn.run,
                request,
                id=wid,
                task_queue=self.engine.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:  # this turn ran already: its outcome, not a rerun
            handle = client.get_workflow_handle(wid)
        return await _settle(handle, wait_s)

    async def _fresh(
        self, graph: Pregel[Any, Any, Any, Any], effect: Invoke, prior: dict[str, Any] | None
    ) -> Outcome:
        """`_turn` on a client of its own: each sync call runs in an event loop of its own."""
        return await TemporalInvoker(self.engine)._turn(graph, effect, prior)

    async def arequire_waiting(
        self, graph: Pregel[Any, Any, Any, Any], config: RunnableConfig
    ) -> None:
        """Refuse an answer when the session's current turn waits for no person.

        Raises:
            InvalidInputError: Nothing waits (as the in-process `resume` refuses it).
        """
        stored = isinstance(graph.checkpointer, BaseCheckpointSaver)
        prior = dict((await graph.aget_state(_store_config(config))).values) if stored else None
        client = await self._connected()
        thread = config["configurable"]["thread_id"]
        await _require_waiting(client.get_workflow_handle(workflow_id(thread, turns_in(prior))))

    def require_waiting(self, graph: Pregel[Any, Any, Any, Any], config: RunnableConfig) -> None:
        """Sync form of `arequire_waiting`."""
        stored = isinstance(graph.checkpointer, BaseCheckpointSaver)
        prior = dict(graph.get_state(_store_config(config)).values) if stored else None
        thread = config["configurable"]["thread_id"]
        wid = workflow_id(thread, turns_in(prior))

        async def check() -> None:
            client = await connect(self.engine)
            await _require_waiting(client.get_workflow_handle(wid))

        _run_coroutine(check())

    def __call__(self, graph: Pregel[Any, Any, Any, Any], effect: Invoke) -> Any:
        """Run the turn on Temporal; write its state back to the session store; its output."""
        config = _store_config(effect.config)
        stored = isinstance(graph.checkpointer, BaseCheckpointSaver)
        prior = dict(graph.get_state(config).values) if stored else None
        outcome = _run_coroutine(self._fresh(graph, effect, prior))
        if stored:
            put_values(graph, config, outcome.values)
        return _result(outcome)

    async def ainvoke(self, graph: Pregel[Any, Any, Any, Any], effect: Invoke) -> Any:
        """Async form of calling the invoker (use with an async checkpointer)."""
        config = _store_config(effect.config)
        stored = isinstance(graph.checkpointer, BaseCheckpointSaver)
        prior = dict((await graph.aget_state(config)).values) if stored else None
        outcome = await self._turn(graph, effect, prior)
        if stored:
            await aput_values(graph, config, outcome.values)
        return _result(outcome)


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
