"""Budgets and the run meter: admit, charge, downgrade, alerts, deadlines, and the meter's reach."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import ValidationError
from typing_extensions import TypedDict

from switchyard.core import pricing
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OfflineChatModel
from switchyard.core.pricing import Price, set_price
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.guardrails.budgets import (
    Budget,
    BudgetExceededError,
    DeadlineExceededError,
    RunMeter,
    Spend,
    add_cost_alert,
    remove_cost_alert,
)
from switchyard.guardrails.scope import RunScope, current_meter, with_scope
from switchyard.runtime.run import run
from switchyard.state import Context

MODEL = "openai:gpt-4o"
CHEAP = "openai:gpt-4o-mini"


@pytest.fixture
def alerts() -> Iterator[list[tuple[str, float, float]]]:
    """Cost alerts raised during the test, in order."""
    raised: list[tuple[str, float, float]] = []

    def hook(scope: str, spent: float, alert: float) -> None:
        raised.append((scope, spent, alert))

    add_cost_alert(hook)
    yield raised
    remove_cost_alert(hook)


# --- Budget -------------------------------------------------------------------------------------


def test_an_empty_budget_is_unlimited() -> None:
    meter = RunMeter(run_budget=Budget())
    assert meter.admit("support", MODEL, 10**9, 10.0**6) == MODEL


def test_a_budget_is_frozen_and_rejects_unknown_fields() -> None:
    budget = Budget(max_tokens=10)
    with pytest.raises(ValidationError):
        budget.max_tokens = 20  # type: ignore[misc]
    with pytest.raises(ValidationError, match="max_gbp"):
        Budget(max_gbp=1.0)  # type: ignore[call-arg]


def test_an_alert_may_equal_the_limit() -> None:
    assert Budget(max_usd=1.0, alert_usd=1.0).alert_usd == 1.0


# --- admit --------------------------------------------------------------------------------------


def test_a_call_within_every_budget_is_admitted_unchanged() -> None:
    meter = RunMeter(
        run_budget=Budget(max_tokens=1000, max_usd=1.0),
        session_budget=Budget(max_tokens=5000),
        agent_budgets={"support": Budget(max_tokens=2000)},
    )
    assert meter.admit("support", MODEL, 1000, 1.0) == MODEL  # exactly at the limits


@pytest.mark.parametrize(
    ("meter", "scope", "detail"),
    [
        (
            RunMeter(run_budget=Budget(max_tokens=1000), run_spent=Spend(900, 0.0)),
            "run",
            "run budget exceeded: run: 900 tokens spent + ~101 for this call > limit 1,000",
        ),
        (
            RunMeter(run_budget=Budget(max_usd=0.5), run_spent=Spend(0, 0.4)),
            "run",
            "run budget exceeded: run: $0.4000 spent + ~$0.2000 for this call > limit $0.5000",
        ),
        (
            RunMeter(session_budget=Budget(max_tokens=1000), session_spent=Spend(950, 0.0)),
            "session",
            "session budget exceeded: session: 950 tokens spent + ~101 for this call > limit 1,000",
        ),
        (
            RunMeter(
                agent_budgets={"support": Budget(max_tokens=1000)},
                agent_spent={"support": Spend(1000, 0.0)},
            ),
            "agent",
            "agent budget exceeded: agent support: 1,000 tokens spent + ~101 for this call > "
            "limit 1,000",
        ),
    ],
    ids=["run-tokens", "run-dollars", "session", "agent"],
)
def test_a_call_that_would_exceed_a_budget_is_refused(
    meter: RunMeter, scope: str, detail: str
) -> None:
    with pytest.raises(BudgetExceededError) as raised:
        meter.admit("support", MODEL, 101, 0.2)
    assert raised.value.scope == scope
    assert str(raised.value) == detail


def test_an_agent_budget_binds_only_that_agent() -> None:
    meter = RunMeter(agent_budgets={"support": Budget(max_tokens=10)})
    assert meter.admit("docs", MODEL, 1000, None) == MODEL
    with pytest.raises(BudgetExceededError):
        meter.admit("support", MODEL, 1000, None)


def test_the_spec_budget_is_used_when_given() -> None:
    meter = RunMeter()
    with pytest.raises(BudgetExceededError, match="agent support"):
        meter.admit("support", MODEL, 1000, None, Budget(max_tokens=10))


def test_a_budget_with_a_downgrade_switches_model_instead_of_stopping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    meter = RunMeter(run_budget=Budget(max_tokens=100, downgrade_model=CHEAP))
    with caplog.at_level(logging.WARNING, logger="switchyard.guardrails.budgets"):
        assert meter.admit("support", MODEL, 500, None) == CHEAP
    assert f"downgrading {MODEL} to {CHEAP}" in caplog.text


def test_the_downgrade_model_itself_is_stopped_at_the_limit() -> None:
    meter = RunMeter(run_budget=Budget(max_tokens=100, downgrade_model=CHEAP))
    with pytest.raises(BudgetExceededError):
        meter.admit("support", CHEAP, 500, None)


def test_a_passed_deadline_refuses_the_call() -> None:
    meter = RunMeter(deadline=float("-inf"))
    with pytest.raises(DeadlineExceededError, match="run deadline passed before agent 'docs'"):
        meter.admit("docs", MODEL, 1, None)
    assert RunMeter(deadline=float("inf")).admit("docs", MODEL, 1, None) == MODEL


# --- charge and alerts --------------------------------------------------------------------------


def test_charge_adds_to_run_session_and_agent() -> None:
    meter = RunMeter(session_spent=Spend(100, 0.1))
    meter.charge("support", 50, 0.05)
    meter.charge("docs", 10, 0.01)
    assert meter.run_spent.tokens == 60
    assert meter.run_spent.usd == pytest.approx(0.06)
    assert meter.session_spent.tokens == 160
    assert meter.session_spent.usd == pytest.approx(0.16)
    assert meter.agent_spent["support"].tokens == 50
    assert meter.agent_spent["docs"].tokens == 10


def test_a_cost_alert_fires_once_per_budget_and_meter(
    alerts: list[tuple[str, float, float]],
) -> None:
    meter = RunMeter(
        run_budget=Budget(alert_usd=0.10),
        agent_budgets={"support": Budget(alert_usd=0.05)},
    )
    meter.charge("support", 10, 0.04)
    assert alerts == []
    meter.charge("support", 10, 0.04)  # agent crosses 0.05
    meter.charge("support", 10, 0.04)  # run crosses 0.10; agent already alerted
    meter.charge("support", 10, 0.04)
    assert [(scope, alert) for scope, _, alert in alerts] == [
        ("agent support", 0.05),
        ("run", 0.10),
    ]
    assert alerts[0][1] == pytest.approx(0.08)
    assert alerts[1][1] == pytest.approx(0.12)
    RunMeter(run_budget=Budget(alert_usd=0.10)).charge("support", 1, 0.5)  # a new run: again
    assert len(alerts) == 3


def test_a_removed_hook_is_not_called() -> None:
    calls: list[str] = []

    def hook(scope: str, spent: float, alert: float) -> None:
        calls.append(scope)

    add_cost_alert(hook)
    remove_cost_alert(hook)
    remove_cost_alert(hook)  # removing twice is harmless
    RunMeter(run_budget=Budget(alert_usd=0.01)).charge("support", 1, 1.0)
    assert calls == []


def test_concurrent_charges_are_all_counted() -> None:
    meter = RunMeter()

    def spend() -> None:
        for _ in range(500):
            meter.charge("support", 1, 0.001)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meter.run_spent.tokens == 4000
    assert meter.agent_spent["support"].tokens == 4000


# --- the meter reaches every task of a run ------------------------------------------------------


def test_the_meter_is_the_run_scopes_and_only_inside_the_run() -> None:
    scope = RunScope(meter=RunMeter())
    seen: list[RunMeter | None] = []

    def look(state: _FanState) -> dict[str, Any]:
        seen.append(current_meter())
        return {}

    builder = StateGraph(_FanState)
    builder.add_node("look", look)
    builder.add_edge(START, "look")
    builder.compile().invoke({"items": [], "seen": []}, with_scope(None, scope))
    assert seen == [scope.meter]
    assert current_meter() is None  # outside any run


class _FanState(TypedDict):
    items: list[int]
    seen: list[int]


def _fan_graph(seen: list[RunMeter | None]) -> Any:
    def fan_out(state: _FanState) -> list[Send]:
        return [Send("work", {"items": [i], "seen": []}) for i in state["items"]]

    def work(state: _FanState) -> dict[str, Any]:
        seen.append(current_meter())
        return {}

    async def awork(state: _FanState) -> dict[str, Any]:
        seen.append(current_meter())
        return {}

    from langchain_core.runnables import RunnableLambda

    builder = StateGraph(_FanState)
    builder.add_node("work", RunnableLambda(work, afunc=awork))
    builder.add_conditional_edges(START, fan_out, ["work"])
    builder.add_edge("work", END)
    return builder.compile()


def test_parallel_tasks_see_the_runs_meter() -> None:
    seen: list[RunMeter | None] = []
    scope = RunScope(meter=RunMeter())
    _fan_graph(seen).invoke({"items": [1, 2, 3, 4], "seen": []}, with_scope(None, scope))
    assert len(seen) == 4
    assert all(m is scope.meter for m in seen)


async def test_parallel_async_tasks_see_the_runs_meter() -> None:
    seen: list[RunMeter | None] = []
    scope = RunScope(meter=RunMeter())
    await _fan_graph(seen).ainvoke({"items": [1, 2, 3], "seen": []}, with_scope(None, scope))
    assert len(seen) == 3
    assert all(m is scope.meter for m in seen)


# --- dollars through a run (an offline model with a price) --------------------------------------


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> Iterator[OfflineChatModel]:
    """An offline model registered as `offline:priced` at $1,000 per million tokens each way."""
    monkeypatch.setattr(pricing, "_overrides", {})
    set_price("offline:priced", Price(1000.0, 1000.0))
    model = OfflineChatModel()
    register_chat_model("offline:priced", model)
    yield model
    unregister_chat_model("offline:priced")
    pricing._table_price.cache_clear()


def router() -> Any:
    return build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )


TEXT = "I need a refund for my last payment"


def test_a_priced_run_reports_its_cost_and_alerts_once_per_run(
    priced: OfflineChatModel, alerts: list[tuple[str, float, float]]
) -> None:
    graph = router()
    context = Context(model="offline:priced", run_budget=Budget(max_usd=10.0, alert_usd=0.01))
    first = run(graph, TEXT, user_id="ada", session_id="s", context=context)
    second = run(graph, TEXT, user_id="ada", session_id="s", context=context)
    assert first.ok
    assert second.ok
    assert first.cost_usd == pytest.approx(first.total_tokens * 1000 / 1_000_000)
    assert [(scope, alert) for scope, _, alert in alerts] == [("run", 0.01), ("run", 0.01)]
    assert alerts[0][1] == pytest.approx(first.cost_usd)


def test_a_dollar_session_budget_stops_the_next_turn(priced: OfflineChatModel) -> None:
    graph = router()
    # a first call is estimated at ~$0.56 and costs ~$0.12; a second would need ~$0.65 more
    context = Context(model="offline:priced", session_budget=Budget(max_usd=0.7))
    first = run(graph, TEXT, user_id="ada", session_id="s", context=context)
    assert first.ok
    second = run(graph, "And another refund please", user_id="ada", session_id="s", context=context)
    assert (second.ok, second.end_reason) == (False, "budget_exceeded")
    assert f"session: ${first.cost_usd:.4f} spent" in (second.error or "")
    assert priced.calls == 1
    messages = graph.get_state({"configurable": {"thread_id": second.thread_id}}).values["messages"]
    assert [m.text for m in messages if isinstance(m, HumanMessage)] == [
        TEXT,
        "And another refund please",
    ]
