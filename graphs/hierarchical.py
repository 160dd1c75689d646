"""Hierarchical: a manager plans typed steps for its workers, runs them in waves, then synthesises.

START -> plan -> schedule -> (one `Send` per ready step) workers -> schedule -> ... -> synthesise
-> END. The manager's plan is structured output (`Plan`), validated against the team (known
workers, unique ids, known dependencies, no cycles, fits the run's recursion limit) and re-asked
with the errors when it fails. Steps run in dependency waves, the independent steps of a wave in
parallel; each worker sees only its task and the typed outputs of the steps it depends on. A
worker may be a compiled sub-team graph (`SubTeam`). A worker that fails, or whose output fails its
schema, goes down the fallback chain (`switchyard.nodes.fallback`): its retries and fallback models
inside its call, then the graph's `fallback_agent` doing its step; then the step is recorded as
failed, and `schedule` (the join after each wave) asks a person about it when
`Context.escalate_to_human` is on (their answer is the step's output). A step that stays failed
has the steps that need it skipped, and the manager synthesises what there is
(`end_reason="step_failed"`). The manager has the same chain, for its plan and its synthesis; a
person answering for it answers the request, and the turn ends with their answer.

Offline behaviour: the offline model cannot plan (its structured output is a valid `Plan` whose
worker names are placeholders), so with `fallback_plan="offline"` (the default) a manager running
on the offline model gets `default_plan` instead: every worker but the last works on the request in
parallel, then the last one (the writer, in the demo) combines their outputs. The offline model is
not re-asked (it would answer the same). Real models are re-asked with the validation errors and,
if they still fail, the run ends with `end_reason="plan_invalid"`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal, get_args

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langgraph.errors import NodeError
from langgraph.graph import END, START
from langgraph.pregel import Pregel
from langgraph.types import Command, Overwrite, Send
from pydantic import BaseModel

from switchyard.core.errors import AgentConfigError, describe_error
from switchyard.core.models import load_chat_model
from switchyard.core.offline import OfflineChatModel
from switchyard.graphs.guarded import PatternGraph
from switchyard.nodes.agent import NodeRunnable, own_view
from switchyard.nodes.agent_guards import NO_PROGRESS
from switchyard.nodes.call import model_for
from switchyard.nodes.classify import last_user_text
from switchyard.nodes.fallback import (
    FallbackAgent,
    answer_text,
    ask_person,
    escalating,
    make_chain_node,
    make_stop_handler,
    resolve_fallback_agent,
    standing_in,
)
from switchyard.nodes.record import (
    AgentReply,
    OutputValidationError,
    partial_usage,
    rejections_of,
)
from switchyard.state.agents import AgentSpec, as_agents, check_agents
from switchyard.state.context import Context, current_context, steps_after_first_node
from switchyard.state.hierarchical import (
    HierarchicalInput,
    HierarchicalOutput,
    HierarchicalState,
    Plan,
    PlanRecord,
    PlanStep,
    PlanValidationError,
    StepDelivery,
    StepInput,
    StepResult,
    StepSpec,
    SubTeam,
    check_plan,
    steps_by_id,
)
from switchyard.state.outcomes import EndReason, run_stop
from switchyard.state.usage import UsageLedger
from switchyard.state.views import split_turns

PLAN: Final = "plan"
SCHEDULE: Final = "schedule"
SYNTHESISE: Final = "synthesise"

FallbackPlan = Literal["offline", "always", "never"]
"""When the manager cannot produce a valid plan: use `default_plan` if the manager runs on the
offline model ("offline"), for every model ("always"), or never (the run ends "plan_invalid")."""

Worker = AgentSpec | SubTeam | Pregel[Any, Any, Any, Any]
"""A worker: an agent, a sub-team, or any compiled graph that takes `{"messages": [...]}`."""


@dataclass(frozen=True)
class Team:
    """The manager, the workers and the planning limits: what the nodes of one graph share.

    Attributes:
        manager: The agent that plans and synthesises.
        workers: The workers by name, in the order given.
        max_steps: Most steps a plan may have.
        max_plan_attempts: Plans requested from a real model before giving up.
        fallback_plan: When `default_plan` replaces a plan the manager could not get right.
        fallback_agent: The agent that does a failed agent's job (the manager's included), if any.
    """

    manager: AgentSpec
    workers: Mapping[str, AgentSpec]
    max_steps: int
    max_plan_attempts: int
    fallback_plan: FallbackPlan
    fallback_agent: AgentSpec | None = None


def history(spec: AgentSpec, messages: Sequence[AnyMessage], context: Context) -> list[AnyMessage]:
    """The manager's earlier turns in this session (its own view without the current turn)."""
    turns = split_turns(own_view(spec, messages, context))
    return [message for turn in turns[:-1] for message in turn]


