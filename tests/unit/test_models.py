"""Model loading: offline by default, environment override, errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from switchyard.core.errors import ModelConfigError
from switchyard.core.models import (
    default_model,
    load_chat_model,
    model_label,
    register_chat_model,
    split_model,
    unregister_chat_model,
)
from switchyard.core.offline import OfflineChatModel
from switchyard.nodes.agent import call_agent
from switchyard.state import AgentSpec
from tests.fakes import ScriptedChatModel


def test_default_is_the_offline_model() -> None:
    assert default_model() == "offline"
    model = load_chat_model()
    assert isinstance(model, OfflineChatModel)
    assert model.model_name == "offline"


def test_switchyard_model_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_MODEL", " offline:from-env ")
    assert default_model() == "offline:from-env"
    model = load_chat_model()
    assert isinstance(model, OfflineChatModel)
    assert model.model_name == "from-env"


def test_blank_environment_falls_back_to_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_MODEL", "   ")
    assert default_model() == "offline"


def test_offline_parameters_are_passed_and_unknown_ones_ignored() -> None:
    model = load_chat_model("offline", latency_s=0.0, fail_on_calls=(2,), temperature=0)
    assert isinstance(model, OfflineChatModel)
    assert model.fail_on_calls == (2,)


def test_models_are_cached_per_name_and_parameters() -> None:
    assert load_chat_model("offline") is load_chat_model("offline")
    assert load_chat_model("offline", temperature=0) is not load_chat_model("offline")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("offline", ("offline", "offline")),
        ("offline:demo", ("offline", "demo")),
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        (
            "bedrock_converse:anthropic.claude-3-5-sonnet-20240620-v1:0",
            ("bedrock_converse", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ),
    ],
)
def test_split_model(model: str, expected: tuple[str, str]) -> None:
    assert split_model(model) == expected


@pytest.mark.parametrize("model", ["gpt-4o", ":gpt-4o", "openai:", "openai"])
def test_malformed_model_string_names_the_expected_form(model: str) -> None:
    with pytest.raises(ModelConfigError, match="must be 'offline' or 'provider:model'") as raised:
        load_chat_model(model)
    assert "openai:gpt-4o-mini" in str(raised.value)


def test_blank_model_string_is_rejected() -> None:
    with pytest.raises(ModelConfigError, match="empty model string"):
        split_model("   ")


def test_unknown_provider_lists_known_ones() -> None:
    with pytest.raises(ModelConfigError) as raised:
        load_chat_model("nosuchprovider:some-model")
    assert str(raised.value) == (
        "unknown model provider 'nosuchprovider': use 'offline' or a LangChain provider such as "
        "openai, anthropic, bedrock_converse, ollama, google_genai, groq"
    )


def test_missing_openai_key_names_the_variable() -> None:
    with pytest.raises(ModelConfigError) as raised:
        load_chat_model("openai:gpt-4o-mini")
    assert str(raised.value) == (
        "provider 'openai' needs credentials: set OPENAI_API_KEY "
        "(or use SWITCHYARD_MODEL=offline to run without a key)"
    )


def test_openai_with_a_key_loads_without_sdk_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    model = load_chat_model("openai:gpt-4o-mini", temperature=0)
    # retries belong to the graph's RetryPolicy; the SDK's own would multiply the attempts
    assert model.max_retries == 0  # type: ignore[attr-defined]
    assert model_label(model) == "openai-chat:gpt-4o-mini"


def test_missing_provider_package_names_the_package() -> None:
    with pytest.raises(ModelConfigError, match=r"pip install langchain-ollama"):
        load_chat_model("ollama:llama3.1")


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere, and no instance-metadata lookup (no network)."""
    for name in (
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_aws")
def test_bedrock_without_aws_credentials_says_what_to_set() -> None:
    with pytest.raises(ModelConfigError) as raised:
        load_chat_model("bedrock_converse:anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert str(raised.value) == (
        "provider 'bedrock_converse' needs AWS credentials: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (or use SWITCHYARD_MODEL=offline)"
    )


@pytest.mark.usefixtures("no_aws")
def test_bedrock_without_region_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with pytest.raises(ModelConfigError, match="needs an AWS region: set AWS_REGION"):
        load_chat_model("bedrock:anthropic.claude-v2")


def test_registered_model_is_returned_by_name_whatever_the_parameters() -> None:
    fake = ScriptedChatModel(script=[])
    register_chat_model("custom:house-model", fake)
    try:
        assert load_chat_model("custom:house-model") is fake
        assert load_chat_model("custom:house-model", temperature=0.3) is fake
    finally:
        unregister_chat_model("custom:house-model")
    with pytest.raises(ModelConfigError, match="unknown model provider 'custom'"):
        load_chat_model("custom:house-model")


def test_registered_model_needs_a_name() -> None:
    with pytest.raises(ModelConfigError, match="non-empty name"):
        register_chat_model("  ", ScriptedChatModel(script=[]))


def test_unregistering_an_unknown_name_is_a_no_op() -> None:
    unregister_chat_model("never-registered")


def test_model_label() -> None:
    assert model_label(OfflineChatModel()) == "offline"
    assert model_label(OfflineChatModel(model_name="demo")) == "offline:demo"
    assert model_label(ScriptedChatModel(script=[])) == "scripted:unknown"


def test_a_model_registered_under_a_plain_name_can_answer() -> None:
    spec = AgentSpec(name="helper", description="Helps.", model="house-model")
    fake = ScriptedChatModel(script=["hello"])
    register_chat_model("house-model", fake)
    try:
        reply = call_agent(spec, [HumanMessage("hi")])
    finally:
        unregister_chat_model("house-model")
    assert reply.output == "hello"
    assert reply.usage["helper/house-model"]["cost_usd"] is None  # no known price: unknown
