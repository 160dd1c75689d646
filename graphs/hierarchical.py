"""Hierarchical: a manager plans typed steps for its workers, runs them in waves, then synthesises.

START -> plan -> schedule -> (one `Send` per ready step) workers -> schedule -> ... -> synthesise
-> END. The manager's plan is structured output (`Plan`), validated against the team (known
workers, unique ids, known dependencies, no cycles, fits the run's recursion limit) and re-asked
with the errors when it fails. Steps run in dependency waves, the independent steps of a wave in
parallel; each worker sees only its task and the typed outputs of the steps it depends on. A
worker may be a compiled sub-team graph (`SubTeam`). A worker that fails, or whose output fails its
schema, is recorded as a failed step, the steps that need it are skipped, and the manager
synthesises what there is (`end_reason="step_failed"`).

Offline behaviour: the offline model cannot plan (its structured output is a valid `Plan` whose
worker names are placeholders), so with `fallback_plan="offline"` (the default) a manager running
on the offline model gets `default_plan` instead: every worker but the last works on the request in
parallel, then the last one (the writer, in the demo) combines their outputs. The offline model is
not re-asked (it would answer the same). Real models are re-asked with the validation errors and,
if they still fail, the run ends with `end_reason="plan_invalid"`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal, get_args

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable
from langgraph.errors import NodeError
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Overwrite, Send
from pydantic import BaseModel

from switchyard.core.errors import AgentConfigError, SwitchyardError, describe_error
from switchyard.core.models import load_chat_model
from switchyard.core.offline import OfflineChatModel
from switchyard.core.resilience import model_retry_policy
from switchyard.guardrails.budgets import BudgetExceededError, DeadlineExceededError
from switchyard.nodes.agent import (
    AgentReply,
    NodeRunnable,
    OutputValidationError,
    acall_agent,
    call_agent,
    current_context,
    model_for,
    own_view,
    steps_after_first_node,
)
from switchyard.nodes.classify import last_user_text
from switchyard.nodes.fallback import make_stop_handler
from switchyard.state.agents import AgentSpec, check_agents
from switchyard.state.context import Context
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
from switchyard.state.reducers import merge_usage
from switchyard.state.usage import UsageLedger
from switchyard.state.views import split_turns

PLAN: Final = "plan"
SCHEDULE: Final = "schedule"
SYNTHESISE: Final = "synthesise"

FallbackPlan = Literal["offline", "always", "never"]
"""When the manager cannot produce a valid plan: use `default_plan` if the manager runs on the
offline model ("offline"), for every model ("always"), or never (the run ends "plan_invalid")."""

Worker = AgentSpec | SubTeam
"""A worker: one agent, or a compiled sub-team graph."""


class SubTeamError(SwitchyardError):
    """A sub-team ended without an answer, or ended early for its own reason."""


@dataclass(frozen=True)
class Team:
    """The manager, the workers and the planning limits: what the nodes of one graph share.

    Attributes:
        manager: The agent that plans and synthesises.
        workers: The workers by name, in the order given.
        max_steps: Most steps a plan may have.
        max_plan_attempts: Plans requested from a real model before giving up.
        fallback_plan: When `default_plan` replaces a plan the manager could not get right.
    """

    manager: AgentSpec
    workers: Mapping[str, Worker]
    max_steps: int
    max_plan_attempts: int
    fallback_plan: FallbackPlan


def history(spec: AgentSpec, messages: Sequence[AnyMessage], context: Context) -> list[AnyMessage]:
    """The manager's earlier turns in this session (its own view without the current turn)."""
    turns = split_turns(own_view(spec, messages, context))
    return [message for turn in turns[:-1] for message in turn]


def default_plan(request: str, workers: Mapping[str, Worker]) -> Plan:
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


