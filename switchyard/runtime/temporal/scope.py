"""A run's scope across the Workflow and its Activities: sent with each call, merged on return.

In one process every task of a run shares one `RunScope` object (its meter, retry budget,
middleware state and convergence log). On Temporal the Workflow owns that object; an agent node
runs in an Activity, possibly on another machine. Each Activity call carries a snapshot of the
scope (`snapshot`), the Activity rebuilds a scope from it (`restore`) for the node's middleware,
and the Workflow adds what the node changed (`merge`): its spend, the retries it took, the
middleware state and the convergence steps it recorded. Branches that run at the same time start
from the same snapshot; their changes add up, so the run's totals are exact and a budget is
checked against everything spent before the branch started.

The deadline travels as wall-clock time (`time.time()`), since monotonic clocks of two machines
have no common origin.
"""

from __future__ import annotations

import time
from typing import Any

from switchyard.guardrails.budgets import RunMeter, Spend
from switchyard.guardrails.convergence import ConvergenceLog
from switchyard.guardrails.scope import RunScope
from switchyard.runtime.temporal.meter import SharedRunMeter, SharedRunScope

Snapshot = dict[str, Any]
"""A scope as plain data (what crosses to an Activity and back)."""


def _spend(spend: Spend) -> list[float]:
    return [spend.tokens, spend.usd]


def snapshot(scope: RunScope) -> Snapshot:
    """`scope` as plain data."""
    meter = scope.meter
    now_mono, now_wall = time.monotonic(), time.time()
    with meter._lock, scope._lock:
        return {
            "run_budget": meter.run_budget,
            "session_budget": meter.session_budget,
            "agent_budgets": dict(meter.agent_budgets),
            "run_spent": _spend(meter.run_spent),
            "session_spent": _spend(meter.session_spent),
            "agent_spent": {agent: _spend(spent) for agent, spent in meter.agent_spent.items()},
            "alerted": sorted(meter._alerted),
            "deadline_at": (
                None if meter.deadline is None else now_wall + (meter.deadline - now_mono)
            ),
            "started_at": now_wall - (now_mono - scope.started),
            "call_timeout_s": scope.call_timeout_s,
            "retries_left": scope.retries_left,
            "values": {agent: dict(values) for agent, values in scope.values.items()},
            "convergence": [
                [list(key), list(acts)] for key, acts in scope.convergence.acts.items()
            ],
        }


def _to_spend(pair: list[float]) -> Spend:
    return Spend(tokens=int(pair[0]), usd=float(pair[1]))


def restore(
    data: Snapshot, *, shared: tuple[Any, str] | None = None, max_retries: int | None = None
) -> RunScope:
    """A scope for an Activity, from the Workflow's `snapshot`.

    With `shared` (a Redis client and the run scope's key) the meter also counts what the run's
    other Activities spend meanwhile, and retries are counted against `max_retries` across
    them (`switchyard.runtime.temporal.meter`).
    """
    now_mono, now_wall = time.monotonic(), time.time()
    deadline_at = data["deadline_at"]
    meter_class: type[RunMeter] = RunMeter
    extra: dict[str, Any] = {}
    if shared is not None:
        meter_class = SharedRunMeter
        extra = {"_client": shared[0], "key": shared[1]}
    meter = meter_class(
        run_budget=data["run_budget"],
        session_budget=data["session_budget"],
        agent_budgets=dict(data["agent_budgets"]),
        session_spent=_to_spend(data["session_spent"]),
        agent_spent={agent: _to_spend(pair) for agent, pair in data["agent_spent"].items()},
        deadline=None if deadline_at is None else now_mono + (deadline_at - now_wall),
        run_spent=_to_spend(data["run_spent"]),
        **extra,
    )
    meter._alerted.update(data["alerted"])
    convergence = ConvergenceLog()
    for key, acts in data["convergence"]:
        convergence.acts[(key[0], key[1], key[2])] = list(acts)
    scope_class: type[RunScope] = RunScope
    scope_extra: dict[str, Any] = {}
    if shared is not None:
        scope_class = SharedRunScope
        scope_extra = {"_client": shared[0], "key": shared[1], "max_retries": max_retries}
    return scope_class(
        meter=meter,
        started=now_mono - (now_wall - data["started_at"]),
        call_timeout_s=data["call_timeout_s"],
        retries_left=data["retries_left"],
        values={agent: dict(values) for agent, values in data["values"].items()},
        convergence=convergence,
        **scope_extra,
    )


def _add_difference(target: Spend, before: list[float], after: list[float]) -> None:
    target.add(int(after[0] - before[0]), float(after[1] - before[1]))


def merge(scope: RunScope, before: Snapshot, after: Snapshot) -> None:
    """Add to `scope` what an Activity changed between `before` (sent) and `after` (returned)."""
    meter = scope.meter
    with meter._lock:
        _add_difference(meter.run_spent, before["run_spent"], after["run_spent"])
        _add_difference(meter.session_spent, before["session_spent"], after["session_spent"])
        for agent, spent in after["agent_spent"].items():
            earlier = before["agent_spent"].get(agent, [0, 0.0])
            _add_difference(meter.agent_spent.setdefault(agent, Spend()), earlier, spent)
        meter._alerted.update(after["alerted"])
    with scope._lock:
        if scope.retries_left is not None and after["retries_left"] is not None:
            used = (before["retries_left"] or 0) - after["retries_left"]
            scope.retries_left = max(0, scope.retries_left - used)
        for agent, values in after["values"].items():
            if values != before["values"].get(agent):
                scope.values[agent] = dict(values)
    earlier_acts = {tuple(key): len(acts) for key, acts in before["convergence"]}
    with scope.convergence._lock:
        for key, acts in after["convergence"]:
            new = acts[earlier_acts.get(tuple(key), 0) :]
            if new:
                scope.convergence.acts.setdefault((key[0], key[1], key[2]), []).extend(new)
