"""`FallbackModels`: when a model call fails, the agent's fallback models are tried in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from langchain.agents.middleware import ModelRequest
from langchain_core.language_models import BaseChatModel
from langgraph.errors import GraphBubbleUp

from switchyard.core.errors import describe_error
from switchyard.core.models import load_chat_model
from switchyard.guardrails.budgets import (
    BudgetExceededError,
    DeadlineExceededError,
    RetryBudgetExhaustedError,
)
from switchyard.guardrails.guard import Attempts, WrappingGuard
from switchyard.guardrails.tripwires import GuardrailTrippedError

FINAL = (
    GraphBubbleUp,
    BudgetExceededError,
    DeadlineExceededError,
    RetryBudgetExhaustedError,
    GuardrailTrippedError,
)
"""Failures no other model can get round: they are raised at once, never handed to a fallback."""

_fallback: ContextVar[str | None] = ContextVar("switchyard_fallback_model", default=None)


def fallback_model() -> str | None:
    """The fallback model the current call is made with; None for the agent's own model."""
    return _fallback.get()


def exhausted(failures: list[tuple[str | None, Exception]]) -> Exception:
    """The last failure, carrying every model's (`describe_error` reports them all)."""
    last = failures[-1][1]
    last.switchyard_failures = [  # type: ignore[attr-defined]
        f"{name}: {describe_error(exc)}" if name else describe_error(exc) for name, exc in failures
    ]
    return last


class FallbackModels(WrappingGuard):
    """The model half of the fallback chain: the agent's `fallback_models`, in order.

    LangChain's `ModelFallbackMiddleware` does the same loop, but loads its models when it is
    built, through `init_chat_model`: it cannot load the offline model or a registered one, and
    building a graph would need every fallback provider's key. This one loads each fallback when
    it is first needed (with the agent's settings), and never falls back from a budget or the
    run's deadline, which another model cannot fix. The rest of the chain (the default agent, a
    person, the dead-letter queue) belongs to the graph: see `switchyard.nodes.fallback`.

    Args:
        models: Model strings, in the order they are tried.
        load: Loads a model by name with the agent's settings.
    """

    def __init__(
        self,
        models: Sequence[str],
        *,
        load: Callable[[str], BaseChatModel] = load_chat_model,
    ) -> None:
        super().__init__()
        self.models = tuple(models)
        self.load = load

    def plan(self, request: ModelRequest[Any]) -> Attempts:
        """The agent's model, then each fallback model in turn; the last failure is raised."""
        failures: list[tuple[str | None, Exception]] = []
        for name in (None, *self.models):
            attempt = request if name is None else request.override(model=self.load(name))
            token = _fallback.set(name)
            try:
                outcome = yield attempt
            finally:
                _fallback.reset(token)
            if outcome.error is None or isinstance(outcome.error, FINAL):
                return outcome.result()
            failures.append((name, outcome.error))
        raise exhausted(failures)
