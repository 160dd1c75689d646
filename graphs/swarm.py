"""Swarm: agents hand the conversation to each other; the next turn starts with whoever holds it.

START -> (the session's active agent, else the default agent) -> agent -> (handoff) peer -> ... ->
END. Every agent sees the shared conversation and may hand off only to its declared peers
(`AgentSpec.handoffs`), through `transfer_to_<peer>` tools. Each turn is bounded: a handoff that
would exceed `max_handoffs`, or that completes a ping-pong between two agents (A -> B -> A -> B),
is refused and ends the run with that reason and the partial result.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.tools import BaseTool
from langgraph.graph import START
from langgraph.types import Command
from pydantic import ValidationError

from switchyard.graphs.guarded import PatternGraph
from switchyard.guardrails.convergence import Convergence
from switchyard.nodes.agent import own_view
from switchyard.nodes.convergence import DEFAULT_CONVERGENCE, convergence_guard
from switchyard.nodes.fallback import (
    FallbackAgent,
    fallback_destinations,
    make_chain_node,
    make_fallback_handler,
    resolve_fallback_agent,
)
from switchyard.nodes.handoff import (
    TransferArgs,
    close_open_calls,
    current_turn,
    finish_or_unread,
    handoff_target,
    make_handoff_tools,
    stop,
    transfer,
)
from switchyard.nodes.record import AgentReply
from switchyard.state.agents import Agent, AgentSpec, as_agents, check_agents
from switchyard.state.context import Context, current_context
from switchyard.state.swarm import Handoff, SwarmInput, SwarmOutput, SwarmState

DEFAULT_PING_PONG_REPEATS = 2
"""Round trips between the same two agents that end a turn: 2 stops A -> B -> A -> B."""


def route_to_active_agent(state: SwarmState, *, agents: Collection[str], default_agent: str) -> str:
    """The agent that starts this turn: the session's active agent, else the default agent.

    An active agent that is not in the graph (a session saved by another version of it) falls back
    to the default agent.
    """
    active = state.get("active_agent")
    return active if active is not None and active in agents else default_agent


def agent_path(handoffs: Sequence[Handoff], turn: int, current: str) -> list[str]:
    """The agents that held the conversation in `turn`, in order, ending with `current`."""
    this_turn = [h for h in handoffs if h["turn"] == turn]
    if not this_turn:
        return [current]
    return [this_turn[0]["source"], *(h["target"] for h in this_turn)]


def ping_pong(path: Sequence[str], repeats: int) -> tuple[str, str] | None:
    """The two agents bouncing the conversation, when `path` ends in `repeats` round trips.

    A round trip is the pair (A, B) with A != B; `path` is in ping-pong when its last
    `2 * repeats` agents alternate A, B, A, B, ... With `repeats=2`, A -> B -> A -> B is
    ping-pong and A -> B -> A is not.
    """
    window = list(path[-2 * repeats :])
    if len(window) < 2 * repeats:
        return None
    first, second = window[0], window[1]
    if first == second:
        return None
    if all(agent == (first, second)[index % 2] for index, agent in enumerate(window)):
        return first, second
    return None


def limit_reached(
    path: Sequence[str],
    handoffs_so_far: int,
    *,
    max_handoffs: int,
    repeats: int,
    remaining_steps: int,
) -> str | None:
    """Which limit a proposed handoff breaks, as an `end_reason`, or None when it may go ahead.

    Args:
        path: The agents that held the conversation this turn, ending with the proposed target.
        handoffs_so_far: Handoffs already made this turn.
        max_handoffs: Most handoffs per turn.
        repeats: Round trips between two agents that count as ping-pong.
        remaining_steps: Graph steps left before the recursion limit (the target needs one).

    Returns:
        "ping_pong", "max_handoffs" or "recursion_limit" (checked in that order), or None.
    """
    if ping_pong(path, repeats) is not None:
        return "ping_pong"
    if handoffs_so_far >= max_handoffs:
        return "max_handoffs"
    if remaining_steps <= 1:
        return "recursion_limit"
    return None


def last_text(messages: Sequence[AnyMessage]) -> str | None:
    """The newest non-empty text an agent wrote in the current turn, if any."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return None
        if isinstance(message, AIMessage) and message.text.strip():
            return message.text
    return None


