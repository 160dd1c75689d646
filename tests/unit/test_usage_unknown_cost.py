"""Unknown cost stays unknown: `null` in JSON, "unknown" in tables, never 0.0.

A model with no known price (`switchyard.core.pricing.cost_usd` is None: a local server's model,
here a fake registered under a name no price table knows) makes every cost it is part of unknown,
while the offline model stays a known 0.0. Tokens are the provider's own count when the reply
carries one (`usage_metadata`), and estimated only when it does not.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchyard.cli import main
from switchyard.core import pricing
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OfflineChatModel
from switchyard.core.pricing import Price, format_cost, set_price
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.pipeline import build_pipeline_graph
from switchyard.graphs.router import build_router_graph
from switchyard.guardrails.budgets import Budget, RunMeter, Spend
from switchyard.nodes.call import call_agent
from switchyard.observability.report import agent_usage, render_html, session_report
from switchyard.observability.telemetry import use_tracer_provider
from switchyard.observability.telemetry.attributes import usage_attributes
from switchyard.runtime.run import RunResult, run
from switchyard.state import AgentSpec, Context
from switchyard.state.reducers import merge_usage
from switchyard.state.usage import UsageEntry, add_entries, ledger_delta, total_cost, usage_entry
from tests.fakes import scripted

UNPRICED = "local:house-llm"
"""A model no price table knows (as `openai:smollm2` on a local llama.cpp server)."""
PRICED = "local:priced-llm"
"""A model given a price with `set_price`: $1,000 per million tokens each way."""
TEXT = "I need a refund for my last payment"


@pytest.fixture(autouse=True)
def prices(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(pricing, "_overrides", {})
    set_price(PRICED, Price(1000.0, 1000.0))
    yield
    pricing._table_price.cache_clear()


@pytest.fixture
def unpriced_model() -> Iterator[str]:
    register_chat_model(UNPRICED, OfflineChatModel(model_name="house-llm"))
    yield UNPRICED
    unregister_chat_model(UNPRICED)


def router() -> Any:
    return build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )


def entry(ledger: dict[str, UsageEntry]) -> UsageEntry:
    (only,) = ledger.values()
    return only


# --------------------------------------------------------------------------- the ledger


def test_an_unpriced_call_is_recorded_as_unknown_not_as_zero() -> None:
    unpriced = entry(usage_entry("a", UNPRICED, input_tokens=10, output_tokens=5, cost_usd=None))
    assert (unpriced["cost_usd"], unpriced["known_cost_usd"], unpriced["unpriced_calls"]) == (
        None,
        0.0,
        1,
    )
    free = entry(usage_entry("a", "offline", input_tokens=10, output_tokens=5, cost_usd=0.0))
    assert (free["cost_usd"], free["known_cost_usd"], free["unpriced_calls"]) == (0.0, 0.0, 0)


def test_known_plus_unknown_is_unknown_and_keeps_the_known_part() -> None:
    priced = entry(usage_entry("a", "m", cost_usd=0.25))
    unpriced = entry(usage_entry("a", "m", cost_usd=None))
    summed = add_entries(priced, unpriced)
    assert (summed["calls"], summed["cost_usd"], summed["known_cost_usd"]) == (2, None, 0.25)
    assert summed["unpriced_calls"] == 1
    ledger = merge_usage(
        usage_entry("a", PRICED, cost_usd=0.5), usage_entry("b", UNPRICED, cost_usd=None)
    )
    assert total_cost(ledger.values()) == (None, 0.5, 1)
    assert total_cost(usage_entry("a", PRICED, cost_usd=0.5).values()) == (0.5, 0.5, 0)


def test_a_runs_share_of_the_session_is_unknown_only_if_it_made_an_unpriced_call() -> None:
    before = usage_entry("a", "m", cost_usd=None)  # an earlier run: unknown
    priced_since = merge_usage(before, usage_entry("a", "m", cost_usd=0.125))  # priced since
    assert entry(priced_since)["cost_usd"] is None  # the session's total is unknown
    delta = entry(ledger_delta(priced_since, before))
    assert (delta["calls"], delta["cost_usd"], delta["unpriced_calls"]) == (1, 0.125, 0)
    unpriced_since = merge_usage(priced_since, usage_entry("a", "m", cost_usd=None))
    delta = entry(ledger_delta(unpriced_since, priced_since))
    assert (delta["cost_usd"], delta["known_cost_usd"], delta["unpriced_calls"]) == (None, 0.0, 1)


def test_entries_checkpointed_before_unknown_costs_still_add_up() -> None:
    stored: dict[str, Any] = dict(entry(usage_entry("a", "m", cost_usd=0.5)))
    del stored["known_cost_usd"], stored["unpriced_calls"]
    old: Any = {"a/m": stored}
    merged = entry(merge_usage(old, usage_entry("a", "m", cost_usd=None)))
    assert (merged["cost_usd"], merged["known_cost_usd"], merged["unpriced_calls"]) == (
        None,
        0.5,
        1,
    )
    assert entry(ledger_delta(merge_usage(old, usage_entry("a", "m")), old))["cost_usd"] == 0.0
    assert total_cost(old.values()) == (0.5, 0.5, 0)


def test_format_cost_never_shows_an_unknown_cost_as_zero() -> None:
    assert format_cost(0.0) == "$0.000000"
    assert format_cost(0.00012) == "$0.000120"
    assert format_cost(None) == "unknown"
    assert format_cost(None, known=0.00012) == "unknown (≥ $0.000120)"
    assert format_cost(1.5, digits=4) == "$1.5000"


def test_spend_charges_the_tokens_of_an_unpriced_call_and_no_dollars() -> None:
    spend = Spend()
    spend.add(15, None)
    spend.add(10, 0.5)
    assert (spend.tokens, spend.usd) == (25, 0.5)
    meter = RunMeter(run_budget=Budget(max_tokens=1000))
    meter.charge("a", 15, None)
    assert (meter.run_spent.tokens, meter.run_spent.usd) == (15, 0.0)


# --------------------------------------------------------------------------- tokens


def test_tokens_come_from_the_replys_usage_block_when_it_has_one() -> None:
    reply = AIMessage(
        "hello", usage_metadata={"input_tokens": 123, "output_tokens": 45, "total_tokens": 168}
    )
    agent = AgentSpec(name="helper", description="Helps.", model=PRICED)
    with scripted(PRICED, reply):
        answer = call_agent(agent, [HumanMessage("hi")])
    used = answer.usage[f"helper/{PRICED}"]
    assert (used["input_tokens"], used["output_tokens"]) == (123, 45)
    assert used["cost_usd"] == pytest.approx(168 * 1000 / 1_000_000)


def test_tokens_are_estimated_only_when_the_reply_has_no_usage_block(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = AgentSpec(name="helper", description="Helps.", model=PRICED)
    with caplog.at_level(logging.WARNING), scripted(PRICED, "hello", report_usage=False) as model:
        answer = call_agent(agent, [HumanMessage("hi")])
    used = answer.usage[f"helper/{PRICED}"]
    (call,) = model.calls
    assert used["input_tokens"] == count_tokens_approximately(call.messages) > 0
    assert used["output_tokens"] == count_tokens_approximately([AIMessage("hello")]) > 0
    assert used["cost_usd"] == pytest.approx(used["total_tokens"] * 1000 / 1_000_000)
    assert f"model {PRICED} reported no token usage; its tokens are estimated" in caplog.text


def test_an_unpriced_model_under_a_dollar_budget_is_still_refused_up_front(
    unpriced_model: str,
) -> None:
    context = Context(model=unpriced_model, run_budget=Budget(max_usd=1.0))
    result = run(router(), TEXT, context=context, dlq=None)
    assert (result.ok, result.end_reason) == (False, "budget_exceeded")
    assert "no known price" in (result.error or "")


# --------------------------------------------------------------------------- runs


def test_a_run_on_an_unpriced_model_costs_unknown(unpriced_model: str) -> None:
    result = run(router(), TEXT, context=Context(model=unpriced_model), dlq=None)
    assert result.ok
    assert result.total_tokens > 0
    assert (result.cost_usd, result.known_cost_usd, result.unpriced_calls) == (None, 0.0, 1)
    assert result.usage[f"support/{UNPRICED}"]["cost_usd"] is None
    dumped = json.loads(result.model_dump_json())
    assert dumped["cost_usd"] is None
    assert dumped["usage"][f"support/{UNPRICED}"]["cost_usd"] is None
    assert RunResult.model_validate(dumped) == result


def test_the_offline_model_is_free_which_is_known() -> None:
    result = run(router(), TEXT, dlq=None)
    assert (result.cost_usd, result.known_cost_usd, result.unpriced_calls) == (0.0, 0.0, 0)
    assert result.usage["support/offline"]["cost_usd"] == 0.0


def test_a_run_mixing_priced_and_unpriced_models_is_unknown_in_total() -> None:
    stages = [
        AgentSpec(name="research", description="Finds.", system_prompt="Find.", model=PRICED),
        AgentSpec(name="draft", description="Writes.", system_prompt="Write.", model=UNPRICED),
    ]
    graph = build_pipeline_graph(stages).compile(checkpointer=InMemorySaver(), name="pipeline")
    with scripted(PRICED, "notes"), scripted(UNPRICED, "draft"):
        result = run(graph, "Write a short note on heat pumps", dlq=None)
    assert result.ok, result.error
    priced = result.usage[f"research/{PRICED}"]
    assert priced["cost_usd"] == pytest.approx(15 * 1000 / 1_000_000)  # 10 in + 5 out
    assert result.usage[f"draft/{UNPRICED}"]["cost_usd"] is None
    assert result.cost_usd is None
    assert result.known_cost_usd == pytest.approx(priced["cost_usd"])
    assert result.unpriced_calls == 1

    rows = {row.agent: row for row in agent_usage(result.usage)}
    assert rows["research"].cost_usd == pytest.approx(0.015)
    assert rows["draft"].cost_usd is None
    report = session_report(graph, result.thread_id)
    assert report.cost.cost_usd is None
    page = render_html(report)  # the cost chart draws the known part, labelled unknown
    assert "unknown (≥ $0.015000)" in page
    assert "$0.000000" not in page


def test_spans_leave_an_unknown_cost_unset() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    use_tracer_provider(provider)
    try:
        with scripted(UNPRICED, "sure"):
            result = run(router(), TEXT, context=Context(model=UNPRICED), dlq=None)
    finally:
        use_tracer_provider(None)
        provider.shutdown()
    assert result.cost_usd is None
    spans = memory.get_finished_spans()
    assert spans
    for span in spans:
        attributes = span.attributes or {}
        assert attributes.get("switchyard.cost_usd") is None, span.name
        assert attributes.get("switchyard.usage.cost_usd") is None, span.name
    (agent,) = [s for s in spans if s.name == "invoke_agent support"]
    assert (agent.attributes or {})["switchyard.usage.unpriced_calls"] == 1
    assert usage_attributes(result.usage)["switchyard.usage.cost_usd"] is None


# --------------------------------------------------------------------------- the command line


def test_cli_json_shows_null_and_tables_say_unknown(
    tmp_path: Path,
    unpriced_model: str,
    cli_process: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = str(tmp_path / "state.sqlite")
    session = ["--user", "ada", "--session", "s1", "--checkpointer", db, "--quiet"]
    assert main(["run", "router", TEXT, "--model", unpriced_model, "--json", *session]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["cost_usd"], printed["unpriced_calls"]) == (None, 1)
    assert printed["usage"][f"support/{UNPRICED}"]["cost_usd"] is None

    assert main(["run", "router", TEXT, "--model", unpriced_model, *session]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.lstrip().startswith("support "))
    assert re.search(r"│ unknown\s*$", row), row
    assert "$0.000000" not in out

    assert main(["report", "s1", "--user", "ada", "--checkpointer", db, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["cost_usd"], report["unpriced_calls"]) == (None, 2)
    assert [r["cost_usd"] for r in report["runs"]] == [None, None]
    assert report["usage"][f"support/{UNPRICED}"]["cost_usd"] is None

    assert main(["report", "s1", "--user", "ada", "--checkpointer", db]) == 0
    out = capsys.readouterr().out
    assert "unknown" in out
    assert "$0.000000" not in out
