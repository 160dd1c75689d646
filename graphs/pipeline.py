"""Pipeline: stages run in order; each gets the validated output of the one before, not the chat.

START -> intake -> stage 1 -> ... -> stage n -> finish -> END. The first stage sees the user's
request; every later stage sees a `StageHandoff` (the request plus the previous stage's validated
output, as JSON). A stage that still raises after its retries, or whose output fails its schema,
goes to its error handler, which tries the stage's fallback models; when none answers, it records
the failure and jumps to `finish`: the run ends with end_reason "stage_failed", a reason naming the
stage, and the records of the stages before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable
from langgraph.errors import NodeError
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import get_runtime
from langgraph.types import Command, Overwrite
from pydantic import BaseModel, JsonValue

from switchyard.core.errors import InvalidInputError
from switchyard.core.resilience import model_retry_policy
from switchyard.guardrails.budgets import BudgetExceededError, DeadlineExceededError
from switchyard.nodes.agent import (
    AgentReply,
    NodeRunnable,
    OutputValidationError,
    acall_agent,
    call_agent,
    resolve_context,
)
from switchyard.nodes.classify import last_user_text
from switchyard.state.agents import AgentSpec, check_agents
from switchyard.state.context import Context
from switchyard.state.pipeline import (
    PipelineInput,
    PipelineOutput,
    PipelineState,
    StageHandoff,
    StageRecord,
)

INTAKE: Final = "intake"
FINISH: Final = "finish"
STAGE_FAILED: Final = "stage_failed"


def intake(state: PipelineState) -> dict[str, Any]:
    """Start a run: check there is a request, and clear the previous run's stage records.

    Raises:
        InvalidInputError: The input has no user message with text.
    """
    if not last_user_text(state["messages"]).strip():
        raise InvalidInputError(
            "the pipeline needs a user message: send {'messages': [HumanMessage('...')]}"
        )
    return {"stages": Overwrite({})}


def stage_input(state: PipelineState, previous: str | None) -> list[BaseMessage]:
    """What a stage sees: the request (first stage), else the previous stage's hand-off as JSON."""
    request = last_user_text(state["messages"])
    if previous is None:
        return [HumanMessage(request)]
    handoff = StageHandoff(
        request=request,
        previous_stage=previous,
        previous_output=state["stages"][previous]["output"],
    )
    return [HumanMessage(handoff.model_dump_json(indent=2))]


def validated_output(agent: str, output: str | BaseModel) -> JsonValue:
    """An agent's output as JSON: a schema instance (already validated) dumped, or non-empty text.

    Raises:
        OutputValidationError: The agent answered with empty text.
    """
    if isinstance(output, BaseModel):
        return output.model_dump(mode="json")
    if not output.strip():
        raise OutputValidationError(f"agent {agent!r} returned an empty answer")
    return output


