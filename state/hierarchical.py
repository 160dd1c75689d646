"""State of the hierarchical pattern: the manager's validated plan, step results and sub-teams.

The manager's plan is a pydantic model (`Plan`) so it can be requested as structured output and
validated; `check_plan` adds the checks a schema cannot express (known workers, unique ids, known
dependencies, no cycles) and orders the steps into waves. What flows between agents is typed: a
worker receives a `StepDelivery` (its task plus the outputs of the steps it depends on), never the
transcript.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from graphlib import CycleError, TopologicalSorter
from typing import Annotated, Any, Literal, NotRequired

from langchain_core.messages import AnyMessage
from langgraph.graph import MessagesState
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field, ValidationError, model_validator
from typing_extensions import TypedDict

from switchyard.core.errors import SwitchyardError
from switchyard.state.agents import AgentSpec, config_error
from switchyard.state.outcomes import EndReason, Escalations
from switchyard.state.reducers import AgentMemory, merge_usage
from switchyard.state.usage import UsageLedger

_SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class PlanValidationError(SwitchyardError, ValueError):
    """A plan cannot run: unknown worker, duplicate or unknown step ids, a cycle, or too long."""


class PlanStep(BaseModel):
    """One step of the manager's plan."""

    id: str = Field(description="Short unique id of the step, e.g. 'research' or 'draft'.")
    worker: str = Field(description="Name of the worker that does this step (one of the workers).")
    task: str = Field(description="What the worker must do, self-contained and specific.")
    depends_on: list[str] = Field(
        default_factory=list,
        description="Ids of the steps whose outputs this step needs; [] when it needs none. "
        "Steps that do not depend on each other run in parallel.",
    )


class Plan(BaseModel):
    """The manager's plan: steps, each assigned to one worker, with their dependencies."""

    steps: list[PlanStep] = Field(min_length=1, description="The steps, in a sensible order.")


