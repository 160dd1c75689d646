"""Run reports: the per-agent table, stored sessions, the HTML page and the CLI commands."""

from __future__ import annotations

import argparse
import io
import json
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from rich.console import Console

from switchyard.cli import main
from switchyard.cli import report as report_cli
from switchyard.cli.tables import usage_table
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OfflineChatModel
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.observability.report import (
    SessionNotFoundError,
    agent_usage,
    render_html,
    session_report,
)
from switchyard.runtime.registry import PATTERNS, load_graph
from switchyard.runtime.run import run
from switchyard.state.context import Context
from switchyard.state.reducers import merge_usage
from switchyard.state.usage import UsageLedger, usage_entry

OPENAI_KEY = "sk-proj-Zt8qW3nV6yB1xK4mR7pL0sD2fG5hJ9cE"
AWS_KEY_ID = "AKIAZ7Q2M4N6P8R0T1V3"
ENV_SECRET = "acme-7f3a9c2e5b8d-4e1f"


def _ledger() -> UsageLedger:
    ledger: UsageLedger = {}
    for update in (
        usage_entry(
            "support",
            "openai:gpt-4o-mini",
            input_tokens=100,
            output_tokens=20,
            latency_ms=120.0,
            cost_usd=0.0001,
        ),
        usage_entry(
            "support",
            "openai:gpt-4o-mini",
            input_tokens=50,
            output_tokens=10,
            latency_ms=300.0,
            cost_usd=0.00005,
            retries=1,
        ),
        usage_entry(
            "support", "offline", input_tokens=5, output_tokens=5, latency_ms=1.0, fallbacks=1
        ),
        usage_entry(
            "docs",
            "anthropic:claude-3-5-haiku",
            input_tokens=7,
            output_tokens=3,
            latency_ms=80.0,
            cost_usd=0.002,
        ),
    ):
        ledger = merge_usage(ledger, update)
    return ledger


def _render(table: Any, width: int = 140) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width).print(table)
    return buffer.getvalue()


def test_agent_usage_sums_each_agents_models() -> None:
    support, docs = agent_usage(_ledger())
    assert support.agent == "support"
    assert support.models == ("openai:gpt-4o-mini", "offline")
    assert (support.calls, support.input_tokens, support.output_tokens) == (3, 155, 35)
    assert support.total_tokens == 190
    assert support.cost_usd == pytest.approx(0.00015)
    assert (support.latency_ms_sum, support.latency_ms_max) == (421.0, 300.0)
    assert (support.retries, support.fallbacks) == (1, 1)
    assert (docs.agent, docs.calls, docs.cost_usd) == ("docs", 1, 0.002)


def test_usage_table_has_a_row_per_agent_and_a_total() -> None:
    text = _render(usage_table(_ledger()))
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    for column in ("agent", "calls", "tokens in/out/total", "cost", "latency", "retries"):
        assert column in header
    support = next(line for line in lines if line.startswith("support"))
    assert "155/35/190" in support
    assert "$0.000150" in support
    assert "421.0 ms" in support
    total = next(line for line in lines if line.startswith("total"))
    assert "162/38/200" in total
    assert "$0.002150" in total


def test_usage_table_fits_eighty_columns_for_the_offline_model() -> None:
    ledger = usage_entry("support", "offline", input_tokens=44, output_tokens=78, latency_ms=3.2)
    text = _render(usage_table(ledger), width=80)
    row = next(line for line in text.splitlines() if line.startswith("support"))
    assert "offline" in row
    assert "44/78/122" in row
    assert "retries" not in text  # guardrail columns appear only when something happened


# --------------------------------------------------------------------------- stored sessions


@pytest.fixture
def broken_model() -> Any:
    name = "offline:broken"
    register_chat_model(
        name,
        OfflineChatModel(
            model_name="broken", fail_on_calls=tuple(range(1, 50)), failure_status=400
        ),
    )
    yield name
    unregister_chat_model(name)


def test_session_report_rebuilds_each_run_from_the_checkpoints(broken_model: str) -> None:
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )
    first = run(
        graph, "I need a refund for my last payment", user_id="ada", session_id="s", dlq=None
    )
    second = run(
        graph,
        "How do I authenticate with the API?",
        user_id="ada",
        session_id="s",
        context=Context(model=broken_model),
        dlq=None,
    )
    assert first.ok
    assert not second.ok
    stored = session_report(graph, first.thread_id)
    assert (stored.pattern, stored.user_id, stored.session_id) == ("router", "ada", "s")
    assert stored.usage == merge_usage(first.usage, second.usage)
    one, two = stored.runs
    assert one.correlation_id == first.correlation_id
    assert two.correlation_id == second.correlation_id
    assert one.input == "I need a refund for my last payment"
    assert [t.node for t in one.tasks] == ["classify", "support"]
    assert [t.is_agent for t in one.tasks] == [False, True]
    assert one.usage == first.usage
    assert one.end_reason == "completed"
    assert one.started <= one.tasks[0].start <= one.tasks[-1].end <= one.ended
    assert all(t.error is None for t in one.tasks)
    assert two.end_reason == second.end_reason
    assert two.failed_node is not None
    assert two.error is not None
    assert "SimulatedProviderError" in two.error
    assert any(t.error for t in two.tasks)


def test_an_unknown_thread_is_one_specific_error() -> None:
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver()
    )
    with pytest.raises(SessionNotFoundError, match="'nope' has no stored checkpoints"):
        session_report(graph, "nope")


# --------------------------------------------------------------------------- HTML


_VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "wbr"})


