"""Supervisor: one agent delegates typed tasks to workers, which report back; it answers at the end.

START -> supervisor -> (handoff) worker -> supervisor -> ... -> supervisor -> END. The supervisor
calls a `transfer_to_<worker>` tool with a `task`; the worker sees only that task (never the
transcript) and its result answers the supervisor's tool call. After `max_rounds` delegations in one
turn, a further handoff ends the run with `end_reason="max_rounds"` and the partial results.
Built on `StateGraph` and `Command` directly, as langgraph-supervisor's README recommends.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END, START
from langgraph.types import Command
from pydantic import BaseModel, ValidationError

from switchyard.core.errors import AgentConfigError
from switchyard.graphs.guarded import PatternGraph
from switchyard.guardrails.convergence import Convergence
from switchyard.nodes.agent import own_view, render_output
from switchyard.nodes.convergence import DEFAULT_CONVERGENCE, convergence_guard
from switchyard.nodes.fallback import (
    FallbackAgent,
    escalating,
    make_chain_node,
    make_stop_handler,
    resolve_fallback_agent,
)
from switchyard.nodes.handoff import (
    TaskArgs,
    close_open_calls,
    current_turn,
    finish_or_unread,
    handoff_target,
    handoff_tool_name,
    make_handoff_tools,
    stop,
    transfer,
)
from switchyard.nodes.record import AgentReply
from switchyard.state.agents import Agent, AgentSpec, as_agents, check_agents
from switchyard.state.context import Context, current_context
from switchyard.state.supervisor import (
    SupervisorInput,
    SupervisorOutput,
    SupervisorState,
    TaskPayload,
    WorkerResult,
)

SUPERVISOR = "supervisor"

STEPS_PER_ROUND = 2
"""Graph steps one delegation needs after the supervisor's: the worker's and the supervisor's."""


def default_supervisor(workers: Sequence[AgentSpec]) -> AgentSpec:
    """The supervisor used when the caller gives none: delegates, then answers."""
    roster = "\n".join(f"- {w.name}: {w.description}" for w in workers)
    return AgentSpec(
        name=SUPERVISOR,
        description="Supervisor: plans the work, delegates tasks to workers and answers.",
        system_prompt="You are the supervisor. Delegate each part of the user's request to the "
        "best worker with its transfer tool, giving a self-contained task: the worker sees only "
        "that task. When the workers have reported back, answer the user yourself, using their "
        f"results. Delegate one task at a time.\n\nWorkers:\n{roster}",
    )


def rounds_used(task: TaskPayload | None, turn: int) -> int:
    """Delegations the supervisor has made in `turn` (0 when the last task is from another turn)."""
    return task["round"] if task is not None and task["turn"] == turn else 0


def partial_results(results: Sequence[WorkerResult], turn: int) -> str:
    """The workers' results of `turn`, as text for the message that explains a stop."""
    lines = [
        f"- {r['worker']} (task: {r['task']}): {r['output']}" for r in results if r["turn"] == turn
    ]
    if not lines:
        return "No worker had reported yet."
    return "Partial results:\n" + "\n".join(lines)


def task_text(reply: AgentReply, messages: Sequence[AnyMessage]) -> tuple[str, str | None]:
    """The task of the supervisor's handoff, and a refusal note when its arguments were invalid.

    A handoff without a usable `task` sends the user's latest request instead, and says so.
    """
    assert reply.handoff is not None
    try:
        return TaskArgs.model_validate(reply.handoff["args"]).task, None
    except ValidationError as exc:
        request = next((m.text for m in reversed(messages) if isinstance(m, HumanMessage)), "")
        problem = "; ".join(err["msg"] for err in exc.errors())
        return request, (
            f"handoff {reply.handoff['name']!r} had invalid arguments ({problem}); "
            "the worker got the user's request as its task"
        )


