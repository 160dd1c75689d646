"""The run scope: what one run's guardrails share across all its agents, wherever it was started.

A compiled Switchyard graph opens a `RunScope` when a run starts (however it was started:
`run()`, `graph.invoke`, `stream`, `langgraph dev`, the Agent Server) and puts it in the run's
config, which LangGraph hands to every task of the run: parallel branches, `Send`s and subgraphs
included. Middleware reads it with `current_scope()`.

It holds the run's meter (budgets and the deadline: spend is shared by tasks running at the same
time, so it is an object with a lock, not graph state that only changes between steps) and the
run-scoped values of middleware state (LangChain middleware marks them `UntrackedValue`: they
last one run and are never checkpointed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config

from switchyard.guardrails.budgets import RunMeter
from switchyard.guardrails.convergence import ConvergenceLog

RUN_SCOPE_KEY = "__switchyard_run_scope__"
"""Key of the scope in the run config's `configurable` (`__` keys never reach checkpoints)."""


@dataclass
class RunScope:
    """What the guardrails of one run share.

    Attributes:
        meter: Spend against the run's, the session's and each agent's budget, and the deadline.
        started: `time.monotonic()` when the run started.
        call_timeout_s: The run's override of every agent's `timeout_s` (None: each agent's own).
        retries_left: Retries of model calls the run may still make, all agents together (None:
            no run-wide limit).
        values: Run-scoped middleware state, by agent, then by state key.
        convergence: What each agent was given and did, to notice repetition.
    """

    meter: RunMeter
    started: float = field(default_factory=time.monotonic)
    call_timeout_s: float | None = None
    retries_left: int | None = None
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    convergence: ConvergenceLog = field(default_factory=ConvergenceLog)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def agent_values(self, agent: str) -> dict[str, Any]:
        """A copy of `agent`'s run-scoped middleware state."""
        with self._lock:
            return dict(self.values.get(agent, {}))

    def set_agent_values(self, agent: str, values: Mapping[str, Any]) -> None:
        """Update `agent`'s run-scoped middleware state."""
        with self._lock:
            self.values.setdefault(agent, {}).update(values)

    def take_retry(self) -> bool:
        """Spend one of the run's retries; False when none is left (or True without a limit)."""
        with self._lock:
            if self.retries_left is None:
                return True
            if self.retries_left <= 0:
                return False
            self.retries_left -= 1
            return True

    def remaining_s(self) -> float | None:
        """Seconds until the run's deadline (negative once it has passed); None without one."""
        if self.meter.deadline is None:
            return None
        return self.meter.deadline - time.monotonic()


def scope_of(config: RunnableConfig | None) -> RunScope | None:
    """The run scope carried by `config`, if any."""
    if not config:
        return None
    scope = (config.get("configurable") or {}).get(RUN_SCOPE_KEY)
    return scope if isinstance(scope, RunScope) else None


def with_scope(config: RunnableConfig | None, scope: RunScope) -> RunnableConfig:
    """A copy of `config` that carries `scope` to every task of the run."""
    base: RunnableConfig = config or {}
    configurable = {**(base.get("configurable") or {}), RUN_SCOPE_KEY: scope}
    return {**base, "configurable": configurable}


def current_scope() -> RunScope | None:
    """The scope of the run executing this code; None outside a run or in a run without one."""
    try:
        return scope_of(get_config())
    except RuntimeError:  # not inside a runnable
        return None


def current_meter() -> RunMeter | None:
    """The meter of the run executing this code, if it has one."""
    scope = current_scope()
    return scope.meter if scope is not None else None
