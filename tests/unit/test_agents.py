"""AgentSpec and check_agents: every invalid declaration gets one message that says what to fix."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from switchyard.core.errors import AgentConfigError, SwitchyardError
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.state import AgentSpec, check_agents, make_agent
from tests.fakes import ScriptedChatModel


def spec(name: str, **fields: Any) -> AgentSpec:
    return AgentSpec(name=name, description=f"The {name} agent.", **fields)


def test_valid_agents_are_indexed_by_name_in_order() -> None:
    agents = [spec("support"), spec("docs", handoffs=("support",)), spec("code_review")]
    assert list(check_agents(agents, default_agent="docs")) == ["support", "docs", "code_review"]


def test_agent_config_error_is_a_switchyard_value_error() -> None:
    assert issubclass(AgentConfigError, SwitchyardError)
    assert issubclass(AgentConfigError, ValueError)


def test_empty_agent_list() -> None:
    with pytest.raises(AgentConfigError) as raised:
        check_agents([])
    assert str(raised.value) == "no agents given: a graph needs at least one AgentSpec"


def test_non_spec_in_the_list() -> None:
    with pytest.raises(AgentConfigError) as raised:
        check_agents([spec("support"), {"name": "docs"}])  # type: ignore[list-item]
    assert str(raised.value) == (
        "expected AgentSpec instances, got dict: build agents with AgentSpec(...) or "
        "make_agent(...)"
    )


def test_duplicate_names_are_listed_once_each() -> None:
    agents = [spec("support"), spec("docs"), spec("support"), spec("docs"), spec("code")]
    with pytest.raises(AgentConfigError) as raised:
        check_agents(agents)
    assert str(raised.value) == "duplicate agent names: docs, support; names must be unique"


def test_reserved_names() -> None:
    with pytest.raises(AgentConfigError) as raised:
        check_agents([spec("classify"), spec("docs")], reserved=("classify",))
    assert str(raised.value) == ("name 'classify' is reserved by this pattern; rename the agent")


def test_unknown_default_agent() -> None:
    with pytest.raises(AgentConfigError) as raised:
        check_agents([spec("support"), spec("docs")], default_agent="billing")
    assert str(raised.value) == ("default agent 'billing' is not one of the agents: support, docs")


def test_unknown_handoff_target() -> None:
    agents = [spec("support", handoffs=("billing", "docs", "legal")), spec("docs")]
    with pytest.raises(AgentConfigError) as raised:
        check_agents(agents)
    assert str(raised.value) == (
        "agent 'support' hands off to unknown agents: billing, legal; known agents: support, docs"
    )


def test_self_handoff() -> None:
    with pytest.raises(AgentConfigError) as raised:
        check_agents([spec("support", handoffs=("support",)), spec("docs")])
    assert str(raised.value) == "agent 'support' cannot hand off to itself"


@pytest.mark.parametrize(
    "name", ["Support", "2fast", "customer-support", "with space", "", "_private", "a" * 65]
)
def test_name_must_be_snake_case(name: str) -> None:
    with pytest.raises(ValidationError, match="must be snake_case"):
        spec(name)


@pytest.mark.parametrize("name", ["a", "support", "tier_2_support", "a" * 64])
def test_snake_case_names_are_accepted(name: str) -> None:
    assert spec(name).name == name


def test_make_agent_turns_validation_errors_into_one_line() -> None:
    with pytest.raises(AgentConfigError) as raised:
        make_agent(name="Bad Name", description="x")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("agent 'Bad Name': name: Value error, agent name 'Bad Name' must be")


def test_make_agent_names_every_bad_field() -> None:
    with pytest.raises(AgentConfigError) as raised:
        make_agent(name="support", description="  ", temperature=3, unknown=1)
    message = str(raised.value)
    assert message.startswith("agent 'support': ")
    assert "description: Value error, description must not be empty" in message
    assert "temperature: Input should be less than or equal to 2" in message
    assert "unknown: Extra inputs are not permitted" in message


def test_make_agent_without_a_name() -> None:
    with pytest.raises(AgentConfigError, match=r"^agent '<unnamed>': name: Field required"):
        make_agent(description="x")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_message_pairs", 0),
        ("max_context_tokens", 0),
        ("max_tokens", 0),
        ("timeout_s", 0),
        ("temperature", -0.1),
    ],
)
def test_numeric_limits_are_checked(field: str, value: Any) -> None:
    with pytest.raises(AgentConfigError, match=f"agent 'support': {field}: "):
        make_agent(name="support", description="Support.", **{field: value})


def test_spec_is_frozen_and_description_is_stripped() -> None:
    agent = make_agent(name="support", description="  Refunds.  ")
    assert agent.description == "Refunds."
    with pytest.raises(ValidationError, match="frozen"):
        agent.name = "other"  # type: ignore[misc]


def test_routing_text_joins_name_description_and_examples() -> None:
    agent = spec("code_review", examples=("review my diff", "spot the bug"))
    assert agent.routing_text == "code review The code_review agent. review my diff spot the bug"


def test_an_agent_may_use_a_model_registered_under_a_plain_name() -> None:
    register_chat_model("house-model", ScriptedChatModel(script=[]))
    try:
        assert list(check_agents([spec("support", model="house-model")])) == ["support"]
    finally:
        unregister_chat_model("house-model")


def test_malformed_agent_model_is_reported_at_build_time() -> None:
    with pytest.raises(AgentConfigError) as raised:
        check_agents([spec("support", model="gpt-4o")])
    assert str(raised.value).startswith(
        "agent 'support': model 'gpt-4o' must be 'offline' or 'provider:model'"
    )
