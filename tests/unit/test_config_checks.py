"""Configuration is checked before anything runs: one line naming what to fix, exit code 2.

From Python each bad setting is a `SwitchyardError` subclass (`ConfigError`, `InvalidInputError`);
from the CLI it is one line on stderr, exit code 2, and nothing is written: no checkpoint, no dead
letter.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from switchyard.cli import main
from switchyard.core.errors import ConfigError, InvalidInputError, SwitchyardError
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.pipeline import build_pipeline_graph
from switchyard.graphs.router import build_router_graph
from switchyard.guardrails.breaker import (
    REDIS_ENV,
    MemoryStore,
    RedisStore,
    breaker_for,
    check_redis,
    configure_breakers,
)
from switchyard.guardrails.cache import CACHE_ENV, enable_response_cache
from switchyard.runtime.run import run
from switchyard.state.agents import AgentSpec
from switchyard.state.context import Context
from switchyard.storage.dlq import DeadLetterQueue

REDIS_URL = "redis://127.0.0.1:6379/0"  # the suite's Redis (see test_breaker.py)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("switchyard: error: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --------------------------------------------------------------------------- Context


def _literal_fields(schema: type[Context]) -> list[tuple[str, tuple[Any, ...]]]:
    hints = get_type_hints(schema)
    return [
        (f.name, get_args(hints[f.name]))
        for f in dataclasses.fields(schema)
        if get_origin(hints[f.name]) is Literal
    ]


def test_context_has_literal_fields_to_check() -> None:
    assert ("durability", ("sync", "async", "exit")) in _literal_fields(Context)


@pytest.mark.parametrize(("name", "choices"), _literal_fields(Context))
def test_every_literal_field_accepts_its_values_and_refuses_others(
    name: str, choices: tuple[Any, ...]
) -> None:
    for choice in choices:
        assert getattr(Context(**{name: choice}), name) == choice
    with pytest.raises(ConfigError) as refused:
        Context(**{name: "never"})
    allowed = ", ".join(repr(c) for c in choices)
    assert str(refused.value) == f"{name} must be one of {allowed}, got 'never'"


def test_a_literal_field_added_later_is_checked_without_being_listed() -> None:
    @dataclasses.dataclass(kw_only=True)
    class TonedContext(Context):
        tone: Literal["plain", "formal"] = "plain"
        audience: Literal["staff", "public"] | None = None

    assert TonedContext(tone="formal", audience=None).tone == "formal"
    with pytest.raises(ConfigError, match="tone must be one of 'plain', 'formal', got 'loud'"):
        TonedContext(tone="loud")
    with pytest.raises(ConfigError, match="audience must be one of 'staff', 'public'"):
        TonedContext(audience="everyone")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"recursion_limit": -1}, "recursion_limit must be positive, got -1"),
        ({"max_handoffs": 0}, "max_handoffs must be positive, got 0"),
        ({"max_input_chars": -10}, "max_input_chars must be positive, got -10"),
        ({"max_message_pairs": -2}, "max_message_pairs must be positive when set, got -2"),
        ({"max_context_tokens": 0}, "max_context_tokens must be positive when set, got 0"),
        ({"deadline_s": -5.0}, "deadline_s must be positive when set, got -5.0"),
        ({"deadline_s": math.nan}, "deadline_s must be a number, got nan"),
        ({"confidence_threshold": -0.1}, "confidence_threshold must be between 0 and 1"),
        ({"max_handoffs": "5"}, "max_handoffs must be a whole number, got '5'"),
        ({"recursion_limit": 2.5}, "recursion_limit must be a whole number, got 2.5"),
        ({"confidence_threshold": True}, "confidence_threshold must be a number, got True"),
        ({"escalate_to_human": "false"}, "escalate_to_human must be true or false, got 'false'"),
        ({"run_budget": {"max_tokens": -5}}, "run_budget.max_tokens: Input should be greater"),
        ({"session_budget": {"max_usd": 0}}, "session_budget.max_usd: Input should be greater"),
    ],
)
def test_bad_limits_are_one_config_error(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Context(**settings)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)
    assert isinstance(refused.value, SwitchyardError)
    assert isinstance(refused.value, ValueError)  # what callers caught before


def test_valid_contexts_still_pass() -> None:
    Context(max_message_pairs=None, deadline_s=None, run_budget={"max_tokens": 10}, max_handoffs=3)
    Context(confidence_threshold=1, deadline_s=30)  # ints where floats are expected


# --------------------------------------------------------------------------- empty session id


@pytest.mark.parametrize("session", ["", "   "])
def test_run_refuses_an_empty_session_id(session: str) -> None:
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )
    with pytest.raises(InvalidInputError, match="session_id must be a non-empty string"):
        run(graph, "I need a refund", session_id=session, dlq=None)
    assert run(graph, "I need a refund", session_id=None, dlq=None).session_id  # a new one


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--session", ""], "--session is empty"),
        (["--session", "  "], "--session is empty"),
        (["--user", ""], "--user is empty"),
    ],
)
def test_the_cli_refuses_an_empty_session_or_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], message: str
) -> None:
    store = tmp_path / "state.sqlite"
    assert main(["run", "router", "I need a refund", *option, "--checkpointer", str(store)]) == 2
    assert message in _one_error_line(capsys)
    assert not store.exists()  # nothing was started


# --------------------------------------------------------------------------- Redis


def test_an_unreachable_redis_is_one_config_error_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _closed_port()
    monkeypatch.setenv(REDIS_ENV, f"redis://:hunter2@127.0.0.1:{port}/0")
    store = tmp_path / "state.sqlite"
    assert main(["run", "router", "I need a refund", "--checkpointer", str(store)]) == 2
    err = _one_error_line(capsys)
    assert f"Redis at 127.0.0.1:{port} ({REDIS_ENV}) does not answer" in err
    assert "hunter2" not in err
    assert not store.exists()
    assert DeadLetterQueue().list() == []  # not a failed run: no run at all


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:6379", "SWITCHYARD_REDIS_URL is not a Redis URL"),
        ("unix:///nonexistent/redis.sock", "Redis at /nonexistent/redis.sock"),
    ],
)
def test_a_malformed_or_missing_redis_is_one_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        check_redis(url)
    assert "\n" not in str(refused.value)


def test_the_python_api_gets_a_config_error_not_a_retried_connection_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(REDIS_ENV, f"redis://127.0.0.1:{_closed_port()}/0")
    configure_breakers()
    with pytest.raises(ConfigError, match="does not answer"):
        breaker_for("offline")
    monkeypatch.delenv(REDIS_ENV)
    assert isinstance(breaker_for("offline").store, MemoryStore)  # nothing half-configured


def test_run_refuses_an_unreachable_redis_before_touching_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(REDIS_ENV, f"redis://127.0.0.1:{_closed_port()}/0")
    configure_breakers()
    saver = InMemorySaver()
    graph = build_pipeline_graph([AgentSpec(name="a", description="x")]).compile(checkpointer=saver)
    with pytest.raises(ConfigError, match="does not answer"):
        run(graph, "I need a refund", user_id="ada", session_id="s")
    assert list(saver.list(None)) == []  # not a failed run: no run at all
    assert DeadLetterQueue().list() == []


def test_run_refuses_bad_rate_limits_before_touching_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWITCHYARD_RATE_LIMITS", '{"openai:gpt-4o-mini": {"rpm": -1}}')
    saver = InMemorySaver()
    graph = build_pipeline_graph([AgentSpec(name="a", description="x")]).compile(checkpointer=saver)
    with pytest.raises(ConfigError, match="SWITCHYARD_RATE_LIMITS"):
        run(graph, "I need a refund", user_id="ada", session_id="s")
    assert list(saver.list(None)) == []  # not a failed run: no run at all
    assert DeadLetterQueue().list() == []


def test_a_reachable_redis_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        check_redis(REDIS_URL)
    except ConfigError as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI") == "true":
            pytest.fail(f"the suite's Redis must run in CI: {exc}", pytrace=False)
        pytest.skip(f"the suite's Redis is not running: {exc}")
    check_redis("")  # unset: nothing to check
    monkeypatch.setenv(REDIS_ENV, REDIS_URL)
    configure_breakers()
    assert isinstance(breaker_for("offline").store, RedisStore)
    assert main(["run", "router", "hi", "--checkpointer", str(tmp_path / "s.sqlite")]) == 0
    capsys.readouterr()


# --------------------------------------------------------------------------- response cache


def _blocked_paths(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("plain text, not a database " * 100)
    return {
        "under a regular file": a_file / "cache.sqlite",
        "a directory": tmp_path,
        "not a database": not_sqlite,
    }


@pytest.mark.parametrize("kind", ["under a regular file", "a directory", "not a database"])
def test_an_unusable_cache_path_is_one_config_error(tmp_path: Path, kind: str) -> None:
    path = _blocked_paths(tmp_path)[kind]
    with pytest.raises(ConfigError) as refused:
        enable_response_cache(path)
    message = str(refused.value)
    assert message.startswith(f"cannot use the response cache at {str(path)!r}: ")
    assert f"set {CACHE_ENV} to a writable file path" in message
    assert "\n" not in message


def test_the_cli_refuses_an_unusable_cache_path_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(_blocked_paths(tmp_path)["under a regular file"]))
    store = tmp_path / "state.sqlite"
    assert main(["run", "router", "hi", "--checkpointer", str(store)]) == 2
    assert "cannot use the response cache at " in _one_error_line(capsys)
    assert not store.exists()


# --------------------------------------------------------------------------- dead-letter queue


def test_the_cli_refuses_an_unusable_dead_letter_queue_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_DLQ", str(_blocked_paths(tmp_path)["under a regular file"]))
    store = tmp_path / "state.sqlite"
    # The run would succeed: the bad queue is found before it, not after some run fails.
    assert main(["run", "router", "hi", "--checkpointer", str(store)]) == 2
    assert "cannot open the dead-letter queue at " in _one_error_line(capsys)
    assert not store.exists()
