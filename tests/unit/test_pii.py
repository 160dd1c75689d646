"""Personal data is masked in everything that leaves the process, and only there.

Emails, Luhn-valid card numbers, phone numbers and IP addresses are masked in the CLI's output,
HTML reports, dead letters, log lines and spans; a 16-digit number that fails the Luhn check is
not a card and stays. What the agents see inside the graph is left as it was sent.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchyard.cli import main
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.pii import find_pii, mask_pii
from switchyard.core.redact import redact, redact_value
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.observability import telemetry
from switchyard.observability.logs import configure_logging
from switchyard.observability.telemetry import RedactingSpanExporter, use_tracer_provider
from switchyard.runtime.run import run, thread_id_for
from switchyard.runtime.settings import SETTINGS_KEY, settings_text
from switchyard.state import Context
from switchyard.storage.dlq import DeadLetterQueue
from switchyard.storage.persistence import open_persistence
from tests.fakes import ScriptedChatModel, scripted

EMAIL = "ana.lopez@example.com"
CARD = "4111 1111 1111 1111"  # a test card number: passes the Luhn check
NOT_A_CARD = "1234567812345678"  # 16 digits that fail the Luhn check: an order id
PHONE = "+44 20 7946 0958"
IP = "203.0.113.7"
PERSONAL = (EMAIL, CARD, PHONE, IP)
TEXT = f"Refund order {NOT_A_CARD} to {EMAIL}, card {CARD}; call {PHONE} (from {IP})"
ECHO = f"Refunding order {NOT_A_CARD}: mail to {EMAIL}, card {CARD}, phone {PHONE}, ip {IP}."
MASKED_ECHO = (
    f"Refunding order {NOT_A_CARD}: mail to [REDACTED_EMAIL], card [REDACTED_CREDIT_CARD], "
    "phone [REDACTED_PHONE], ip [REDACTED_IP]."
)


def _assert_masked(output: str) -> None:
    for value in PERSONAL:
        assert value not in output
    assert NOT_A_CARD in output


# --------------------------------------------------------------------------- the detector


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"mail {EMAIL} now", "mail [REDACTED_EMAIL] now"),
        (f"card {CARD}", "card [REDACTED_CREDIT_CARD]"),
        ("card 4242-4242-4242-4242", "card [REDACTED_CREDIT_CARD]"),
        ("card 4242424242424242", "card [REDACTED_CREDIT_CARD]"),
        (f"order {NOT_A_CARD}", f"order {NOT_A_CARD}"),
        ("order 4242 4242 4242 4241", "order 4242 4242 4242 4241"),
        (f"call {PHONE}", "call [REDACTED_PHONE]"),
        ("call (415) 555-2671 today", "call [REDACTED_PHONE] today"),
        ("from 198.51.100.23:443", "from [REDACTED_IP]:443"),
        ("redis at 127.0.0.1:6379", "redis at 127.0.0.1:6379"),
        ("999.1.1.1 is no address", "999.1.1.1 is no address"),
        (
            "at 2026-12-07T11:29:39.123456+00:00, 4039.4 ms",
            "at 2026-12-07T11:29:39.123456+00:00, 4039.4 ms",
        ),
        ("epoch 1733570000, tokens 200000", "epoch 1733570000, tokens 200000"),
        ("[8463284acd764cf4bd2a7731ab611abc] done", "[8463284acd764cf4bd2a7731ab611abc] done"),
        ("2026-12-07 11:29:39 call (415) 555-2671", "2026-12-07 11:29:39 call [REDACTED_PHONE]"),
        (
            "thread 3a1e9c52-7f0b-5d7e-9e6b-2f6a3c1b9d24",
            "thread 3a1e9c52-7f0b-5d7e-9e6b-2f6a3c1b9d24",
        ),
    ],
)
def test_mask_pii_masks_personal_data_and_nothing_else(text: str, expected: str) -> None:
    assert mask_pii(text) == expected


def test_matches_do_not_overlap_and_masking_is_idempotent() -> None:
    spans = find_pii(TEXT)
    assert [s.type for s in spans] == ["email", "credit_card", "phone", "ip"]
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
    once = redact(TEXT)
    assert redact(once) == once


def test_redact_masks_secrets_and_personal_data_together() -> None:
    text = f"key sk-proj-Zt8qW3nV6yB1xK4mR7pL0sD2fG5hJ9cE for {EMAIL}"
    assert redact(text) == "key [REDACTED:openai-key] for [REDACTED_EMAIL]"
    assert redact_value({"user": {"contact": [EMAIL, 3]}}) == {
        "user": {"contact": ["[REDACTED_EMAIL]", 3]}
    }


# --------------------------------------------------------------------------- in-graph: untouched


def test_agents_see_personal_data_as_sent_and_the_python_result_keeps_it() -> None:
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )
    with scripted("scripted:echo", ECHO) as model:
        result = run(graph, TEXT, context=Context(model="scripted:echo"), dlq=None)
    assert result.ok
    assert TEXT in model.calls[0].texts  # masking is for what leaves the process
    assert result.output == ECHO


# --------------------------------------------------------------------------- what leaves


def test_cli_output_json_and_html_report_are_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_process: None
) -> None:
    store = str(tmp_path / "state.sqlite")
    base = ["--session", "s1", "--checkpointer", store, "--model", "scripted:echo", "--quiet"]
    with scripted("scripted:echo", ECHO, ECHO):
        assert main(["run", "router", TEXT, *base]) == 0
        printed = capsys.readouterr().out
        assert main(["run", "router", TEXT, *base, "--json"]) == 0
        as_json = capsys.readouterr().out
    assert printed.startswith(MASKED_ECHO)
    _assert_masked(printed)
    assert json.loads(as_json)["output"] == MASKED_ECHO
    _assert_masked(as_json)

    page_file = tmp_path / "report.html"
    assert main(["report", "s1", "--checkpointer", store, "--html", str(page_file)]) == 0
    listing = capsys.readouterr().out
    page = page_file.read_text(encoding="utf-8")
    _assert_masked(page)
    assert "[REDACTED_EMAIL]" in page
    for value in PERSONAL:
        assert value not in listing


def test_dead_letters_store_and_show_masked_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_process: None
) -> None:
    failure = RuntimeError(f"provider refused card {CARD} of {EMAIL} from {IP}")
    store = str(tmp_path / "state.sqlite")
    argv = ["run", "router", TEXT, "--session", "s1", "--checkpointer", store, "--quiet"]
    # Every call fails (how many the fallback chain makes is not this test's business).
    register_chat_model("scripted:down", ScriptedChatModel(script=[failure] * 20, label="down"))
    try:
        code = main([*argv, "--model", "scripted:down"])
    finally:
        unregister_chat_model("scripted:down")
    assert code == 1
    printed = capsys.readouterr().out
    assert "RuntimeError: provider refused card [REDACTED_CREDIT_CARD]" in printed
    for value in PERSONAL:
        assert value not in printed

    [letter] = DeadLetterQueue().list()
    assert letter.input == redact(TEXT)
    _assert_masked(letter.input)
    error = letter.error or ""
    assert "provider refused card [REDACTED_CREDIT_CARD] of [REDACTED_EMAIL]" in error
    for value in PERSONAL:
        assert value not in error
    assert main(["dlq", "show", letter.id]) == 0
    shown = capsys.readouterr().out
    _assert_masked(shown)
    assert json.loads(shown)["input"] == letter.input
    assert main(["dlq", "list"]) == 0
    for value in PERSONAL:
        assert value not in capsys.readouterr().out


def test_dlq_replay_prints_masked_output_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_process: None
) -> None:
    store = str(tmp_path / "state.sqlite")
    argv = ["run", "router", TEXT, "--session", "s1", "--checkpointer", store, "--quiet"]
    failure = RuntimeError(f"provider refused {EMAIL}")
    # The run fails, its first replay fails again, the second answers.
    with scripted("scripted:flaky", failure, failure, ECHO):
        assert main([*argv, "--model", "scripted:flaky"]) == 1
        [letter] = DeadLetterQueue().list()
        capsys.readouterr()
        assert main(["dlq", "replay", letter.id, "--checkpointer", store]) == 1
        failed_again = capsys.readouterr().out
        assert main(["dlq", "replay", letter.id, "--checkpointer", store]) == 0
        replayed = capsys.readouterr().out
    assert "provider refused [REDACTED_EMAIL]" in failed_again
    assert EMAIL not in failed_again
    assert f"replay of {letter.id}: completed\n{MASKED_ECHO}" in replayed
    _assert_masked(replayed)


def test_switchyard_resume_prints_masked_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_process: None
) -> None:
    store = str(tmp_path / "state.sqlite")
    with scripted("scripted:echo", ECHO, ECHO):
        for session in ("s1", "s2"):
            # A run stopped after its route, before the agent answered: resume finishes it.
            with open_persistence(store) as persistence:
                graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
                    checkpointer=persistence.checkpointer, name="router"
                )
                graph.invoke(
                    {"messages": [HumanMessage(TEXT)]},
                    {
                        "configurable": {"thread_id": thread_id_for("local", session)},
                        "metadata": {
                            "user_id": "local",
                            "session_id": session,
                            "pattern": "router",
                            SETTINGS_KEY: settings_text(Context(model="scripted:echo")),
                        },
                    },
                    interrupt_after=["classify"],
                )
        assert main(["resume", "--session", "s1", "--checkpointer", store]) == 0
        printed = capsys.readouterr().out
        assert main(["resume", "--session", "s2", "--checkpointer", store, "--json"]) == 0
        as_json = capsys.readouterr().out
    assert MASKED_ECHO in printed
    _assert_masked(printed)
    assert json.loads(as_json)["output"] == MASKED_ECHO
    _assert_masked(as_json)


def test_log_lines_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("switchyard")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    stream = io.StringIO()
    try:
        configure_logging(json_lines=True, stream=stream)
        log = logging.getLogger("switchyard.test")
        log.info("refund for %s", EMAIL, extra={"card": CARD, "order": NOT_A_CARD})
        try:
            raise RuntimeError(f"call {PHONE} from {IP}")
        except RuntimeError:
            log.exception("lookup failed")
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "refund for [REDACTED_EMAIL]"
    assert (first["card"], first["order"]) == ("[REDACTED_CREDIT_CARD]", NOT_A_CARD)
    assert "RuntimeError: call [REDACTED_PHONE] from [REDACTED_IP]" in second["exception"]
    for value in PERSONAL:
        assert value not in stream.getvalue()


def test_span_attributes_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(telemetry.CAPTURE_CONTENT_ENV, "true")  # record messages on spans
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    use_tracer_provider(provider)
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )
    try:
        with scripted("scripted:echo", ECHO):
            assert run(graph, TEXT, context=Context(model="scripted:echo"), dlq=None).ok
    finally:
        use_tracer_provider(None)
        provider.shutdown()
    spans = memory.get_finished_spans()
    recorded = [s for s in spans if "gen_ai.input.messages" in (s.attributes or {})]
    assert recorded, "message content was recorded (and masked)"
    dump = "\n".join(s.to_json() for s in spans)
    _assert_masked(dump)
    assert "[REDACTED_EMAIL]" in dump

    # spans of other instrumentations go through the same masking on export
    other = InMemorySpanExporter()
    foreign = TracerProvider()
    foreign.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(other)))
    with foreign.get_tracer("someone-else").start_as_current_span(f"POST /users/{EMAIL}") as span:
        span.set_attribute("client.address", IP)
        span.set_attribute("order.id", NOT_A_CARD)
    (exported,) = other.get_finished_spans()
    assert exported.name == "POST /users/[REDACTED_EMAIL]"
    assert dict(exported.attributes or {}) == {
        "client.address": "[REDACTED_IP]",
        "order.id": NOT_A_CARD,
    }


def test_an_applications_own_log_handlers_get_masked_records_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # caplog's handler sits on the root logger, as an application's own would: records reach it
    # by propagation, past the handler configure_logging installs
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver()
    )
    leak = ValueError("refused for ana@example.com, card 4111 1111 1111 1111")
    with caplog.at_level(logging.WARNING), scripted("fake:leaky", leak):
        result = run(graph, "I need a refund", dlq=None, context=Context(model="fake:leaky"))
    assert not result.ok
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failures, caplog.text
    assert "[REDACTED_EMAIL]" in caplog.text
    assert "ana@example.com" not in caplog.text
    assert "4111 1111 1111 1111" not in caplog.text