def default_plan(request: str, workers: Mapping[str, AgentSpec]) -> Plan:
    """The deterministic plan used when the manager cannot plan (see the module docstring).

    Every worker but the last gets the request, in parallel; the last one depends on all of them
    and combines their outputs. A single worker gets the request alone.

    Example:
        ```python
        default_plan("Explain asyncio", {"researcher": r, "coder": c, "writer": w})
        # researcher and coder in parallel, then writer with both outputs
        ```
    """
    *first, last = list(workers)
    steps = [
        PlanStep(
            id=name,
            worker=name,
            task=f"Do your part ({workers[name].description}) for this request: {request}",
        )
        for name in first
    ]
    combine = (
        f"Combine the outputs of {', '.join(first)} into the final deliverable for this "
        f"request: {request}"
        if first
        else request
    )
    steps.append(PlanStep(id=last, worker=last, task=combine, depends_on=list(first)))
    return Plan(steps=steps)


def planning_message(request: str, team: Team) -> HumanMessage:
    """The typed payload the manager plans from: the request and the workers it can assign."""
    payload = {
        "request": request,
        "workers": [
            {"name": name, "description": worker.description}
            for name, worker in team.workers.items()
        ],
        "max_steps": team.max_steps,
        "instructions": "Split the request into steps for the workers. Give each step a unique "
        "id, one worker and a self-contained task; list in depends_on the ids of the steps "
        "whose outputs it needs. Steps that do not depend on each other run in parallel.",
    }
    return HumanMessage(json.dumps(payload, ensure_ascii=False))


def step_message(delivery: StepDelivery) -> HumanMessage:
    """The typed payload one worker sees: its task, the goal, and its dependencies' outputs."""
    step = delivery["step"]
    payload = {
        "task": step["task"],
        "goal": delivery["goal"],
        "step": step["id"],
        "inputs": delivery["inputs"],
    }
    return HumanMessage(json.dumps(payload, ensure_ascii=False))


def synthesis_message(
    request: str, plan: PlanRecord, results: Mapping[str, StepResult]
) -> HumanMessage:
    """The typed payload the manager synthesises from: the request and every step's result."""
    payload = {
        "request": request,
        "results": [
            {
                "step": step["id"],
                "worker": step["worker"],
                "task": step["task"],
                "status": results[step["id"]]["status"],
                "output": results[step["id"]]["output"],
                "error": results[step["id"]]["error"],
            }
            for step in plan["steps"]
            if step["id"] in results
        ],
        "instructions": "Write the final answer to the request from these step results. "
        "Say plainly if a step failed or was skipped.",
    }
    return HumanMessage(json.dumps(payload, ensure_ascii=False))


def falls_back(team: Team, context: Context) -> bool:
    """Whether `default_plan` replaces a plan the manager could not get right, in this run."""
    if team.fallback_plan == "always":
        return True
    return team.fallback_plan == "offline" and _offline(team.manager, context)


def _offline(spec: AgentSpec, context: Context) -> bool:
    return isinstance(load_chat_model(model_for(spec, context)), OfflineChatModel)


def plan_reasks(context: Context, *, team: Team) -> int:
    """Times the manager is asked for a corrected plan, in this run.

    The offline model answers the same however often it is asked: when the default plan stands
    in for it, re-asking cannot help.
    """
    if _offline(team.manager, context) and falls_back(team, context):
        return 0
    return team.max_plan_attempts - 1