def stop_explanation(
    end_reason: str, path: Sequence[str], *, max_handoffs: int, partial: str | None
) -> str:
    """The message that tells the user why the turn stopped, with the partial result."""
    route = " -> ".join(path)
    if end_reason == "ping_pong":
        why = f"the agents kept handing the conversation back and forth ({route}) without answering"
    elif end_reason == "max_handoffs":
        why = f"the handoff limit (max_handoffs={max_handoffs}) was reached: {route}"
    else:
        why = f"the run reached its recursion limit (raise Context.recursion_limit): {route}"
    tail = f"Partial result: {partial}" if partial else "No agent had answered yet."
    return f"Stopped ({end_reason}): {why}. {tail}"


def relay(
    state: SwarmState,
    reply: AgentReply,
    *,
    agent: str,
    tools: Sequence[BaseTool],
    max_handoffs: int,
    repeats: int,
) -> Command[str]:
    """An agent's move after its model call (pure: no model, no I/O).

    An answer ends the turn with the agent active. A handoff within the limits passes the
    conversation (and the active role) to the peer and records it; a handoff that breaks a limit is
    refused and ends the turn with the reason, the agent staying active.
    """
    if reply.handoff is None:
        return finish_or_unread(reply, agent=agent, update={"active_agent": agent})
    target = handoff_target(reply.handoff, tools)
    turn = current_turn(state["messages"])
    handoffs = state.get("handoffs", [])
    path = [*agent_path(handoffs, turn, agent), target]
    reason = limit_reached(
        path,
        sum(1 for h in handoffs if h["turn"] == turn),
        max_handoffs=max_handoffs,
        repeats=repeats,
        remaining_steps=state.get("remaining_steps", 2),
    )
    if reason is not None:
        partial = last_text([*state["messages"], *reply.messages])
        return stop(
            reply,
            agent=agent,
            end_reason=reason,
            refusal=f"refused: handoff {agent} -> {target} ({reason})",
            explanation=stop_explanation(reason, path, max_handoffs=max_handoffs, partial=partial),
            update={"active_agent": agent},
        )
    try:
        why = TransferArgs.model_validate(reply.handoff["args"]).reason
    except ValidationError:
        why = ""
    record = Handoff(source=agent, target=target, reason=why, turn=turn)
    return transfer(
        reply,
        agent=agent,
        goto=target,
        result=f"Transferred to {target}.",
        update={"active_agent": target, "handoffs": [record], "end_reason": None},
    )


def shared_view(spec: AgentSpec) -> Any:
    """A swarm agent's view: the shared conversation, every tool call answered."""

    def view(state: SwarmState, context: Context) -> list[AnyMessage]:
        return close_open_calls(own_view(spec, state["messages"], context, shared=True))

    return view


def move(
    state: SwarmState,
    reply: AgentReply,
    *,
    agent: str,
    tools: Sequence[BaseTool],
    max_handoffs: int | None,
    repeats: int,
) -> Command[str]:
    """A swarm agent's `accept`: `relay`, with the run's handoff limit when none is set."""
    limit = max_handoffs or current_context().max_handoffs
    return relay(state, reply, agent=agent, tools=tools, max_handoffs=limit, repeats=repeats)


def _check_limits(max_handoffs: int | None, ping_pong_repeats: int) -> None:
    if max_handoffs is not None and max_handoffs <= 0:
        raise ValueError(f"max_handoffs must be positive, got {max_handoffs}")
    if ping_pong_repeats < 2:
        raise ValueError(
            f"ping_pong_repeats must be at least 2 (1 would refuse every handoff), "
            f"got {ping_pong_repeats}"
        )


