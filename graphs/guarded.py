"""The compiled graph every pattern builds: guardrails that hold however a run is started.

`build_<pattern>_graph` returns a `PatternGraph` (LangGraph's `StateGraph`, unchanged but for what
`compile()` returns), and `compile()` returns a `GuardedGraph` (LangGraph's `CompiledStateGraph`).
Every run of a `GuardedGraph` goes through `stream` / `astream` (`invoke`, `ainvoke`, the run
facade, `langgraph dev`, Studio and the Agent Server all do), where the run's guardrails start:

- the run gets an explicit recursion limit (`Context.recursion_limit`) unless its config names
  one; LangGraph's own default is 10,007 steps;
- a run scope is opened and carried in the run's config to every task (parallel branches, `Send`s
  and subgraphs included): the run's meter (run, session and agent budgets, the deadline) and the
  run-scoped state of middleware. A graph run inside another Switchyard run (a sub-team) joins the
  outer run's scope: one budget and one deadline for the whole run.

Nothing else is added: agents' calls are guarded by their middleware (`switchyard.nodes.chain`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from functools import cached_property
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from switchyard.guardrails.budgets import RunMeter, Spend
from switchyard.guardrails.scope import RunScope, scope_of, with_scope
from switchyard.state.context import Context
from switchyard.state.usage import UsageLedger


def as_context(context: Any) -> Context:
    """The run's `Context` from what a caller passed: a `Context`, its fields as a dict, or None.

    Raises:
        TypeError: A dict with a field `Context` does not have.
        ValueError: A field out of range (see `Context`).
    """
    if isinstance(context, Context):
        return context
    if isinstance(context, dict):
        return Context(**context)
    return Context()


def open_scope(
    context: Context, session_usage: UsageLedger | None = None, *, started: float | None = None
) -> RunScope:
    """A new run's scope: its meter primed with what the session (and each agent) spent before.

    The deadline counts from `started` (a `time.monotonic()` value; now when None).
    """
    session = Spend()
    agents: dict[str, Spend] = {}
    for entry in (session_usage or {}).values():
        # The priced part: a call whose price was unknown then charged no dollars then either.
        dollars = entry.get("known_cost_usd", entry["cost_usd"])
        session.add(entry["total_tokens"], dollars)
        agents.setdefault(entry["agent"], Spend()).add(entry["total_tokens"], dollars)
    start = time.monotonic() if started is None else started
    deadline = None if context.deadline_s is None else start + context.deadline_s
    meter = RunMeter(
        run_budget=context.run_budget,
        session_budget=context.session_budget,
        session_spent=session,
        agent_spent=agents,
        deadline=deadline,
    )
    return RunScope(meter=meter, call_timeout_s=context.timeout_s, retries_left=context.max_retries)


def usage_in(head: CheckpointTuple | None) -> UsageLedger:
    """The usage ledger a thread's newest checkpoint holds (empty for a new thread)."""
    if head is None:
        return {}
    usage: UsageLedger = head.checkpoint["channel_values"].get("usage") or {}
    return usage


class GuardedGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """A compiled pattern whose every run starts its guardrails (see the module docstring)."""

    switchyard_pattern = True
    """Marks a Switchyard pattern: as an agent of another pattern it joins that run's scope."""

    @cached_property
    def _agent_budgets(self) -> bool:
        """Whether any agent of the graph has a budget of its own (it spans the session)."""
        for node in self.builder.nodes.values():
            spec = getattr(node.runnable, "agent", None)
            if getattr(spec, "budget", None) is not None:
                return True
        return False

    def _prepare(
        self, config: RunnableConfig | None, context: Any
    ) -> tuple[RunnableConfig, BaseCheckpointSaver[Any] | None]:
        """The run's config, and the saver to read the session's spend from (if it must be).

        A run that already has a scope (inside an outer run, or opened by the run facade) is
        left as it is. A new run gets the run's recursion limit unless its config names one.
        """
        prepared: RunnableConfig = {**(config or {})}
        if scope_of(prepared) is not None:
            return prepared, None
        if "recursion_limit" not in prepared:
            prepared["recursion_limit"] = as_context(context).recursion_limit
        saver = self.checkpointer
        thread = (prepared.get("configurable") or {}).get("thread_id")
        wanted = as_context(context).session_budget is not None or self._agent_budgets
        reads = wanted and thread is not None and isinstance(saver, BaseCheckpointSaver)
        return prepared, saver if reads and isinstance(saver, BaseCheckpointSaver) else None

    # `stream` and `astream` differ only in how the session's head is read and how parts are
    # passed on; `_prepare` and `open_run` hold what they do.

    def stream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        """`CompiledStateGraph.stream`, within the run's scope."""
        prepared, saver = self._prepare(config, context)
        if scope_of(prepared) is None:
            head = saver.get_tuple(prepared) if saver is not None else None
            prepared = open_run(prepared, context, head)
        return super().stream(input, prepared, context=context, **kwargs)

    async def astream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """`CompiledStateGraph.astream`, within the run's scope."""
        prepared, saver = self._prepare(config, context)
        if scope_of(prepared) is None:
            head = await saver.aget_tuple(prepared) if saver is not None else None
            prepared = open_run(prepared, context, head)
        async for part in super().astream(input, prepared, context=context, **kwargs):
            yield part


def open_run(config: RunnableConfig, context: Any, head: CheckpointTuple | None) -> RunnableConfig:
    """`config` with a new run's scope, primed with the spend `head` (the session) records."""
    return with_scope(config, open_scope(as_context(context), usage_in(head)))


class PatternGraph(StateGraph[Any, Any, Any, Any]):
    """LangGraph's `StateGraph`, whose `compile()` returns a `GuardedGraph`."""

    def compile(self, *args: Any, **kwargs: Any) -> GuardedGraph:
        """Compile as `StateGraph.compile` does (same arguments); the result guards every run."""
        compiled = super().compile(*args, **kwargs)
        fields = {k: v for k, v in compiled.__dict__.items() if k != "__orig_class__"}
        return GuardedGraph(**fields)