def planning_view(state: HierarchicalState, context: Context, *, team: Team) -> list[BaseMessage]:
    """What the manager plans from: its earlier turns, then the request and the team."""
    request = last_user_text(state["messages"])
    return [*history(team.manager, state["messages"], context), planning_message(request, team)]


def runnable_plan(plan: Plan, team: Team) -> tuple[list[StepSpec], list[list[str]]]:
    """The plan's steps and waves, checked against the team and the run's recursion limit.

    Raises:
        PlanValidationError: The plan cannot run (see `check_plan`), or needs more graph steps
            than the run allows.
    """
    steps, waves = check_plan(plan, team.workers, max_steps=team.max_steps)
    steps_allowed = steps_after_first_node()
    needed = 2 * len(waves) + 2  # schedule + (workers + schedule) per wave + synthesise
    if steps_allowed is not None and needed > steps_allowed:
        raise PlanValidationError(
            f"the plan runs in {len(waves)} sequential waves, which needs {needed} graph "
            f"steps; this run allows {steps_allowed} (recursion_limit {steps_allowed + 2}): "
            "put independent steps in parallel or raise Context.recursion_limit"
        )
    return steps, waves


def check_manager_plan(plan: BaseModel, *, team: Team) -> None:
    """The plan node's `validate`: a plan that cannot run is sent back with the reason.

    Raises:
        OutputValidationError: The plan cannot run; the manager is asked for a corrected one.
    """
    assert isinstance(plan, Plan), "the planner's output schema is Plan"
    try:
        runnable_plan(plan, team)
    except PlanValidationError as exc:
        raise OutputValidationError(
            f"the manager's plan cannot run: {exc}",
            problem=str(exc),
            reask=f"That plan cannot run: {exc}. Return a corrected plan that uses only these "
            f"workers: {', '.join(team.workers)}.",
            answer=plan.model_dump_json(),
        ) from None


def plan_update(
    state: HierarchicalState,
    chosen: tuple[list[StepSpec], list[list[str]]] | None,
    *,
    source: Literal["manager", "default", "none"],
    errors: list[str],
    usage: UsageLedger,
) -> dict[str, Any]:
    """The plan node's update: the request, the plan that runs (or why none), no results yet."""
    attempts = len(errors) + (source == "manager")
    record = PlanRecord(
        valid=chosen is not None,
        steps=chosen[0] if chosen else [],
        waves=chosen[1] if chosen else [],
        source=source,
        attempts=attempts,
        errors=errors,
    )
    return {
        "request": last_user_text(state["messages"]),
        "plan": record,
        "results": Overwrite({}),
        "usage": usage,
    }


def accept_plan(state: HierarchicalState, reply: AgentReply, *, team: Team) -> dict[str, Any]:
    """The plan node's `accept`: the manager's plan, valid (its `validate` passed)."""
    assert isinstance(reply.output, Plan)
    chosen = runnable_plan(reply.output, team)
    errors = list(reply.rejections)
    return plan_update(state, chosen, source="manager", errors=errors, usage=reply.usage)


def plan_failed(state: HierarchicalState, error: NodeError, *, team: Team) -> Any:
    """Error handler of the plan node: no valid plan came back.

    When the manager's plans were all rejected, the default plan runs (when `fallback_plan`
    allows), else the run ends "plan_invalid" after `schedule`. Any other failure (a provider
    error that outlived its fallback chain, a budget, the deadline) goes on down the chain: a
    person when enabled (`manager_answered`), else the run ends as for every agent.
    """
    if not isinstance(error.error, OutputValidationError):
        return escalating(
            make_stop_handler(team.manager.name),
            agent=team.manager,
            node=PLAN,
            view=partial(planning_view, team=team),
        )(state, error)
    errors = list(rejections_of(error.error))
    chosen = None
    if falls_back(team, current_context()):
        request = last_user_text(state["messages"])
        try:
            chosen = runnable_plan(default_plan(request, team.workers), team)
        except PlanValidationError as exc:
            errors.append(f"default plan: {exc}")
    source: Literal["default", "none"] = "default" if chosen is not None else "none"
    update = plan_update(
        state, chosen, source=source, errors=errors, usage=partial_usage(error.error)
    )
    return Command(update=update, goto=SCHEDULE)


