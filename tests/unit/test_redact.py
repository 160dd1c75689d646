"""Secret redaction: every planted credential is masked; ordinary text is left alone."""

from __future__ import annotations

import pytest

from switchyard.core.redact import MASK, is_secret_name, redact, redact_value, secret_env_values

# Shaped like the real thing, but invented for these tests.
OPENAI_KEY = "sk-proj-Zt8qW3nV6yB1xK4mR7pL0sD2fG5hJ9cE"
ANTHROPIC_KEY = "sk-ant-api03-Qw1Er2Ty3Ui4Op5As6Df7Gh8Jk9Lz0Xc"
AWS_KEY_ID = "AKIAZ7Q2M4N6P8R0T1V3"
AWS_SESSION_KEY_ID = "ASIAY6W8X0Z2B4D6F8H1"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl"
LANGSMITH_KEY = "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789"


@pytest.mark.parametrize(
    ("text", "secret", "marker"),
    [
        (f"my key is {OPENAI_KEY}, use it", OPENAI_KEY, "[REDACTED:openai-key]"),
        (f"key={ANTHROPIC_KEY}", ANTHROPIC_KEY, "[REDACTED"),
        (f"id {AWS_KEY_ID} in the config", AWS_KEY_ID, "[REDACTED:aws-key-id]"),
        (f"temporary id {AWS_SESSION_KEY_ID}", AWS_SESSION_KEY_ID, "[REDACTED:aws-key-id]"),
        (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET, "[REDACTED:aws-secret]"),
        (f'{{"AWS_SECRET_ACCESS_KEY": "{AWS_SECRET}"}}', AWS_SECRET, "[REDACTED:aws-secret]"),
        (f"curl -H 'Authorization: Bearer {BEARER}'", BEARER, "Authorization: [REDACTED"),
        (f"token: Bearer {BEARER}", BEARER, "[REDACTED"),
        (f"sent Bearer {BEARER} upstream", BEARER, "Bearer [REDACTED:bearer-token]"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "[REDACTED"),
        (f"LANGSMITH_API_KEY={LANGSMITH_KEY}", LANGSMITH_KEY, "[REDACTED"),
        ("password: hunter2hunter2", "hunter2hunter2", "password: [REDACTED]"),
        ('{"client_secret": "9f8e7d6c5b4a"}', "9f8e7d6c5b4a", "[REDACTED]"),
    ],
)
def test_planted_secrets_are_masked(text: str, secret: str, marker: str) -> None:
    masked = redact(text)
    assert secret not in masked
    assert marker in masked


def test_the_anthropic_key_is_named_as_such() -> None:
    assert redact(ANTHROPIC_KEY) == "[REDACTED:anthropic-key]"


def test_secret_environment_values_are_masked_wherever_they_appear() -> None:
    environ = {
        "ACME_API_KEY": "acme-7f3a9c2e5b8d",
        "GITHUB_TOKEN": "plain-looking-token-value",
        "WEBHOOK_SECRET": "whsec_value_1234",
        "DEBUG": "true",
    }
    text = "called acme with acme-7f3a9c2e5b8d; hook whsec_value_1234; plain-looking-token-value"
    masked = redact(text, environ=environ)
    for value in ("acme-7f3a9c2e5b8d", "whsec_value_1234", "plain-looking-token-value"):
        assert value not in masked
    assert masked.count("[REDACTED:env]") == 3


def test_short_or_non_secret_environment_values_are_not_masked() -> None:
    environ = {"FEATURE_TOKEN": "on", "HOME": "/home/ada", "MODEL": "offline-model-name"}
    assert secret_env_values(environ) == []
    text = "on /home/ada offline-model-name"
    assert redact(text, environ=environ) == text


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens: 1024, total_tokens=57, input_tokens=12",
        "The sky is blue; ask me anything.",
        "task-3f2a1b4c-9d8e-4f7a-8b6c-5d4e3f2a1b0c",
        "the risk-averse plan",
        "usage: {'calls': 1, 'cost_usd': 0.0}",
        "Bearer of bad news",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text, environ={}) == text


def test_redact_value_walks_nested_structures() -> None:
    value = {
        "message": f"use {OPENAI_KEY}",
        "headers": {"Authorization": "Bearer abc", "accept": "json"},
        "api_key": "anything at all",
        "calls": [1, 2.5, True, None, f"id {AWS_KEY_ID}"],
        "pair": ("ok", f"secret {ANTHROPIC_KEY}"),
    }
    masked = redact_value(value, environ={})
    assert masked["headers"] == {"Authorization": MASK, "accept": "json"}
    assert masked["api_key"] == MASK
    assert masked["calls"][:4] == [1, 2.5, True, None]
    assert masked["calls"][4] == "id [REDACTED:aws-key-id]"
    assert masked["pair"] == ("ok", "secret [REDACTED:anthropic-key]")
    flat = repr(masked)
    for secret in (OPENAI_KEY, AWS_KEY_ID, ANTHROPIC_KEY, "anything at all"):
        assert secret not in flat


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("OPENAI_API_KEY", True),
        ("Authorization", True),
        ("client_secret", True),
        ("password", True),
        ("max_tokens", False),
        ("total_tokens", False),
        ("agent", False),
    ],
)
def test_secret_field_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret
