"""An agent may be any compiled graph: here one built by `langchain.agents.create_agent`.

In every pattern, one agent is a `create_agent` graph on the scripted fake model. It answers in
its place; its model calls are in the run's ledger under its name; its own budget refuses a call
before the call is sent; the run's deadline stops it; a failure goes down the pattern's path (and
a failed run to the dead-letter queue); a graph agent that loops forever meets the run's
recursion limit.
"""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from switchyard import (
    AgentSpec,
    Budget,
    Context,
    DeadLetterQueue,
    OfflineChatModel,
    build_pipeline_graph,
    build_swarm_graph,
    run,
)
from tests.fakes import Reply, ScriptedChatModel
from tests.patterns import PATTERNS, offline_worker

ANSWER = "Answered by the graph agent."


def graph_agent(
    *replies: Reply, budget: Budget | None = None
) -> tuple[AgentSpec, ScriptedChatModel]:
    """A `create_agent` graph on a scripted model, as the agent `helper`."""
    model = ScriptedChatModel(script=list(replies), label="helper")
    graph = create_agent(model, tools=[], name="helper")
    spec = AgentSpec(
        name="helper",
        description="Helps with refunds, facts, numbers and anything else asked.",
        examples=("I need a refund", "help me"),
        graph=graph,
        budget=budget,
    )
    return spec, model


pytestmark = pytest.mark.usefixtures("eager")


REFUSED = {
    "router": "budget_exceeded",
    "pipeline": "budget_exceeded",
    "fanout": "budget_exceeded",
    "hierarchical": "step_failed",  # the writer's step depends on it and is skipped
    "events": "budget_exceeded",
    "supervisor": "budget_exceeded",
    "swarm": "budget_exceeded",
}
"""How each pattern ends when the graph agent's own budget refuses its call."""


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_graph_agent_answers_and_its_calls_are_in_the_ledger(pattern: str) -> None:
    helper, model = graph_agent(ANSWER)
    result = run(PATTERNS[pattern](helper), "I need a refund", dlq=None)
    assert result.ok, (result.end_reason, result.error)
    model.assert_consumed()
    (key,) = [key for key in result.usage if key.startswith("helper/")]
    entry = result.usage[key]
    assert (entry["calls"], entry["input_tokens"], entry["output_tokens"]) == (1, 10, 5)
    if pattern in ("router", "swarm"):
        assert (result.agent_name, result.output) == ("helper", ANSWER)


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_graph_agents_own_budget_refuses_its_call_before_it_is_sent(pattern: str) -> None:
    helper, model = graph_agent(ANSWER, budget=Budget(max_tokens=5))
    result = run(PATTERNS[pattern](helper), "I need a refund")
    assert result.end_reason == REFUSED[pattern], result.error
    assert model.calls == []  # the scripted model was never called
    assert result.dead_letter_id is not None
    assert DeadLetterQueue().get(result.dead_letter_id).end_reason == result.end_reason


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_the_runs_deadline_stops_a_graph_agent(pattern: str) -> None:
    helper, model = graph_agent(ANSWER)
    result = run(PATTERNS[pattern](helper), "I need a refund", context=Context(deadline_s=1e-6))
    assert result.end_reason == "deadline", result.error
    assert model.calls == []


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_graph_agents_budget_and_the_deadline_hold_through_a_plain_invoke(pattern: str) -> None:
    # No run facade: the compiled pattern opens the run's scope itself.
    state = {"messages": [HumanMessage("I need a refund")]}
    budgeted, refused_model = graph_agent(ANSWER, budget=Budget(max_tokens=5))
    refused = PATTERNS[pattern](budgeted).invoke(state, {"configurable": {"thread_id": "b"}})
    assert refused["end_reason"] == REFUSED[pattern]
    helper, late_model = graph_agent(ANSWER)
    late = PATTERNS[pattern](helper).invoke(
        state, {"configurable": {"thread_id": "d"}}, context=Context(deadline_s=1e-6)
    )
    assert late["end_reason"] == "deadline"
    assert refused_model.calls == late_model.calls == []


def test_a_failing_graph_agent_is_handled_as_any_failing_agent() -> None:
    helper, _ = graph_agent(ValueError("the helper's model is down"))
    graph = PATTERNS["pipeline"](helper)
    result = run(graph, "I need a refund")
    assert result.end_reason == "stage_failed"
    assert "the helper's model is down" in (result.error or "")
    assert DeadLetterQueue().get(result.dead_letter_id or "").end_reason == "stage_failed"


def test_a_graph_agent_that_loops_meets_the_runs_recursion_limit() -> None:
    @tool
    def look_up(query: str) -> str:
        """Look something up."""
        return "nothing found"

    again = AIMessage("", tool_calls=[{"name": "look_up", "args": {"query": "x"}, "id": "c"}])
    model = ScriptedChatModel(script=[again] * 50, label="helper")
    helper = AgentSpec(
        name="helper",
        description="Looks things up.",
        graph=create_agent(model, tools=[look_up], name="helper"),
    )
    graph = PATTERNS["pipeline"](helper)
    result = run(graph, "Find it", context=Context(recursion_limit=8))
    assert result.end_reason == "recursion_limit", result.error
    assert 0 < len(model.calls) < 50  # stopped by the limit, not by the script


async def test_a_graph_agents_timeout_bounds_it_under_arun() -> None:
    from switchyard import arun

    slow = OfflineChatModel(model_name="slow", latency_s=5.0)
    helper = AgentSpec(
        name="helper",
        description="Slow to answer.",
        graph=create_agent(slow, tools=[], name="helper"),
        timeout_s=0.05,
    )
    result = await arun(PATTERNS["pipeline"](helper), "Take your time")
    assert result.end_reason == "stage_failed"
    assert "AgentTimeoutError" in (result.error or "")


def test_a_bare_compiled_graph_is_an_agent_named_after_it() -> None:
    model = ScriptedChatModel(script=[ANSWER], label="helper")
    graph = build_swarm_graph(
        [create_agent(model, tools=[], name="helper")], default_agent="helper"
    )
    result = run(graph.compile(checkpointer=InMemorySaver()), "Hello", dlq=None)
    assert (result.ok, result.agent_name, result.output) == (True, "helper", ANSWER)


def test_a_graph_agent_on_the_offline_model_is_ledgered_as_offline() -> None:
    # The model name comes from the call's LangSmith metadata: the offline model reports its
    # own provider, so the entry matches a spec agent's (and is priced: free).
    editor = create_agent(OfflineChatModel(), tools=[], name="editor")
    graph = build_pipeline_graph([offline_worker("research"), editor])
    result = run(graph.compile(checkpointer=InMemorySaver()), "Heat pumps", dlq=None)
    assert result.ok
    assert sorted(result.usage) == ["editor/offline", "research/offline"]
    assert result.cost_usd == 0.0