def manager_answered(state: HierarchicalState, reply: AgentReply, *, team: Team) -> dict[str, Any]:
    """A person's answer for a manager that could not plan: it answers the request.

    No plan runs (`source="person"`); `synthesise` then ends the turn with the answer.
    """
    record = PlanRecord(valid=False, steps=[], waves=[], source="person", attempts=0, errors=[])
    return {
        "messages": reply.messages,
        "usage": reply.usage,
        "request": last_user_text(state["messages"]),
        "plan": record,
        "results": Overwrite({}),
        "end_reason": None,
        "end_detail": None,
    }


def _next_wave(plan: PlanRecord, results: Mapping[str, StepResult]) -> list[str]:
    """Ids of the first wave's steps that have no result yet ([] when every step has one)."""
    for wave in plan["waves"]:
        waiting = [step_id for step_id in wave if step_id not in results]
        if waiting:
            return waiting
    return []


def schedule(state: HierarchicalState) -> dict[str, Any]:
    """Join point between waves: skip the steps whose dependencies did not complete.

    When `Context.escalate_to_human` is on, a person is first asked about each failed step
    (`ask_about_failed_steps`); their answers are those steps' outputs. Then it marks as skipped
    every waiting step that depends on a failed or skipped step, wave by wave, until it reaches
    a wave with a step that can run (or the end of the plan).
    """
    plan = state.get("plan")
    if plan is None or not plan["valid"]:
        return {}
    steps = steps_by_id(plan)
    answered = ask_about_failed_steps(state)
    results = {**(state.get("results") or {}), **answered}
    skipped: dict[str, StepResult] = {}
    while waiting := _next_wave(plan, results):
        runnable = False
        for step_id in waiting:
            step = steps[step_id]
            blocked = [d for d in step["depends_on"] if results[d]["status"] != "ok"]
            if blocked:
                skipped[step_id] = results[step_id] = StepResult(
                    step=step_id,
                    worker=step["worker"],
                    task=step["task"],
                    status="skipped",
                    output="",
                    error=f"skipped: step(s) {', '.join(blocked)} did not complete",
                )
            else:
                runnable = True
        if runnable:
            break
    changed = {**answered, **skipped}
    return {"results": changed} if changed else {}


def run_stopped(results: Mapping[str, StepResult]) -> list[StepResult]:
    """The steps stopped by the run's deadline or budget (which stop the whole plan)."""
    return [result for result in results.values() if "stopped_by" in result]


def ask_about_failed_steps(state: HierarchicalState) -> dict[str, StepResult]:
    """A person's answer for each failed step, as its result, when escalation is on.

    One question at a time, in plan order: a resume answers the next one. Steps a budget or the
    deadline stopped are not asked about: no answer gets round those.
    """
    if not current_context().escalate_to_human or run_stopped(state.get("results") or {}):
        return {}
    answered: dict[str, StepResult] = {}
    for result in (state.get("results") or {}).values():
        if result["status"] != "failed" or "stopped_by" in result:
            continue
        answer = ask_person(
            agent=result["worker"],
            failures=[f"{result['worker']}: {result['error']}"],
            request=state.get("request", ""),
            task=result["task"],
        )
        answered[result["step"]] = StepResult(
            step=result["step"],
            worker=result["worker"],
            task=result["task"],
            status="ok",
            output=answer_text(answer),
            error=None,
        )
    return answered