def describe_error(error: BaseException) -> str:
    """An exception as one line: its type and its message, whitespace collapsed."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def recover(
    spec: AgentSpec,
    messages: Sequence[BaseMessage],
    error: BaseException,
    accept: Callable[[AgentReply, float], dict[str, Any]],
) -> dict[str, Any] | str:
    """Try the agent's `fallback_models`, in order, after its own model failed with `error`.

    A budget or deadline stop gets no fallback: no other model call may start either.

    Args:
        spec: The agent whose node failed.
        messages: What the agent was shown.
        error: Why the node failed, after its retries.
        accept: Turns a reply (and when its call started) into the node's update; it raises when
            the reply is not acceptable, which counts as that fallback failing.

    Returns:
        The update of the first fallback whose reply is accepted, else one line naming every
        failure, the agent's own first.
    """
    failures = [describe_error(error)]
    if not isinstance(error, BudgetExceededError | DeadlineExceededError):
        context = resolve_context(get_runtime(Context).context)
        for model in spec.fallback_models:
            started = time.perf_counter()
            try:
                return accept(call_agent(spec, messages, context, model=model), started)
            except Exception as exc:  # the next fallback model gets its chance
                failures.append(f"{model}: {describe_error(exc)}")
    return "; ".join(failures)


async def arecover(
    spec: AgentSpec,
    messages: Sequence[BaseMessage],
    error: BaseException,
    accept: Callable[[AgentReply, float], dict[str, Any]],
) -> dict[str, Any] | str:
    """Async form of `recover` (the fallback models are called with `acall_agent`)."""
    failures = [describe_error(error)]
    if not isinstance(error, BudgetExceededError | DeadlineExceededError):
        context = resolve_context(get_runtime(Context).context)
        for model in spec.fallback_models:
            started = time.perf_counter()
            try:
                return accept(await acall_agent(spec, messages, context, model=model), started)
            except Exception as exc:  # the next fallback model gets its chance
                failures.append(f"{model}: {describe_error(exc)}")
    return "; ".join(failures)


@dataclass(frozen=True)
class Stage:
    """One stage's place in the pipeline.

    Attributes:
        spec: The stage's agent.
        previous: The stage before it, whose output it receives; None for the first stage.
        following: The node after it: the next stage, or `finish` for the last stage, whose
            answer is appended to `messages`.
    """

    spec: AgentSpec
    previous: str | None
    following: str

    def accept(self, reply: AgentReply, started: float) -> dict[str, Any]:
        """The stage's update for a reply: its record, its usage and, if last, its answer.

        Raises:
            OutputValidationError: The reply is empty text.
        """
        record = StageRecord(
            stage=self.spec.name,
            status="ok",
            output=validated_output(self.spec.name, reply.output),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            error=None,
        )
        update: dict[str, Any] = {"stages": {self.spec.name: record}, "usage": reply.usage}
        if self.following == FINISH:
            update["messages"] = [reply.messages[-1]]
        return update


def make_stage_node(stage: Stage) -> Runnable[Any, dict[str, Any]]:
    """The node that runs one stage (sync and async); it raises when the stage fails."""

    def run_stage(state: PipelineState) -> dict[str, Any]:
        started = time.perf_counter()
        context = resolve_context(get_runtime(Context).context)
        reply = call_agent(stage.spec, stage_input(state, stage.previous), context)
        return stage.accept(reply, started)

    async def arun_stage(state: PipelineState) -> dict[str, Any]:
        started = time.perf_counter()
        context = resolve_context(get_runtime(Context).context)
        reply = await acall_agent(stage.spec, stage_input(state, stage.previous), context)
        return stage.accept(reply, started)

    return NodeRunnable(run_stage, arun_stage, name=stage.spec.name)


def record_stage_failure(state: PipelineState, error: NodeError, *, stage: Stage) -> Command[str]:
    """Error handler of every stage: try its fallback models, else record why it failed and stop.

    LangGraph calls it once the stage's retry policy has given up (or at once for an error that is
    not retried, such as failed validation). A fallback's answer lets the pipeline go on; without
    one the run jumps to `finish`.
    """
    outcome = recover(stage.spec, stage_input(state, stage.previous), error.error, stage.accept)
    if isinstance(outcome, dict):
        return Command(update=outcome, goto=stage.following)
    record = StageRecord(
        stage=stage.spec.name, status="failed", output=None, duration_ms=None, error=outcome
    )
    return Command(update={"stages": {stage.spec.name: record}}, goto=FINISH)


def finish(state: PipelineState) -> dict[str, Any]:
    """End the run: no reason when every stage succeeded, else "stage_failed" and why.

    On failure it also appends a message, named after the failed stage, that says the same.
    """
    records = list(state["stages"].values())
    failed = [r for r in records if r["status"] == "failed"]
    if not failed:
        return {"end_reason": None, "end_detail": None}
    completed = ", ".join(r["stage"] for r in records if r["status"] == "ok") or "none"
    detail = (
        f"stage {failed[0]['stage']!r} failed: {failed[0]['error']} "
        f"(stages completed before it: {completed})"
    )
    return {
        "end_reason": STAGE_FAILED,
        "end_detail": detail,
        "messages": [AIMessage(f"The pipeline stopped: {detail}", name=failed[0]["stage"])],
    }


def build_pipeline_graph(
    agents: Sequence[AgentSpec],
) -> StateGraph[PipelineState, Context, PipelineInput, PipelineOutput]:
    """Build the pipeline pattern (uncompiled: the caller picks checkpointer and store).

    A run takes `len(agents) + 2` steps (intake and finish included); keep `Context.recursion_limit`
    above that.

    Args:
        agents: The stages, in the order they run; names must be unique. A stage with an
            `output_schema` hands the next stage a validated instance of it.

    Raises:
        AgentConfigError: No stages, duplicate names, or a name the pattern reserves (intake,
            finish).

    Example:
        ```python
        builder = build_pipeline_graph([research, draft, edit])
        graph = builder.compile(checkpointer=InMemorySaver(), name="pipeline")
        ```
    """
    check_agents(agents, reserved=(INTAKE, FINISH))
    builder = StateGraph(
        PipelineState,
        context_schema=Context,
        input_schema=PipelineInput,
        output_schema=PipelineOutput,
    )
    builder.add_node(INTAKE, intake)
    builder.add_edge(START, INTAKE)
    names = [spec.name for spec in agents]
    for spec, previous, following in zip(
        agents, [None, *names[:-1]], [*names[1:], FINISH], strict=True
    ):
        stage = Stage(spec=spec, previous=previous, following=following)
        builder.add_node(
            spec.name,
            make_stage_node(stage),
            retry_policy=model_retry_policy(spec.max_attempts),
            error_handler=partial(record_stage_failure, stage=stage),
        )
        builder.add_edge(previous or INTAKE, spec.name)
    builder.add_node(FINISH, finish)
    builder.add_edge(names[-1], FINISH)
    builder.add_edge(FINISH, END)
    return builder
