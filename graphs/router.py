"""Router: a classifier picks one specialised agent per turn; unsure -> default agent.

START -> classify -> (conditional edge) -> one agent -> END. Each agent sees only the turns routed
to it. A follow-up stays with the previous agent unless the classifier is confident of another.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from langgraph.graph import END, START, StateGraph

from nodes.agent import make_agent_node
from nodes.calibration import Calibration
from nodes.classifiers import Classifier, default_classifier
from nodes.classify import make_classify_node
from nodes.fallback import fallback_destinations, make_fallback_handler
from state.agents import AgentSpec, check_agents
from state.context import Context
from state.router import RouterInput, RouterOutput, RouterState
from switchyard.resilience import model_retry_policy

CLASSIFY = "classify"


def route_to_agent(state: RouterState) -> str:
    """The agent the classify node chose for this turn."""
    route = state["route"]
    assert route is not None, "classify always writes a route before this edge"
    return route["agent"]


def build_router_graph(
    agents: Sequence[AgentSpec],
    *,
    default_agent: str,
    classifier: Classifier | None = None,
    calibration: Calibration | str | Path | None = None,
) -> StateGraph[RouterState, Context, RouterInput, RouterOutput]:
    """Build the router pattern (uncompiled: the caller picks checkpointer and store).

    Args:
        agents: The specialised agents; names must be unique.
        default_agent: The agent that answers when the classifier is unsure.
        classifier: How requests are matched to agents; defaults to `default_classifier`
            (semantic when the `switchyard[semantic]` extra is installed, else lexical).
        calibration: For the default classifier: the confidence map and out-of-scope threshold
            saved by `switchyard eval-router --fit` (a path or a `Calibration`). Out-of-scope
            requests then go to `default_agent`. Give it to your own classifier instead when
            you pass one.

    Raises:
        AgentConfigError: No agents, duplicate names, or an unknown default agent.
        CalibrationError: The calibration was fitted for another classifier, other agents or
            another default agent.
        ValueError: Both a classifier and a calibration, or a classifier built for other agents.

    Example:
        ```python
        builder = build_router_graph(agents, default_agent="support")
        graph = builder.compile(checkpointer=InMemorySaver(), name="router")
        ```
    """
    by_name = check_agents(agents, default_agent=default_agent, reserved=(CLASSIFY,))
    if classifier is not None and calibration is not None:
        raise ValueError("give the calibration to your classifier, or drop the classifier")
    classifier = classifier or default_classifier(
        agents, default_agent=default_agent, calibration=calibration
    )
    if set(classifier.agents) != set(by_name):
        raise ValueError(
            f"the classifier was built for agents {sorted(classifier.agents)}, "
            f"but the graph has {sorted(by_name)}; build it from the same AgentSpecs"
        )
    builder = StateGraph(
        RouterState, context_schema=Context, input_schema=RouterInput, output_schema=RouterOutput
    )
    builder.add_node(
        CLASSIFY,
        make_classify_node(classifier, default_agent=default_agent),
        retry_policy=model_retry_policy(),
    )
    for spec in agents:
        builder.add_node(
            spec.name,
            make_agent_node(spec),
            retry_policy=model_retry_policy(spec.max_attempts),
            error_handler=make_fallback_handler(spec, default_agent=default_agent),
            destinations=fallback_destinations(spec, default_agent),
        )
        builder.add_edge(spec.name, END)
    builder.add_edge(START, CLASSIFY)
    builder.add_conditional_edges(CLASSIFY, route_to_agent, list(by_name))
    return builder


DEMO_AGENTS = (
    AgentSpec(
        name="support",
        description="Customer support: refunds, billing, payments, charges, invoices, "
        "subscriptions and account issues such as login or password problems.",
        system_prompt="You are the customer support agent. Resolve billing, refund and account "
        "problems politely and precisely.",
        examples=(
            "I need a refund for my last payment",
            "I was charged twice this month",
            "How do I cancel my subscription?",
            "I can't log in to my account",
            "Update the credit card on my invoice",
        ),
    ),
    AgentSpec(
        name="docs",
        description="Documentation: how to use the API, SDKs, endpoints, authentication, "
        "parameters, rate limits and where things are documented.",
        system_prompt="You are the documentation agent. Explain how to use the API and SDKs, "
        "citing the relevant documentation.",
        examples=(
            "How do I authenticate with the API?",
            "Which endpoint lists all projects?",
            "Is there a Python SDK?",
            "What are the API rate limits?",
            "Where is the documentation for webhooks?",
        ),
    ),
    AgentSpec(
        name="code",
        description="Programming: write, generate, fix, debug, refactor and review code, "
        "functions, scripts and tests.",
        system_prompt="You are the coding agent. Write, fix and review code with short "
        "explanations.",
        examples=(
            "Write a Python function that parses a CSV file",
            "Review this code for bugs",
            "Fix the error in my JavaScript function",
            "Generate unit tests for this class",
            "Refactor this script to be faster",
        ),
    ),
)
"""The three agents of the classic router example; `support` is the default."""

graph = build_router_graph(DEMO_AGENTS, default_agent="support").compile(name="router")
