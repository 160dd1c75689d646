"""Budgets and deadlines: tokens and US dollars per run, per session and per agent.

A `RunMeter` lives for one run: a compiled Switchyard graph opens it when a run starts, in the
run's scope (`switchyard.guardrails.scope`), however the run was started. Every model call asks it
first, with an estimate (`admit`), and reports the actual usage afterwards (`charge`), through the
`SpendGuard` middleware, so one meter sees every call of the run whatever the pattern: sync or
async, fanned out with `Send`, or inside a subgraph.

A budget that would be exceeded stops the run with `BudgetExceededError` (the run ends with
`end_reason="budget_exceeded"` and its partial result), or, when the budget names a
`downgrade_model`, switches the call to that cheaper model. Crossing `alert_usd` calls the
registered cost-alert hooks once per run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from switchyard.core.errors import SwitchyardError
from switchyard.core.redact import masked_logger

logger = masked_logger(__name__)

Scope = Literal["run", "session", "agent"]


class Budget(BaseModel):
    """Limits on spend; any field left `None` is unlimited.

    Example:
        ```python
        Budget(max_tokens=50_000, max_usd=0.25, alert_usd=0.20)
        Budget(max_usd=1.0, downgrade_model="openai:gpt-4o-mini")  # switch instead of stopping
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int | None = Field(default=None, gt=0, description="Most tokens (in + out).")
    max_usd: float | None = Field(default=None, gt=0, description="Most US dollars.")
    alert_usd: float | None = Field(
        default=None, gt=0, description="Call the cost-alert hooks when spend crosses this."
    )
    downgrade_model: str | None = Field(
        default=None,
        description="Past the limit, calls switch to this cheaper model instead of stopping: "
        "the limit becomes a switch point, not a cap.",
    )

    @model_validator(mode="after")
    def _alert_below_limit(self) -> Budget:
        alert, limit = self.alert_usd, self.max_usd
        if alert is not None and limit is not None and alert > limit:
            raise ValueError(
                f"alert_usd ({self.alert_usd}) must not exceed max_usd ({self.max_usd})"
            )
        return self


class BudgetExceededError(SwitchyardError):
    """A model call would exceed (or a call did exceed) a budget; the run stops."""

    def __init__(self, scope: Scope, detail: str) -> None:
        super().__init__(f"{scope} budget exceeded: {detail}")
        self.scope = scope


class RetryBudgetExhaustedError(SwitchyardError):
    """The run's retries (`Context.max_retries`, all agents together) are spent; the run stops."""


class DeadlineExceededError(SwitchyardError):
    """The run's deadline passed before a model call could start."""


@dataclass
class Spend:
    """Tokens and dollars spent.

    `usd` counts the calls whose price is known. A dollar limit refuses a model with no known
    price before it is called (`RunMeter.admit`), so what a limit is checked against never
    leaves out a call made under it; calls made where no dollar limit applied (an earlier run of
    the session without one, say) add their tokens only, and `usd` is then a lower bound.
    """

    tokens: int = 0
    usd: float = 0.0

    def add(self, tokens: int, usd: float | None) -> None:
        """Add one call's spend (`usd` None: its price is unknown; no dollars are added)."""
        self.tokens += tokens
        if usd is not None:
            self.usd += usd


CostAlert = Callable[[str, float, float], None]
"""Hook called as `hook(scope_description, spent_usd, alert_usd)`."""

_alert_hooks: list[CostAlert] = []


def add_cost_alert(hook: CostAlert) -> None:
    """Register a hook called when a budget's `alert_usd` is crossed (once per run and budget)."""
    _alert_hooks.append(hook)


def remove_cost_alert(hook: CostAlert) -> None:
    """Unregister a hook added with `add_cost_alert`."""
    if hook in _alert_hooks:
        _alert_hooks.remove(hook)


@dataclass
class RunMeter:
    """Spend of one run, measured against the run's, the session's and each agent's budget.

    Attributes:
        run_budget: Limit for this run.
        session_budget: Limit for the whole session, this run included.
        agent_budgets: Per-agent limits over the session, by agent name.
        session_spent: What the session had spent before this run (from the usage ledger).
        agent_spent: What each agent had spent in the session before this run.
        deadline: `time.monotonic()` value after which no model call may start.
    """

    run_budget: Budget | None = None
    session_budget: Budget | None = None
    agent_budgets: dict[str, Budget] = field(default_factory=dict)
    session_spent: Spend = field(default_factory=Spend)
    agent_spent: dict[str, Spend] = field(default_factory=dict)
    deadline: float | None = None
    run_spent: Spend = field(default_factory=Spend)
    _alerted: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _limits(
        self, agent: str, agent_budget: Budget | None = None
    ) -> list[tuple[Scope, str, Budget, Spend]]:
        limits: list[tuple[Scope, str, Budget, Spend]] = []
        if self.run_budget is not None:
            limits.append(("run", "run", self.run_budget, self.run_spent))
        if self.session_budget is not None:
            limits.append(("session", "session", self.session_budget, self.session_spent))
        budget = agent_budget or self.agent_budgets.get(agent)
        if budget is not None:
            spent = self.agent_spent.setdefault(agent, Spend())
            limits.append(("agent", f"agent {agent}", budget, spent))
        return limits

    def admit(
        self,
        agent: str,
        model: str,
        tokens: int,
        usd: float | None,
        agent_budget: Budget | None = None,
    ) -> str:
        """Check a call before it is made; return the model to use.

        Args:
            agent: The calling agent.
            model: The model it wants.
            tokens: Estimated tokens of the call (input plus expected output).
            usd: Estimated dollars, or None when the model has no known price.
            agent_budget: The agent's own budget (`AgentSpec.budget`), if any.

        Raises:
            DeadlineExceededError: The run's deadline has passed.
            BudgetExceededError: The call would exceed a budget that has no downgrade model.
        """
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceededError(
                f"run deadline passed before agent {agent!r} could call its model; "
                "raise Context.deadline_s for longer runs"
            )
        elsewhere = self.spent_elsewhere()
        with self._lock:
            for scope, label, budget, counted in self._limits(agent, agent_budget):
                spent = counted
                if scope in ("run", "session") and (elsewhere.tokens or elsewhere.usd):
                    spent = Spend(counted.tokens + elsewhere.tokens, counted.usd + elsewhere.usd)
                problem = _over(budget, spent, tokens, usd)
                if problem is None:
                    continue
                if budget.downgrade_model and budget.downgrade_model != model:
                    logger.warning(
                        "%s budget: %s; downgrading %s to %s",
                        label,
                        problem,
                        model,
                        budget.downgrade_model,
                    )
                    return budget.downgrade_model
                raise BudgetExceededError(scope, f"{label}: {problem}")
        return model

    def spent_elsewhere(self) -> Spend:
        """This run's spend made by other processes and not yet counted here.

        None in one process. A run spread over workers (`switchyard.runtime.temporal`) counts
        what its other workers spend in flight, so a budget holds across them.
        """
        return Spend()

    def charge(
        self, agent: str, tokens: int, usd: float | None, agent_budget: Budget | None = None
    ) -> None:
        """Record a call's actual spend; fire cost alerts that it crosses.

        `usd` is None for a model with no known price: its tokens are charged, and no dollars
        (see `Spend`).
        """
        crossed: list[tuple[str, float, float]] = []
        with self._lock:
            self.run_spent.add(tokens, usd)
            self.session_spent.add(tokens, usd)
            self.agent_spent.setdefault(agent, Spend()).add(tokens, usd)
            for _, label, budget, spent in self._limits(agent, agent_budget):
                if (
                    budget.alert_usd is not None
                    and spent.usd >= budget.alert_usd
                    and label not in self._alerted
                ):
                    self._alerted.add(label)
                    crossed.append((label, spent.usd, budget.alert_usd))
        for label, spent_usd, alert in crossed:
            logger.warning("cost alert: %s spent $%.4f (alert at $%.4f)", label, spent_usd, alert)
            for hook in list(_alert_hooks):
                hook(label, spent_usd, alert)


def _over(budget: Budget, spent: Spend, tokens: int, usd: float | None) -> str | None:
    if budget.max_tokens is not None and spent.tokens + tokens > budget.max_tokens:
        return (
            f"{spent.tokens:,} tokens spent + ~{tokens:,} for this call > "
            f"limit {budget.max_tokens:,}"
        )
    if budget.max_usd is not None and usd is None:
        return (
            "this model has no known price, so a dollar limit cannot be enforced; register one "
            "with switchyard.core.pricing.set_price or use a token limit"
        )
    if budget.max_usd is not None and usd is not None and spent.usd + usd > budget.max_usd:
        return f"${spent.usd:.4f} spent + ~${usd:.4f} for this call > limit ${budget.max_usd:.4f}"
    return None
