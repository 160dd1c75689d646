"""Router: a classifier picks one specialised agent per turn; unsure -> default agent.

START -> classify -> (conditional edge) -> one agent -> END. Each agent sees only the turns routed
to it. A follow-up stays with the previous agent unless the classifier is confident of another.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langgraph.graph import END, START

from switchyard.graphs.guarded import PatternGraph
from switchyard.nodes.calibration import Calibration
from switchyard.nodes.classifiers import Classifier, default_classifier
from switchyard.nodes.classify import make_classify_node
from switchyard.nodes.fallback import (
    FallbackAgent,
    fallback_destinations,
    make_chain_node,
    make_fallback_handler,
    resolve_fallback_agent,
)
from switchyard.state.agents import Agent, AgentSpec, as_agents, check_agents
from switchyard.state.context import Context
from switchyard.state.router import RouterInput, RouterOutput, RouterState

CLASSIFY = "classify"


def route_to_agent(state: RouterState) -> str:
    """The agent the classify node chose for this turn."""
    route = state["route"]
    assert route is not None, "classify always writes a route before this edge"
    return route["agent"]


def router_classifier(
    agents: Sequence[AgentSpec],
    default_agent: str,
    classifier: Classifier | None,
    calibration: Calibration | str | Path | None,
) -> Classifier:
    """The given classifier, checked against the agents, else the default one (calibrated).

    Raises:
        ValueError: Both a classifier and a calibration, or a classifier for other agents.
    """
    if classifier is not None and calibration is not None:
        raise ValueError("give the calibration to your classifier, or drop the classifier")
    classifier = classifier or default_classifier(
        agents, default_agent=default_agent, calibration=calibration
    )
    if set(classifier.agents) != {spec.name for spec in agents}:
        raise ValueError(
            f"the classifier was built for agents {sorted(classifier.agents)}, but the graph "
            f"has {sorted(spec.name for spec in agents)}; build it from the same AgentSpecs"
        )
    return classifier


def build_router_graph(
    agents: Sequence[Agent],
    *,
    default_agent: str,
    classifier: Classifier | None = None,
    calibration: Calibration | str | Path | None = None,
    middleware: Sequence[AgentMiddleware[Any, Any, Any]] = (),
    fallback_agent: FallbackAgent = None,
) -> PatternGraph:
    """Build the router pattern (uncompiled: the caller picks checkpointer and store).

    Args:
        agents: The specialised agents; names must be unique.
        default_agent: The agent that answers when the classifier is unsure.
        classifier: How requests are matched to agents; defaults to `default_classifier`
            (semantic when the `switchyard-agents[semantic]` extra is installed, else lexical).
        calibration: For the default classifier: the confidence map and out-of-scope threshold
            saved by `switchyard eval-router --fit` (a path or a `Calibration`). Out-of-scope
            requests then go to `default_agent`. Give it to your own classifier instead when
            you pass one.
        middleware: LangChain `AgentMiddleware` for every agent, outside each agent's own (see
            `switchyard.nodes.chain`).
        fallback_agent: The agent that takes the turn when an agent fails (its model and
            fallback models tried): the name of one of the agents, or an agent of its own (a
            node the classifier never routes to). Default: `default_agent`. Then a person, when
            `Context.escalate_to_human` is on (see `switchyard.nodes.fallback`).

    Raises:
        AgentConfigError: No agents, duplicate names, or an unknown default or fallback agent.
        CalibrationError: The calibration was fitted for another classifier, other agents or
            another default agent.
        ValueError: Both a classifier and a calibration, or a classifier built for other agents.

    Example:
        ```python
        builder = build_router_graph(agents, default_agent="support")
        graph = builder.compile(checkpointer=InMemorySaver(), name="router")
        ```
    """
    agents = as_agents(agents)
    by_name = check_agents(agents, default_agent=default_agent, reserved=(CLASSIFY,))
    classifier = router_classifier(agents, default_agent, classifier, calibration)
    standby = resolve_fallback_agent(fallback_agent, by_name) or by_name[default_agent]
    # A fallback agent of its own is a node too, reached only from a failed agent's handler.
    members = agents if standby.name in by_name else [*agents, standby]
    check_agents(members, reserved=(CLASSIFY,))
    builder = PatternGraph(
        RouterState, context_schema=Context, input_schema=RouterInput, output_schema=RouterOutput
    )
    builder.add_node(CLASSIFY, make_classify_node(classifier, default_agent=default_agent))
    for spec in members:
        builder.add_node(
            spec.name,
            make_chain_node(spec, fallback_agent=None, middleware=middleware),
            error_handler=make_fallback_handler(spec, default_agent=standby.name),
            destinations=fallback_destinations(spec, standby.name),
        )
        builder.add_edge(spec.name, END)
    builder.add_edge(START, CLASSIFY)
    builder.add_conditional_edges(CLASSIFY, route_to_agent, list(by_name))
    return builder
