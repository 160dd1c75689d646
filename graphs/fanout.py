"""Fan-out / fan-in: workers answer one request in parallel (`Send`), then a merge combines them.

START -> intake -> (one `Send` per worker) workers -> merge -> END, or -> merger agent -> END with
the "synthesize" strategy. Each worker sees only the request and writes only its own entry of
`results`, so the merge is the same whatever order the workers finish in. A worker that still
fails after its retries (or whose output fails its schema) goes to its error handler, which tries
its fallback models and, when none answers, records the failure; the merge goes ahead when at
least `quorum` workers succeeded, else the run ends "quorum_failed".
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.errors import NodeError
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import get_runtime
from langgraph.types import Command, Overwrite, Send
from pydantic import BaseModel, Field, JsonValue

from graphs.pipeline import recover, validated_output
from nodes.agent import AgentReply, acall_agent, call_agent, resolve_context
from nodes.classify import last_user_text
from state.agents import AgentSpec, check_agents
from state.context import Context
from state.fanout import (
    MERGE_STRATEGIES,
    FanoutInput,
    FanoutOutput,
    FanoutState,
    MergeRequest,
    MergeStrategy,
    Vote,
    WorkerOutput,
    WorkerResult,
    WorkerTask,
)
from switchyard.errors import AgentConfigError, InvalidInputError
from switchyard.resilience import model_retry_policy

INTAKE: Final = "intake"
MERGE: Final = "merge"
SYNTHESIZE: Final = "synthesize"
QUORUM_FAILED: Final = "quorum_failed"
NO_MAJORITY: Final = "no_majority"


def required_quorum(quorum: int | None, dispatched: int) -> int:
    """Workers that must succeed: `quorum`, or a majority of those dispatched when it is None."""
    return quorum if quorum is not None else dispatched // 2 + 1


def select_workers(
    requested: Sequence[str] | None, available: Sequence[str], quorum: int | None
) -> list[str]:
    """The workers to dispatch this run, in the graph's order.

    Args:
        requested: Names chosen by the caller (input key `workers`); None dispatches all of them.
        available: The graph's workers, in build order.
        quorum: The graph's quorum (None: a majority of those dispatched).

    Raises:
        InvalidInputError: The selection is empty, names unknown or repeated workers, or is smaller
            than the quorum.
    """
    if requested is None:
        return list(available)
    if not requested:
        raise InvalidInputError(
            f"workers is empty: select at least one of {', '.join(available)}, or omit it"
        )
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise InvalidInputError(
            f"unknown workers: {', '.join(unknown)}; choose from {', '.join(available)}"
        )
    repeated = sorted({name for name in requested if requested.count(name) > 1})
    if repeated:
        raise InvalidInputError(f"workers selected more than once: {', '.join(repeated)}")
    if quorum is not None and len(requested) < quorum:
        raise InvalidInputError(
            f"{len(requested)} workers selected but the quorum is {quorum}: select at least "
            f"{quorum}, or build the graph with a lower quorum"
        )
    return [name for name in available if name in requested]


@dataclass(frozen=True)
class Intake:
    """The node that starts a run: checks the request, picks the workers, clears old results.

    Attributes:
        workers: The graph's workers, in build order.
        quorum: The graph's quorum (None: a majority of those dispatched).
    """

    workers: tuple[str, ...]
    quorum: int | None

    def __call__(self, state: FanoutState) -> dict[str, Any]:
        """Record the workers to dispatch, consume the `workers` input, reset `results`.

        Raises:
            InvalidInputError: No user message, or an invalid `workers` selection.
        """
        if not last_user_text(state["messages"]).strip():
            raise InvalidInputError(
                "fan-out needs a user message: send {'messages': [HumanMessage('...')]}"
            )
        selected = select_workers(state.get("workers"), self.workers, self.quorum)
        return {"dispatched": selected, "workers": None, "results": Overwrite({})}


def route_to_workers(state: FanoutState) -> list[Send]:
    """One `Send` per dispatched worker, each carrying only the worker's name and the request."""
    request = last_user_text(state["messages"])
    return [Send(name, WorkerTask(worker=name, request=request)) for name in state["dispatched"]]


def accept_worker_reply(spec: AgentSpec, reply: AgentReply, started: float) -> dict[str, Any]:
    """A worker's update for a reply: its own entry of `results`, and its usage.

    Raises:
        OutputValidationError: The reply is empty text.
    """
    result = WorkerResult(
        worker=spec.name,
        status="ok",
        output=validated_output(spec.name, reply.output),
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        error=None,
    )
    return {"results": {spec.name: result}, "usage": reply.usage}


