"""The router pattern: topology, exact traces, sticky follow-ups and per-agent isolation."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from syrupy.assertion import SnapshotAssertion

from switchyard.core.errors import AgentConfigError
from switchyard.core.offline import OFFLINE_MARKER
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.demos import router as graph
from switchyard.graphs.router import build_router_graph
from switchyard.nodes.classifiers import (
    Decision,
    LexicalClassifier,
    LLMClassifier,
    semantic_available,
)
from switchyard.state import AgentSpec, Context
from tests.fakes import ScriptedChatModel, scripted

Compiled = CompiledStateGraph[Any, Any, Any, Any]


class ScriptedClassifier:
    """A classifier that returns the given decisions in order and records what it was asked."""

    name = "scripted"

    def __init__(self, agents: Sequence[AgentSpec], *decisions: tuple[str, float]) -> None:
        self.agents = tuple(spec.name for spec in agents)
        self.decisions = list(decisions)
        self.seen: list[str] = []

    def classify(self, text: str, *, model: str | None = None) -> Decision:
        self.seen.append(text)
        agent, confidence = self.decisions.pop(0)
        return Decision(agent, confidence, f"scripted {agent}")

    async def aclassify(self, text: str, *, model: str | None = None) -> Decision:
        return self.classify(text, model=model)


def agents_on_fakes() -> tuple[AgentSpec, ...]:
    """The demo agents, each on its own scripted model `scripted:<name>`."""
    return tuple(
        spec.model_copy(update={"model": f"scripted:{spec.name}"}) for spec in ROUTER_AGENTS
    )


@contextmanager
def fakes(**replies: Sequence[str]) -> Iterator[dict[str, ScriptedChatModel]]:
    """One scripted model per demo agent; an agent given no replies must not be called."""
    with ExitStack() as stack:
        yield {
            spec.name: stack.enter_context(
                scripted(f"scripted:{spec.name}", *replies.get(spec.name, ()))
            )
            for spec in ROUTER_AGENTS
        }


def compile_router(
    agents: Sequence[AgentSpec] = ROUTER_AGENTS,
    *,
    default_agent: str = "support",
    classifier: Any = None,
) -> Compiled:
    return build_router_graph(agents, default_agent=default_agent, classifier=classifier).compile(
        checkpointer=InMemorySaver(), name="router"
    )


def thread(name: str = "t") -> RunnableConfig:
    return {"configurable": {"thread_id": name}, "recursion_limit": 10}


def ask(router: Compiled, text: str, name: str = "t") -> list[tuple[str, dict[str, Any]]]:
    """Send one user message; returns the (node, update) steps in order."""
    steps = router.stream(
        {"messages": [HumanMessage(text)]}, thread(name), context=Context(), stream_mode="updates"
    )
    return [(node, update) for step in steps for node, update in step.items()]


def described(messages: Sequence[BaseMessage]) -> list[tuple[str, str | None, str]]:
    return [(m.type, m.name, m.text) for m in messages]


# --- topology -------------------------------------------------------------------------------

TOPOLOGIES = {
    "demo_lexical": (ROUTER_AGENTS, "support", None),
    "demo_llm": (ROUTER_AGENTS, "docs", "llm"),
    "two_agents": (ROUTER_AGENTS[1:], "code", None),
    "single_agent": (ROUTER_AGENTS[:1], "support", None),
}


@pytest.mark.parametrize("case", list(TOPOLOGIES))
def test_topology(case: str, snapshot: SnapshotAssertion) -> None:
    agents, default_agent, classifier_kind = TOPOLOGIES[case]
    classifier = LLMClassifier(agents) if classifier_kind == "llm" else None
    builder = build_router_graph(agents, default_agent=default_agent, classifier=classifier)
    assert builder.compile().get_graph().draw_mermaid(with_styles=False) == snapshot


def test_exported_graph_is_the_demo_router(snapshot: SnapshotAssertion) -> None:
    assert graph.name == "router"
    assert graph.checkpointer is None  # the Agent Server brings its own
    assert graph.get_graph().draw_mermaid(with_styles=False) == snapshot


def test_schemas_narrow_input_and_output() -> None:
    assert set(graph.get_input_jsonschema()["properties"]) == {"messages"}
    output = set(graph.get_output_jsonschema()["properties"])
    assert {"messages", "route", "usage"} <= output
    assert "active_agent" not in output  # internal bookkeeping stays internal
    context = graph.get_context_jsonschema()
    assert context is not None
    assert "confidence_threshold" in context["properties"]


def test_build_checks_agents_and_classifier() -> None:
    with pytest.raises(AgentConfigError, match="default agent 'billing' is not one of"):
        build_router_graph(ROUTER_AGENTS, default_agent="billing")
    with pytest.raises(AgentConfigError, match="duplicate agent names: docs"):
        build_router_graph([*ROUTER_AGENTS, ROUTER_AGENTS[1]], default_agent="support")
    with pytest.raises(AgentConfigError, match="no agents given"):
        build_router_graph([], default_agent="support")
    classify_agent = AgentSpec(name="classify", description="Clashes with the node.")
    with pytest.raises(AgentConfigError, match="name 'classify' is reserved"):
        build_router_graph([*ROUTER_AGENTS, classify_agent], default_agent="support")
    with pytest.raises(ValueError, match=r"classifier was built for agents \['docs', 'support'\]"):
        build_router_graph(
            ROUTER_AGENTS, default_agent="support", classifier=LexicalClassifier(ROUTER_AGENTS[:2])
        )


# --- offline behaviour ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "agent", "role"),
    [
        ("I need a refund for my last payment", "support", "Customer support agent"),
        ("How do I authenticate with the API using the Python SDK?", "docs", "Documentation agent"),
        ("Write a Python function that reverses a string", "code", "Coding agent"),
    ],
)
@pytest.mark.parametrize("kind", ["default", "lexical"])
def test_demo_questions_reach_the_right_agent_offline(
    text: str, agent: str, role: str, kind: str
) -> None:
    # The default is the semantic classifier when its extra is installed; the lexical one is what
    # a plain install routes with.
    router = compile_router(
        classifier=LexicalClassifier(ROUTER_AGENTS) if kind == "lexical" else None
    )
    steps = ask(router, text)
    assert [node for node, _ in steps] == ["classify", agent]
    route = steps[0][1]["route"]
    assert route["agent"] == agent
    expected = "semantic" if kind == "default" and semantic_available() else "lexical"
    assert route["classifier"] == expected
    assert route["confidence"] >= Context().confidence_threshold
    (reply,) = steps[1][1]["messages"]
    assert reply.name == agent
    assert reply.text.startswith(f"{OFFLINE_MARKER} {role}: I received your request {text!r}")
    assert list(steps[1][1]["usage"]) == [f"{agent}/offline"]


@pytest.mark.parametrize("text", ["xqzv blorp", "thanks!", "hello"])
def test_low_confidence_goes_to_the_default_agent(text: str) -> None:
    # "docs" is not the classifier's first agent, so this is the default rule, not a tie-break
    router = compile_router(default_agent="docs")
    steps = ask(router, text)
    assert [node for node, _ in steps] == ["classify", "docs"]
    route = steps[0][1]["route"]
    assert route["confidence"] == 0.0
    # The classifier names its best guess, or already the default agent when nothing matches.
    assert re.fullmatch(
        r"low confidence \((support|docs) at 0\.00 < 0\.35\) -> default agent docs", route["reason"]
    )


def test_threshold_comes_from_the_context() -> None:
    router = compile_router()
    text = "How do I authenticate with the API?"
    updates = router.stream(
        {"messages": [HumanMessage(text)]},
        thread(),
        context=Context(confidence_threshold=1.0),
        stream_mode="updates",
    )
    nodes = [node for step in updates for node in step]
    assert nodes == ["classify", "support"]


async def test_async_invoke_routes_the_same() -> None:
    router = compile_router()
    output = await router.ainvoke(
        {"messages": [HumanMessage("Which endpoint lists all projects?")]},
        thread(),
        context=Context(),
    )
    assert output["route"]["agent"] == "docs"
    assert output["messages"][-1].name == "docs"
    assert {"messages", "route", "usage"} <= set(output)
    assert "active_agent" not in output


# --- exact traces with scripted models -------------------------------------------------------


def test_exact_trace_of_one_turn() -> None:
    router = compile_router(agents_on_fakes())
    with fakes(support=["Refund issued."]) as models:
        steps = ask(router, "I need a refund for my last payment")
    assert [node for node, _ in steps] == ["classify", "support"]
    (call,) = models["support"].calls
    assert described(call.messages) == [
        ("system", None, ROUTER_AGENTS[0].system_prompt),
        ("human", None, "I need a refund for my last payment"),
    ]
    assert call.tools == []
    agent_update = steps[1][1]
    assert set(agent_update) == {"messages", "usage"}
    assert described(agent_update["messages"]) == [("ai", "support", "Refund issued.")]
    entry = agent_update["usage"]["support/scripted:support"]
    assert (entry["calls"], entry["input_tokens"], entry["output_tokens"]) == (1, 10, 5)


def test_agents_never_see_turns_routed_to_another_agent() -> None:
    router = compile_router(agents_on_fakes())
    with fakes(support=["S1", "S2"], docs=["D1"], code=["C1"]) as models:
        ask(router, "I need a refund for my last payment")
        ask(router, "How do I authenticate with the API?")
        ask(router, "Write a Python function that parses a CSV file")
        ask(router, "I was charged twice this month")
    support_prompt, docs_prompt, code_prompt = (s.system_prompt for s in ROUTER_AGENTS)
    first, second = models["support"].calls
    assert described(first.messages) == [
        ("system", None, support_prompt),
        ("human", None, "I need a refund for my last payment"),
    ]
    assert described(second.messages) == [
        ("system", None, support_prompt),
        ("human", None, "I need a refund for my last payment"),
        ("ai", "support", "S1"),
        ("human", None, "I was charged twice this month"),
    ]
    assert described(models["docs"].calls[0].messages) == [
        ("system", None, docs_prompt),
        ("human", None, "How do I authenticate with the API?"),
    ]
    assert described(models["code"].calls[0].messages) == [
        ("system", None, code_prompt),
        ("human", None, "Write a Python function that parses a CSV file"),
    ]
    # the thread itself keeps everything, in order, each reply named after its agent
    messages = router.get_state(thread()).values["messages"]
    assert [(m.type, m.name, m.text) for m in messages if m.type == "ai"] == [
        ("ai", "support", "S1"),
        ("ai", "docs", "D1"),
        ("ai", "code", "C1"),
        ("ai", "support", "S2"),
    ]


def test_unsure_follow_up_stays_with_the_previous_agent() -> None:
    classifier = ScriptedClassifier(ROUTER_AGENTS, ("docs", 0.9), ("support", 0.1))
    router = compile_router(agents_on_fakes(), classifier=classifier)
    with fakes(docs=["D1", "D2"]) as models:
        ask(router, "How do I authenticate with the API?")
        steps = ask(router, "and then?")
    assert [node for node, _ in steps] == ["classify", "docs"]
    assert steps[0][1]["route"]["reason"] == (
        "follow-up stays with docs: classifier unsure (support at 0.10 < 0.35)"
    )
    assert classifier.seen == ["How do I authenticate with the API?", "and then?"]
    # the follow-up sees the agent's own earlier exchange
    assert described(models["docs"].calls[1].messages)[1:] == [
        ("human", None, "How do I authenticate with the API?"),
        ("ai", "docs", "D1"),
        ("human", None, "and then?"),
    ]


def test_confident_classifier_switches_agent() -> None:
    classifier = ScriptedClassifier(ROUTER_AGENTS, ("docs", 0.9), ("code", 0.8))
    router = compile_router(agents_on_fakes(), classifier=classifier)
    with fakes(docs=["D1"], code=["C1"]) as models:
        ask(router, "How do I authenticate with the API?")
        steps = ask(router, "now write the client for it")
    assert [node for node, _ in steps] == ["classify", "code"]
    assert router.get_state(thread()).values["active_agent"] == "code"
    assert described(models["code"].calls[0].messages)[1:] == [
        ("human", None, "now write the client for it"),
    ]


def test_sticky_follow_up_with_the_lexical_classifier_offline() -> None:
    router = compile_router()
    ask(router, "How do I authenticate with the API?")
    follow_up = ask(router, "thanks, and then?")
    assert [node for node, _ in follow_up] == ["classify", "docs"]
    switch = ask(router, "Write a Python function that parses a CSV file")
    assert [node for node, _ in switch] == ["classify", "code"]


def test_threads_do_not_share_the_previous_agent() -> None:
    router = compile_router()
    ask(router, "How do I authenticate with the API?", name="first")
    steps = ask(router, "thanks, and then?", name="second")
    assert [node for node, _ in steps] == ["classify", "support"]


def test_usage_sums_over_turns_per_agent() -> None:
    router = compile_router(agents_on_fakes())
    with fakes(support=["S1", "S2"], docs=["D1"]):
        ask(router, "I need a refund for my last payment")
        ask(router, "How do I authenticate with the API?")
        ask(router, "I was charged twice this month")
    usage = router.get_state(thread()).values["usage"]
    assert set(usage) == {"support/scripted:support", "docs/scripted:docs"}
    assert usage["support/scripted:support"]["calls"] == 2
    assert usage["support/scripted:support"]["total_tokens"] == 30
    assert usage["docs/scripted:docs"]["calls"] == 1


def test_llm_classifier_usage_is_in_the_ledger() -> None:
    route = AIMessage(
        "",
        tool_calls=[
            {
                "name": "RouteChoice",
                "args": {"agent": "code", "confidence": 0.9, "reason": "code request"},
                "id": "r1",
            }
        ],
    )
    classifier = LLMClassifier(ROUTER_AGENTS, model="scripted:router")
    router = compile_router(agents_on_fakes(), classifier=classifier)
    with scripted("scripted:router", route), fakes(code=["C1"]):
        steps = ask(router, "please write me a parser")
    assert [node for node, _ in steps] == ["classify", "code"]
    assert steps[0][1]["route"] == {
        "agent": "code",
        "confidence": 0.9,
        "reason": "code request",
        "classifier": "llm",
    }
    assert set(router.get_state(thread()).values["usage"]) == {
        "router/scripted:router",
        "code/scripted:code",
    }


def test_context_model_overrides_every_agent_model() -> None:
    router = compile_router(agents_on_fakes())
    with scripted("scripted:run", "from the run model") as run_model, fakes():
        output = router.invoke(
            {"messages": [HumanMessage("I need a refund")]},
            thread(),
            context=Context(model="scripted:run"),
        )
    assert output["messages"][-1].text == "from the run model"
    assert isinstance(run_model.calls[0].messages[0], SystemMessage)