class _Planning:
    """One run of the plan node, shared by the sync and async drivers."""

    def __init__(self, state: HierarchicalState, team: Team, context: Context) -> None:
        self.team = team
        self.context = context
        self.request = last_user_text(state["messages"])
        self.spec = team.manager.model_copy(update={"output_schema": Plan})
        self.messages: list[BaseMessage] = [
            *history(team.manager, state["messages"], context),
            planning_message(self.request, team),
        ]
        self.usage: UsageLedger = {}
        self.errors: list[str] = []
        self.attempts = 0
        self.accepted: tuple[list[StepSpec], list[list[str]]] | None = None
        offline = isinstance(load_chat_model(model_for(team.manager, context)), OfflineChatModel)
        self.falls_back = team.fallback_plan == "always" or (
            team.fallback_plan == "offline" and offline
        )
        # The offline model answers the same however often it is asked: re-asking cannot help.
        self.max_attempts = 1 if offline and self.falls_back else team.max_plan_attempts
        self.steps_allowed = steps_after_first_node()

    def wants_attempt(self) -> bool:
        return self.accepted is None and self.attempts < self.max_attempts

    def validate(self, plan: Plan) -> tuple[list[StepSpec], list[list[str]]]:
        steps, waves = check_plan(plan, self.team.workers, max_steps=self.team.max_steps)
        # schedule + (workers + schedule) per wave + synthesise
        needed = 2 * len(waves) + 2
        if self.steps_allowed is not None and needed > self.steps_allowed:
            raise PlanValidationError(
                f"the plan runs in {len(waves)} sequential waves, which needs {needed} graph "
                f"steps; this run allows {self.steps_allowed} (recursion_limit "
                f"{self.steps_allowed + 2}): put independent steps in parallel or raise "
                "Context.recursion_limit"
            )
        return steps, waves

    def reject(self, error: OutputValidationError) -> None:
        self.attempts += 1
        self.errors.append(str(error))

    def accept(self, reply: AgentReply) -> None:
        self.attempts += 1
        self.usage = merge_usage(self.usage, reply.usage)
        plan = reply.output
        assert isinstance(plan, Plan), "the planner's output schema is Plan"
        try:
            self.accepted = self.validate(plan)
        except PlanValidationError as exc:
            self.errors.append(str(exc))
            self.messages += [
                AIMessage(plan.model_dump_json(), name=self.team.manager.name),
                HumanMessage(
                    f"That plan cannot run: {exc}. Return a corrected plan that uses only "
                    f"these workers: {', '.join(self.team.workers)}."
                ),
            ]

    def update(self) -> dict[str, Any]:
        record = self._record()
        return {
            "request": self.request,
            "plan": record,
            "results": Overwrite({}),
            "usage": self.usage,
        }

    def _record(self) -> PlanRecord:
        source: Literal["manager", "default"] = "manager"
        chosen = self.accepted
        if chosen is None and self.falls_back:
            try:
                chosen = self.validate(default_plan(self.request, self.team.workers))
            except PlanValidationError as exc:
                self.errors.append(f"default plan: {exc}")
            source = "default"
        if chosen is None:
            return PlanRecord(
                valid=False,
                steps=[],
                waves=[],
                source="none",
                attempts=self.attempts,
                errors=self.errors,
            )
        return PlanRecord(
            valid=True,
            steps=chosen[0],
            waves=chosen[1],
            source=source,
            attempts=self.attempts,
            errors=self.errors,
        )


def plan(state: HierarchicalState, *, team: Team) -> dict[str, Any]:
    """Ask the manager for a plan, validate it, re-ask with the errors; record what runs."""
    planning = _Planning(state, team, current_context())
    while planning.wants_attempt():
        try:
            reply = call_agent(planning.spec, planning.messages, planning.context)
        except OutputValidationError as exc:
            planning.reject(exc)
        else:
            planning.accept(reply)
    return planning.update()


async def aplan(state: HierarchicalState, *, team: Team) -> dict[str, Any]:
    """Async form of `plan`."""
    planning = _Planning(state, team, current_context())
    while planning.wants_attempt():
        try:
            reply = await acall_agent(planning.spec, planning.messages, planning.context)
        except OutputValidationError as exc:
            planning.reject(exc)
        else:
            planning.accept(reply)
    return planning.update()


