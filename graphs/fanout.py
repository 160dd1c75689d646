"""Fan-out / fan-in: workers answer one request in parallel (`Send`), then a merge combines them.

START -> intake -> (one `Send` per worker) workers -> merge -> END, or -> merger agent -> END with
the "synthesize" strategy. Each worker sees only the request and writes only its own entry of
`results`, so the merge is the same whatever order the workers finish in. A worker that still
fails after its retries (or whose output fails its schema) goes to its error handler, which tries
its fallback models and, when none answers, records the failure; the merge goes ahead when at
least `quorum` workers succeeded, else the run ends "quorum_failed".

Wide fan-outs (more workers than `shard_size`) run in shards: START -> intake -> (one `Send` per
shard) shard -> merge. A shard runs its workers concurrently inside one node, each through the same
agent call, retries, fallbacks and failure record as a worker node, so the state a run ends with is
the same; only the graph's steps differ (one task per shard, not per worker).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import get_executor_for_config, patch_config
from langgraph.config import get_config
from langgraph.errors import GraphBubbleUp, NodeError
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import get_runtime
from langgraph.types import Command, Overwrite, RetryPolicy, Send
from pydantic import JsonValue

from switchyard.core.errors import AgentConfigError, InvalidInputError
from switchyard.core.resilience import model_retry_policy
from switchyard.graphs.pipeline import arecover, recover, validated_output
from switchyard.nodes.agent import (
    AgentReply,
    NodeRunnable,
    acall_agent,
    call_agent,
    resolve_context,
    retry_attempt,
)
from switchyard.nodes.classify import last_user_text
from switchyard.state.agents import AgentSpec, check_agents
from switchyard.state.context import Context
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

    return NodeRunnable(work, awork, name=spec.name)


def worker_failure_update(spec: AgentSpec, outcome: dict[str, Any] | str) -> dict[str, Any]:
    """A failed worker's update: its fallback's when `recover` got one, else its failure record."""
    if isinstance(outcome, dict):
        return outcome
    result = WorkerResult(
        worker=spec.name, status="failed", output=None, duration_ms=None, error=outcome
    )
    return {"results": {spec.name: result}}


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
    return Command(update=worker_failure_update(spec, outcome), goto=MERGE)


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


def should_retry(policy: RetryPolicy, error: Exception) -> bool:
    """Whether `policy.retry_on` accepts `error` (its forms as LangGraph reads them)."""
    retry_on = policy.retry_on
    if isinstance(retry_on, Sequence):
        return isinstance(error, tuple(retry_on))
    if isinstance(retry_on, type):
        return isinstance(error, retry_on)
    return bool(retry_on(error))


def retry_delay(policy: RetryPolicy, failures: int) -> float:
    """Seconds to wait after `failures` failed attempts: LangGraph's back-off and jitter."""
    interval = min(
        policy.max_interval, policy.initial_interval * policy.backoff_factor ** (failures - 1)
    )
    return interval + random.uniform(0, 1) if policy.jitter else interval


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
    shard keeps a wide fan-out to a few tasks. Each worker inside still gets what a worker node
    gets: the agent call (budget, breaker, usage ledger, timeout), its retries, its fallback
    models, and a failure record that leaves the other workers alone.

    Retries are per worker, here, rather than a `RetryPolicy` on the node: a node policy would
    run the whole shard again, repeating (and paying for) the calls of the workers that had
    succeeded. Each worker follows its own node's policy (`model_retry_policy` with the agent's
    `max_attempts`): the same attempts, back-off, jitter and `retry_on` (`is_transient`).

    Attributes:
        specs: Every worker of the graph, by name.
        policies: Each worker's retry policy, by name.
        max_concurrency: Most workers of one shard calling their models at once (None: all).
    """

    specs: Mapping[str, AgentSpec]
    policies: Mapping[str, RetryPolicy]
    max_concurrency: int | None

    def run(self, task: ShardTask) -> dict[str, Any]:
        """Run the shard's workers in a thread pool (sync graphs); one update for all of them."""
        context = resolve_context(get_runtime(Context).context)
        config = get_config()
        if self.max_concurrency is not None:
            config = patch_config(config, max_concurrency=self.max_concurrency)
        # LangChain's executor for the run's config: it copies the context (the run's config,
        # runtime and meter) into every thread, and honours the run's `max_concurrency`.
        with get_executor_for_config(config) as executor:
            work = partial(self.work, request=task["request"], context=context)
            updates = list(executor.map(work, [self.specs[name] for name in task["workers"]]))
        return combined(updates)

    async def arun(self, task: ShardTask) -> dict[str, Any]:
        """Run the shard's workers concurrently; one update for all of them."""
        context = resolve_context(get_runtime(Context).context)
        limit = asyncio.Semaphore(self.max_concurrency) if self.max_concurrency else None
        # A TaskGroup rather than `gather`: should a worker raise past its failure record (an
        # interrupt from a tool, a cancelled run), the others are cancelled, as sibling graph
        # tasks would be.
        try:
            async with asyncio.TaskGroup() as group:
                running = [
                    group.create_task(self.awork(self.specs[name], task["request"], context, limit))
                    for name in task["workers"]
                ]
        except BaseExceptionGroup as failure:
            raise failure.exceptions[0] from None
        return combined([done.result() for done in running])

    def work(self, spec: AgentSpec, *, request: str, context: Context) -> dict[str, Any]:
        """One worker, with its retries; its update (its result, or its failure record)."""
        messages = [HumanMessage(request)]
        policy = self.policies[spec.name]
        attempt = 1
        while True:
            started = time.perf_counter()
            try:
                with retry_attempt(attempt):
                    reply = call_agent(spec, messages, context)
                    return accept_worker_reply(spec, reply, started)
            except GraphBubbleUp:
                raise
            except Exception as exc:
                if attempt >= policy.max_attempts or not should_retry(policy, exc):
                    accept = partial(accept_worker_reply, spec)
                    return worker_failure_update(spec, recover(spec, messages, exc, accept))
            time.sleep(retry_delay(policy, attempt))
            attempt += 1

    async def awork(
        self,
        spec: AgentSpec,
        request: str,
        context: Context,
        limit: asyncio.Semaphore | None,
    ) -> dict[str, Any]:
        """Async form of `work`; waits for a place under `limit` first, when there is one."""
        if limit is not None:
            async with limit:
                return await self.awork(spec, request, context, None)
        messages = [HumanMessage(request)]
        policy = self.policies[spec.name]
        attempt = 1
        while True:
            started = time.perf_counter()
            try:
                with retry_attempt(attempt):
                    reply = await acall_agent(spec, messages, context)
                    return accept_worker_reply(spec, reply, started)
            except GraphBubbleUp:
                raise
            except Exception as exc:
                if attempt >= policy.max_attempts or not should_retry(policy, exc):
                    accept = partial(accept_worker_reply, spec)
                    outcome = await arecover(spec, messages, exc, accept)
                    return worker_failure_update(spec, outcome)
            await asyncio.sleep(retry_delay(policy, attempt))
            attempt += 1


