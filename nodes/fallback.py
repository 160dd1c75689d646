"""The graph half of the fallback chain, wired as LangGraph node `error_handler`s.

The chain is the same in every pattern: the agent's fallback models (tried inside the agent call,
by the `FallbackModels` middleware, for each model call), then the pattern's default agent, then a
person (`interrupt`, when `Context.escalate_to_human` is on), then the dead-letter queue (the run
facade records the failed run). A node's handler is reached once the agent call failed with its
fallback models too; when the rest is exhausted, or when the failure was a budget or the run's
deadline (which no fallback can fix), the run ends cleanly: `end_reason` says why, the agent's
apology is the last message, and everything done before stays in the checkpoint.
"""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.errors import NodeError
from langgraph.graph import END
from langgraph.types import Command, interrupt

from switchyard.core.errors import describe_error
from switchyard.guardrails.budgets import BudgetExceededError, DeadlineExceededError
from switchyard.nodes.record import partial_usage
from switchyard.state.agents import AgentSpec
from switchyard.state.context import current_context
from switchyard.state.outcomes import EndReason, end_reason_for
from switchyard.state.usage import UsageLedger

logger = logging.getLogger(__name__)

HUMAN = "human"
"""Name carried by answers a person gives through escalation."""


def _stop(
    spec: AgentSpec, reason: EndReason, failures: list[str], usage: UsageLedger
) -> Command[Any]:
    message = AIMessage(
        content=f"The {spec.name} agent could not answer ({reason}): {'; '.join(failures)}",
        name=spec.name,
    )
    logger.error("agent %s failed, run ends: %s (%s)", spec.name, reason, "; ".join(failures))
    return Command(goto=END, update={"messages": [message], "end_reason": reason, "usage": usage})


def make_fallback_handler(spec: AgentSpec, *, default_agent: str | None = None) -> Any:
    """The `error_handler` of an agent node whose agent can be stood in for.

    Args:
        spec: The agent whose node the handler guards.
        default_agent: Node to hand the turn to when the agent failed (None, or the agent
            itself: skip this step).

    Returns:
        A handler for `StateGraph.add_node(..., error_handler=...)`. Pass `fallback_destinations`
        as the node's `destinations` so the drawn graph shows where a fallback can go.
    """

    def handle_failure(state: dict[str, Any], error: NodeError) -> Command[Any]:
        failures = [f"{spec.name}: {describe_error(error.error)}"]
        spent = partial_usage(error.error)
        if isinstance(error.error, BudgetExceededError | DeadlineExceededError):
            return _stop(spec, end_reason_for(error.error), failures, spent)
        if default_agent is not None and default_agent != spec.name:
            logger.warning("agent %s failed; handing the turn to %s", spec.name, default_agent)
            return Command(goto=default_agent, update={"usage": spent})
        if current_context().escalate_to_human:
            answer = interrupt(
                {
                    "reason": "agent_failed",
                    "agent": spec.name,
                    "failures": failures,
                    "request": _last_request(state),
                }
            )
            return Command(
                update={
                    "messages": [AIMessage(content=str(answer), name=HUMAN)],
                    "usage": spent,
                }
            )
        return _stop(spec, "agent_failed", failures, spent)

    return handle_failure


def make_stop_handler(agent: str) -> Any:
    """An `error_handler` that ends the run cleanly when node `agent` fails after its retries.

    For nodes whose output is a pattern's own routing (a supervisor's `Command`, a swarm agent's
    handoff), where another model's answer cannot simply stand in: the run stops with
    `end_reason` (`budget_exceeded`, `deadline` or `agent_failed`), the explanation as the last
    message, and everything before it checkpointed, so the dead-letter queue can replay it.
    """

    def stop_on_failure(state: dict[str, Any], error: NodeError) -> Command[Any]:
        message = AIMessage(
            content=f"The {agent} agent could not answer ({end_reason_for(error.error)}): "
            f"{agent}: {describe_error(error.error)}",
            name=agent,
        )
        logger.error("node %s failed, run ends: %s", agent, describe_error(error.error))
        return Command(
            goto=END,
            update={
                "messages": [message],
                "end_reason": end_reason_for(error.error),
                "usage": partial_usage(error.error),
            },
        )

    return stop_on_failure


def fallback_destinations(spec: AgentSpec, default_agent: str | None) -> tuple[str, ...]:
    """Where the fallback handler of `spec` may send the run (for `add_node(destinations=...)`)."""
    if default_agent is not None and default_agent != spec.name:
        return (default_agent, END)
    return (END,)


def _last_request(state: dict[str, Any]) -> str:
    for message in reversed(state.get("messages", [])):
        if isinstance(message, HumanMessage):
            return message.text
    return ""
