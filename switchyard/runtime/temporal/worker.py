"""A Temporal worker that runs Switchyard turns: their Workflows and their agents' Activities.

Any number of workers poll one task queue; each registers the same graphs (the seven patterns,
and any user graph named by an import path), so any worker can run any turn's Workflow or any of
its agent nodes. A worker that dies loses nothing: its Workflows are replayed by another worker
from Temporal's history, its in-flight agent Activities are retried there once their heartbeats
stop (`nodes.HEARTBEAT_TIMEOUT`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from langgraph.graph import StateGraph
from temporalio.client import Client
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from switchyard.runtime.engine import TemporalEngine
from switchyard.runtime.registry import load_graph, pattern_names
from switchyard.runtime.temporal.converter import data_converter
from switchyard.runtime.temporal.nodes import durable_graph, use_store
from switchyard.runtime.temporal.tracing import interceptor
from switchyard.runtime.temporal.workflow import Turn

logger = logging.getLogger(__name__)

PASSED_THROUGH = ("switchyard", "graphs", "nodes", "state", "numpy", "pydantic", "pydantic_core")
"""Modules the Workflow sandbox imports once, from the worker, instead of per Workflow run.

Switchyard's graphs are built once per worker (models, classifiers); inline nodes only read and
write state, so sharing these modules keeps replays deterministic and Workflow starts cheap."""


def builders(graphs: Iterable[str] = ()) -> dict[str, StateGraph[Any, Any, Any, Any]]:
    """The graphs a worker serves, by the name runs ask for: every pattern, plus `graphs`.

    Each entry of `graphs` is an import path `module:attribute` naming a compiled graph; it is
    served under the graph's name (`compile(name=...)`).

    Raises:
        GraphNotFoundError: An import path names nothing.
    """
    served: dict[str, StateGraph[Any, Any, Any, Any]] = {}
    for reference in [*pattern_names(), *graphs]:
        compiled = load_graph(reference)
        served[compiled.name if ":" in reference else reference] = compiled.builder
    return served


def plugin(served: Mapping[str, StateGraph[Any, Any, Any, Any]]) -> LangGraphPlugin:
    """The LangGraph plugin for `served`: copies of the graphs, agent nodes as Activities."""
    prepared = {name: durable_graph(builder, name) for name, builder in served.items()}
    made = LangGraphPlugin(graphs={name: entry.graph for name, entry in prepared.items()})
    for entry in prepared.values():
        entry.finish()
    return made


def make_worker(
    client: Client,
    task_queue: str,
    served: Mapping[str, StateGraph[Any, Any, Any, Any]],
    *,
    max_concurrent_activities: int | None = None,
    schedules: str | None = None,
    checkpointer: str | None = None,
) -> Worker:
    """A worker for `served` on `task_queue` (not started: `async with` or `run()` it).

    It also runs the firings of scheduled jobs made with this engine (`schedules.FireJob`),
    from the schedules store `schedules` (None: `SWITCHYARD_SCHEDULES`, ...), their sessions on
    `checkpointer` (as `SWITCHYARD_CHECKPOINTER`).
    """
    from switchyard.runtime.temporal.schedules import FireJob, Firings  # it imports `connect`

    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[Turn, FireJob],
        activities=[Firings(schedules, checkpointer).fire_scheduled_job],
        plugins=[plugin(served)],
        workflow_runner=SandboxedWorkflowRunner(restrictions=restrictions),
        max_concurrent_activities=max_concurrent_activities,
    )


async def connect(engine: TemporalEngine) -> Client:
    """A client of `engine`'s Temporal service, with Switchyard's data converter.

    Raises:
        ConfigError: Nothing answers at the address.
    """
    from switchyard.core.errors import ConfigError

    try:
        return await Client.connect(
            engine.address,
            namespace=engine.namespace,
            data_converter=data_converter,
            interceptors=[interceptor()],  # the turn's trace, carried to every worker
        )
    except RuntimeError as exc:
        reason = "connection refused" if "refused" in str(exc).lower() else "no answer"
        raise ConfigError(
            f"no Temporal server answers at {engine.address} ({reason}); start one "
            "(`temporal server start-dev`) or pass --address"
        ) from None


@contextlib.asynccontextmanager
async def worker_store(setting: str | None) -> AsyncIterator[None]:
    """The deployment's store for agent Activities (`once()`), open while the worker runs.

    `setting` is as `SWITCHYARD_CHECKPOINTER`; "memory" or an in-memory setting gives none
    beyond this process.
    """
    from switchyard.storage.persistence import open_async_store

    async with open_async_store(setting) as store:
        use_store(store)
        try:
            yield
        finally:
            use_store(None)


async def serve(
    engine: TemporalEngine,
    *,
    graphs: Iterable[str] = (),
    store: str | None = None,
    schedules: str | None = None,
    max_concurrent_activities: int | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
) -> None:
    """Run a worker until `stop` is set (or SIGINT/SIGTERM); `on_ready(graph names)` once it polls.

    `store` (as `SWITCHYARD_CHECKPOINTER`) holds the agents' effect ledger and the sessions of
    scheduled firings; `schedules` is the store of the jobs it fires (see `make_worker`).

    Raises:
        ConfigError: No Temporal server answers.
        GraphNotFoundError: A graph's import path names nothing.
    """
    served = builders(graphs)
    client = await connect(engine)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with worker_store(store):
        worker = make_worker(
            client,
            engine.task_queue,
            served,
            max_concurrent_activities=max_concurrent_activities,
            schedules=schedules,
            checkpointer=store,
        )
        async with worker:
            logger.info(
                "worker on %s, task queue %s: %s",
                engine.address,
                engine.task_queue,
                ", ".join(served),
            )
            if on_ready is not None:
                on_ready(list(served))
            await stop.wait()


__all__ = ["builders", "connect", "make_worker", "plugin", "serve"]
