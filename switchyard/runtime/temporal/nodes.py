"""A pattern's graph as the LangGraph plugin runs it: agent nodes as Activities, the rest inline.

`durable_graph(builder)` returns a copy of a pattern's `StateGraph` (the original is untouched:
the plugin rewrites the nodes it is given) whose nodes say where they run:

- Nodes that call models or tools (`NodeRunnable`: agents, the router's classifier, the
  manager's planner, fan-out shards; or any node whose metadata says `execute_in="activity"`)
  run as Activities, on any worker of the task queue.
- Bookkeeping nodes (intake, merge, schedule, finish, the fallback and error handlers) run inline
  in the Workflow: they only read and write state, and are cheaper there than a round trip.

Conditional edges (the routers) always run in the Workflow, as the plugin runs them.

An agent node's failure is an answer, not an Activity failure: the node's middleware already
retried its calls within the agent's `timeout_s`, its retry policy and the run's retry budget, so
the Activity returns the exception and the Workflow raises it where LangGraph expects it (the
node's error handler, the fallback chain). Temporal retries an Activity only when its attempt was
lost (a worker killed, its heartbeats stopped), so no policy is applied twice. The run's deadline
travels with the scope (`switchyard.runtime.temporal.scope`): every Activity's middleware stops a
call at it, as in one process; a Workflow waiting for a person is not bounded by it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph._internal._constants import CONFIG_KEY_RUNTIME
from langgraph._internal._runnable import RunnableCallable
from langgraph.errors import GraphBubbleUp
from langgraph.graph import StateGraph
from langgraph.store.base import BaseStore
from temporalio import activity
from temporalio.common import RetryPolicy

from switchyard.guardrails.scope import scope_of, with_scope
from switchyard.nodes.agent import NodeRunnable
from switchyard.observability.logs import correlation_scope
from switchyard.observability.telemetry import run_callbacks
from switchyard.runtime.temporal.errors import pickled_error, unpickled_error
from switchyard.runtime.temporal.meter import SPEND_KEY, shared_client
from switchyard.runtime.temporal.scope import merge, restore, snapshot
from switchyard.runtime.temporal.tracing import node_span

logger = logging.getLogger(__name__)

SCOPE_KEY = "switchyard_scope"
"""Metadata key carrying the scope snapshot from the Workflow to an Activity."""

HEARTBEAT_S = 1.0
"""How often a running agent Activity tells Temporal its worker is alive."""

HEARTBEAT_TIMEOUT = timedelta(seconds=10)
"""How long without a heartbeat before Temporal gives a lost attempt to another worker."""

NODE_LIMIT = timedelta(hours=1)
"""Outer bound of one attempt. The agent's own `timeout_s` per call and the run's deadline (the
Workflow's timeout) stop it long before; this only bounds a node that blocks its worker."""

LOST_ATTEMPT_RETRIES = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=10,
)
"""Retries of an attempt that was lost (the only failures an agent Activity reports)."""

_store: BaseStore | None = None


def use_store(store: BaseStore | None) -> None:
    """Give agent Activities this worker's store (the idempotency ledger's home, `once()`).

    The plugin cannot send a graph's store to an Activity (it is a live connection), so each
    worker opens the deployment's store itself (PostgreSQL when configured) and installs it here.
    """
    global _store
    _store = store


async def _heartbeat() -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_S)


def _activity_config(config: RunnableConfig) -> RunnableConfig:
    """The node's config inside the Activity: the rebuilt scope, and the worker's store."""
    # The plugin restores the node's config as the current one; the scope came in the config
    # argument's metadata (`workflow_side` put it there, for this call only).
    current: RunnableConfig = var_child_runnable_config.get() or config
    sent = (config.get("metadata") or {}).get(SCOPE_KEY)
    metadata = {k: v for k, v in (current.get("metadata") or {}).items() if k != SCOPE_KEY}
    prepared: RunnableConfig = {**current, "metadata": metadata}
    if sent is not None:
        client, key = shared_client(), metadata.get(SPEND_KEY)
        shared = (client, str(key)) if client is not None and key else None
        runtime = (prepared.get("configurable") or {}).get(CONFIG_KEY_RUNTIME)
        context = getattr(runtime, "context", None)
        retries = getattr(context, "max_retries", None)
        prepared = with_scope(prepared, restore(sent, shared=shared, max_retries=retries))
    configurable = dict(prepared.get("configurable") or {})
    runtime = configurable.get(CONFIG_KEY_RUNTIME)
    if runtime is not None and _store is not None:
        configurable[CONFIG_KEY_RUNTIME] = dataclasses.replace(runtime, store=_store)
        prepared = {**prepared, "configurable": configurable}
    return prepared