class _WellFormed(HTMLParser):
    """Records tags, attributes and text; notes every close tag that does not match."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: Counter[str] = Counter()
        self.attributes: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attributes.append((tag, dict(attrs)))
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attributes.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _WellFormed:
    parser = _WellFormed()
    parser.feed(page)
    parser.close()
    assert parser.problems == []
    assert parser.stack == []
    return parser


def test_the_html_report_is_well_formed_self_contained_and_complete(
    broken_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_API_KEY", ENV_SECRET)
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )
    first = run(
        graph, f"Refund please, my key {OPENAI_KEY} and id {AWS_KEY_ID}", session_id="s", dlq=None
    )
    run(
        graph,
        f"How do I authenticate with {ENV_SECRET}?",
        session_id="s",
        context=Context(model=broken_model),
        dlq=None,
    )
    stored = session_report(graph, first.thread_id)
    page = render_html(stored)
    parsed = _parse(page)

    assert page.startswith("<!DOCTYPE html>")
    assert parsed.tags["script"] == 0
    for tag, attrs in parsed.attributes:
        assert not {"src", "href"} & set(attrs), (tag, attrs)
    assert parsed.tags["style"] == 1
    assert parsed.tags["svg"] == 1 + len(stored.runs)  # the breakdown and one timeline per run
    spans = [a for t, a in parsed.attributes if t == "rect" and "span" in (a.get("class") or "")]
    assert [a["data-node"] for a in spans] == [t.node for r in stored.runs for t in r.tasks]
    failed = [a for a in spans if a.get("fill") == "#e15759"]
    assert len(failed) == sum(1 for r in stored.runs for t in r.tasks if t.error)
    bars = [a for t, a in parsed.attributes if t == "rect" and a.get("class") == "tokens-in"]
    assert len(bars) == len(agent_usage(stored.usage))
    text = " ".join(parsed.text)
    assert "support" in text
    assert first.correlation_id in text
    assert "failed at" in text
    for secret in (OPENAI_KEY, AWS_KEY_ID, ENV_SECRET):
        assert secret not in page


# --------------------------------------------------------------------------- commands


def _report_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    report_cli.add_command(parser.add_subparsers())
    return parser.parse_args(["report", *argv])


def test_report_command_finds_a_session_by_thread_or_session_id(
    tmp_path: Path, cli_process: None
) -> None:
    store = str(tmp_path / "state.sqlite")
    assert (
        main(
            [
                "run",
                "router",
                "I need a refund",
                "--session",
                "s9",
                "--user",
                "ada",
                "--checkpointer",
                store,
                "--quiet",
            ]
        )
        == 0
    )
    for argv in (["s9", "--user", "ada"], [_thread_of("ada", "s9")]):
        buffer = io.StringIO()
        args = _report_args(*argv, "--checkpointer", store)
        assert args.handler(args, Console(file=buffer, width=120)) == 0
        out = buffer.getvalue()
        assert "session s9 of ada (router" in out
        assert "support" in out
        assert "classify > support" in out


def _thread_of(user: str, session: str) -> str:
    from switchyard.runtime.run import thread_id_for

    return thread_id_for(user, session)


def test_report_command_rejects_an_unknown_session(tmp_path: Path) -> None:
    args = _report_args("missing", "--checkpointer", str(tmp_path / "empty.sqlite"))
    with pytest.raises(SessionNotFoundError, match="no stored session 'missing'"):
        args.handler(args, Console(file=io.StringIO()))


def test_cli_outputs_never_contain_planted_secrets(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cli_process: None,
) -> None:
    monkeypatch.setenv("ACME_API_KEY", ENV_SECRET)
    store = str(tmp_path / "state.sqlite")
    html_file = tmp_path / "report.html"
    text = f"Refund please: key {OPENAI_KEY}, id {AWS_KEY_ID}, acme {ENV_SECRET}"
    base = ["--session", "s1", "--checkpointer", store]
    assert main(["run", "router", text, *base, "--trace", "--log-json"]) == 0
    first = capsys.readouterr()
    assert main(["run", "router", text, *base, "--json", "--quiet"]) == 0
    second = capsys.readouterr()
    assert main(["report", "s1", "--checkpointer", store, "--html", str(html_file)]) == 0
    third = capsys.readouterr()
    page = html_file.read_text(encoding="utf-8")
    outputs = [first.out, first.err, second.out, second.err, third.out, third.err, page]
    for output in outputs:
        for secret in (OPENAI_KEY, AWS_KEY_ID, ENV_SECRET):
            assert secret not in output

    # What each output holds: the answer and the per-agent table, progress, JSON log lines and
    # spans on stderr, the RunResult as JSON, the session report.
    assert "[REDACTED:openai-key]" in first.out
    assert "tokens in/out/total" in first.out
    assert "ok support" in first.err
    records = [json.loads(line) for line in first.err.splitlines() if line.startswith("{")]
    logs = [r for r in records if "level" in r]
    spans = [r for r in records if "context" in r]
    assert logs
    assert spans
    assert len({r["correlation_id"] for r in logs}) == 1
    assert {s["attributes"]["switchyard.correlation_id"] for s in spans} == {
        logs[0]["correlation_id"]
    }
    assert json.loads(second.out)["agent_name"] == "support"
    assert second.err == ""
    assert "session s1 of local (router" in third.out
    _parse(page)


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_every_pattern_gets_a_complete_report(pattern: str) -> None:
    graph = load_graph(pattern).builder.compile(checkpointer=InMemorySaver(), name=pattern)
    result = run(graph, "I was charged twice for my subscription, please refund me", dlq=None)
    stored = session_report(graph, result.thread_id)
    (only,) = stored.runs
    assert only.correlation_id == result.correlation_id
    assert only.tasks
    assert stored.usage == result.usage
    assert only.end_reason == result.end_reason
    text = " ".join(_parse(render_html(stored)).text)
    for row in agent_usage(result.usage):
        assert row.agent in text