def supervise(
    state: SupervisorState,
    reply: AgentReply,
    *,
    supervisor: str,
    tools: Sequence[BaseTool],
    max_rounds: int,
) -> Command[str]:
    """The supervisor's decision after its model call (pure: no model, no I/O).

    An answer ends the run. A handoff within the limits goes to the worker with a `TaskPayload`.
    A handoff beyond `max_rounds`, or one the recursion limit leaves no room for, is refused and
    ends the run with the partial results.
    """
    if reply.handoff is None:
        return finish_or_unread(reply, agent=supervisor)
    turn = current_turn(state["messages"])
    done = rounds_used(state.get("task"), turn)
    worker = handoff_target(reply.handoff, tools)
    partial = partial_results(state.get("results", []), turn)
    if done >= max_rounds:
        return stop(
            reply,
            agent=supervisor,
            end_reason="max_rounds",
            refusal=f"refused: handoff to {worker}: the worker-round limit "
            f"(max_rounds={max_rounds}) is reached",
            explanation=f"Stopped: the worker-round limit (max_rounds={max_rounds}) was reached "
            f"before the supervisor gave a final answer. {partial}",
        )
    if state.get("remaining_steps", STEPS_PER_ROUND + 1) <= STEPS_PER_ROUND:
        return stop(
            reply,
            agent=supervisor,
            end_reason="recursion_limit",
            refusal=f"refused: handoff to {worker}: the run's recursion limit leaves no room "
            "for another worker round",
            explanation="Stopped: the run's recursion limit left no room for another worker "
            f"round (raise Context.recursion_limit). {partial}",
        )
    task, note = task_text(reply, state["messages"])
    payload = TaskPayload(
        worker=worker, task=task, call_id=reply.handoff["id"], turn=turn, round=done + 1
    )
    return transfer(
        reply,
        agent=supervisor,
        goto=worker,
        result=None,  # the worker's report answers the call
        update={"task": payload, "end_reason": None},
        notes=() if note is None else (note,),
    )


def assigned_task(state: SupervisorState, worker: str) -> TaskPayload:
    """The task the supervisor gave `worker`.

    Raises:
        RuntimeError: The state holds no task for this worker (the worker was run directly, not
            through the supervisor's handoff).
    """
    task = state.get("task")
    if task is None or task["worker"] != worker:
        raise RuntimeError(
            f"worker {worker!r} has no task: workers run only when the supervisor hands off to "
            "them; start the run from START"
        )
    return task


def report(spec: AgentSpec, task: TaskPayload, reply: AgentReply) -> dict[str, Any]:
    """A worker's report: its result answers the supervisor's handoff call, and is recorded."""
    output = render_output(reply.output)
    data = reply.output.model_dump(mode="json") if isinstance(reply.output, BaseModel) else None
    result = WorkerResult(
        worker=spec.name,
        task=task["task"],
        output=output,
        data=data,
        call_id=task["call_id"],
        turn=task["turn"],
        round=task["round"],
    )
    message = ToolMessage(output, tool_call_id=task["call_id"], name=handoff_tool_name(spec.name))
    return {
        "messages": [message],
        "results": [result],
        "usage": reply.usage,
        "refusals": list(reply.refusals),
    }


def delegate(
    state: SupervisorState,
    reply: AgentReply,
    *,
    supervisor: str,
    tools: Sequence[BaseTool],
    max_rounds: int | None,
) -> Command[str]:
    """The supervisor's `accept`: `supervise`, with the run's handoff limit when none is set."""
    limit = max_rounds or current_context().max_handoffs
    return supervise(state, reply, supervisor=supervisor, tools=tools, max_rounds=limit)


def supervisor_view(spec: AgentSpec) -> Any:
    """The supervisor's view: its own turns of the conversation, every tool call answered."""

    def view(state: SupervisorState, context: Context) -> list[AnyMessage]:
        return close_open_calls(own_view(spec, state["messages"], context))

    return view


def worker_view(spec: AgentSpec) -> Any:
    """A worker's view: only the task the supervisor gave it."""

    def view(state: SupervisorState, context: Context) -> list[BaseMessage]:
        return [HumanMessage(assigned_task(state, spec.name)["task"])]

    return view


def worker_report(spec: AgentSpec) -> Any:
    """A worker's `accept`: its result reported back to the supervisor."""

    def accept(state: SupervisorState, reply: AgentReply) -> dict[str, Any]:
        return report(spec, assigned_task(state, spec.name), reply)

    return accept


