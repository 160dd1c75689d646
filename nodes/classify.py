"""The classify node: turns a classifier's decision into the router's choice for this turn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.runnables import Runnable
from langgraph.types import interrupt

from switchyard.nodes.agent import NodeRunnable
from switchyard.nodes.classifiers import Classifier, Decision
from switchyard.state.context import Context, current_context
from switchyard.state.router import Route


def last_user_text(messages: Sequence[AnyMessage]) -> str:
    """Text of the newest user message, or "" when there is none."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return ""


def choose(
    decision: Decision,
    *,
    classifier: str,
    default_agent: str,
    previous_agent: str | None,
    threshold: float,
) -> Route:
    """The router's rule, as a pure function.

    A confident decision wins. When the classifier is unsure, a follow-up stays with the agent
    that answered the previous turn; a first turn goes to the default agent.
    """
    if decision.confidence >= threshold:
        agent, reason = decision.agent, decision.reason
    elif previous_agent is not None:
        agent = previous_agent
        reason = (
            f"follow-up stays with {previous_agent}: classifier unsure "
            f"({decision.agent} at {decision.confidence:.2f} < {threshold:.2f})"
        )
    else:
        agent = default_agent
        reason = (
            f"low confidence ({decision.agent} at {decision.confidence:.2f} < {threshold:.2f}) "
            f"-> default agent {default_agent}"
        )
    return Route(agent=agent, confidence=decision.confidence, reason=reason, classifier=classifier)


def ask_person(
    decision: Decision, text: str, agents: Sequence[str], default_agent: str
) -> Decision:
    """Pause the run (`interrupt`) so a person picks the agent; resume with an agent's name.

    An answer that is not an agent's name sends the turn to the default agent.
    """
    answer = interrupt(
        {
            "reason": "low_confidence",
            "request": text,
            "suggested": decision.agent,
            "confidence": decision.confidence,
            "agents": list(agents),
            "resume_with": "the name of the agent that should answer",
        }
    )
    chosen = str(answer).strip()
    if chosen in agents:
        return Decision(
            chosen,
            1.0,
            f"chosen by a person (router suggested {decision.agent} at {decision.confidence:.2f})",
            decision.usage,
        )
    return Decision(
        default_agent,
        1.0,
        f"a person answered {chosen!r}, not an agent name: default agent {default_agent}",
        decision.usage,
    )


def make_classify_node(
    classifier: Classifier, *, default_agent: str
) -> Runnable[Any, dict[str, Any]]:
    """The node that routes each turn; writes `route`, `active_agent` and the classifier's usage."""

    def _inputs(state: dict[str, Any]) -> tuple[str, Context, str | None]:
        context = current_context()
        previous = state.get("active_agent")
        if previous not in classifier.agents:
            previous = None
        return last_user_text(state["messages"]), context, previous

    def _update(
        decision: Decision, context: Context, previous: str | None, text: str
    ) -> dict[str, Any]:
        escalate_below = context.escalation_threshold
        if escalate_below is not None and decision.confidence < escalate_below:
            decision = ask_person(decision, text, classifier.agents, default_agent)
        route = choose(
            decision,
            classifier=classifier.name,
            default_agent=default_agent,
            previous_agent=previous,
            threshold=context.confidence_threshold,
        )
        return {
            "route": route,
            "active_agent": route["agent"],
            "usage": decision.usage,
            "end_reason": None,
        }

    def classify(state: dict[str, Any]) -> dict[str, Any]:
        text, context, previous = _inputs(state)
        return _update(classifier.classify(text, model=context.model), context, previous, text)

    async def aclassify(state: dict[str, Any]) -> dict[str, Any]:
        text, context, previous = _inputs(state)
        decision = await classifier.aclassify(text, model=context.model)
        return _update(decision, context, previous, text)

    return NodeRunnable(classify, aclassify, name="classify")