def make_worker_node(spec: AgentSpec) -> Runnable[Any, dict[str, Any]]:
    """The node one worker runs as (sync and async): its input is the `WorkerTask` it was sent."""

    def work(task: WorkerTask) -> dict[str, Any]:
        started = time.perf_counter()
        context = resolve_context(get_runtime(Context).context)
        reply = call_agent(spec, [HumanMessage(task["request"])], context)
        return accept_worker_reply(spec, reply, started)

    async def awork(task: WorkerTask) -> dict[str, Any]:
        started = time.perf_counter()
        context = resolve_context(get_runtime(Context).context)
        reply = await acall_agent(spec, [HumanMessage(task["request"])], context)
        return accept_worker_reply(spec, reply, started)

    return RunnableLambda(work, afunc=awork, name=spec.name)


def record_worker_failure(
    task: WorkerTask, error: NodeError, *, spec: AgentSpec
) -> Command[Literal["merge"]]:
    """Error handler of every worker: try its fallback models, else record the failure.

    LangGraph calls it once the worker's retry policy has given up (or at once for an error that is
    not retried, such as failed validation). Either way the merge goes ahead; the other workers
    are not affected.
    """
    messages = [HumanMessage(task["request"])]
    outcome = recover(spec, messages, error.error, partial(accept_worker_reply, spec))
    if isinstance(outcome, dict):
        return Command(update=outcome, goto=MERGE)
    result = WorkerResult(
        worker=spec.name, status="failed", output=None, duration_ms=None, error=outcome
    )
    return Command(update={"results": {spec.name: result}}, goto=MERGE)


def ballot(output: JsonValue) -> str:
    """What a worker votes for: its `verdict` field if it has one, else its whole output.

    Text is compared case-insensitively, with whitespace collapsed and surrounding punctuation and
    quotes dropped; structured output is compared as canonical JSON.
    """
    if isinstance(output, dict) and "verdict" in output:
        output = output["verdict"]
    if isinstance(output, str):
        return " ".join(output.casefold().split()).strip(" .,;:!?'\"`")
    return json.dumps(output, sort_keys=True)


def count_votes(results: Sequence[WorkerResult]) -> Vote:
    """Tally the ballots of successful workers; the winner needs more votes than any other."""
    ballots: dict[str, list[str]] = {}
    for result in results:
        ballots.setdefault(ballot(result["output"]), []).append(result["worker"])
    ranked = sorted(ballots, key=lambda answer: len(ballots[answer]), reverse=True)
    tied = len(ranked) > 1 and len(ballots[ranked[0]]) == len(ballots[ranked[1]])
    return Vote(winner=None if tied or not ranked else ranked[0], ballots=ballots)


def render(output: JsonValue) -> str:
    """A worker's output as text: text as it is, structured output as indented JSON."""
    return output if isinstance(output, str) else json.dumps(output, indent=2)


def collected_answer(ok: Sequence[WorkerResult], failed: Sequence[WorkerResult]) -> str:
    """Every successful worker's output under its name, then the workers that failed."""
    parts = [f"## {result['worker']}\n\n{render(result['output'])}" for result in ok]
    if failed:
        parts.append(
            "Failed: " + "; ".join(f"{result['worker']} ({result['error']})" for result in failed)
        )
    return "\n\n".join(parts)


@dataclass(frozen=True)
class Merge:
    """The node that fans in: applies the quorum, then collects or votes.

    With "synthesize" it only applies the quorum; the merger agent answers next.

    Attributes:
        strategy: How the results become one answer.
        quorum: Workers that must succeed (None: a majority of those dispatched).
    """

    strategy: MergeStrategy
    quorum: int | None

    @staticmethod
    def stop(reason: str, detail: str) -> dict[str, Any]:
        """The update that ends a run without an answer: the reason, and a message saying why."""
        return {
            "end_reason": reason,
            "end_detail": detail,
            "messages": [AIMessage(f"No answer: {detail}", name=MERGE)],
        }

    def __call__(self, state: FanoutState) -> dict[str, Any]:
        """Write `vote`, `end_reason`, `end_detail`, and the answer (collect, vote) or why none.

        With "synthesize" and the quorum met it writes no message: the merger agent answers.
        """
        dispatched = state["dispatched"]
        results = [state["results"][name] for name in dispatched if name in state["results"]]
        ok = [result for result in results if result["status"] == "ok"]
        failed = [result for result in results if result["status"] == "failed"]
        needed = required_quorum(self.quorum, len(dispatched))
        outcome: dict[str, Any] = {"vote": None, "end_reason": None, "end_detail": None}
        if len(ok) < needed:
            failures = "; ".join(f"{result['worker']}: {result['error']}" for result in failed)
            detail = (
                f"{len(ok)} of {len(dispatched)} workers succeeded but the quorum is {needed} "
                f"(failed: {failures or 'none'})"
            )
            return {**outcome, **self.stop(QUORUM_FAILED, detail)}
        if self.strategy == "collect":
            outcome["messages"] = [AIMessage(collected_answer(ok, failed), name=MERGE)]
        elif self.strategy == "vote":
            vote = count_votes(ok)
            outcome["vote"] = vote
            if vote["winner"] is None:
                tally = "; ".join(
                    f"{answer!r}: {', '.join(w)}" for answer, w in vote["ballots"].items()
                )
                outcome.update(self.stop(NO_MAJORITY, f"the vote is tied ({tally})"))
            else:
                first = vote["ballots"][vote["winner"]][0]
                winner = next(result for result in ok if result["worker"] == first)
                outcome["messages"] = [AIMessage(render(winner["output"]), name=MERGE)]
        return outcome


