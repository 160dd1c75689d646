"""Every pattern end to end on a real model: SmolLM2 135M on llama.cpp's server, through `openai:`.

No mocks: `langchain-openai` talks to `llama-server` (started once for the session by the
`local_llm` fixture) over loopback. A 135M model writes poor answers and often poor JSON, so these
tests assert mechanics, never quality: each run ends `completed` or with one of the end reasons
its pattern documents for what such a model does; whatever ran was recorded with the server's
token counts; no call generated more than its bound; structured output that was handed on is
valid; a handoff is carried out or reported (`no_handoff_capability`), never returned as the
answer; the cost of an unpriced model is unknown, never 0.

Every call here is bounded at 256 output tokens (`SWITCHYARD_MAX_TOKENS`) and may take 300 s
(`Context.timeout_s`): grammar-constrained JSON runs at about 10 tokens/s on this 2-core CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel

from switchyard import declare_capabilities
from switchyard.graphs import demos
from switchyard.graphs.events import build_events_graph
from switchyard.graphs.fanout import build_fanout_graph
from switchyard.graphs.hierarchical import build_hierarchical_graph
from switchyard.graphs.pipeline import build_pipeline_graph
from switchyard.graphs.router import build_router_graph
from switchyard.graphs.supervisor import build_supervisor_graph
from switchyard.graphs.swarm import build_swarm_graph
from switchyard.nodes.textcalls import names_a_call, text_calls
from switchyard.runtime.run import RunResult, run
from switchyard.state import Context
from switchyard.state.hierarchical import Plan
from tests.local_server import LocalLLM

Compiled = CompiledStateGraph[Any, Any, Any, Any]

MAX_TOKENS = 256


@pytest.fixture
def llm(local_llm: LocalLLM, monkeypatch: pytest.MonkeyPatch) -> LocalLLM:
    """The session's server, set as this test's OpenAI endpoint, every call bounded."""
    for name, value in local_llm.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SWITCHYARD_MAX_TOKENS", str(MAX_TOKENS))
    return local_llm


def go(graph: Compiled, message: str, llm: LocalLLM) -> tuple[RunResult, dict[str, Any]]:
    """Run `graph` on the real model; the result and the thread's final state."""
    result = run(graph, message, context=Context(model=llm.model_string, timeout_s=300.0), dlq=None)
    state = graph.get_state({"configurable": {"thread_id": result.thread_id}}).values
    return result, dict(state)


def assert_mechanics(result: RunResult, llm: LocalLLM, allowed: set[str]) -> None:
    """Ended as documented; usage recorded from the server; bounded; cost unknown, not 0."""
    assert result.end_reason in allowed, (result.end_reason, result.error)
    assert result.ok == (result.end_reason == "completed"), result.error
    assert result.usage, "no model call was recorded"
    for key, entry in result.usage.items():
        assert key.endswith(f"/{llm.model_string}"), key
        assert entry["calls"] >= 1
        assert entry["input_tokens"] > 0, key  # the server's own count (or the estimate)
        assert entry["output_tokens"] <= entry["calls"] * MAX_TOKENS, key  # every call bounded
        assert entry["cost_usd"] is None, key  # unpriced: unknown, never 0.0
        assert entry["unpriced_calls"] == entry["calls"]
    assert result.cost_usd is None
    if result.ok:
        assert result.output.strip(), "a completed run answers"


def valid(schema: type[BaseModel], value: Any) -> BaseModel:
    """`value` (as the state holds it) validated against `schema`."""
    return schema.model_validate(value)


def test_router_answers(llm: LocalLLM) -> None:
    graph = build_router_graph(demos.ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver()
    )
    result, state = go(graph, "I need a refund for my last payment", llm)
    assert_mechanics(result, llm, {"completed", "output_truncated"})
    answer = state["messages"][-1]
    assert isinstance(answer, AIMessage)
    assert answer.name == result.agent_name
    if result.ok:
        assert answer.response_metadata.get("finish_reason") == "stop"
    else:  # the model ran to its bound: said so, and the cut-off text is not the answer
        assert f"stopped at its limit of {MAX_TOKENS} output tokens" in result.output
        assert (
            result.usage[f"{result.agent_name}/{llm.model_string}"]["output_tokens"] == MAX_TOKENS
        )


def test_pipeline_hands_on_only_valid_structured_stages(llm: LocalLLM) -> None:
    graph = build_pipeline_graph(demos.PIPELINE_STAGES).compile(checkpointer=InMemorySaver())
    result, state = go(graph, "Write a short note about solar panels", llm)
    assert_mechanics(result, llm, {"completed", "stage_failed", "output_truncated"})
    schemas = {s.name: s.output_schema for s in demos.PIPELINE_STAGES}
    stages = state["stages"]
    for name, record in stages.items():
        schema = schemas[name]
        if record["status"] == "ok" and schema is not None:
            valid(schema, record["output"])  # what the next stage was handed
    if result.ok:
        assert [stages[s.name]["status"] for s in demos.PIPELINE_STAGES] == ["ok"] * 3


