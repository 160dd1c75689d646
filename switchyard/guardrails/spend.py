"""`SpendGuard`: every model call is admitted against the run's budgets first and charged after."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain.agents.middleware import ModelRequest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.messages.utils import count_tokens_approximately

from switchyard.core.models import load_chat_model, model_name_of
from switchyard.core.pricing import cost_usd
from switchyard.core.tokens import Tokens, expected_tokens, tokens_of
from switchyard.guardrails.budgets import Budget
from switchyard.guardrails.guard import Attempt, CallGuard
from switchyard.guardrails.scope import current_meter


def request_prompt(request: ModelRequest[Any]) -> list[BaseMessage]:
    """What a request sends the model: its system message, then its messages."""
    if request.system_message is None:
        return list(request.messages)
    return [request.system_message, *request.messages]


def reports_usage(reply: BaseMessage | None) -> bool:
    """Whether a reply says what it used: its provider's `usage` block, as `usage_metadata`.

    LangChain's OpenAI client fills `AIMessage.usage_metadata` from the response's `usage`; a
    server that sends none, or a stream without `stream_options.include_usage`, leaves it empty.
    """
    return bool(getattr(reply, "usage_metadata", None))


def used_tokens(reply: BaseMessage | None, prompt: Sequence[BaseMessage]) -> Tokens:
    """The tokens a call used: as its reply reports them, else estimated from what was sent.

    The reply's own count (`reports_usage`) is used whenever it is there. A reply without one is
    estimated: `count_tokens_approximately` of `prompt` and of the reply. A call that gave no
    reply, or a reply from the response cache, used nothing.
    """
    tokens = tokens_of(reply)
    if reply is None or tokens.cache_hit or reports_usage(reply):
        return tokens
    return Tokens(
        input=count_tokens_approximately(prompt), output=count_tokens_approximately([reply])
    )


def call_cost(model: str, tokens: Tokens) -> float | None:
    """Dollars a call cost: None when its model has no known price, 0 when it used nothing.

    A call that used no tokens (a cache hit, a failure before any reply) costs nothing at any
    price.
    """
    if not tokens.total:
        return 0.0
    return cost_usd(model, tokens.input, tokens.output, tokens.cached)


class SpendGuard(CallGuard):
    """Run, session and agent budgets, in tokens and dollars, on every model call of an agent.

    Before a call, its estimated spend (the prompt's tokens plus the expected output) is admitted
    by the run's meter, which refuses it (`BudgetExceededError`) or, when the budget names a
    `downgrade_model`, switches it to that model. After the call, what it used is charged
    (`used_tokens`: as the reply reports it, else estimated); a call that failed after it was
    answered (its output failed validation) is charged too. A model with no known price is
    refused up front by a dollar limit, so its unknown cost is never charged against one.

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
        tokens_in, tokens_out = expected_tokens(
            request_prompt(request), getattr(request.model, "max_tokens", None)
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
        if meter is None:
            return
        tokens = used_tokens(attempt.reply, request_prompt(attempt.request))
        if not tokens.total:
            return
        model = model_name_of(attempt.request.model)
        meter.charge(self.agent, tokens.total, call_cost(model, tokens), self.budget)