def route_after_merge(state: FanoutState) -> str:
    """To the merger agent when the quorum was met, else to the end."""
    return END if state["end_reason"] else SYNTHESIZE


def merge_input(state: FanoutState) -> list[BaseMessage]:
    """What the merger sees: a `MergeRequest` (the request and the workers' outputs) as JSON."""
    results = [state["results"][name] for name in state["dispatched"] if name in state["results"]]
    request = MergeRequest(
        request=last_user_text(state["messages"]),
        results=[
            WorkerOutput(worker=result["worker"], output=result["output"])
            for result in results
            if result["status"] == "ok"
        ],
        failed_workers=[result["worker"] for result in results if result["status"] == "failed"],
    )
    return [HumanMessage(request.model_dump_json(indent=2))]


def accept_merger_reply(spec: AgentSpec, reply: AgentReply) -> dict[str, Any]:
    """The merger's update for a reply: its answer and its usage.

    Raises:
        OutputValidationError: The reply is empty text.
    """
    validated_output(spec.name, reply.output)
    return {"messages": [reply.messages[-1]], "usage": reply.usage}


def make_merger_node(spec: AgentSpec) -> Runnable[Any, dict[str, Any]]:
    """The node the merger agent runs as (sync and async); its answer ends the run."""

    def synthesize(state: FanoutState) -> dict[str, Any]:
        context = resolve_context(get_runtime(Context).context)
        return accept_merger_reply(spec, call_agent(spec, merge_input(state), context))

    async def asynthesize(state: FanoutState) -> dict[str, Any]:
        context = resolve_context(get_runtime(Context).context)
        return accept_merger_reply(spec, await acall_agent(spec, merge_input(state), context))

    return RunnableLambda(synthesize, afunc=asynthesize, name=spec.name)


def recover_merger(state: FanoutState, error: NodeError, *, spec: AgentSpec) -> dict[str, Any]:
    """Error handler of the merger: its fallback models answer, else the run fails as it would.

    There is no partial answer to give without the merger; the workers' results stay in the
    checkpoint, and the run facade reports the error.

    Raises:
        BaseException: The merger's own error, when no fallback model answered.
    """
    outcome = recover(
        spec, merge_input(state), error.error, lambda reply, _: accept_merger_reply(spec, reply)
    )
    if isinstance(outcome, str):
        raise error.error
    return outcome


def _check_options(
    agents: Sequence[AgentSpec],
    merger: AgentSpec | None,
    strategy: MergeStrategy | None,
    quorum: int | None,
) -> MergeStrategy:
    """Validate the build options; returns the strategy to use."""
    check_agents([*agents, *([merger] if merger is not None else [])], reserved=(INTAKE, MERGE))
    if strategy is None:
        strategy = "synthesize" if merger is not None else "collect"
    if strategy not in MERGE_STRATEGIES:
        raise ValueError(
            f"unknown merge strategy {strategy!r}; choose one of {', '.join(MERGE_STRATEGIES)}"
        )
    if strategy == "synthesize" and merger is None:
        raise AgentConfigError(
            "strategy 'synthesize' needs a merger agent: pass merger=AgentSpec(...)"
        )
    if strategy != "synthesize" and merger is not None:
        raise ValueError(
            f"a merger agent is only used by strategy 'synthesize', not {strategy!r}: "
            "drop merger= or use strategy='synthesize'"
        )
    if quorum is not None and (
        isinstance(quorum, bool) or not isinstance(quorum, int) or not 1 <= quorum <= len(agents)
    ):
        raise ValueError(
            f"quorum must be a whole number from 1 to the number of workers ({len(agents)}), "
            f"got {quorum!r}"
        )
    return strategy


