"""Each pattern built around one agent, `helper`, in an agent's or a worker's place.

Tests of a guardrail that must hold in every pattern parametrise over `PATTERNS` and hand it the
`helper` spec they need (a graph agent, a hanging model, a budget, ...). The supervisor is an
offline model that delegates whenever it can (`eager_supervisor()` registers it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel

from switchyard import (
    AgentSpec,
    Context,
    OfflineChatModel,
    RunResult,
    build_events_graph,
    build_fanout_graph,
    build_hierarchical_graph,
    build_pipeline_graph,
    build_router_graph,
    build_supervisor_graph,
    build_swarm_graph,
    demos,
    register_chat_model,
    run,
    unregister_chat_model,
)

EAGER = "offline:eager"


@contextmanager
def eager_supervisor() -> Iterator[None]:
    """An offline supervisor model that delegates whenever it can (to its only worker here)."""
    register_chat_model(EAGER, OfflineChatModel(model_name="eager", tool_threshold=0.0))
    try:
        yield
    finally:
        unregister_chat_model(EAGER)


def helper(**changes: Any) -> AgentSpec:
    """The agent each pattern is built around: `helper`, with `changes` to its spec."""
    fields: dict[str, Any] = {
        "name": "helper",
        "description": "Helps with refunds, facts, numbers and anything else asked.",
        "examples": ("I need a refund", "help me"),
        "max_attempts": 1,
    }
    return AgentSpec(**{**fields, **changes})


def offline_worker(name: str) -> AgentSpec:
    """An agent on the offline model."""
    return AgentSpec(name=name, description=f"The {name} agent.")


Build = Callable[[AgentSpec], Pregel[Any, Any, Any, Any]]

PATTERNS: dict[str, Build] = {
    "router": lambda helper: build_router_graph(
        [helper, *demos.ROUTER_AGENTS[1:]], default_agent="helper"
    ).compile(checkpointer=InMemorySaver()),
    "pipeline": lambda helper: build_pipeline_graph([helper, offline_worker("edit")]).compile(
        checkpointer=InMemorySaver()
    ),
    "fanout": lambda helper: build_fanout_graph([helper, offline_worker("second")]).compile(
        checkpointer=InMemorySaver()
    ),
    "hierarchical": lambda helper: build_hierarchical_graph(
        [helper, offline_worker("writer")], manager=offline_worker("manager")
    ).compile(checkpointer=InMemorySaver()),
    "events": lambda helper: build_events_graph(
        [helper], subscriptions={"request.received": ["helper"]}
    ).compile(checkpointer=InMemorySaver()),
    "supervisor": lambda helper: build_supervisor_graph(
        [helper],
        supervisor=AgentSpec(
            name="supervisor", description="Delegates every request.", model=EAGER
        ),
    ).compile(checkpointer=InMemorySaver()),
    "swarm": lambda helper: build_swarm_graph([helper], default_agent="helper").compile(
        checkpointer=InMemorySaver()
    ),
}
"""Each pattern with the agent `helper` in an agent's or a worker's place (in-memory threads)."""


@dataclass
class Ended:
    """How a run ended, whether it was started with `run()` or a plain `graph.invoke`.

    Attributes:
        end_reason: The run's end reason (None: a plain invoke whose state set none).
        error: The facade's error, or the state's `end_detail` after a plain invoke.
        answer: The last AI message's text.
        config: The thread's config, to read its state.
        result: The facade's `RunResult` (None after a plain invoke).
    """

    end_reason: str | None
    error: str
    answer: str
    config: RunnableConfig
    result: RunResult | None = None


def run_or_invoke(
    graph: Pregel[Any, Any, Any, Any],
    entry: str,
    text: str = "I need a refund",
    context: Context | None = None,
) -> Ended:
    """Start one run on `text` through the facade (`entry="run"`) or a plain `graph.invoke`."""
    context = context or Context()
    if entry == "run":
        result = run(graph, text, user_id="ada", context=context)
        config: RunnableConfig = {"configurable": {"thread_id": result.thread_id}}
        return Ended(result.end_reason, str(result.error), result.output, config, result)
    config = {"configurable": {"thread_id": "t"}}
    state = graph.invoke({"messages": [HumanMessage(text)]}, config, context=context)
    answers = [m for m in state.get("messages", []) if isinstance(m, AIMessage)]
    return Ended(
        state.get("end_reason"),
        str(state.get("end_detail")),
        answers[-1].text if answers else "",
        config,
    )
