"""Confidence at handoffs: an answer its agent is unsure of goes down the fallback chain, in every
place of every pattern where an agent answers in its own schema (the fallback chain's cases).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel

from switchyard.core.errors import ConfigError
from switchyard.graphs.pipeline import build_pipeline_graph
from switchyard.graphs.router import build_router_graph
from switchyard.guardrails.confidence import ConfidenceGate, reported_confidence
from switchyard.runtime.run import run
from switchyard.state import AgentSpec, Context
from switchyard.storage.dlq import DeadLetterQueue
from tests.unit.test_fallback_chain import (
    CASES,
    ENTRIES,
    PERSON,
    Case,
    Entry,
    models,
    saw,
)


class Graded(BaseModel):
    """An answer with the confidence its agent has in it."""

    answer: str
    confidence: float


def graded(answer: str, confidence: float) -> AIMessage:
    args = {"answer": answer, "confidence": confidence}
    return AIMessage("", tool_calls=[{"name": "Graded", "args": args, "id": "graded"}])


UNSURE = graded("UNSURE ANSWER", 0.2)
SURE = graded("SURE ANSWER", 0.9)

# Every place where the agent answers in its own schema (a manager's plan is a `Plan`).
# (The router's case keeps its demo agent's schema: its default agent is tested below.)
PLACES = [name for name in CASES if name not in ("hierarchical-plan", "supervisor", "router")]


ENDS = {
    "fanout-worker": "quorum_failed",
    "hierarchical-worker": "step_failed",
    "events-handler": "handler_failed",
}
"""Places that are one of several parallel branches: the pattern ends a run for its own reason
when one fails, and the node that joins them asks the person."""


def params() -> list[Any]:
    return [
        pytest.param(CASES[name], entry, id=f"{name}-{entry.name}")
        for name in PLACES
        for entry in ENTRIES.values()
    ]


def gated(case: Case) -> Any:
    """The case's graph, its agent answering in `Graded` and needing a confidence of 0.6."""
    target = AgentSpec(
        name=case.target,
        description=f"The {case.target} agent.",
        model="fake:target",
        fallback_models=("fake:backup",),
        max_attempts=1,
        output_schema=Graded,
        min_confidence=0.6,
    )
    return case.build(target, None).compile(checkpointer=InMemorySaver(), name="gated")


def replies(case: Case, answer: AIMessage) -> list[Any]:
    return [*case.before, *case.replies("")[:-1], answer]


@pytest.mark.parametrize(("case", "entry"), params())
def test_a_confident_answer_is_handed_on(case: Case, entry: Entry) -> None:
    with models(target=replies(case, SURE), backup=[], **case.done) as fakes:
        outcome = entry.start(gated(case), Context())
    assert outcome.end_reason == "completed", outcome
    assert saw("SURE ANSWER", outcome, fakes)


@pytest.mark.parametrize(("case", "entry"), params())
def test_an_unsure_answer_pauses_for_a_person_instead_of_being_handed_on(
    case: Case, entry: Entry
) -> None:
    context = Context(escalate_to_human=True)
    graph = gated(case)
    others = case.after_person if case.after_person is not None else case.done
    with models(target=replies(case, UNSURE), backup=[], **others) as fakes:
        paused = entry.start(graph, context)
        assert paused.end_reason == "escalated", paused
        failures = "; ".join(paused.interrupt["failures"])
        # the person sees the answer and how sure the agent was of it
        assert "reported confidence 0.20, below its threshold 0.60" in failures
        place = next(name for name, known in CASES.items() if known is case)
        if place in ENDS:  # a parallel branch: the node that joins the branches asks
            assert "answer" not in paused.interrupt
        else:  # a node that runs alone says why, and shows the answer
            assert paused.interrupt["reason"] == "low_confidence"
            assert json.loads(paused.interrupt["answer"])["answer"] == "UNSURE ANSWER"
        done = entry.resume(graph, PERSON, context)
    assert done.end_reason == "completed", done
    assert saw(PERSON, done, fakes)
    assert not saw("UNSURE ANSWER", done, fakes)  # never handed on
    assert len(fakes["backup"].calls) == 0  # an unsure answer is no model failure


@pytest.mark.parametrize(("case", "entry"), params())
def test_with_nothing_to_stand_in_an_unsure_answer_ends_the_run(case: Case, entry: Entry) -> None:
    with models(target=replies(case, UNSURE), backup=[], **case.stopped) as fakes:
        outcome = entry.start(gated(case), Context())
    place = next(name for name, known in CASES.items() if known is case)
    assert outcome.end_reason == ENDS.get(place, "low_confidence"), outcome
    assert not saw("UNSURE ANSWER", outcome, fakes)
    if outcome.result is not None:
        assert outcome.dead_letter_id is not None
        assert DeadLetterQueue().get(outcome.dead_letter_id).end_reason == outcome.end_reason