def route_wave(state: HierarchicalState) -> list[Send] | Literal["synthesise"]:
    """One `Send` per step of the next wave (in parallel), or synthesise when none are left.

    A step stopped by the run's deadline or budget goes straight to synthesise, which stops.
    """
    plan = state.get("plan")
    if plan is None or not plan["valid"]:
        return SYNTHESISE
    results = state.get("results") or {}
    if run_stopped(results):
        return SYNTHESISE
    waiting = _next_wave(plan, results)
    if not waiting:
        return SYNTHESISE
    steps = steps_by_id(plan)
    sends = []
    for step_id in waiting:
        step = steps[step_id]
        inputs = [
            StepInput(step=d, worker=results[d]["worker"], output=results[d]["output"])
            for d in step["depends_on"]
        ]
        delivery = StepDelivery(goal=state.get("request", ""), step=step, inputs=inputs)
        sends.append(Send(step["worker"], delivery))
    return sends


def step_view(delivery: StepDelivery, context: Context) -> list[BaseMessage]:
    """What a worker sees: only its typed step payload (`step_message`)."""
    return [step_message(delivery)]


def step_done(delivery: StepDelivery, reply: AgentReply) -> dict[str, Any]:
    """A worker's `accept`: its step's result, and its usage."""
    step = delivery["step"]
    output = reply.output
    value = output.model_dump(mode="json") if isinstance(output, BaseModel) else output
    result = StepResult(
        step=step["id"],
        worker=step["worker"],
        task=step["task"],
        status="ok",
        output=value,
        error=None,
    )
    return {"results": {step["id"]: result}, "usage": reply.usage}


def record_step_failure(delivery: StepDelivery, error: NodeError) -> Command[Literal["schedule"]]:
    """Error handler of every worker node: record the step's failure; the plan goes on.

    LangGraph calls it once the worker's call failed (its retries and fallback models tried
    inside it); steps that depend on this one are skipped by `schedule`. A step stopped by
    the run's deadline or its budget stops the plan: no more waves, and no synthesis.
    """
    step = delivery["step"]
    result = StepResult(
        step=step["id"],
        worker=step["worker"],
        task=step["task"],
        status="failed",
        output="",
        error=describe_error(error.error),
    )
    stopped_by = run_stop(error.error)
    if stopped_by is not None:
        result["stopped_by"] = stopped_by
    update = {"results": {step["id"]: result}, "usage": partial_usage(error.error)}
    return Command(update=update, goto=SCHEDULE)


def _early_end(state: HierarchicalState, team: Team) -> dict[str, Any] | None:
    """Why the manager does not synthesise: no plan, or the run's deadline or budget hit."""
    stopped = run_stopped(state.get("results") or {})
    if not stopped:
        return _plan_failure(state, team)
    reason = stopped[0]["stopped_by"]
    detail = "; ".join(f"step {r['step']!r} stopped: {r['error']}" for r in stopped)
    done = [r for r in (state.get("results") or {}).values() if r["status"] == "ok"]
    partial = "; ".join(f"{r['step']}: {render_step(r)}" for r in done) or "none"
    note = AIMessage(
        f"Stopped ({reason}): {detail}. Completed steps: {partial}", name=team.manager.name
    )
    return {"messages": [note], "end_reason": reason, "end_detail": detail}


def render_step(result: StepResult) -> str:
    """A step's output as text (structured output as compact JSON)."""
    output = result["output"]
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def _plan_failure(state: HierarchicalState, team: Team) -> dict[str, Any] | None:
    plan = state.get("plan")
    if plan is not None and plan["valid"]:
        return None
    if plan is not None and plan["source"] == "person":
        return {"end_reason": None, "end_detail": None}  # the person's answer is the answer
    errors = plan["errors"] if plan is not None else []
    reason = errors[-1] if errors else "no plan was made"
    note = AIMessage(
        f"I could not make a plan that can run for this request: {reason}",
        name=team.manager.name,
    )
    # A manager that re-planned the same rejected plan was not asked again (`SchemaReask`).
    ended: EndReason = "no_progress" if reason.startswith(NO_PROGRESS) else "plan_invalid"
    return {"messages": [note], "end_reason": ended, "end_detail": reason}


def synthesis_view(state: HierarchicalState, context: Context, *, team: Team) -> list[BaseMessage]:
    """What the manager answers from: its earlier turns, then every step's result."""
    plan = state.get("plan")
    assert plan is not None
    return [
        *history(team.manager, state["messages"], context),
        synthesis_message(state.get("request", ""), plan, state.get("results") or {}),
    ]


