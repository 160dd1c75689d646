"""Structured logging: one JSON object per line, correlation ids from the run, secrets masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.graph import START, StateGraph
from typing_extensions import TypedDict

from switchyard.observability.logs import (
    configure_logging,
    correlation_scope,
    current_correlation_id,
)

OPENAI_KEY = "sk-proj-Zt8qW3nV6yB1xK4mR7pL0sD2fG5hJ9cE"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """JSON logging of the `switchyard` loggers into a buffer; the logger is restored afterwards."""
    logger = logging.getLogger("switchyard")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    stream = io.StringIO()
    configure_logging(json_lines=True, stream=stream)
    yield stream
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_object_with_the_standard_fields(log_stream: io.StringIO) -> None:
    log = logging.getLogger("switchyard.test")
    log.info("first %s", "record", extra={"agent": "support", "tokens": 42})
    log.warning("second\nrecord spans two lines")
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "first record"
    assert first["level"] == "INFO"
    assert first["logger"] == "switchyard.test"
    assert (first["agent"], first["tokens"]) == ("support", 42)
    assert first["ts"].endswith("+00:00")
    assert second["message"] == "second\nrecord spans two lines"


def test_correlation_id_comes_from_the_scope_or_extra(log_stream: io.StringIO) -> None:
    log = logging.getLogger("switchyard.test")
    log.info("outside")
    with correlation_scope("corr-1"):
        assert current_correlation_id() == "corr-1"
        log.info("inside")
        log.info("explicit", extra={"correlation_id": "corr-2"})
    assert current_correlation_id() is None
    ids = [r["correlation_id"] for r in _records(log_stream)]
    assert ids == [None, "corr-1", "corr-2"]


class _State(TypedDict):
    text: str


def _logging_node(state: _State) -> dict[str, Any]:
    logging.getLogger("switchyard.test").info("node saw %s", state["text"])
    return {}


def test_records_logged_inside_a_graph_node_carry_the_runs_metadata(
    log_stream: io.StringIO,
) -> None:
    builder = StateGraph(_State)
    builder.add_node("worker", _logging_node)
    builder.add_edge(START, "worker")
    graph = builder.compile(name="demo")
    graph.invoke(
        {"text": "hello"},
        {"metadata": {"correlation_id": "corr-graph", "pattern": "demo", "user_id": "ada"}},
    )
    (record,) = _records(log_stream)
    assert record["message"] == "node saw hello"
    assert record["correlation_id"] == "corr-graph"
    assert (record["pattern"], record["node"], record["user_id"]) == ("demo", "worker", "ada")


def test_secrets_are_masked_in_messages_arguments_extras_and_tracebacks(
    log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_API_KEY", "acme-7f3a9c2e5b8d")
    log = logging.getLogger("switchyard.test")
    log.info("key %s", OPENAI_KEY)
    log.info("env key acme-7f3a9c2e5b8d", extra={"headers": {"Authorization": "Bearer abcdefgh"}})
    try:
        raise RuntimeError(f"provider rejected {OPENAI_KEY}")
    except RuntimeError:
        log.exception("call failed")
    output = log_stream.getvalue()
    for secret in (OPENAI_KEY, "acme-7f3a9c2e5b8d", "abcdefgh"):
        assert secret not in output
    records = _records(log_stream)
    assert records[0]["message"] == "key [REDACTED:openai-key]"
    assert records[1]["headers"] == {"Authorization": "[REDACTED]"}
    assert "RuntimeError: provider rejected [REDACTED:openai-key]" in records[2]["exception"]


def test_text_format_is_redacted_and_correlated() -> None:
    logger = logging.getLogger("switchyard")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    stream = io.StringIO()
    try:
        configure_logging(stream=stream)
        with correlation_scope("corr-text"):
            logging.getLogger("switchyard.test").warning("leaked %s", OPENAI_KEY)
            logging.getLogger("switchyard.test").info("below the threshold")
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    assert stream.getvalue() == (
        "WARNING switchyard.test [corr-text] leaked [REDACTED:openai-key]\n"
    )


def test_configuring_again_replaces_the_handler(log_stream: io.StringIO) -> None:
    second = io.StringIO()
    configure_logging(json_lines=True, stream=second)
    logging.getLogger("switchyard.test").info("once")
    assert log_stream.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1