def _next_wave(plan: PlanRecord, results: Mapping[str, StepResult]) -> list[str]:
    """Ids of the first wave's steps that have no result yet ([] when every step has one)."""
    for wave in plan["waves"]:
        waiting = [step_id for step_id in wave if step_id not in results]
        if waiting:
            return waiting
    return []


def schedule(state: HierarchicalState) -> dict[str, Any]:
    """Join point between waves: skip the steps whose dependencies did not complete.

    Marks as skipped every waiting step that depends on a failed or skipped step, wave by wave,
    until it reaches a wave with a step that can run (or the end of the plan).
    """
    plan = state.get("plan")
    if plan is None or not plan["valid"]:
        return {}
    steps = steps_by_id(plan)
    results = dict(state.get("results") or {})
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
    return {"results": skipped} if skipped else {}


def route_wave(state: HierarchicalState) -> list[Send] | Literal["synthesise"]:
    """One `Send` per step of the next wave (in parallel), or synthesise when none are left."""
    plan = state.get("plan")
    if plan is None or not plan["valid"]:
        return SYNTHESISE
    results = state.get("results") or {}
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


def _step_done(
    delivery: StepDelivery, output: str | BaseModel, usage: UsageLedger
) -> dict[str, Any]:
    step = delivery["step"]
    value = output.model_dump(mode="json") if isinstance(output, BaseModel) else output
    result = StepResult(
        step=step["id"],
        worker=step["worker"],
        task=step["task"],
        status="ok",
        output=value,
        error=None,
    )
    return {"results": {step["id"]: result}, "usage": usage}


def run_step(delivery: StepDelivery, *, spec: AgentSpec) -> dict[str, Any]:
    """Run one step on an agent worker: it sees only its typed step payload."""
    reply = call_agent(spec, [step_message(delivery)], current_context())
    return _step_done(delivery, reply.output, reply.usage)


async def arun_step(delivery: StepDelivery, *, spec: AgentSpec) -> dict[str, Any]:
    """Async form of `run_step`."""
    reply = await acall_agent(spec, [step_message(delivery)], current_context())
    return _step_done(delivery, reply.output, reply.usage)


def sub_team_answer(team: SubTeam, output: Mapping[str, Any]) -> tuple[str, UsageLedger]:
    """A sub-team's answer (its last AI message) and usage, from its output.

    Raises:
        SubTeamError: The sub-team ended early (its own `end_reason`) or gave no AI message.
    """
    reason = output.get("end_reason")
    if reason not in (None, "completed"):
        raise SubTeamError(f"sub-team {team.name!r} ended early: {reason}")
    messages: list[AnyMessage] = output.get("messages") or []
    answer = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    if answer is None:
        raise SubTeamError(f"sub-team {team.name!r} returned no AI message")
    usage: UsageLedger = output.get("usage") or {}
    return answer.text, usage


def run_sub_team(delivery: StepDelivery, *, team: SubTeam) -> dict[str, Any]:
    """Run one step on a sub-team graph: its step payload is the sub-team's user message."""
    output = team.graph.invoke({"messages": [step_message(delivery)]}, context=current_context())
    return _step_done(delivery, *sub_team_answer(team, output))


async def arun_sub_team(delivery: StepDelivery, *, team: SubTeam) -> dict[str, Any]:
    """Async form of `run_sub_team`."""
    output = await team.graph.ainvoke(
        {"messages": [step_message(delivery)]}, context=current_context()
    )
    return _step_done(delivery, *sub_team_answer(team, output))