def synthesis_update(state: HierarchicalState, reply: AgentReply) -> dict[str, Any]:
    """The synthesis `accept`: the manager's answer, and whether a step did not complete."""
    results = state.get("results") or {}
    unfinished = [r for r in results.values() if r["status"] != "ok"]
    detail = "; ".join(f"step {r['step']!r} {r['status']}: {r['error']}" for r in unfinished)
    return {
        "messages": reply.messages,
        "usage": reply.usage,
        "end_reason": "step_failed" if unfinished else None,
        "end_detail": detail or None,
    }


@dataclass(frozen=True)
class Synthesis:
    """The synthesise node: why the run stops (no plan, the deadline or budget), else the answer.

    Attributes:
        team: The team.
        manager: The manager's agent node (view: `synthesis_view`; accept: `synthesis_update`).
    """

    team: Team
    manager: NodeRunnable

    def run(self, state: HierarchicalState) -> dict[str, Any]:
        """Explain a missing plan or a stop, or have the manager answer."""
        early = _early_end(state, self.team)
        return early if early is not None else dict(self.manager.func(state))

    async def arun(self, state: HierarchicalState) -> dict[str, Any]:
        """Async form of `run`."""
        early = _early_end(state, self.team)
        return early if early is not None else dict(await self.manager.afunc(state))


def planner(team: Team, middleware: Sequence[AgentMiddleware[Any, Any, Any]]) -> NodeRunnable:
    """The plan node: the manager, asked for a `Plan` that `check_manager_plan` accepts.

    The fallback agent, when there is one, plans in its place when the manager's call fails.
    """
    return make_chain_node(
        team.manager.model_copy(update={"output_schema": Plan}),
        fallback_agent=standing_in(team.fallback_agent, Plan),
        view=partial(planning_view, team=team),
        accept=partial(accept_plan, team=team),
        validate=partial(check_manager_plan, team=team),
        reasks=partial(plan_reasks, team=team),
        middleware=middleware,
        name=PLAN,
        answered=partial(manager_answered, team=team),
    )


def synthesiser(team: Team, middleware: Sequence[AgentMiddleware[Any, Any, Any]]) -> NodeRunnable:
    """The synthesise node: why there is no plan, else the manager's answer from the results."""
    answer = make_chain_node(
        team.manager,
        fallback_agent=standing_in(team.fallback_agent, team.manager.output_schema),
        view=partial(synthesis_view, team=team),
        accept=synthesis_update,
        middleware=middleware,
        name=SYNTHESISE,
    )
    synthesis = Synthesis(team=team, manager=answer)
    return NodeRunnable(synthesis.run, synthesis.arun, name=SYNTHESISE, agent=team.manager)


def check_team(
    workers: Sequence[Worker],
    manager: AgentSpec,
    *,
    max_steps: int,
    max_plan_attempts: int,
    fallback_plan: FallbackPlan,
    fallback_agent: FallbackAgent = None,
) -> Team:
    """Validate the team and the limits, up front.

    Raises:
        AgentConfigError: No workers, a worker that is neither an agent nor a compiled graph,
            duplicate names (the manager's included), a name the pattern reserves, or an
            unknown fallback agent.
        ValueError: A limit out of range or an unknown fallback mode.
    """
    if not workers:
        raise AgentConfigError(
            "no workers given: a hierarchical graph needs at least one worker (an AgentSpec, a "
            "SubTeam or a compiled graph)"
        )
    if not isinstance(manager, AgentSpec) or manager.graph is not None:
        raise AgentConfigError(
            f"the manager must be an AgentSpec with a model, got {type(manager).__name__}"
        )
    team = as_agents(workers)
    by_name = check_agents([manager, *team], reserved=(PLAN, SCHEDULE, SYNTHESISE))
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not isinstance(max_plan_attempts, int) or max_plan_attempts < 1:
        raise ValueError(f"max_plan_attempts must be a positive integer, got {max_plan_attempts!r}")
    if fallback_plan not in get_args(FallbackPlan):
        raise ValueError(
            f"fallback_plan must be one of {', '.join(get_args(FallbackPlan))}, "
            f"got {fallback_plan!r}"
        )
    return Team(
        manager=manager,
        workers={w.name: w for w in team},
        max_steps=max_steps,
        max_plan_attempts=max_plan_attempts,
        fallback_plan=fallback_plan,
        fallback_agent=resolve_fallback_agent(fallback_agent, by_name),
    )


