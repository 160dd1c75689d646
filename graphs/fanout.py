"""Fan-out / fan-in: workers answer one request in parallel (`Send`), then a merge combines them.

START -> intake -> (one `Send` per worker) workers -> merge -> END, or -> merger agent -> END with
the "synthesize" strategy. Each worker sees only the request and writes only its own entry of
`results`, so the merge is the same whatever order the workers finish in. A worker whose call
still fails (its retries and fallback models are tried inside the call), or whose output fails its
schema, goes to its error handler, which records the failure; the merge goes ahead when at least
`quorum` workers succeeded, else the run ends "quorum_failed".

Wide fan-outs (more workers than `shard_size`) run in shards: START -> intake -> (one `Send` per
shard) shard -> merge. A shard runs its workers concurrently inside one node, each as the same
agent node (its call, retries, fallbacks) with the same failure record, so the state a run ends
with is the same; only the graph's steps differ (one task per shard, not per worker).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables.config import get_executor_for_config, patch_config
from langgraph.config import get_config
from langgraph.errors import GraphBubbleUp, NodeError
from langgraph.graph import END, START
from langgraph.types import Command, Overwrite, Send
from pydantic import JsonValue

from switchyard.core.errors import AgentConfigError, InvalidInputError, describe_error
from switchyard.graphs.guarded import PatternGraph
from switchyard.graphs.pipeline import validated_output
from switchyard.guardrails.tripwires import masked_user_message
from switchyard.nodes.agent import NodeRunnable
from switchyard.nodes.classify import last_user_text
from switchyard.nodes.fallback import (
    FallbackAgent,
    answer_text,
    ask_person,
    can_fall_back,
    escalating,
    make_chain_node,
    resolve_fallback_agent,
    standing_in,
    stop_command,
)
from switchyard.nodes.record import AgentReply, partial_usage
from switchyard.state.agents import Agent, AgentSpec, as_agent, as_agents, check_agents
from switchyard.state.context import Context, current_context
from switchyard.state.fanout import (
    MERGE_STRATEGIES,
    FanoutInput,
    FanoutOutput,
    FanoutState,
    MergeRequest,
    MergeStrategy,
    ShardTask,
    Vote,
    WorkerOutput,
    WorkerResult,
    WorkerTask,
)
from switchyard.state.outcomes import EndReason, guardrail_stop
from switchyard.state.reducers import merge_usage
from switchyard.state.usage import UsageLedger

INTAKE: Final = "intake"
MERGE: Final = "merge"
SHARD: Final = "shard"
SYNTHESIZE: Final = "synthesize"
QUORUM_FAILED: Final = "quorum_failed"
NO_MAJORITY: Final = "no_majority"

DEFAULT_SHARD_SIZE: Final = 64
"""Workers per shard by default: fan-outs up to this wide run one graph task per worker."""


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


def task_view(task: WorkerTask, context: Context) -> list[BaseMessage]:
    """What a worker sees: the request alone."""
    return [HumanMessage(task["request"])]


def accept_worker_reply(spec: AgentSpec, task: WorkerTask, reply: AgentReply) -> dict[str, Any]:
    """A worker's update for a reply: its own entry of `results`, and its usage.

    Raises:
        OutputValidationError: The reply is empty text.
    """
    result = WorkerResult(
        worker=spec.name,
        status="ok",
        output=validated_output(spec.name, reply.output),
        duration_ms=reply.duration_ms,
        error=None,
    )
    return {"results": {spec.name: result}, "usage": reply.usage}


def worker_failure(worker: str, error: BaseException) -> dict[str, Any]:
    """A failed worker's update: its failure record, and what its calls spent."""
    result = WorkerResult(
        worker=worker, status="failed", output=None, duration_ms=None, error=describe_error(error)
    )
    stopped_by = guardrail_stop(error)
    if stopped_by is not None:
        result["stopped_by"] = stopped_by
    return {"results": {worker: result}, "usage": partial_usage(error)}


def record_worker_failure(
    task: WorkerTask, error: NodeError, *, worker: str
) -> Command[Literal["merge"]]:
    """Error handler of every worker: record the failure; the merge goes ahead.

    LangGraph calls it once the worker's call failed (its retries and fallback models were tried
    inside it). The other workers are not affected.
    """
    return Command(update=worker_failure(worker, error.error), goto=MERGE)