def record_step_failure(
    delivery: StepDelivery, error: NodeError, *, worker: Worker
) -> Command[Literal["schedule"]]:
    """Error handler of every worker node: try the agent's fallback models, else record a failure.

    LangGraph calls it once the node's retry policy has given up (or at once for an error that is
    not retried, such as an output that failed its schema twice). A budget or deadline stop gets
    no fallback: no other model call may start either.
    """
    step = delivery["step"]
    failures = [describe_error(error.error)]
    stopped = isinstance(error.error, BudgetExceededError | DeadlineExceededError)
    if isinstance(worker, AgentSpec) and not stopped:
        for model in worker.fallback_models:
            try:
                reply = call_agent(worker, [step_message(delivery)], current_context(), model=model)
            except Exception as exc:  # the next fallback model gets its chance
                failures.append(f"{model}: {describe_error(exc)}")
                continue
            return Command(update=_step_done(delivery, reply.output, reply.usage), goto=SCHEDULE)
    result = StepResult(
        step=step["id"],
        worker=step["worker"],
        task=step["task"],
        status="failed",
        output="",
        error="; ".join(failures),
    )
    return Command(update={"results": {step["id"]: result}}, goto=SCHEDULE)


def _plan_failure(state: HierarchicalState, team: Team) -> dict[str, Any] | None:
    plan = state.get("plan")
    if plan is not None and plan["valid"]:
        return None
    errors = plan["errors"] if plan is not None else []
    reason = errors[-1] if errors else "no plan was made"
    note = AIMessage(
        f"I could not make a plan that can run for this request: {reason}",
        name=team.manager.name,
    )
    return {"messages": [note], "end_reason": "plan_invalid", "end_detail": reason}


def _synthesis_messages(
    state: HierarchicalState, team: Team, context: Context
) -> list[BaseMessage]:
    plan = state.get("plan")
    assert plan is not None
    return [
        *history(team.manager, state["messages"], context),
        synthesis_message(state.get("request", ""), plan, state.get("results") or {}),
    ]


def _synthesis_update(state: HierarchicalState, reply: AgentReply) -> dict[str, Any]:
    results = state.get("results") or {}
    unfinished = [r for r in results.values() if r["status"] != "ok"]
    detail = "; ".join(f"step {r['step']!r} {r['status']}: {r['error']}" for r in unfinished)
    return {
        "messages": reply.messages,
        "usage": reply.usage,
        "end_reason": "step_failed" if unfinished else None,
        "end_detail": detail or None,
    }


def synthesise(state: HierarchicalState, *, team: Team) -> dict[str, Any]:
    """The manager's final answer from the step results (or the reason there is no plan)."""
    early = _plan_failure(state, team)
    if early is not None:
        return early
    context = current_context()
    reply = call_agent(team.manager, _synthesis_messages(state, team, context), context)
    return _synthesis_update(state, reply)


async def asynthesise(state: HierarchicalState, *, team: Team) -> dict[str, Any]:
    """Async form of `synthesise`."""
    early = _plan_failure(state, team)
    if early is not None:
        return early
    context = current_context()
    reply = await acall_agent(team.manager, _synthesis_messages(state, team, context), context)
    return _synthesis_update(state, reply)


def worker_node(worker: Worker) -> Runnable[Any, dict[str, Any]]:
    """The node that runs one worker's steps (an agent or a sub-team), sync and async."""
    if isinstance(worker, SubTeam):
        return NodeRunnable(
            partial(run_sub_team, team=worker),
            partial(arun_sub_team, team=worker),
            name=worker.name,
        )
    return NodeRunnable(
        partial(run_step, spec=worker), partial(arun_step, spec=worker), name=worker.name
    )