def synthesis_handler(team: Team) -> Any:
    """The error handler of the synthesise node: a person (when enabled), else a clean stop.

    A person's answer is the turn's answer, with the end reason the step results call for.
    """
    return escalating(
        make_stop_handler(team.manager.name),
        agent=team.manager,
        node=SYNTHESISE,
        view=partial(synthesis_view, team=team),
    )


def build_hierarchical_graph(
    workers: Sequence[Worker],
    *,
    manager: AgentSpec,
    max_steps: int = 8,
    max_plan_attempts: int = 2,
    fallback_plan: FallbackPlan = "offline",
    middleware: Sequence[AgentMiddleware[Any, Any, Any]] = (),
    fallback_agent: FallbackAgent = None,
) -> PatternGraph:
    """Build the hierarchical pattern (uncompiled: the caller picks checkpointer and store).

    Args:
        workers: The workers: agents (`AgentSpec`), sub-teams (`SubTeam`) or any compiled
            graph that takes `{"messages": [...]}` (e.g. from `create_agent`); names must be
            unique.
        manager: The agent that plans (structured output `Plan`) and synthesises the answer.
        max_steps: Most steps a plan may have.
        max_plan_attempts: Plans requested from the manager (the first, then re-asks with the
            validation errors) before falling back or ending with "plan_invalid".
        fallback_plan: When `default_plan` replaces a plan the manager could not get right:
            "offline" (only when the manager runs on the offline model), "always" or "never".
        middleware: LangChain `AgentMiddleware` for every agent (the manager included),
            outside each agent's own.
        fallback_agent: The agent that does a failed agent's job once its model and fallback
            models failed: a worker's step, or the manager's plan and synthesis; the name of one
            of the agents, or an agent of its own. None: none. Then a person, when
            `Context.escalate_to_human` is on (see `switchyard.nodes.fallback`).

    Raises:
        AgentConfigError: No workers, duplicate or reserved names, a worker of the wrong type,
            or an unknown fallback agent.
        ValueError: A limit out of range or an unknown `fallback_plan`.

    Example:
        ```python
        builder = build_hierarchical_graph([researcher, coder, writer], manager=manager)
        graph = builder.compile(checkpointer=InMemorySaver(), name="hierarchical")
        ```
    """
    team = check_team(
        workers,
        manager,
        max_steps=max_steps,
        max_plan_attempts=max_plan_attempts,
        fallback_plan=fallback_plan,
        fallback_agent=fallback_agent,
    )
    builder = PatternGraph(
        HierarchicalState,
        context_schema=Context,
        input_schema=HierarchicalInput,
        output_schema=HierarchicalOutput,
    )
    builder.add_node(PLAN, planner(team, middleware), error_handler=partial(plan_failed, team=team))
    builder.add_node(SCHEDULE, schedule)
    for name, worker in team.workers.items():
        node = make_chain_node(
            worker,
            fallback_agent=standing_in(team.fallback_agent, worker.output_schema),
            view=step_view,
            accept=step_done,
            middleware=middleware,
        )
        builder.add_node(name, node, error_handler=record_step_failure)
        builder.add_edge(name, SCHEDULE)
    builder.add_node(
        SYNTHESISE, synthesiser(team, middleware), error_handler=synthesis_handler(team)
    )
    builder.add_edge(START, PLAN)
    builder.add_edge(PLAN, SCHEDULE)
    builder.add_conditional_edges(SCHEDULE, route_wave, [*team.workers, SYNTHESISE])
    builder.add_edge(SYNTHESISE, END)
    return builder