def worker_node(
    spec: AgentSpec,
    middleware: Sequence[AgentMiddleware[Any, Any, Any]],
    fallback_agent: AgentSpec | None = None,
) -> NodeRunnable:
    """The agent node of one worker (its input is the `WorkerTask` it was sent).

    `fallback_agent` does the worker's task when the worker's call fails.
    """
    return make_chain_node(
        spec,
        fallback_agent=standing_in(fallback_agent, spec.output_schema),
        view=task_view,
        accept=partial(accept_worker_reply, spec),
        middleware=middleware,
    )


def shards_of(workers: Sequence[str], shard_size: int) -> list[list[str]]:
    """`workers`, in order, cut into the fewest shards of at most `shard_size`, evenly."""
    count = -(-len(workers) // shard_size)
    size, larger = divmod(len(workers), count)
    shards: list[list[str]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < larger else 0)
        shards.append(list(workers[start:end]))
        start = end
    return shards


@dataclass(frozen=True)
class RouteToShards:
    """One `Send` per shard of the dispatched workers, each carrying the workers and the request.

    Attributes:
        shard_size: Most workers in one shard.
    """

    shard_size: int

    def __call__(self, state: FanoutState) -> list[Send]:
        """The `Send`s of this run's shards."""
        request = last_user_text(state["messages"])
        return [
            Send(SHARD, ShardTask(workers=shard, request=request))
            for shard in shards_of(state["dispatched"], self.shard_size)
        ]


def combined(updates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One update holding every worker's `results` entry and their usage, summed."""
    results: dict[str, WorkerResult] = {}
    usage: UsageLedger = {}
    for update in updates:
        results.update(update["results"])
        if "usage" in update:
            usage = merge_usage(usage, update["usage"])
    return {"results": results, "usage": usage}


@dataclass(frozen=True)
class Shard:
    """The node a shard of a wide fan-out runs as: its workers, concurrently, in one graph task.

    LangGraph gives every `Send` its own task and, each time a task finishes, rebuilds the
    step's list of pending writes (`put_writes`), so one step of n `Send`s costs O(n^2); a
    shard keeps a wide fan-out to a few tasks. Each worker inside runs as its own worker node
    would (the same node: its agent call, with its retries, fallback models, budget, breaker
    and timeout), and a worker that fails gets the same failure record, leaving the others
    alone. Retries are inside each worker's call, so a worker that fails does not make the shard
    run its successful workers again.

    Attributes:
        workers: Every worker's node, by name.
        max_concurrency: Most workers of one shard calling their models at once (None: all).
    """

    workers: Mapping[str, NodeRunnable]
    max_concurrency: int | None

    def run(self, task: ShardTask) -> dict[str, Any]:
        """Run the shard's workers in a thread pool (sync graphs); one update for all of them."""
        config = get_config()
        if self.max_concurrency is not None:
            config = patch_config(config, max_concurrency=self.max_concurrency)
        # LangChain's executor for the run's config: it copies the context (the run's config,
        # runtime and scope) into every thread, and honours the run's `max_concurrency`.
        with get_executor_for_config(config) as executor:
            work = partial(self.work, request=task["request"])
            return combined(list(executor.map(work, task["workers"])))

    async def arun(self, task: ShardTask) -> dict[str, Any]:
        """Run the shard's workers concurrently; one update for all of them."""
        limit = asyncio.Semaphore(self.max_concurrency) if self.max_concurrency else None
        # A TaskGroup rather than `gather`: should a worker raise past its failure record (an
        # interrupt from a tool, a cancelled run), the others are cancelled, as sibling graph
        # tasks would be.
        try:
            async with asyncio.TaskGroup() as group:
                running = [
                    group.create_task(self.awork(name, task["request"], limit))
                    for name in task["workers"]
                ]
        except BaseExceptionGroup as failure:
            raise failure.exceptions[0] from None
        return combined([done.result() for done in running])

    # `work` and `awork` call the worker node's sync or async function; the rest is the node's.

    def work(self, worker: str, *, request: str) -> dict[str, Any]:
        """One worker: its node's update, or its failure record."""
        try:
            update: dict[str, Any] = self.workers[worker].func(
                WorkerTask(worker=worker, request=request)
            )
        except GraphBubbleUp:
            raise
        except Exception as exc:
            return worker_failure(worker, exc)
        return update

    async def awork(
        self, worker: str, request: str, limit: asyncio.Semaphore | None
    ) -> dict[str, Any]:
        """Async form of `work`; waits for a place under `limit` first, when there is one."""
        if limit is not None:
            async with limit:
                return await self.awork(worker, request, None)
        try:
            update: dict[str, Any] = await self.workers[worker].afunc(
                WorkerTask(worker=worker, request=request)
            )
        except GraphBubbleUp:
            raise
        except Exception as exc:
            return worker_failure(worker, exc)
        return update


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
    def stop(reason: EndReason, detail: str) -> dict[str, Any]:
        """The update that ends a run without an answer: the reason, and a message saying why."""
        return {
            "end_reason": reason,
            "end_detail": detail,
            "messages": [AIMessage(f"No answer: {detail}", name=MERGE)],
        }

    def __call__(self, state: FanoutState) -> dict[str, Any]:
        """Write `vote`, `end_reason`, `end_detail`, and the answer (collect, vote) or why none.

        With "synthesize" and the quorum met it writes no message: the merger agent answers.
        When `Context.escalate_to_human` is on, a person is first asked about each worker whose
        chain is exhausted (not one a budget or the deadline stopped); their answers are those
        workers' results.
        """
        dispatched = state["dispatched"]
        answered = ask_about_failures(state)
        merged = {**state["results"], **answered}
        outcome = self.merge([merged[name] for name in dispatched if name in merged], dispatched)
        masked = masked_user_message(state)  # after an input tripwire, the thread keeps it masked
        if masked:
            outcome["messages"] = [*masked, *outcome.get("messages", [])]
        return {**outcome, "results": answered} if answered else outcome

    def merge(self, results: Sequence[WorkerResult], dispatched: Sequence[str]) -> dict[str, Any]:
        """The merge of `results` (see `__call__`)."""
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
            # A budget or the deadline that stopped a worker ends the run with its own reason.
            stops = [r["stopped_by"] for r in failed if "stopped_by" in r]
            return {**outcome, **self.stop(stops[0] if stops else QUORUM_FAILED, detail)}
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


def ask_about_failures(state: FanoutState) -> dict[str, WorkerResult]:
    """A person's answer for each failed worker, as its result, when escalation is on.

    One question at a time, in the workers' order: a resume answers the next one. Workers a
    budget or the deadline stopped are not asked about: no answer gets round those.
    """
    if not current_context().escalate_to_human:
        return {}
    request = last_user_text(state["messages"])
    answered: dict[str, WorkerResult] = {}
    for name in state["dispatched"]:
        result = state["results"].get(name)
        if result is None or result["status"] != "failed" or "stopped_by" in result:
            continue
        answer = ask_person(
            agent=name, failures=[f"{name}: {result['error']}"], request=request, task=request
        )
        answered[name] = WorkerResult(
            worker=name, status="ok", output=answer_text(answer), duration_ms=None, error=None
        )
    return answered


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


def merger_view(state: FanoutState, context: Context) -> list[BaseMessage]:
    """The merger's view (`merge_input`)."""
    return merge_input(state)


def accept_merger_reply(spec: AgentSpec, state: FanoutState, reply: AgentReply) -> dict[str, Any]:
    """The merger's update for a reply: its answer and its usage.

    Raises:
        OutputValidationError: The reply is empty text.
    """
    validated_output(spec.name, reply.output)
    return {"messages": [reply.messages[-1]], "usage": reply.usage}


def merger_failed(state: FanoutState, error: NodeError, *, merger: str) -> Command[Any]:
    """The merger's chain is exhausted: a budget or the deadline end the run cleanly.

    Any other failure fails the run (re-raised): without the merger there is no answer to give;
    the workers' results stay checkpointed, and the run facade dead-letters the run.

    Raises:
        Exception: The merger's error, when it was not a budget or the deadline.
    """
    if can_fall_back(error.error):
        raise error.error
    return stop_command(merger, error.error, end_detail=describe_error(error.error))


def _check_options(
    agents: Sequence[AgentSpec],
    merger: AgentSpec | None,
    strategy: MergeStrategy | None,
    quorum: int | None,
    shard_size: int | None,
    max_concurrency: int | None,
) -> MergeStrategy:
    """Validate the build options; returns the strategy to use."""
    check_agents(
        [*agents, *([merger] if merger is not None else [])], reserved=(INTAKE, MERGE, SHARD)
    )
    for option, value in (("shard_size", shard_size), ("max_concurrency", max_concurrency)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(
                f"{option} must be a whole number of at least 1, or None; got {value!r}"
            )
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
    agents: Sequence[Agent],
    *,
    merger: Agent | None = None,
    strategy: MergeStrategy | None = None,
    quorum: int | None = None,
    shard_size: int | None = DEFAULT_SHARD_SIZE,
    max_concurrency: int | None = None,
    middleware: Sequence[AgentMiddleware[Any, Any, Any]] = (),
    fallback_agent: FallbackAgent = None,
) -> PatternGraph:
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
        shard_size: With more workers than this, they run in shards of at most this many: one
            graph task per shard instead of one per worker, which keeps wide fan-outs fast
            (LangGraph's cost per step grows with the square of its tasks). Results, usage,
            retries and failures are the same; streams show a `shard` node, and a shard's
            results are checkpointed when its last worker finishes. None never shards.
        max_concurrency: Most workers of one shard calling their models at once (None: all of
            them). Graph tasks, and so the shards, are bounded by the run config's
            `max_concurrency`.
        middleware: LangChain `AgentMiddleware` for every worker and the merger, outside each
            agent's own.
        fallback_agent: The agent that does a failed worker's task, or the merger's job, once
            its model and fallback models failed: the name of one of the agents, or an agent of
            its own. None: none. Then a person, when `Context.escalate_to_human` is on (see
            `switchyard.nodes.fallback`).

    Raises:
        AgentConfigError: No workers, duplicate or reserved names (intake, merge, shard),
            "synthesize" without a merger, or an unknown fallback agent.
        ValueError: Unknown strategy, a merger with another strategy, a quorum outside 1..n, or
            a `shard_size` or `max_concurrency` below 1.

    Example:
        ```python
        builder = build_fanout_graph(analysts, merger=lead, quorum=2)
        graph = builder.compile(checkpointer=InMemorySaver(), name="fanout")
        ```
    """
    agents = as_agents(agents)
    merger = as_agent(merger) if merger is not None else None
    strategy = _check_options(agents, merger, strategy, quorum, shard_size, max_concurrency)
    members = {spec.name: spec for spec in (*agents, *([merger] if merger else []))}
    standby = resolve_fallback_agent(fallback_agent, members)
    builder = PatternGraph(
        FanoutState, context_schema=Context, input_schema=FanoutInput, output_schema=FanoutOutput
    )
    builder.add_node(INTAKE, Intake(workers=tuple(spec.name for spec in agents), quorum=quorum))
    builder.add_edge(START, INTAKE)
    workers = {spec.name: worker_node(spec, middleware, standby) for spec in agents}
    if shard_size is not None and len(agents) > shard_size:
        _add_shards(builder, workers, shard_size, max_concurrency)
    else:
        _add_workers(builder, workers)
    builder.add_node(MERGE, Merge(strategy=strategy, quorum=quorum))
    _add_merger(builder, merger, middleware, standby)
    return builder


def _add_workers(builder: PatternGraph, workers: Mapping[str, NodeRunnable]) -> None:
    """One node per worker, each sent its `WorkerTask`, each recording its own failure."""
    for name, node in workers.items():
        builder.add_node(name, node, error_handler=partial(record_worker_failure, worker=name))
        builder.add_edge(name, MERGE)
    builder.add_conditional_edges(INTAKE, route_to_workers, list(workers))


def _add_shards(
    builder: PatternGraph,
    workers: Mapping[str, NodeRunnable],
    shard_size: int,
    max_concurrency: int | None,
) -> None:
    """One `shard` node, sent one `ShardTask` per shard, running the same worker nodes."""
    shard = Shard(workers=workers, max_concurrency=max_concurrency)
    builder.add_node(SHARD, NodeRunnable(shard.run, shard.arun, name=SHARD))
    builder.add_edge(SHARD, MERGE)
    builder.add_conditional_edges(INTAKE, RouteToShards(shard_size), [SHARD])


def _add_merger(
    builder: PatternGraph,
    merger: AgentSpec | None,
    middleware: Sequence[AgentMiddleware[Any, Any, Any]],
    standby: AgentSpec | None,
) -> None:
    """The end of the graph: after the merge, or after the merger agent ("synthesize")."""
    if merger is None:
        builder.add_edge(MERGE, END)
        return
    accept = partial(accept_merger_reply, merger)
    node = make_chain_node(
        merger,
        fallback_agent=standing_in(standby, merger.output_schema),
        view=merger_view,
        accept=accept,
        middleware=middleware,
    )
    # A person's answer is the merger's: the run's answer.
    handler = escalating(partial(merger_failed, merger=merger.name), agent=merger, view=merger_view)
    builder.add_node(merger.name, node, error_handler=handler)
    builder.add_conditional_edges(MERGE, route_after_merge, {SYNTHESIZE: merger.name, END: END})
    builder.add_edge(merger.name, END)