def activity_side(
    node: Runnable[Any, Any], name: str, *, node_name: str, agent: str | None = None
) -> Callable[..., Awaitable[Any]]:
    """What the Activity runs: `node` in its rebuilt scope; its result, error and scope back.

    The node runs in a span of its own (`tracing.node_span`, under Temporal's `RunActivity`
    span, so in the turn's trace) with the run's telemetry callbacks, and its log lines carry
    the run's correlation id, as on the client's machine.
    """

    async def run_node(state: Any, config: RunnableConfig) -> dict[str, Any]:
        prepared = _activity_config(config)
        metadata = prepared.get("metadata") or {}
        prepared["callbacks"] = run_callbacks()
        result: Any = None
        error: bytes | None = None
        with (
            correlation_scope(str(metadata.get("correlation_id") or "")),
            node_span(node_name, agent, metadata),
        ):
            token = var_child_runnable_config.set(prepared)
            beating = asyncio.create_task(_heartbeat())
            try:
                result = await node.ainvoke(state, prepared)
            except GraphBubbleUp:  # interrupts and other control flow: the plugin carries them
                raise
            except Exception as exc:
                logger.info("node %s raised %s", name, type(exc).__name__, exc_info=True)
                error = pickled_error(exc)
            finally:
                beating.cancel()
                var_child_runnable_config.reset(token)
        scope = scope_of(prepared)
        return {
            "result": result,
            "error": error,
            "scope": snapshot(scope) if scope is not None else None,
        }

    # The plugin names an Activity's cache entry by its function's module and qualified name.
    run_node.__qualname__ = f"activity_side.{name}"
    return run_node


def workflow_side(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """What the Workflow runs for an agent node: send the scope, merge what comes back."""

    async def call_node(state: Any, config: RunnableConfig) -> Any:
        scope = scope_of(config)
        before = snapshot(scope) if scope is not None else None
        sent: RunnableConfig = {
            **config,
            "metadata": {**(config.get("metadata") or {}), SCOPE_KEY: before},
        }
        outcome = await call(state, config=sent)
        if scope is not None and before is not None and outcome["scope"] is not None:
            merge(scope, before, outcome["scope"])
        if outcome["error"] is not None:
            raise unpickled_error(outcome["error"])
        return outcome["result"]

    return call_node


def runs_as_activity(spec: Any) -> bool:
    """Whether a node runs as an Activity (see the module docstring)."""
    where = (spec.metadata or {}).get("execute_in")
    if where is not None:
        return bool(where == "activity")
    return isinstance(spec.runnable, NodeRunnable)


def in_workflow(runnable: Any) -> Any:
    """`runnable` as it must run inside a Workflow: a sync function called, not sent to a thread.

    LangGraph runs a sync node or router of an async run in the loop's thread pool; a Workflow's
    event loop has none (its code must stay on the Workflow's thread to replay the same way).
    """
    if isinstance(runnable, RunnableCallable) and runnable.func is not None and runnable.afunc:
        runnable = copy.copy(runnable)
        runnable.afunc = None  # `ainvoke` then calls `func` directly
    return runnable


def durable_graph(builder: StateGraph[Any, Any, Any, Any], name: str) -> DurableGraph:
    """A copy of `builder` ready for the LangGraph plugin (call `finish` once it is made)."""
    durable = copy.copy(builder)
    durable.branches = defaultdict(dict)
    for source, branches in builder.branches.items():
        for label, branch in branches.items():
            durable.branches[source][label] = branch._replace(path=in_workflow(branch.path))
    durable.nodes = {}
    inline: dict[str, Any] = {}
    for node, spec in builder.nodes.items():
        metadata = {k: v for k, v in (spec.metadata or {}).items() if k != "execute_in"}
        if runs_as_activity(spec):
            runnable = RunnableCallable(
                None,
                activity_side(
                    cast(Runnable[Any, Any], spec.runnable),
                    f"{name}.{node}",
                    node_name=node,
                    agent=_agent_of(spec.runnable),
                ),
                name=node,
                trace=False,
            )
            metadata.update(
                execute_in="activity",
                start_to_close_timeout=NODE_LIMIT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=LOST_ATTEMPT_RETRIES,
                summary=f"{name} {node}",
            )
        else:
            # The plugin rewrites what it is given; an inline node gets its own runnable back
            # afterwards (the plugin would drop arguments such as an error handler's `error`).
            inline[node] = in_workflow(spec.runnable)
            runnable = RunnableCallable(_inline_placeholder, name=node, trace=False)
            metadata["execute_in"] = "workflow"
        durable.nodes[node] = dataclasses.replace(spec, runnable=runnable, metadata=metadata)
    return DurableGraph(durable, inline)


def _agent_of(runnable: Any) -> str | None:
    """The name of the agent a node runs, if it runs one."""
    agent = getattr(runnable, "agent", None)
    name = getattr(agent, "name", None)
    return name if isinstance(name, str) else None


def _inline_placeholder(state: Any) -> Any:
    """Stands for an inline node while the plugin is built (`DurableGraph.finish` replaces it)."""
    raise RuntimeError("durable_graph(...).finish() was not called after the plugin was made")


@dataclasses.dataclass
class DurableGraph:
    """A graph prepared for the plugin, and the inline nodes to restore once it is made."""

    graph: StateGraph[Any, Any, Any, Any]
    inline: dict[str, Any]

    def finish(self) -> StateGraph[Any, Any, Any, Any]:
        """After the plugin wrapped the nodes: inline nodes back, scope passing around the rest."""
        for node, spec in list(self.graph.nodes.items()):
            if node in self.inline:
                self.graph.nodes[node] = dataclasses.replace(spec, runnable=self.inline[node])
            elif isinstance(spec.runnable, RunnableCallable) and spec.runnable.afunc is not None:
                spec.runnable.afunc = workflow_side(spec.runnable.afunc)
        return self.graph
