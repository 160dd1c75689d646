"""A total retry budget per run: `Context.max_retries`, shared by every agent and fan-out shard.

Each agent keeps its own `max_attempts`; on top of it, the run may retry at most `max_retries`
model calls in all. Spent, the run stops with `retry_budget_exhausted` (in every pattern, through
`run()` and a plain `graph.invoke`) and, through the facade, a dead letter.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from langchain.agents.middleware import model_retry
from langgraph.checkpoint.memory import InMemorySaver

from switchyard import (
    AgentSpec,
    Context,
    DeadLetterQueue,
    build_fanout_graph,
    register_chat_model,
    unregister_chat_model,
)
from switchyard.core.errors import ConfigError
from switchyard.core.offline import SimulatedProviderError
from switchyard.runtime.run import run
from tests.fakes import ScriptedChatModel, scripted
from tests.patterns import PATTERNS, helper, run_or_invoke

OUTAGE = SimulatedProviderError("503 overloaded", status_code=503)


def flaky(name: str = "helper", **changes: Any) -> AgentSpec:
    """An agent on a provider that is down, allowed many attempts of its own."""
    return helper(**{"name": name, "model": f"fake:{name}", "max_attempts": 10, **changes})


pytestmark = pytest.mark.usefixtures("eager")


@pytest.mark.parametrize("entry", ["run", "invoke"])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_the_runs_retries_run_out_before_the_agents_own(pattern: str, entry: str) -> None:
    context = Context(max_retries=3)
    with scripted("fake:helper", *[OUTAGE] * 4) as model:
        graph = PATTERNS[pattern](flaky())
        ended = run_or_invoke(graph, entry, context=context)
    assert len(model.calls) == 4  # the first call and the run's 3 retries, not the agent's 9
    assert ended.end_reason == "retry_budget_exhausted"
    if entry == "run":
        letters = DeadLetterQueue().list()
        assert [letter.end_reason for letter in letters] == ["retry_budget_exhausted"]
        assert "retries (Context.max_retries) are spent" in ended.error
        assert "503 overloaded" in ended.error


def test_fan_out_workers_share_one_budget() -> None:
    down = {name: ScriptedChatModel(script=[OUTAGE] * 4, label=name) for name in ("a", "b")}
    for name, model in down.items():
        register_chat_model(f"fake:{name}", model)
    try:
        graph = build_fanout_graph([flaky("a"), flaky("b")]).compile(checkpointer=InMemorySaver())
        result = run(graph, "I need a refund", dlq=None, context=Context(max_retries=3))
    finally:
        for name in down:
            unregister_chat_model(f"fake:{name}")
    assert result.end_reason == "retry_budget_exhausted"
    # each worker's first call, then three retries between them (however they fell)
    assert sum(len(model.calls) for model in down.values()) == 2 + 3


def test_without_a_run_wide_limit_each_agent_keeps_its_own() -> None:
    graph = PATTERNS["pipeline"](flaky(max_attempts=3))
    with scripted("fake:helper", *[OUTAGE] * 3) as model:
        result = run(graph, "I need a refund", dlq=None, context=Context(max_retries=None))
    assert len(model.calls) == 3
    assert result.end_reason != "retry_budget_exhausted"


def test_a_retry_that_succeeds_spends_from_the_budget_and_the_run_completes() -> None:
    graph = PATTERNS["pipeline"](flaky())
    with scripted("fake:helper", OUTAGE, OUTAGE, "answered"):
        result = run(graph, "I need a refund", dlq=None, context=Context(max_retries=2))
    assert result.ok, result.error
    assert result.usage["helper/fake:helper"]["retries"] == 2


def test_a_negative_budget_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_retries must be 0 or more"):
        Context(max_retries=-1)


def test_a_spent_budget_stops_at_once_without_a_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(model_retry, "time", SimpleNamespace(sleep=slept.append))
    graph = PATTERNS["pipeline"](flaky())
    with scripted("fake:helper", OUTAGE, OUTAGE) as model:
        result = run(graph, "I need a refund", dlq=None, context=Context(max_retries=1))
    assert result.end_reason == "retry_budget_exhausted"
    assert len(model.calls) == 2
    assert len(slept) == 1  # before the one retry the run had; none after the second failure
