"""How a run ends: one `EndReason` vocabulary for every pattern, the run facade and `RunResult`."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from langgraph.errors import GraphRecursionError
from typing_extensions import TypedDict

from switchyard.core.errors import OutputTruncatedError
from switchyard.guardrails.budgets import (
    BudgetExceededError,
    DeadlineExceededError,
    RetryBudgetExhaustedError,
)
from switchyard.guardrails.confidence import LowConfidenceError
from switchyard.guardrails.convergence import ConvergedError, NoProgressError
from switchyard.guardrails.limits import RateLimitedError
from switchyard.guardrails.tripwires import GuardrailTrippedError

EndReason = Literal[
    # every pattern
    "completed",
    "error",
    "escalated",
    "recursion_limit",
    "budget_exceeded",
    "deadline",
    "retry_budget_exhausted",
    "agent_failed",
    "guardrail_tripped",
    "low_confidence",
    "rate_limited",
    "output_truncated",
    # patterns that can cycle (supervisor, swarm, events, hierarchical re-plans)
    "converged",
    "no_progress",
    # pipeline
    "stage_failed",
    # fan-out
    "quorum_failed",
    "no_majority",
    # hierarchical
    "plan_invalid",
    "step_failed",
    # events
    "max_events",
    "max_depth",
    "handler_failed",
    "unhandled",
    # supervisor and swarm
    "max_rounds",
    "max_handoffs",
    "ping_pong",
    "no_handoff_capability",
]
"""Why a run ended. `completed` and `converged` (agents repeated a stable answer, which is
returned) are the successful ones; `escalated` waits for a person. `output_truncated`: an agent's
answer stopped at its `max_tokens` (after its fallbacks); `no_handoff_capability`: an agent's
answer names a handoff its model could neither call nor write as a readable call."""

END_REASONS: tuple[EndReason, ...] = get_args(EndReason)
"""Every `EndReason`, in the order above."""

SUCCESSFUL: frozenset[EndReason | None] = frozenset({None, "completed", "converged"})
"""End reasons of a run that answered (None: a state written before a pattern set one)."""


def end_reason_for(error: BaseException, default: EndReason = "agent_failed") -> EndReason:
    """The end reason of a run stopped by `error`: a guardrail's own, else `default`.

    A budget and the run's deadline are guardrails that no fallback can get round, so they name
    themselves in every pattern; a recursion limit is LangGraph's own stop.
    """
    if isinstance(error, BudgetExceededError):
        return "budget_exceeded"
    if isinstance(error, DeadlineExceededError):
        return "deadline"
    if isinstance(error, RetryBudgetExhaustedError):
        return "retry_budget_exhausted"
    if isinstance(error, RateLimitedError):
        return "rate_limited"
    if isinstance(error, ConvergedError):
        return "converged"
    if isinstance(error, NoProgressError):
        return "no_progress"
    if isinstance(error, LowConfidenceError):
        return "low_confidence"
    if isinstance(error, GuardrailTrippedError):
        return "guardrail_tripped"
    if isinstance(error, GraphRecursionError):
        return "recursion_limit"
    if isinstance(error, OutputTruncatedError):
        return "output_truncated"
    return default


GUARDRAIL_STOPS: frozenset[EndReason] = frozenset(
    {
        "budget_exceeded",
        "deadline",
        "retry_budget_exhausted",
        "converged",
        "rate_limited",
        "guardrail_tripped",
    }
)
"""End reasons of a guardrail no fallback can get round: they end the whole run (`converged`
with the answer that was repeated: nothing is left to fall back from; `rate_limited`: the agent's
fallback models had their turn inside the call, each under its own model's limit, and what is
left cannot be called before the run's deadline, as the provider or the shared limit allows)."""


def guardrail_stop(error: BaseException) -> EndReason | None:
    """`budget_exceeded` or `deadline` when `error` is that guardrail's stop, else None."""
    reason = end_reason_for(error)
    return reason if reason in GUARDRAIL_STOPS else None


def run_stop(error: BaseException) -> EndReason | None:
    """`deadline`, or `budget_exceeded` for a run or session budget, when `error` ends the run.

    An agent's own budget (`AgentSpec.budget`) refuses only that agent's calls: a pattern whose
    other branches can still finish (a plan's other steps, a quorum's other workers) goes on, so
    this returns None for it.
    """
    reason = guardrail_stop(error)
    if reason == "budget_exceeded" and getattr(error, "scope", None) == "agent":
        return None
    return reason


Question = dict[str, Any]
"""What a person is asked when an agent's fallback chain is exhausted (see
`switchyard.nodes.fallback.ask_person`): reason, agent, failures, request and task."""


def merge_questions(
    left: dict[str, Question | None] | None, right: dict[str, Question | None] | None
) -> dict[str, Question | None]:
    """Questions waiting for a person, by the node that asks them.

    Keeps every node's newest question; a node's `None` drops its question (it was answered).
    """
    merged = {**(left or {}), **(right or {})}
    return {node: question for node, question in merged.items() if question is not None}


class Escalations(TypedDict):
    """The state key where a failed node leaves its question for a person (checkpointed).

    A node's error handler writes the question (and the failed calls' spend) and sends the run
    back to the node, which asks it (`interrupt`) instead of calling its agent, then clears it.
    """

    asking: Annotated[dict[str, Question | None], merge_questions]