def build_swarm_graph(
    agents: Sequence[Agent],
    *,
    default_agent: str,
    max_handoffs: int | None = None,
    ping_pong_repeats: int = DEFAULT_PING_PONG_REPEATS,
    middleware: Sequence[AgentMiddleware[Any, Any, Any]] = (),
    fallback_agent: FallbackAgent = None,
    convergence: Convergence | None = DEFAULT_CONVERGENCE,
) -> PatternGraph:
    """Build the swarm pattern (uncompiled: the caller picks checkpointer and store).

    Compile it with a checkpointer for the active agent to carry over between turns.

    Args:
        agents: The agents; each may hand off to the peers named in its `handoffs`.
        default_agent: The agent that starts a new session.
        max_handoffs: Most handoffs per turn; `None` uses the run's `Context.max_handoffs`.
        ping_pong_repeats: Round trips between the same two agents that end a turn (at least 2;
            2 stops A -> B -> A -> B).
        middleware: LangChain `AgentMiddleware` for every agent, outside each agent's own.
        fallback_agent: The agent that takes the turn over when an agent fails (its model and
            fallback models tried): the name of one of the agents, or an agent of its own (a
            node reached only that way). None (the default): no agent takes over (a peer is not
            a fallback: handing the turn on is the agent's own decision). Then a person, when
            `Context.escalate_to_human` is on (see `switchyard.nodes.fallback`).
        convergence: An agent that makes the same handoff from the same input again ends the
            run (`end_reason="no_progress"`, after the fallback chain), one that gives the same
            answer to the same input again ends it with that answer (`converged`); see
            `switchyard.guardrails.convergence`. None: off. An agent's own
            `AgentSpec.convergence` overrides it. Its `repeats` is at least
            `ping_pong_repeats`.

    Raises:
        AgentConfigError: No agents, duplicate names, an unknown default or fallback agent, or a
            handoff to an unknown agent or to the agent itself.
        ValueError: `max_handoffs` is not positive or `ping_pong_repeats` is below 2.

    Example:
        ```python
        builder = build_swarm_graph(agents, default_agent="triage")
        graph = builder.compile(checkpointer=InMemorySaver(), name="swarm")
        ```
    """
    specs = as_agents(agents)
    by_name = check_agents(specs, default_agent=default_agent)
    _check_limits(max_handoffs, ping_pong_repeats)
    standby = resolve_fallback_agent(fallback_agent, by_name)
    if standby is not None and standby.name not in by_name:
        specs = [*specs, standby]  # a node of its own, reached only when an agent fails
        by_name = check_agents(specs, default_agent=default_agent)
    standby_name = standby.name if standby is not None else None
    if convergence is not None and convergence.repeats < ping_pong_repeats:
        # Two agents handing a turn back and forth repeat their handoffs from the same input;
        # the swarm's own `ping_pong_repeats` says how many round trips it allows.
        convergence = convergence.model_copy(update={"repeats": ping_pong_repeats})
    builder = PatternGraph(
        SwarmState, context_schema=Context, input_schema=SwarmInput, output_schema=SwarmOutput
    )
    for spec in specs:
        tools = make_handoff_tools([by_name[p] for p in spec.handoffs], args_schema=TransferArgs)
        accept = partial(
            move, agent=spec.name, tools=tools, max_handoffs=max_handoffs, repeats=ping_pong_repeats
        )
        node = make_chain_node(
            spec,
            fallback_agent=None,  # the fallback agent takes the turn as itself (its own node)
            view=shared_view(spec),
            accept=accept,
            handoffs=tools,
            middleware=[*middleware, *convergence_guard(spec, convergence)],
        )
        # A failing agent's fallback models were tried in its call; then the fallback agent
        # takes the turn, then a person, else the run stops cleanly.
        handler = make_fallback_handler(spec, default_agent=standby_name)
        builder.add_node(
            spec.name,
            node,
            error_handler=handler,
            destinations=tuple(
                dict.fromkeys((*spec.handoffs, *fallback_destinations(spec, standby_name)))
            ),
        )
    builder.add_conditional_edges(
        START,
        partial(route_to_active_agent, agents=frozenset(by_name), default_agent=default_agent),
        list(by_name),
    )
    return builder