def check_team(
    workers: Sequence[Worker],
    manager: AgentSpec,
    *,
    max_steps: int,
    max_plan_attempts: int,
    fallback_plan: FallbackPlan,
) -> Team:
    """Validate the team and the limits, up front.

    Raises:
        AgentConfigError: No workers, a worker that is neither an AgentSpec nor a SubTeam,
            duplicate names (the manager's included) or a name the pattern reserves.
        ValueError: A limit out of range or an unknown fallback mode.
    """
    if not workers:
        raise AgentConfigError(
            "no workers given: a hierarchical graph needs at least one worker (AgentSpec or "
            "SubTeam)"
        )
    for worker in workers:
        if not isinstance(worker, AgentSpec | SubTeam):
            raise AgentConfigError(
                f"workers must be AgentSpec or SubTeam instances, got {type(worker).__name__}"
            )
    if not isinstance(manager, AgentSpec):
        raise AgentConfigError(f"the manager must be an AgentSpec, got {type(manager).__name__}")
    reserved = (PLAN, SCHEDULE, SYNTHESISE)
    check_agents([manager, *(w for w in workers if isinstance(w, AgentSpec))], reserved=reserved)
    counts = Counter([manager.name, *(w.name for w in workers)])
    duplicates = sorted(name for name, n in counts.items() if n > 1)
    if duplicates:
        raise AgentConfigError(
            f"duplicate names: {', '.join(duplicates)}; the manager and every worker need a "
            "unique name"
        )
    clashes = sorted(set(counts) & set(reserved))
    if clashes:
        raise AgentConfigError(
            f"names {', '.join(clashes)} are reserved by the hierarchical pattern; rename them"
        )
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
        workers={w.name: w for w in workers},
        max_steps=max_steps,
        max_plan_attempts=max_plan_attempts,
        fallback_plan=fallback_plan,
    )


def build_hierarchical_graph(
    workers: Sequence[Worker],
    *,
    manager: AgentSpec,
    max_steps: int = 8,
    max_plan_attempts: int = 2,
    fallback_plan: FallbackPlan = "offline",
) -> StateGraph[HierarchicalState, Context, HierarchicalInput, HierarchicalOutput]:
    """Build the hierarchical pattern (uncompiled: the caller picks checkpointer and store).

    Args:
        workers: The workers: agents (`AgentSpec`) or compiled sub-team graphs (`SubTeam`);
            names must be unique.
        manager: The agent that plans (structured output `Plan`) and synthesises the answer.
        max_steps: Most steps a plan may have.
        max_plan_attempts: Plans requested from the manager (the first, then re-asks with the
            validation errors) before falling back or ending with "plan_invalid".
        fallback_plan: When `default_plan` replaces a plan the manager could not get right:
            "offline" (only when the manager runs on the offline model), "always" or "never".

    Raises:
        AgentConfigError: No workers, duplicate or reserved names, or a worker of the wrong type.
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
    )
    builder = StateGraph(
        HierarchicalState,
        context_schema=Context,
        input_schema=HierarchicalInput,
        output_schema=HierarchicalOutput,
    )
    builder.add_node(
        PLAN,
        NodeRunnable(partial(plan, team=team), partial(aplan, team=team), name=PLAN),
        retry_policy=model_retry_policy(manager.max_attempts),
        error_handler=make_stop_handler(manager.name),
    )
    builder.add_node(SCHEDULE, schedule)
    for name, worker in team.workers.items():
        # A sub-team's own nodes retry their model calls; retrying the whole sub-team on top
        # would multiply attempts.
        retry = model_retry_policy(worker.max_attempts) if isinstance(worker, AgentSpec) else None
        builder.add_node(
            name,
            worker_node(worker),
            retry_policy=retry,
            error_handler=partial(record_step_failure, worker=worker),
        )
        builder.add_edge(name, SCHEDULE)
    builder.add_node(
        SYNTHESISE,
        NodeRunnable(
            partial(synthesise, team=team), partial(asynthesise, team=team), name=SYNTHESISE
        ),
        retry_policy=model_retry_policy(manager.max_attempts),
        error_handler=make_stop_handler(manager.name),
    )
    builder.add_edge(START, PLAN)
    builder.add_edge(PLAN, SCHEDULE)
    builder.add_conditional_edges(SCHEDULE, route_wave, [*team.workers, SYNTHESISE])
    builder.add_edge(SYNTHESISE, END)
    return builder