def check_team(
    workers: Sequence[Agent], supervisor: AgentSpec | None, max_rounds: int | None
) -> tuple[list[AgentSpec], AgentSpec]:
    """The workers as `AgentSpec`s and the supervisor (the default one when None), validated.

    Raises:
        AgentConfigError: No workers, duplicate names, or handoffs declared on any agent.
        ValueError: `max_rounds` is not positive.
    """
    if not workers:
        raise AgentConfigError("no workers given: a supervisor needs at least one worker AgentSpec")
    agents = as_agents(workers)
    check_agents(agents)
    supervisor = supervisor or default_supervisor(agents)
    check_agents([*agents, supervisor])
    for spec in (*agents, supervisor):
        if spec.handoffs:
            raise AgentConfigError(
                f"agent {spec.name!r} declares handoffs ({', '.join(spec.handoffs)}); in the "
                "supervisor pattern the supervisor hands off to every worker and workers report "
                "back to it: leave AgentSpec.handoffs empty"
            )
    if max_rounds is not None and max_rounds <= 0:
        raise ValueError(f"max_rounds must be positive, got {max_rounds}")
    return agents, supervisor


def build_supervisor_graph(
    agents: Sequence[Agent],
    *,
    supervisor: AgentSpec | None = None,
    max_rounds: int | None = None,
    middleware: Sequence[AgentMiddleware[Any, Any, Any]] = (),
    fallback_agent: FallbackAgent = None,
    convergence: Convergence | None = DEFAULT_CONVERGENCE,
) -> PatternGraph:
    """Build the supervisor pattern (uncompiled: the caller picks checkpointer and store).

    Args:
        agents: The workers; names must be unique, and workers declare no handoffs (they report
            back to the supervisor).
        supervisor: The supervising agent; defaults to `default_supervisor(agents)`. It may hand
            off to every worker, so it declares no handoffs either.
        max_rounds: Most delegations per request; `None` uses the run's `Context.max_handoffs`.
        middleware: LangChain `AgentMiddleware` for every agent (the supervisor included),
            outside each agent's own.
        fallback_agent: The agent that does a failed agent's job, the supervisor's included (its
            view, its handoff tools, its place in the flow), once the agent's model and fallback
            models failed: the name of one of the agents, or an agent of its own. None: none.
            Then a person, when `Context.escalate_to_human` is on: their answer is the
            supervisor's final answer, or the worker's report (see `switchyard.nodes.fallback`).
        convergence: The supervisor making the same handoff from the same input again ends the
            run (`end_reason="no_progress"`, after the fallback chain), a worker giving the same
            answer to the same input again ends it with that answer (`converged`); see
            `switchyard.guardrails.convergence`. None: off. An agent's own
            `AgentSpec.convergence` overrides it.

    Raises:
        AgentConfigError: No workers, duplicate names (the supervisor's included), handoffs
            declared on a worker or the supervisor, or an unknown fallback agent.
        ValueError: `max_rounds` is not positive.

    Example:
        ```python
        builder = build_supervisor_graph(workers, max_rounds=4)
        graph = builder.compile(checkpointer=InMemorySaver(), name="supervisor")
        ```
    """
    agents, supervisor = check_team(agents, supervisor, max_rounds)
    standby = resolve_fallback_agent(
        fallback_agent, {spec.name: spec for spec in (*agents, supervisor)}
    )
    builder = PatternGraph(
        SupervisorState,
        context_schema=Context,
        input_schema=SupervisorInput,
        output_schema=SupervisorOutput,
    )
    tools = make_handoff_tools(agents, args_schema=TaskArgs)
    decide = partial(delegate, supervisor=supervisor.name, tools=tools, max_rounds=max_rounds)
    view = supervisor_view(supervisor)
    node = make_chain_node(
        supervisor,
        fallback_agent=standby,
        view=view,
        accept=decide,
        handoffs=tools,
        middleware=[*middleware, *convergence_guard(supervisor, convergence)],
    )
    # A person's answer is the supervisor's reply: an answer, so the turn ends with it.
    handler = escalating(make_stop_handler(supervisor.name), agent=supervisor, view=view)
    builder.add_node(
        supervisor.name,
        node,
        error_handler=handler,
        destinations=(*(w.name for w in agents), END),
    )
    for spec in agents:
        view, accept = worker_view(spec), worker_report(spec)
        node = make_chain_node(
            spec,
            fallback_agent=standby,
            view=view,
            accept=accept,
            middleware=[*middleware, *convergence_guard(spec, convergence)],
        )
        # A person's answer is the worker's report: the supervisor carries on with it.
        handler = escalating(make_stop_handler(spec.name), agent=spec, view=view)
        builder.add_node(spec.name, node, error_handler=handler)
        builder.add_edge(spec.name, supervisor.name)
    builder.add_edge(START, supervisor.name)
    return builder
