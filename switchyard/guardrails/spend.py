"""`SpendGuard`: every model call is admitted against the run's budgets first and charged after."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain.agents.middleware import ModelRequest
from langchain_core.language_models import BaseChatModel

from switchyard.core.models import load_chat_model, model_name_of
from switchyard.core.pricing import cost_usd
from switchyard.core.tokens import expected_tokens, tokens_of
from switchyard.guardrails.budgets import Budget
from switchyard.guardrails.guard import Attempt, CallGuard
from switchyard.guardrails.scope import current_meter


class SpendGuard(CallGuard):
    """Run, session and agent budgets, in tokens and dollars, on every model call of an agent.

    Before a call, its estimated spend (the prompt's tokens plus the expected output) is admitted
    by the run's meter, which refuses it (`BudgetExceededError`) or, when the budget names a
    `downgrade_model`, switches it to that model. After the call, what it used is charged; a call
    that failed after it was answered (its output failed validation) is charged too.

    Args:
        agent: The agent whose calls this guards (its budget and its spend are its own).
        budget: The agent's own budget over the session (`AgentSpec.budget`).
        load: Loads a model by name with the agent's settings (for a downgrade).
    """

    def __init__(
        self,
        agent: str,
        *,
        budget: Budget | None = None,
        load: Callable[[str], BaseChatModel] = load_chat_model,
    ) -> None:
        super().__init__()
        self.agent = agent
        self.budget = budget
        self.load = load

    def before(self, request: ModelRequest[Any]) -> tuple[ModelRequest[Any], Any]:
        """Admit the call on its estimate; switch to the downgrade model if a budget says so."""
        meter = current_meter()
        if meter is None:
            return request, None
        prompt = [request.system_message, *request.messages] if request.system_message else []
        tokens_in, tokens_out = expected_tokens(
            prompt or request.messages, getattr(request.model, "max_tokens", None)
        )
        model = model_name_of(request.model)
        chosen = meter.admit(
            self.agent,
            model,
            tokens_in + tokens_out,
            cost_usd(model, tokens_in, tokens_out),
            self.budget,
        )
        if chosen != model:
            request = request.override(model=self.load(chosen))
        return request, None

    def after(self, attempt: Attempt) -> None:
        """Charge what the call used (nothing when no reply came back)."""
        meter = current_meter()
        tokens = tokens_of(attempt.reply)
        if meter is None or not tokens.total:
            return
        model = model_name_of(attempt.request.model)
        cost = cost_usd(model, tokens.input, tokens.output, tokens.cached) or 0.0
        meter.charge(self.agent, tokens.total, cost, self.budget)