def test_fanout_counts_only_valid_reviews(llm: LocalLLM) -> None:
    graph = build_fanout_graph(demos.FANOUT_ANALYSTS, merger=demos.FANOUT_MERGER).compile(
        checkpointer=InMemorySaver()
    )
    result, state = go(graph, "Should we launch a mobile app?", llm)
    assert_mechanics(result, llm, {"completed", "quorum_failed", "no_majority", "output_truncated"})
    schemas = {a.name: a.output_schema for a in demos.FANOUT_ANALYSTS}
    results = state["results"]
    assert set(results) == set(schemas)  # every analyst ran, in parallel
    for name, worker in results.items():
        if worker["status"] == "ok":
            valid(schemas[name], worker["output"])  # type: ignore[arg-type]
        else:
            assert worker["error"]


def test_hierarchical_runs_a_valid_plan_or_says_why_not(llm: LocalLLM) -> None:
    graph = build_hierarchical_graph(
        demos.HIERARCHICAL_WORKERS, manager=demos.HIERARCHICAL_MANAGER
    ).compile(checkpointer=InMemorySaver())
    result, state = go(graph, "Write a function that adds two numbers and document it", llm)
    assert_mechanics(
        result,
        llm,
        {"completed", "plan_invalid", "step_failed", "agent_failed", "output_truncated"},
    )
    plan = state.get("plan")
    if result.ok:
        assert plan is not None
        assert plan["valid"]
        assert plan["steps"]
        if plan["source"] == "manager":
            valid(Plan, {"steps": plan["steps"]})
        assert set(state["results"]) == {step["id"] for step in plan["steps"]}


def test_events_deliver_to_subscribers(llm: LocalLLM) -> None:
    graph = build_events_graph(
        demos.EVENTS_AGENTS,
        subscriptions=demos.EVENTS_SUBSCRIPTIONS,
        publishes=demos.EVENTS_PUBLISHES,
    ).compile(checkpointer=InMemorySaver())
    result, _ = go(graph, "Review this article: cats are great pets.", llm)
    assert_mechanics(
        result,
        llm,
        {"completed", "handler_failed", "unhandled", "max_events", "max_depth", "output_truncated"},
    )
    assert any(key.startswith("reviewer/") for key in result.usage)  # the first subscriber ran


def handed_off(result: RunResult, first: str) -> bool:
    return any(not key.startswith(f"{first}/") for key in result.usage)


def holds_no_call(output: str, peers: Sequence[str]) -> None:
    """An answer returned as such holds no call Switchyard could have read or did not."""
    names = {f"transfer_to_{peer}" for peer in peers}
    assert text_calls(output, names) == [], output
    assert names_a_call(output, names) is None, output


TOOLS = pytest.mark.parametrize("tools", ["native", "as_text"])
"""Tools sent natively (llama-server with `--jinja`), or described in the system message as for
an endpoint without `tools` (`declare_capabilities(..., tool_calls=False)`)."""


@TOOLS
def test_supervisor_delegates_or_answers_without_a_stray_call(llm: LocalLLM, tools: str) -> None:
    if tools == "as_text":
        declare_capabilities(llm.model_string, tool_calls=False)
    graph = build_supervisor_graph(demos.SUPERVISOR_WORKERS).compile(checkpointer=InMemorySaver())
    result, state = go(graph, "What is 12% of 250?", llm)
    assert_mechanics(
        result,
        llm,
        {"completed", "no_handoff_capability", "max_rounds", "agent_failed", "output_truncated"},
    )
    workers = [w.name for w in demos.SUPERVISOR_WORKERS]
    if handed_off(result, "supervisor"):  # the worker got the task the supervisor's call gave
        assert state["results"]
    elif result.ok:
        holds_no_call(result.output, workers)


@TOOLS
def test_swarm_hands_off_or_answers_without_a_stray_call(llm: LocalLLM, tools: str) -> None:
    if tools == "as_text":
        declare_capabilities(llm.model_string, tool_calls=False)
    graph = build_swarm_graph(demos.SWARM_AGENTS, default_agent="triage").compile(
        checkpointer=InMemorySaver()
    )
    result, state = go(graph, "I was charged twice for my subscription", llm)
    assert_mechanics(
        result,
        llm,
        {
            "completed",
            "no_handoff_capability",
            "max_handoffs",
            "ping_pong",
            "agent_failed",
            "output_truncated",
        },
    )
    if handed_off(result, "triage"):
        assert state["handoffs"]
        assert state["active_agent"] == state["handoffs"][-1]["target"]
    elif result.ok:
        holds_no_call(result.output, ["billing", "tech_support"])