def build_fanout_graph(
    agents: Sequence[AgentSpec],
    *,
    merger: AgentSpec | None = None,
    strategy: MergeStrategy | None = None,
    quorum: int | None = None,
) -> StateGraph[FanoutState, Context, FanoutInput, FanoutOutput]:
    """Build the fan-out / fan-in pattern (uncompiled: the caller picks checkpointer and store).

    Args:
        agents: The workers; all answer every request, in parallel. A run may dispatch a subset
            by sending `workers: [...]` with its messages.
        merger: The agent that writes the final answer from the workers' outputs ("synthesize").
        strategy: "collect" (every output, under its worker's name), "vote" (the majority's answer:
            the `verdict` field of structured output, else the normalised text) or "synthesize"
            (the merger agent's answer). Default: "synthesize" with a merger, else "collect".
        quorum: Workers that must succeed for the merge to go ahead (k of n). Default: a majority
            of the workers dispatched.

    Raises:
        AgentConfigError: No workers, duplicate or reserved names (intake, merge), or
            "synthesize" without a merger.
        ValueError: Unknown strategy, a merger with another strategy, or a quorum outside 1..n.

    Example:
        ```python
        builder = build_fanout_graph(analysts, merger=lead, quorum=2)
        graph = builder.compile(checkpointer=InMemorySaver(), name="fanout")
        ```
    """
    strategy = _check_options(agents, merger, strategy, quorum)
    builder = StateGraph(
        FanoutState, context_schema=Context, input_schema=FanoutInput, output_schema=FanoutOutput
    )
    names = [spec.name for spec in agents]
    builder.add_node(INTAKE, Intake(workers=tuple(names), quorum=quorum))
    for spec in agents:
        builder.add_node(
            spec.name,
            make_worker_node(spec),
            retry_policy=model_retry_policy(spec.max_attempts),
            error_handler=partial(record_worker_failure, spec=spec),
        )
        builder.add_edge(spec.name, MERGE)
    builder.add_node(MERGE, Merge(strategy=strategy, quorum=quorum))
    builder.add_edge(START, INTAKE)
    builder.add_conditional_edges(INTAKE, route_to_workers, names)
    if merger is None:
        builder.add_edge(MERGE, END)
    else:
        builder.add_node(
            merger.name,
            make_merger_node(merger),
            retry_policy=model_retry_policy(merger.max_attempts),
            error_handler=partial(recover_merger, spec=merger),
        )
        builder.add_conditional_edges(MERGE, route_after_merge, {SYNTHESIZE: merger.name, END: END})
        builder.add_edge(merger.name, END)
    return builder


class Review(BaseModel):
    """One analyst's review: a verdict the vote can count, and the reasoning behind it."""

    verdict: Literal["go", "no_go", "needs_more_information"] = Field(
        description="Whether to go ahead, from this analyst's angle."
    )
    rationale: str = Field(description="Two or three sentences explaining the verdict.")
    concerns: list[str] = Field(default_factory=list, description="What would change the verdict.")


DEMO_ANALYSTS = (
    AgentSpec(
        name="product_analyst",
        description="Product: value to users, adoption and fit with the roadmap.",
        system_prompt="You are the product analyst. Review the question from the users' side: "
        "what they gain, what they lose, and whether they will adopt it.",
        output_schema=Review,
    ),
    AgentSpec(
        name="risk_analyst",
        description="Risk: security, reliability, compliance and what could go wrong.",
        system_prompt="You are the risk analyst. Review the question for security, reliability "
        "and compliance risks, and how likely and how bad each one is.",
        output_schema=Review,
    ),
    AgentSpec(
        name="cost_analyst",
        description="Cost: engineering effort, running cost and payback time.",
        system_prompt="You are the cost analyst. Review the question for engineering effort, "
        "running cost and how long it takes to pay back.",
        output_schema=Review,
    ),
)
"""Three analysts who review the same question from different angles."""

DEMO_MERGER = AgentSpec(
    name="synthesizer",
    description="Synthesis: weighs the analysts' reviews into one recommendation.",
    system_prompt="You are the lead analyst. Weigh the reviews you receive into one clear "
    "recommendation, naming where the analysts disagree and any review that is missing.",
)
"""The merger: it sees the analysts' typed reviews, never their transcripts."""

graph = build_fanout_graph(DEMO_ANALYSTS, merger=DEMO_MERGER).compile(name="fanout")