# --- the router's default agent, the run's threshold, configuration -----------------------------


def router(**support: Any) -> Any:
    from langgraph.checkpoint.memory import InMemorySaver

    from switchyard.graphs.demos import ROUTER_AGENTS

    agents = [
        ROUTER_AGENTS[0].model_copy(
            update={"model": "fake:target", "output_schema": Graded, "max_attempts": 1, **support}
        ),
        *[a.model_copy(update={"model": f"fake:{a.name}"}) for a in ROUTER_AGENTS[1:]],
        AgentSpec(name="standby", description="Answers when others cannot.", model="fake:standby"),
    ]
    return build_router_graph(agents, default_agent="standby").compile(checkpointer=InMemorySaver())


def test_the_routers_default_agent_answers_for_an_unsure_agent() -> None:
    with models(target=[UNSURE], standby=["STANDBY ANSWER"]) as fakes:
        result = run(
            router(min_confidence=0.6), "I need a refund for my last payment",
            user_id="u", session_id="s",
        )  # fmt: skip
    assert result.ok, result.error
    assert result.output == "STANDBY ANSWER"
    assert result.agent_name == "standby"
    assert len(fakes["standby"].calls) == 1


def test_the_runs_threshold_overrides_every_agents() -> None:
    with models(target=[graded("FAIR", 0.5)], standby=["STANDBY ANSWER"]):
        result = run(
            router(), "I need a refund for my last payment", user_id="u", session_id="s",
            context=Context(min_confidence=0.7),
        )  # fmt: skip
    assert result.output == "STANDBY ANSWER"  # the agent sets no threshold; the run does
    with models(target=[graded("FAIR", 0.5)]):
        result = run(
            router(min_confidence=0.9), "I need a refund for my last payment",
            user_id="u", session_id="t", context=Context(min_confidence=0.4),
        )  # fmt: skip
    assert json.loads(result.output)["answer"] == "FAIR"


def test_a_graph_wide_gate_is_ordinary_middleware() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    stages = [
        AgentSpec(name="draft", description="Drafts.", model="fake:target", output_schema=Graded),
        AgentSpec(name="edit", description="Edits.", model="fake:edit"),
    ]
    graph = build_pipeline_graph(stages, middleware=[ConfidenceGate(0.6)]).compile(
        checkpointer=InMemorySaver()
    )
    with models(target=[UNSURE], edit=[]) as fakes:
        result = run(graph, "Write it", user_id="u", session_id="s")
    assert result.end_reason == "low_confidence"
    assert fakes["edit"].calls == []  # the next stage never saw the unsure draft


def test_an_unsure_answer_shown_to_a_person_has_passed_the_output_guardrails() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    ssn = "123-45-6789"
    unsure = graded(f"The customer's SSN is {ssn}", 0.2)
    stages = [
        AgentSpec(name="look", description="Looks up.", model="fake:target", output_schema=Graded,
                  min_confidence=0.6),
        AgentSpec(name="write", description="Writes.", model="fake:write"),
    ]  # fmt: skip
    graph = build_pipeline_graph(stages).compile(checkpointer=InMemorySaver())
    context = Context(escalate_to_human=True, guardrail_personal_data="redact")
    with models(target=[unsure], write=[]):
        paused = run(graph, "Look up the customer", user_id="u", session_id="s", context=context)
    assert paused.end_reason == "escalated"
    assert "[REDACTED_US_SSN]" in paused.interrupt["answer"]
    config = {"configurable": {"thread_id": paused.thread_id}}
    stored = [json.dumps(s.values, default=str) for s in graph.get_state_history(config)]
    assert stored
    assert all(ssn not in text for text in stored)


def test_answers_without_a_confidence_pass_and_bad_thresholds_are_refused() -> None:
    class Plain(BaseModel):
        answer: str

    assert reported_confidence(Plain(answer="x")) is None
    assert reported_confidence(Graded(answer="x", confidence=0.3)) == 0.3
    assert reported_confidence("text") is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        ConfidenceGate(1.5)
    with pytest.raises(ConfigError, match="min_confidence must be between 0 and 1"):
        Context(min_confidence=-0.1)
    with pytest.raises(ValueError, match="min_confidence"):
        AgentSpec(name="a", description="A.", min_confidence=2.0)