class SubTeam(AgentSpec):
    """A worker that is itself a compiled graph (a sub-team), for nesting teams.

    An `AgentSpec` whose work its `graph` does: the sub-team receives the step as one user
    message (the step's typed payload as JSON) in `{"messages": [...]}` and answers with its last
    AI message. A Switchyard pattern graph shares the run's budgets and deadline and adds its
    ledger to the run's; any other graph's model calls are metered and recorded by callbacks.
    Compile it without a checkpointer: it then shares the parent run's, under its own namespace.

    Example:
        ```python
        team = SubTeam(
            name="coder",
            description="Writes and reviews code.",
            graph=build_router_graph(coders, default_agent="python_dev").compile(name="code_team"),
        )
        ```
    """

    graph: Any = Field(description="The compiled sub-team graph; it takes {'messages': [...]}.")

    def __init__(self, **fields: Any) -> None:
        """Validate like `AgentSpec`; a problem is one `AgentConfigError` line.

        Raises:
            AgentConfigError: A field is missing or invalid (the graph, above all).
        """
        try:
            super().__init__(**fields)
        except ValidationError as exc:
            raise config_error(fields.get("name", "<unnamed>"), exc) from None

    @model_validator(mode="before")
    @classmethod
    def _needs_graph(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("graph") is None:
            raise ValueError("a sub-team needs a compiled graph (StateGraph(...).compile())")
        return data


class StepSpec(TypedDict):
    """A validated plan step, as stored in state."""

    id: str
    worker: str
    task: str
    depends_on: list[str]


class PlanRecord(TypedDict):
    """The plan the run follows, and how it was obtained.

    Attributes:
        valid: Whether the steps can run; False ends the run with `end_reason="plan_invalid"`.
        steps: The steps, in the manager's order ([] when invalid).
        waves: Step ids grouped into waves: each wave depends only on earlier ones, and the
            steps of one wave run in parallel.
        source: "manager" (the manager's plan), "default" (the fallback plan built from the
            workers), "none" (no valid plan) or "person" (the manager failed, and a person
            answered the request instead: no plan runs, and the turn ends with their answer).
        attempts: Plans requested from the manager.
        errors: Why each rejected plan was rejected, in order.
    """

    valid: bool
    steps: list[StepSpec]
    waves: list[list[str]]
    source: Literal["manager", "default", "none", "person"]
    attempts: int
    errors: list[str]


class StepInput(TypedDict):
    """The output of a step another step depends on."""

    step: str
    worker: str
    output: str | dict[str, Any]


class StepDelivery(TypedDict):
    """What one worker receives for one step (the payload of its `Send`)."""

    goal: str
    step: StepSpec
    inputs: list[StepInput]


class StepResult(TypedDict):
    """The outcome of one step.

    Attributes:
        step: The step id.
        worker: The worker that ran (or would have run) it.
        task: The step's task.
        status: "ok", "failed" (the worker raised or its output failed its schema) or "skipped"
            (a step it depends on did not complete).
        output: The worker's answer: text, or a structured output as a dict ("" unless ok).
        error: Why the step failed or was skipped.
        stopped_by: The guardrail that stopped the step and so the whole run (`deadline`, or
            `budget_exceeded` for a run or session budget); absent otherwise.
    """

    step: str
    worker: str
    task: str
    status: Literal["ok", "failed", "skipped"]
    output: str | dict[str, Any]
    error: str | None
    stopped_by: NotRequired[EndReason]


def merge_step_results(
    left: dict[str, StepResult] | None, right: dict[str, StepResult] | None
) -> dict[str, StepResult]:
    """Merge step results keyed by step id, so parallel workers of one wave can all write.

    Keeps every step's result; a newer result for the same step id replaces the older one. Drops
    nothing else. The plan node resets the key at the start of each run with `Overwrite({})`.
    """
    return {**(left or {}), **(right or {})}


def plan_problems(plan: Plan, workers: Collection[str], *, max_steps: int) -> list[str]:
    """Every problem of a plan that a schema cannot catch, each naming its step."""
    problems: list[str] = []
    if len(plan.steps) > max_steps:
        problems.append(f"the plan has {len(plan.steps)} steps; at most {max_steps} are allowed")
    positions: dict[str, list[int]] = {}
    for position, step in enumerate(plan.steps, start=1):
        positions.setdefault(step.id, []).append(position)
    for step_id, where in positions.items():
        if len(where) > 1:
            numbers = ", ".join(str(n) for n in where)
            problems.append(f"steps {numbers} share the id {step_id!r}; step ids must be unique")
    for position, step in enumerate(plan.steps, start=1):
        label = f"step {position} ({step.id!r})"
        if not step.id.strip():
            problems.append(f"step {position} has an empty id")
        if not step.task.strip():
            problems.append(f"{label} has an empty task")
        if step.worker not in workers:
            problems.append(
                f"{label} is assigned to unknown worker {step.worker!r}; "
                f"workers: {', '.join(sorted(workers))}"
            )
        for dependency in step.depends_on:
            if dependency not in positions:
                problems.append(f"{label} depends on unknown step {dependency!r}")
    return problems


def check_plan(
    plan: Plan, workers: Collection[str], *, max_steps: int
) -> tuple[list[StepSpec], list[list[str]]]:
    """Validate a plan against the team and order its steps into waves.

    Args:
        plan: The manager's plan.
        workers: Names of the workers steps may be assigned to.
        max_steps: Most steps a plan may have.

    Returns:
        The steps as stored in state, and the step ids grouped into waves (each wave depends only
        on earlier waves; ids within a wave keep the plan's order).

    Raises:
        PlanValidationError: Every problem found, each naming the step: too many steps, an empty
            or duplicate id, an empty task, an unknown worker or dependency, or a cycle.
    """
    problems = plan_problems(plan, workers, max_steps=max_steps)
    if problems:
        raise PlanValidationError("; ".join(problems))
    sorter = TopologicalSorter({step.id: step.depends_on for step in plan.steps})
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = " -> ".join(str(node) for node in exc.args[1])
        raise PlanValidationError(f"the steps form a dependency cycle: {cycle}") from None
    order = {step.id: index for index, step in enumerate(plan.steps)}
    waves: list[list[str]] = []
    while sorter.is_active():
        wave = sorted(sorter.get_ready(), key=order.__getitem__)
        sorter.done(*wave)
        waves.append(wave)
    steps = [
        StepSpec(id=s.id, worker=s.worker, task=s.task, depends_on=list(s.depends_on))
        for s in plan.steps
    ]
    return steps, waves


def steps_by_id(plan: PlanRecord) -> Mapping[str, StepSpec]:
    """The plan's steps keyed by id."""
    return {step["id"]: step for step in plan["steps"]}


class HierarchicalInput(TypedDict):
    """What a caller sends: new messages (usually one user message, the request)."""

    messages: Annotated[list[AnyMessage], add_messages]


class HierarchicalOutput(TypedDict):
    """What a caller gets back: the conversation, the plan, each step's result, usage, end."""

    messages: Annotated[list[AnyMessage], add_messages]
    plan: PlanRecord | None
    results: Annotated[dict[str, StepResult], merge_step_results]
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None
    end_detail: str | None


class HierarchicalState(MessagesState, AgentMemory, Escalations):
    """Full hierarchical state, checkpointed per session.

    `request` and `plan` are written by the plan node only, `end_reason` and `end_detail` by the
    synthesise node only (every run). `results` is written by parallel workers (and the plan,
    schedule and failure handlers), so it merges by step id; `usage` is written by every model
    call and sums.
    """

    request: str
    plan: PlanRecord | None
    results: Annotated[dict[str, StepResult], merge_step_results]
    usage: Annotated[UsageLedger, merge_usage]
    end_reason: EndReason | None
    end_detail: str | None
