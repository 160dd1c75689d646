"""The Workflow of one turn of a session: run a pattern's graph, wait for a person if it asks.

Its state is the Workflow's own (the plugin's advice: an in-memory checkpointer inside the
Workflow; Temporal's history makes it durable). The session's earlier turns arrive with the
request (`prior`, the thread's state as the session store holds it) and the turn's checkpoints
go back in the `Outcome` (its final state alone when they exceed one payload), which the client
writes to the session store: sessions are kept as in-process runs keep them.

A turn that asks a person (`interrupt()`: escalation, the fallback chain's last step) keeps
waiting inside the Workflow; `answer` (a signal) continues it with the person's reply, on
whichever worker picks it up.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, cast

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command
    from temporalio.langgraph import graph as registered_graph

    from switchyard.graphs.guarded import as_context, open_scope
    from switchyard.guardrails.scope import with_scope
    from switchyard.runtime.run import pending_interrupt
    from switchyard.runtime.temporal.converter import payload_bytes
    from switchyard.runtime.temporal.errors import pickled_error
    from switchyard.runtime.temporal.meter import SPEND_KEY, run_key
    from switchyard.runtime.temporal.state import (
        HISTORY_LIMIT_BYTES,
        Entry,
        history_after,
        put_values,
    )
    from switchyard.state.context import Context

WORKFLOW_NAME = "switchyard.Turn"
"""The Workflow type every Switchyard turn runs as."""


@dataclass
class Request:
    """One turn: which graph, its input, settings and config, and the session so far."""

    graph: str
    payload: Any
    context: Context | None
    config: dict[str, Any]
    prior: dict[str, Any] | None = None
    head_id: str | None = None


@dataclass
class Outcome:
    """How a turn stands: finished (`values`), failed (`error`) or waiting (`interrupt`)."""

    status: str
    values: dict[str, Any] = field(default_factory=dict)
    error: bytes | None = None
    interrupt: Any = None
    history: list[Entry] | None = None
    seed_id: str | None = None
    head_id: str | None = None


@workflow.defn(name=WORKFLOW_NAME, failure_exception_types=[Exception])
class Turn:
    """One turn of a session on Temporal (see the module docstring)."""

    def __init__(self) -> None:
        """No answer yet; the turn is running."""
        self._answers: list[Any] = []
        self._outcome: Outcome | None = None

    @workflow.signal
    def answer(self, value: Any) -> None:
        """A person's answer to the question the turn waits on."""
        self._answers.append(value)
        self._outcome = None  # `settled` must wait for the run the answer starts

    @workflow.query
    def waiting(self) -> Any:
        """The question the turn waits on, or None."""
        outcome = self._outcome
        return outcome.interrupt if outcome is not None and outcome.status == "waiting" else None

    @workflow.update
    async def settled(self) -> Outcome:
        """Wait until the turn finished, failed or waits for a person; how it stands."""
        await workflow.wait_condition(lambda: self._outcome is not None)
        assert self._outcome is not None
        return self._outcome

    async def _finished(self) -> Outcome:
        """The outcome, once every `settled` call waiting for it has been answered."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._outcome is not None
        return self._outcome

    @workflow.run
    async def run(self, request: Request) -> Outcome:
        """Run the turn to its end, pausing for a person as often as the graph asks."""
        saver = InMemorySaver()
        app = registered_graph(request.graph).compile(checkpointer=saver)
        context = as_context(request.context)
        config = cast(RunnableConfig, dict(request.config))
        seed_id = None
        if request.prior:
            seed_id = put_values(app, config, request.prior, now=workflow.now())
        thread = str(config["configurable"]["thread_id"])

        def outcome(status: str, values: Any, **fields: Any) -> Outcome:
            history: list[Entry] | None = history_after(saver, thread, seed_id)
            for entry in history or ():
                entry["metadata"].pop(SPEND_KEY, None)
            if len(payload_bytes(history)) > HISTORY_LIMIT_BYTES:
                history = None  # too large for one payload: the final state alone goes back
            return Outcome(
                status, dict(values), history=history, seed_id=seed_id,
                head_id=request.head_id, **fields,
            )  # fmt: skip

        usage_before = (request.prior or {}).get("usage") or {}
        since = workflow.info().start_time.timestamp()
        payload = request.payload
        for scope_number in itertools.count():
            self._outcome = None
            scope = open_scope(context, usage_before, started=_monotonic_at(since))
            key = run_key(workflow.info().workflow_id, scope_number)
            run_config = with_scope(
                {**config, "metadata": {**(config.get("metadata") or {}), SPEND_KEY: key}},
                scope,
            )
            try:
                # every step's checkpoint, so the session holds the turn step by step
                output = await app.ainvoke(payload, run_config, context=context, durability="async")
            except Exception as exc:  # reported to the client as in-process runs report it
                workflow.logger.info("turn ended by %s", type(exc).__name__, exc_info=True)
                state = await app.aget_state(config)
                self._outcome = outcome("failed", state.values, error=pickled_error(exc))
                return await self._finished()
            state = await app.aget_state(config)
            question = pending_interrupt(state, output)
            if question is None:
                self._outcome = outcome("finished", state.values)
                return await self._finished()
            self._outcome = outcome("waiting", state.values, interrupt=question)
            usage_before = state.values.get("usage") or {}  # the answered run's session spend
            await workflow.wait_condition(lambda: bool(self._answers))
            payload = Command(resume=self._answers.pop(0))
            since = workflow.now().timestamp()  # a resumed run's deadline counts from the answer
        raise AssertionError("unreachable: the loop returns")


def _monotonic_at(wall: float) -> float:
    """The `time.monotonic()` reading of wall-clock time `wall` on this worker.

    The run's deadline counts from when the turn was submitted (or answered), on whichever
    worker runs or replays the Workflow; the meter keeps monotonic time.
    """
    return time.monotonic() - max(0.0, time.time() - wall)