def make_shard_node(
    agents: Sequence[AgentSpec], max_concurrency: int | None
) -> Runnable[Any, dict[str, Any]]:
    """The node every shard runs as (sync and async): its input is the `ShardTask` it was sent."""
    shard = Shard(
        specs={spec.name: spec for spec in agents},
        policies={spec.name: model_retry_policy(spec.max_attempts) for spec in agents},
        max_concurrency=max_concurrency,
    )
    return NodeRunnable(shard.run, shard.arun, name=SHARD)


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

    return NodeRunnable(synthesize, asynthesize, name=spec.name)


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
    agents: Sequence[AgentSpec],
    *,
    merger: AgentSpec | None = None,
    strategy: MergeStrategy | None = None,
    quorum: int | None = None,
    shard_size: int | None = DEFAULT_SHARD_SIZE,
    max_concurrency: int | None = None,
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
        shard_size: With more workers than this, the graph runs them in shards of at most this
            many (as even as can be): one graph task per shard instead of one per worker, which
            keeps wide fan-outs fast (LangGraph's cost per step grows with the square of its
            tasks). Results, usage, retries, fallbacks and failure records are the same; the
            graph's steps differ (a `shard` node, not a node per worker, in streams and
            traces), and a shard's results are checkpointed when its last worker finishes.
            None never shards.
        max_concurrency: Most workers of one shard calling their models at once (None: all of
            them). Graph tasks, and so the shards, are bounded by the run config's
            `max_concurrency`.

    Raises:
        AgentConfigError: No workers, duplicate or reserved names (intake, merge, shard), or
            "synthesize" without a merger.
        ValueError: Unknown strategy, a merger with another strategy, a quorum outside 1..n, or
            a `shard_size` or `max_concurrency` below 1.

    Example:
        ```python
        builder = build_fanout_graph(analysts, merger=lead, quorum=2)
        graph = builder.compile(checkpointer=InMemorySaver(), name="fanout")
        ```
    """
    strategy = _check_options(agents, merger, strategy, quorum, shard_size, max_concurrency)
    builder = StateGraph(
        FanoutState, context_schema=Context, input_schema=FanoutInput, output_schema=FanoutOutput
    )
    names = [spec.name for spec in agents]
    builder.add_node(INTAKE, Intake(workers=tuple(names), quorum=quorum))
    if shard_size is not None and len(agents) > shard_size:
        builder.add_node(SHARD, make_shard_node(agents, max_concurrency))
        builder.add_edge(SHARD, MERGE)
        builder.add_conditional_edges(INTAKE, RouteToShards(shard_size), [SHARD])
    else:
        for spec in agents:
            builder.add_node(
                spec.name,
                make_worker_node(spec),
                retry_policy=model_retry_policy(spec.max_attempts),
                error_handler=partial(record_worker_failure, spec=spec),
            )
            builder.add_edge(spec.name, MERGE)
        builder.add_conditional_edges(INTAKE, route_to_workers, names)
    builder.add_node(MERGE, Merge(strategy=strategy, quorum=quorum))
    builder.add_edge(START, INTAKE)
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
