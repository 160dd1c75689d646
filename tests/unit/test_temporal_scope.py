"""The run scope sent to an Activity and merged back (`switchyard.runtime.temporal.scope`)."""

from __future__ import annotations

import pytest

from switchyard.graphs.guarded import open_scope
from switchyard.guardrails.budgets import Budget, BudgetExceededError, RunMeter, Spend
from switchyard.guardrails.convergence import Step
from switchyard.guardrails.scope import RunScope
from switchyard.runtime.temporal.meter import SharedRunMeter
from switchyard.runtime.temporal.scope import merge, restore, snapshot
from switchyard.state.context import Context


def _scope() -> RunScope:
    context = Context(run_budget=Budget(max_tokens=1_000), max_retries=5, deadline_s=60)
    return open_scope(context, {})


def test_parallel_activities_add_up_their_spend_retries_and_steps() -> None:
    scope = _scope()
    before = snapshot(scope)
    branches = [restore(before), restore(before)]
    for number, branch in enumerate(branches):
        branch.meter.charge(f"agent_{number}", 100, 0.5)
        assert branch.take_retry()
        branch.set_agent_values(f"agent_{number}", {"seen": number})
        branch.convergence.repeated(
            Step(agent=f"agent_{number}", kind="answer", given="q", did="a"), threshold=None
        )
    for branch in branches:
        merge(scope, before, snapshot(branch))
    assert (scope.meter.run_spent.tokens, scope.meter.run_spent.usd) == (200, 1.0)
    assert scope.meter.agent_spent["agent_1"].tokens == 100
    assert scope.retries_left == 3
    assert scope.values == {"agent_0": {"seen": 0}, "agent_1": {"seen": 1}}
    assert sorted(key[0] for key in scope.convergence.acts) == ["agent_0", "agent_1"]


def test_an_activity_is_refused_what_the_run_already_spent_and_keeps_the_deadline() -> None:
    scope = _scope()
    scope.meter.charge("earlier", 950, 0.0)
    restored = restore(snapshot(scope))
    with pytest.raises(BudgetExceededError):
        restored.meter.admit("next", "offline", 100, None)
    remaining = restored.remaining_s()
    assert remaining is not None
    assert 0 < remaining <= 60


def test_a_snapshot_is_not_merged_twice_into_a_merge_that_changed_nothing() -> None:
    scope = _scope()
    before = snapshot(scope)
    merge(scope, before, snapshot(restore(before)))
    assert scope.meter.run_spent == Spend()
    assert scope.retries_left == 5


class _FakeRedis:
    """The three hash commands the shared meter uses."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, float]] = {}

    def hmget(self, key: str, *fields: str) -> list[float | None]:
        return [self.hashes.get(key, {}).get(f) for f in fields]

    def pipeline(self) -> _FakeRedis:
        return self

    def hincrby(self, key: str, field: str, amount: int) -> None:
        entry = self.hashes.setdefault(key, {})
        entry[field] = entry.get(field, 0) + amount

    hincrbyfloat = hincrby

    def expire(self, key: str, seconds: int) -> None:
        pass

    def execute(self) -> None:
        pass


def test_a_shared_meter_counts_what_other_activities_spend_meanwhile() -> None:
    redis = _FakeRedis()
    scope = _scope()
    before = snapshot(scope)
    first, second = (restore(before, shared=(redis, "run")) for _ in range(2))
    assert isinstance(first.meter, SharedRunMeter)
    first.meter.charge("a", 900, 0.0)
    # the second Activity started from the same snapshot, yet sees the first one's spend
    assert second.meter.spent_elsewhere() == Spend(900, 0.0)
    with pytest.raises(BudgetExceededError):
        second.meter.admit("b", "offline", 200, None)
    # its own charges are not counted twice
    second.meter.charge("b", 50, 0.0)
    assert second.meter.spent_elsewhere() == Spend(900, 0.0)
    assert RunMeter().spent_elsewhere() == Spend()  # one process: nothing elsewhere
