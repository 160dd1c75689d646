"""Pipeline: stages run in order; each gets the validated output of the one before, not the chat.

START -> intake -> stage 1 -> ... -> stage n -> finish -> END. The first stage sees the user's
request; every later stage sees a `StageHandoff` (the request plus the previous stage's validated
output, as JSON). A stage whose call fails, or whose output fails its schema, goes down the
fallback chain (`switchyard.nodes.fallback`): its retries and fallback models inside its call,
then the pipeline's `fallback_agent` doing the stage's job, then a person (their answer is the
stage's output) when `Context.escalate_to_human` is on. When the chain is exhausted, the error
handler records the failure and jumps to `finish`: the run ends with end_reason "stage_failed"
(or "budget_exceeded" / "deadline" when a guardrail stopped it, skipping the chain), a reason
naming the stage, and the records of the stages before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.errors import NodeError
from langgraph.graph import END, START
from langgraph.types import Command, Overwrite
from pydantic import BaseModel, JsonValue

from switchyard.core.errors import InvalidInputError, describe_error
from switchyard.graphs.guarded import PatternGraph
from switchyard.guardrails.tripwires import masked_user_message
from switchyard.nodes.classify import last_user_text
from switchyard.nodes.fallback import (
    FallbackAgent,
    escalating,
    make_chain_node,
    resolve_fallback_agent,
    standing_in,
)
from switchyard.nodes.record import AgentReply, OutputValidationError, partial_usage
from switchyard.state.agents import Agent, AgentSpec, as_agents, check_agents
from switchyard.state.context import Context
from switchyard.state.outcomes import end_reason_for
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

    def view(self, state: PipelineState, context: Context) -> list[BaseMessage]:
        """What the stage sees (`stage_input`)."""
        return stage_input(state, self.previous)

    def accept(self, state: PipelineState, reply: AgentReply) -> dict[str, Any]:
        """The stage's update for a reply: its record, its usage and, if last, its answer.

        Raises:
            OutputValidationError: The reply is empty text.
        """
        record = StageRecord(
            stage=self.spec.name,
            status="ok",
            output=validated_output(self.spec.name, reply.output),
            duration_ms=reply.duration_ms,
            error=None,
        )
        update: dict[str, Any] = {"stages": {self.spec.name: record}, "usage": reply.usage}
        if self.following == FINISH:
            update["messages"] = [reply.messages[-1]]
        return update


def record_stage_failure(state: PipelineState, error: NodeError, *, stage: Stage) -> Command[str]:
    """Error handler of every stage: record why it failed (and what it spent), and stop.

    LangGraph calls it once the stage's call failed: its model calls were retried and its
    fallback models tried inside the call. The run jumps to `finish`, with the end reason of a
    guardrail that stopped it (`budget_exceeded`, `deadline`), else "stage_failed".
    """
    record = StageRecord(
        stage=stage.spec.name,
        status="failed",
        output=None,
        duration_ms=None,
        error=describe_error(error.error),
    )
    update = {
        "stages": {stage.spec.name: record},
        "usage": partial_usage(error.error),
        "end_reason": end_reason_for(error.error, default=STAGE_FAILED),
    }
    return Command(update=update, goto=FINISH)


def finish(state: PipelineState) -> dict[str, Any]:
    """End the run: no reason when every stage succeeded, else "stage_failed" and why.

    On failure it also appends a message, named after the failed stage, that says the same.
    """
    records = list(state["stages"].values())
    failed = [r for r in records if r["status"] == "failed"]
    if not failed:
        return {"end_reason": None, "end_detail": None}
    reason = state.get("end_reason") or STAGE_FAILED
    completed = ", ".join(r["stage"] for r in records if r["status"] == "ok") or "none"
    detail = (
        f"stage {failed[0]['stage']!r} failed: {failed[0]['error']} "
        f"(stages completed before it: {completed})"
    )
    return {
        "end_reason": reason,
        "end_detail": detail,
        "messages": [
            *masked_user_message(state),  # after an input tripwire, the thread keeps it masked
            AIMessage(f"The pipeline stopped: {detail}", name=failed[0]["stage"]),
        ],
    }


def build_pipeline_graph(
    agents: Sequence[Agent],
    *,
    middleware: Sequence[AgentMiddleware[Any, Any, Any]] = (),
    fallback_agent: FallbackAgent = None,
) -> PatternGraph:
    """Build the pipeline pattern (uncompiled: the caller picks checkpointer and store).

    A run takes `len(agents) + 2` steps (intake and finish included); keep `Context.recursion_limit`
    above that.

    Args:
        agents: The stages, in the order they run; names must be unique. A stage with an
            `output_schema` hands the next stage a validated instance of it.
        middleware: LangChain `AgentMiddleware` for every stage, outside each agent's own.
        fallback_agent: The agent that does a failed stage's job (the stage's input, its output
            schema, its place in the pipeline) once the stage's model and fallback models
            failed: the name of one of the stages, or an agent of its own. None: none. Then a
            person, when `Context.escalate_to_human` is on (see `switchyard.nodes.fallback`).

    Raises:
        AgentConfigError: No stages, duplicate names, a name the pattern reserves (intake,
            finish), or an unknown fallback agent.

    Example:
        ```python
        builder = build_pipeline_graph([research, draft, edit])
        graph = builder.compile(checkpointer=InMemorySaver(), name="pipeline")
        ```
    """
    agents = as_agents(agents)
    by_name = check_agents(agents, reserved=(INTAKE, FINISH))
    standby = resolve_fallback_agent(fallback_agent, by_name)
    builder = PatternGraph(
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
        node = make_chain_node(
            spec,
            fallback_agent=standing_in(standby, spec.output_schema),
            view=stage.view,
            accept=stage.accept,
            middleware=middleware,
        )
        # A person's answer is the stage's output: the next stage works from it.
        handler = escalating(
            partial(record_stage_failure, stage=stage), agent=spec, view=stage.view
        )
        builder.add_node(spec.name, node, error_handler=handler)
        builder.add_edge(previous or INTAKE, spec.name)
    builder.add_node(FINISH, finish)
    builder.add_edge(names[-1], FINISH)
    builder.add_edge(FINISH, END)
    return builder
