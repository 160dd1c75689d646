"""The run facade: one call from a user message to a `RunResult`, with sessions kept per user.

`run` / `arun` validate the message, derive the thread from (user, session) so one user can never
read or continue another's session, always pass an explicit recursion limit, and report which agent
answered, how sure the router was, how long it took, the tokens and the cost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.pregel import Pregel
from langgraph.types import Command, Durability, StateSnapshot
from pydantic import BaseModel, ConfigDict, Field

from switchyard.core.errors import (
    ConfigError,
    InvalidInputError,
    SessionAccessError,
    describe_error,
)
from switchyard.core.models import default_max_tokens, default_model, load_chat_model
from switchyard.graphs.guarded import open_scope, usage_in
from switchyard.guardrails.breaker import check_breaker_store
from switchyard.guardrails.ratelimit import process_rate_limits
from switchyard.guardrails.scope import with_scope
from switchyard.guardrails.tripwires import stored_input
from switchyard.observability import telemetry
from switchyard.observability.logs import correlation_scope
from switchyard.runtime.effects import (
    Failed,
    Head,
    History,
    Invoke,
    State,
    Steps,
)
from switchyard.runtime.engine import Engine
from switchyard.runtime.letters import check_letter, check_pending
from switchyard.runtime.registry import graph_reference
from switchyard.runtime.sessions import MultitaskStrategy, adrive_turn, drive_turn
from switchyard.runtime.settings import SETTINGS_KEY, restored_context, run_settings, settings_text
from switchyard.runtime.stream import Progress
from switchyard.state.context import Context
from switchyard.state.outcomes import SUCCESSFUL, EndReason, end_reason_for
from switchyard.state.usage import UsageLedger, ledger_delta, total_cost
from switchyard.storage.dlq import DeadLetter, DeadLetterQueue
from switchyard.storage.secret import installation_secret

if TYPE_CHECKING:
    from switchyard.runtime.temporal.client import TemporalInvoker


class RunResult(BaseModel):
    """The outcome of one run.

    Attributes:
        ok: Whether the run completed; when False, `error` and `end_reason` say why.
        output: The final answer (empty when the run failed before answering).
        agent_name: The agent that produced the answer.
        confidence: The router's confidence, for patterns that route (else None).
        route_reason: Why the router chose the agent, for patterns that route.
        latency_ms: Wall time of the run.
        input_tokens: Tokens sent to models during this run, all agents together.
        output_tokens: Tokens received from models during this run.
        total_tokens: Sum of the two.
        cost_usd: US dollars this run cost (0 for the offline model); None (JSON `null`) when
            any of its model calls has no known price: unknown, never shown as 0.
        known_cost_usd: Dollars of the calls with a known price (all of `cost_usd` when that is
            known; a lower bound when it is not).
        unpriced_calls: Model calls whose price is unknown (see `switchyard.core.pricing`).
        usage: Per agent and model usage of this run.
        end_reason: "completed", "error", "recursion_limit", or a pattern's own reason.
        error: One line describing the failure, when `ok` is False.
        interrupt: What a paused run asks a person (`end_reason="escalated"`).
        dead_letter_id: Id of the dead-letter record of a failed run.
        correlation_id: Id shared by every trace, log line and record of this run.
        thread_id: The checkpointer thread holding the session.
        user_id: The user the session belongs to.
        session_id: The session within the user's sessions.
    """

    model_config = ConfigDict(frozen=True)

    ok: bool
    output: str
    agent_name: str | None
    confidence: float | None
    route_reason: str | None = None
    latency_ms: float
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float | None
    known_cost_usd: float = 0.0
    unpriced_calls: int = 0
    usage: UsageLedger = Field(default_factory=dict)
    end_reason: EndReason
    error: str | None = None
    interrupt: Any = None
    dead_letter_id: str | None = None
    correlation_id: str
    thread_id: str
    user_id: str
    session_id: str


def thread_id_for(user_id: str, session_id: str) -> str:
    """The thread of a user's session: an HMAC of (user, session) under the installation secret.

    Stable for one installation (`SWITCHYARD_SECRET`, else `.switchyard/secret`), so a session
    continues across processes; without the secret nobody can derive or guess another user's
    thread id. Shaped as a UUID (version 8, "custom"), as checkpointers and the Agent Server expect.

    Raises:
        InvalidInputError: The user or session id is empty.
        PersistenceConfigError: The installation secret cannot be read or created.
    """
    for label, value in (("user_id", user_id), ("session_id", session_id)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(f"{label} must be a non-empty string, got {value!r}")
    # Length-prefixing keeps ("a:b", "c") and ("a", "b:c") apart.
    name = f"{len(user_id)}:{user_id}|{session_id}".encode()
    digest = bytearray(hmac.new(installation_secret(), name, hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8 (RFC 9562)
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(digest)))


def check_text(text: Any, max_chars: int) -> str:
    """Validate a user message: a non-empty string of valid Unicode within the size limit.

    Raises:
        InvalidInputError: Says what is wrong and how to fix it.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"message must be text (str), got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError("message is empty: send some text")
    if len(text) > max_chars:
        raise InvalidInputError(
            f"message is {len(text):,} characters; the limit is {max_chars:,} "
            "(raise Context.max_input_chars to accept longer messages)"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"message is not valid UTF-8 text (undecodable byte at position {exc.start}); "
            "send UTF-8 encoded text"
        ) from None
    return text


@dataclass(frozen=True)
class Prepared:
    """A run ready to go: its context, config, owner, session and message.

    `started` (`time.monotonic()` when it was prepared) is where the run's deadline counts from,
    so time spent waiting for the session (`multitask_strategy="enqueue"`) is part of it.
    """

    context: Context
    config: RunnableConfig
    user_id: str
    session_id: str
    text: str
    started: float = field(default_factory=time.monotonic)


def prepare(
    graph: Pregel[Any, Any, Any, Any],
    text: Any,
    user_id: str,
    session_id: str | None,
    context: Context | None,
    correlation_id: str | None,
    *,
    check_input: bool = True,
) -> Prepared:
    """Check the message and the model, and derive the run's thread and config.

    Raises:
        InvalidInputError: The message or ids are invalid.
        ModelConfigError: The model cannot be loaded.
    """
    context = context or Context()
    if check_input:
        text = check_text(text, context.max_input_chars)
    # Fail before touching the thread when the model cannot be loaded (unknown provider,
    # missing key), the breakers' Redis does not answer or SWITCHYARD_RATE_LIMITS does not parse:
    # the error names what to fix. So does a SWITCHYARD_MAX_TOKENS that is not a number.
    load_chat_model(context.model or default_model())
    default_max_tokens()
    check_breaker_store()
    process_rate_limits()
    session = uuid.uuid4().hex if session_id is None else session_id  # thread_id_for refuses ""
    config = run_config(
        graph,
        context,
        thread_id=thread_id_for(user_id, session),
        user_id=user_id,
        session_id=session,
        correlation_id=correlation_id or uuid.uuid4().hex,
    )
    return Prepared(context, config, user_id, session, text if isinstance(text, str) else "")


def run_config(
    graph: Pregel[Any, Any, Any, Any],
    context: Context,
    *,
    thread_id: str,
    user_id: str,
    session_id: str,
    correlation_id: str,
    resumed: bool = False,
) -> RunnableConfig:
    """The config of one run: thread, explicit recursion limit, telemetry, metadata and tags.

    The metadata and tags (user, session, correlation id, pattern) are what checkpoints, traces and
    LangSmith carry; a resumed run is marked as such.
    """
    metadata: dict[str, Any] = {
        "user_id": user_id,
        "session_id": session_id,
        "correlation_id": correlation_id,
        "pattern": graph.name,
    }
    # What resume and replay restore (the run's context and default model), in every checkpoint.
    metadata[SETTINGS_KEY] = settings_text(context)
    tags = [f"pattern:{graph.name}", f"correlation:{correlation_id}"]
    if resumed:
        metadata["resumed"] = True
        tags.append("resumed")
    return {
        "configurable": {"thread_id": thread_id},
        "recursion_limit": context.recursion_limit,
        "metadata": metadata,
        "tags": tags,
        "run_name": f"switchyard.{graph.name}{'.resume' if resumed else ''}",
        "callbacks": telemetry.run_callbacks(),  # spans and log lines per agent and model call
    }


def check_owner(
    snapshot: StateSnapshot | CheckpointTuple | None, user_id: str, *, required: bool = False
) -> None:
    """Refuse a thread recorded as another user's (and, when `required`, one with no owner).

    A new session has no checkpoint and no owner yet, so `run` passes `required=False`; commands
    that act on an existing thread (resume, report, prune) require its owner to be the caller.

    Raises:
        SessionAccessError: The thread belongs to another user, or has no owner and one is
            required. The message names neither the owner nor whether the thread exists.
    """
    owner = (snapshot.metadata or {}).get("user_id") if snapshot is not None else None
    if (owner is None and required) or (owner is not None and owner != user_id):
        raise SessionAccessError("this session belongs to another user; start a new session")


def session_usage(head: CheckpointTuple | StateSnapshot | None) -> UsageLedger:
    """The usage ledger of a thread's newest checkpoint (a tuple or a snapshot)."""
    if isinstance(head, CheckpointTuple):
        return usage_in(head)
    return usage_of(head)


def usage_of(snapshot: StateSnapshot | None) -> UsageLedger:
    """The usage ledger a state snapshot holds (empty for none)."""
    if snapshot is None:
        return {}
    usage: UsageLedger = snapshot.values.get("usage") or {}
    return usage


_RESULT_CHANNELS = frozenset({"messages", "usage", "route", "end_reason", "end_detail"})
"""State keys `_result` reads."""


def _output_suffices(
    graph: Pregel[Any, Any, Any, Any], output: Any, error: BaseException | None
) -> bool:
    """Whether a finished run's output already holds every state key the result reads.

    Reading the checkpointed state again deserialises the whole thread (every message of the
    session), the run's largest cost in a long session. The output holds the same channels' final
    values whenever the graph's output schema includes them, as every pattern's does; a run that
    failed, paused for a person or ended early still reads the checkpointed state.
    """
    if error is not None or not isinstance(output, dict) or "__interrupt__" in output:
        return False
    if output.get("end_reason") not in SUCCESSFUL:
        return False
    return (_RESULT_CHANNELS & graph.channels.keys()) <= output.keys()


def _with_checkpoint(config: RunnableConfig, checkpoint_id: str | None) -> RunnableConfig:
    if checkpoint_id is None:
        return config
    configurable = {**config["configurable"], "checkpoint_id": checkpoint_id}
    return {**config, "configurable": configurable}


def pending_interrupt(snapshot: StateSnapshot | None, output: Any = None) -> Any:
    """What the run waits for a person to answer, if it paused.

    The invoke output is read too: an `interrupt()` raised inside a node's error handler (the
    fallback chain escalating) is returned there but not listed in the snapshot's tasks.
    """
    if snapshot is not None:
        for task in snapshot.tasks:
            for pending in task.interrupts:
                return pending.value
    if isinstance(output, dict):
        for pending in output.get("__interrupt__") or ():
            return getattr(pending, "value", pending)
    return None


def _escalated_by_error_handler(snapshot: StateSnapshot | None) -> bool:
    """Whether the thread waits on an `interrupt()` raised inside a node's error handler.

    LangGraph 1.2 does not list such an interrupt in the snapshot: what shows is the failed task
    still pending. Every Switchyard pattern guards its model-calling nodes with an error handler, so
    a failed pending task is a run paused by its fallback chain (`Context.escalate_to_human`).
    """
    if snapshot is None or not snapshot.next:
        return False
    return any(task.error is not None for task in snapshot.tasks)


def _resume_point(history: Iterable[StateSnapshot], correlation_id: str) -> str | None:
    """Where a replay resumes: this run's newest failed step, else its newest unfinished one.

    The failed step comes first because a pattern's error handler may carry on past the failure
    (to a node that reports it, say): resuming after it would only report the failure again.
    """
    pending: str | None = None
    for snapshot in history:
        if (snapshot.metadata or {}).get("correlation_id") != correlation_id:
            continue
        checkpoint_id: str | None = snapshot.config["configurable"].get("checkpoint_id")
        if any(task.error is not None for task in snapshot.tasks):
            return checkpoint_id
        if pending is None and snapshot.next:
            pending = checkpoint_id
    return pending


def run_result(
    values: dict[str, Any] | None,
    before: UsageLedger,
    *,
    started: float,
    prepared: Prepared,
    error: BaseException | None = None,
    interrupt: Any = None,
) -> RunResult:
    """The `RunResult` of a run that ended with `values` (its state), or failed with `error`.

    `before` is the session's usage when the run started: the result reports this run's own.
    """
    values = values or {}
    usage = ledger_delta(values.get("usage") or {}, before)
    messages: list[AnyMessage] = values.get("messages") or []
    answer = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    answered_this_run = bool(messages) and not isinstance(messages[-1], HumanMessage)
    route = values.get("route") or {}
    end_reason: EndReason
    if interrupt is not None:
        end_reason = "escalated"
    elif error is None:
        end_reason = values.get("end_reason") or "completed"
    else:
        end_reason = end_reason_for(error, default="error")
    answered_by = answer.name if answer is not None and answered_this_run else None
    metadata = prepared.config.get("metadata", {})
    cost = total_cost(usage.values())
    return RunResult(
        ok=error is None and interrupt is None and end_reason in SUCCESSFUL,
        output=answer.text if answer is not None and answered_this_run else "",
        agent_name=answered_by or route.get("agent"),
        confidence=route.get("confidence"),
        route_reason=route.get("reason"),
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        input_tokens=sum(e["input_tokens"] for e in usage.values()),
        output_tokens=sum(e["output_tokens"] for e in usage.values()),
        total_tokens=sum(e["total_tokens"] for e in usage.values()),
        cost_usd=cost.cost_usd,
        known_cost_usd=cost.known_cost_usd,
        unpriced_calls=cost.unpriced_calls,
        usage=usage,
        end_reason=end_reason,
        error=(
            describe_error(error)
            if error is not None
            else values.get("end_detail") or _early_end(end_reason, answer)
        ),
        interrupt=interrupt,
        correlation_id=metadata["correlation_id"],
        thread_id=prepared.config["configurable"]["thread_id"],
        user_id=prepared.user_id,
        session_id=prepared.session_id,
    )


def _early_end(end_reason: EndReason, answer: AIMessage | None) -> str | None:
    """For a run a pattern ended early, the explanation it left as the last message."""
    if end_reason in SUCCESSFUL or end_reason == "escalated":
        return None
    return answer.text if answer is not None else end_reason


class _Default:
    """Marker: use the dead-letter queue configured by the environment."""


DEFAULT_DLQ = _Default()
DLQArg = DeadLetterQueue | None | _Default


def _dead_letter(
    dlq: DLQArg,
    graph: Pregel[Any, Any, Any, Any],
    result: RunResult,
    prepared: Prepared,
    resume_from: str | None,
) -> RunResult:
    """Record a failed run in the dead-letter queue (not escalations: they wait for a person).

    The record keeps its owner, the import path that rebuilds the graph (when it was loaded by
    one) and the run's settings, so a replay runs the same graph with the same models.
    """
    if result.ok or result.end_reason == "escalated" or dlq is None:
        return result
    queue = DeadLetterQueue() if isinstance(dlq, _Default) else dlq
    letter = queue.record(
        pattern=graph.name,
        thread_id=result.thread_id,
        checkpoint_id=resume_from,
        correlation_id=result.correlation_id,
        user_id=result.user_id,
        session_id=result.session_id,
        input=prepared.text,
        error=result.error,
        end_reason=result.end_reason,
        detail={"usage": result.usage},
        graph=graph_reference(graph),
        settings=run_settings(prepared.context),
    )
    return result.model_copy(update={"dead_letter_id": letter.id})


def execution(
    graph: Pregel[Any, Any, Any, Any],
    payload: Any,
    prepared: Prepared,
    dlq: DLQArg,
    checkpoint_id: str | None = None,
    progress: Progress | None = None,
) -> Steps:
    """One run of `graph`, as the steps a driver carries out (`drive`, `adrive`); its `RunResult`.

    The session's owner is checked and its spend read before anything runs; the run gets its
    scope (budgets primed with that spend) and durable checkpoints; a failed run is recorded in
    the dead-letter queue with the step a replay starts from.
    """
    persistent = graph.checkpointer is not None
    config = prepared.config
    head = yield Head(config)
    check_owner(head, prepared.user_id)
    before = session_usage(head)
    started = time.perf_counter()
    run_config = with_scope(
        _with_checkpoint(config, checkpoint_id),
        open_scope(prepared.context, before, started=prepared.started),
    )
    # A step's checkpoint is written before the next step starts, so a crash never loses the
    # checkpoint a resumed step's idempotency keys come from (LangGraph's default is "async").
    durability: Durability | None = prepared.context.durability if persistent else None
    with correlation_scope(config["metadata"]["correlation_id"]):
        output = yield Invoke(payload, run_config, prepared.context, durability, progress)
    error = output.error if isinstance(output, Failed) else None
    values = None if error is not None else output
    final = None
    if persistent and not _output_suffices(graph, output, error):
        final = yield State(config)
        values = final.values  # the full state, not just the output schema's keys
    result = run_result(
        values,
        before,
        started=started,
        prepared=prepared,
        error=error,
        interrupt=pending_interrupt(final, output),
    )
    resume_from = None
    if not result.ok and persistent:
        resume_from = _resume_point((yield History(config)), result.correlation_id)
    if result.end_reason == "guardrail_tripped":  # the letter keeps the input as masked in state
        prepared = dataclasses.replace(prepared, text=stored_input(values, prepared.text))
    return _dead_letter(dlq, graph, result, prepared, resume_from)


def run(
    graph: Pregel[Any, Any, Any, Any],
    text: str,
    *,
    user_id: str = "local",
    session_id: str | None = None,
    context: Context | None = None,
    correlation_id: str | None = None,
    dlq: DLQArg = DEFAULT_DLQ,
    progress: Progress | None = None,
    multitask_strategy: MultitaskStrategy = "enqueue",
    engine: Engine = None,
) -> RunResult:
    """Send one user message through a compiled pattern graph.

    Args:
        graph: A compiled graph; compile it with a checkpointer for sessions that continue.
        text: The user's message.
        user_id: Owner of the session; sessions of different users never mix.
        session_id: Continue this session; None starts a new one (its id is in the result).
        context: Run settings (model, thresholds, limits, budgets); defaults when None.
        correlation_id: Reuse the caller's id; a new one is made when None.
        dlq: Where failed runs are recorded: the environment's queue by default
            (`SWITCHYARD_DLQ`), a `DeadLetterQueue`, or None for nowhere.
        progress: Stream the run, showing each step as it happens (any `Progress`, such as
            the CLI's `StreamProgress`); the result is the same as without it.
        multitask_strategy: When another turn of the session is running (another thread,
            process or host): "enqueue" waits for it (at most the run's deadline), "reject"
            raises `SessionBusyError`. One session runs one turn at a time either way.
        engine: Where the graph runs: None in this process, a `TemporalEngine` as a Temporal
            Workflow on its workers (`switchyard worker --engine temporal`; the `temporal`
            extra). The result and the session (step by step) are the same either way; a
            failed turn's dead letter replays in this process.

    Returns:
        The run's result. A failure inside the graph (a provider error, a budget, the deadline)
        is reported in the result (`ok=False`, `end_reason`, `error`, `dead_letter_id`), and the
        thread keeps its checkpoints so the run can be replayed. A run paused for a person has
        `end_reason="escalated"` and the question in `interrupt`; continue it with `resume`.

    Raises:
        InvalidInputError: The message or ids are invalid (nothing is written).
        ModelConfigError: The model cannot be loaded (nothing is written).
        SessionAccessError: The session belongs to another user (nothing is read or written).
        SessionBusyError: The session is busy ("reject"), or stayed busy past the deadline.

    Example:
        ```python
        result = run(graph, "I need a refund", user_id="ada", session_id="s1")
        print(result.agent_name, result.confidence, result.output)
        ```
    """
    prepared = prepare(graph, text, user_id, session_id, context, correlation_id)
    payload = {"messages": [HumanMessage(prepared.text)]}
    invoker = _invoker(engine)
    if invoker is not None:  # an unreachable server is a setting to fix, not a failed run
        invoker.check()
    steps = execution(graph, payload, prepared, dlq, progress=progress)
    result: RunResult = drive_turn(
        graph, steps, *_turn(prepared, multitask_strategy), invoker=invoker
    )
    return result


def _invoker(engine: Engine) -> TemporalInvoker | None:
    """What carries out the graph's run for `engine` (None: this process)."""
    if engine is None:
        return None
    try:
        from switchyard.runtime.temporal.client import TemporalInvoker
    except ImportError as exc:
        raise ConfigError(
            f"the Temporal engine needs the temporal extra ({exc.name} is missing): "
            "pip install 'switchyard-agents[temporal]'"
        ) from None
    return TemporalInvoker(engine)


def _turn(prepared: Prepared, strategy: MultitaskStrategy) -> tuple[str, MultitaskStrategy, Any]:
    """`drive_turn`'s last arguments for a prepared run: its thread, strategy and deadline."""
    return prepared.config["configurable"]["thread_id"], strategy, prepared.context.deadline_s


async def arun(
    graph: Pregel[Any, Any, Any, Any],
    text: str,
    *,
    user_id: str = "local",
    session_id: str | None = None,
    context: Context | None = None,
    correlation_id: str | None = None,
    dlq: DLQArg = DEFAULT_DLQ,
    progress: Progress | None = None,
    multitask_strategy: MultitaskStrategy = "enqueue",
    engine: Engine = None,
) -> RunResult:
    """Async form of `run` (use with an async checkpointer)."""
    prepared = prepare(graph, text, user_id, session_id, context, correlation_id)
    payload = {"messages": [HumanMessage(prepared.text)]}
    invoker = _invoker(engine)
    if invoker is not None:
        await invoker.acheck()
    steps = execution(graph, payload, prepared, dlq, progress=progress)
    result: RunResult = await adrive_turn(
        graph, steps, *_turn(prepared, multitask_strategy), invoker=invoker and invoker.ainvoke
    )
    return result


def answering(
    graph: Pregel[Any, Any, Any, Any],
    answer: Any,
    prepared: Prepared,
    dlq: DLQArg,
    progress: Progress | None,
) -> Steps:
    """`resume` as steps: check that the session waits for a person, then run on the answer.

    Raises:
        InvalidInputError: The session has no paused run.
    """
    snapshot = (yield State(prepared.config)) if graph.checkpointer is not None else None
    if pending_interrupt(snapshot) is None and not _escalated_by_error_handler(snapshot):
        raise InvalidInputError(
            "this session has no run waiting for a person; send a new message instead"
        )
    result = yield from execution(graph, Command(resume=answer), prepared, dlq, progress=progress)
    return result


def _answer_steps(
    graph: Pregel[Any, Any, Any, Any],
    answer: Any,
    prepared: Prepared,
    dlq: DLQArg,
    progress: Progress | None,
    engine: Engine,
) -> Steps:
    """`answering`; on Temporal the paused run is the session's Workflow, which checks itself."""
    if engine is None:
        return answering(graph, answer, prepared, dlq, progress)
    return execution(graph, Command(resume=answer), prepared, dlq, progress=progress)


# Each public operation comes as a sync and an async function: Python needs both signatures, but
# the logic is written once, as steps (`execution`, `answering`, `replaying`), and the two forms
# differ only in the driver that carries the steps out (`switchyard.runtime.effects`).


def resume(
    graph: Pregel[Any, Any, Any, Any],
    answer: Any,
    *,
    user_id: str,
    session_id: str,
    context: Context | None = None,
    correlation_id: str | None = None,
    dlq: DLQArg = DEFAULT_DLQ,
    progress: Progress | None = None,
    multitask_strategy: MultitaskStrategy = "enqueue",
    engine: Engine = None,
) -> RunResult:
    """Continue a run paused for a person (`end_reason="escalated"`) with the person's answer.

    Raises:
        InvalidInputError: The session has no paused run.
        SessionBusyError: As `run`.
    """
    prepared = prepare(graph, None, user_id, session_id, context, correlation_id, check_input=False)
    steps = _answer_steps(graph, answer, prepared, dlq, progress, engine)
    invoker = _invoker(engine)
    if invoker is not None:
        invoker.require_waiting(graph, prepared.config)
    result: RunResult = drive_turn(
        graph, steps, *_turn(prepared, multitask_strategy), invoker=invoker
    )
    return result


async def aresume(
    graph: Pregel[Any, Any, Any, Any],
    answer: Any,
    *,
    user_id: str,
    session_id: str,
    context: Context | None = None,
    correlation_id: str | None = None,
    dlq: DLQArg = DEFAULT_DLQ,
    progress: Progress | None = None,
    multitask_strategy: MultitaskStrategy = "enqueue",
    engine: Engine = None,
) -> RunResult:
    """Async form of `resume` (use with an async checkpointer).

    Raises:
        InvalidInputError: The session has no paused run.
        SessionBusyError: As `run`.
    """
    prepared = prepare(graph, None, user_id, session_id, context, correlation_id, check_input=False)
    steps = _answer_steps(graph, answer, prepared, dlq, progress, engine)
    invoker = _invoker(engine)
    if invoker is not None:
        await invoker.arequire_waiting(graph, prepared.config)
    result: RunResult = await adrive_turn(
        graph, steps, *_turn(prepared, multitask_strategy), invoker=invoker and invoker.ainvoke
    )
    return result


def replaying(
    graph: Pregel[Any, Any, Any, Any],
    letter: DeadLetter,
    context: Context | None,
    dlq: DeadLetterQueue | None,
    user_id: str | None = None,
    started: float | None = None,
) -> Steps:
    """`replay` as steps: check the letter and graph, resume from the checkpoint, mark the letter.

    The run's stored settings (context, default model) come back unless `context` is given. The
    run's deadline counts from `started` (`time.monotonic()` when the replay was asked for).

    Raises:
        DeadLetterAccessError: `user_id` is given and does not own the letter.
        InvalidInputError: The record has no checkpoint to resume from.
        GraphNotFoundError: `graph` is not the graph the run failed in.
    """
    check_letter(graph, letter, user_id)
    prepared = prepare(
        graph,
        letter.input,
        letter.user_id,
        letter.session_id,
        restored_context(letter.settings, context),
        letter.correlation_id,
        check_input=False,
    )
    if started is not None:
        prepared = dataclasses.replace(prepared, started=started)
    if graph.checkpointer is not None:
        at_failure = _with_checkpoint(prepared.config, letter.checkpoint_id)
        check_pending(graph, letter, (yield State(at_failure)))
    result: RunResult = yield from execution(
        graph, None, prepared, None, checkpoint_id=letter.checkpoint_id
    )
    queue = dlq or DeadLetterQueue()
    queue.mark(letter.id, status="replayed" if result.ok else "open")
    return result


def replay(
    graph: Pregel[Any, Any, Any, Any],
    letter: DeadLetter,
    *,
    context: Context | None = None,
    dlq: DeadLetterQueue | None = None,
    user_id: str | None = None,
    multitask_strategy: MultitaskStrategy = "enqueue",
) -> RunResult:
    """Resume a dead-lettered run from its last good checkpoint (completed steps are not redone).

    The record is marked "replayed" when the run completes; otherwise it stays open.

    Args:
        graph: The graph the run failed in (its name and, when known, its import path must match
            the letter's), compiled with the checkpointer holding the session.
        letter: The dead letter (`DeadLetterQueue.get`).
        context: Run settings; None restores the failed run's own (its context and model).
        dlq: The queue holding the letter (default: the environment's).
        user_id: The caller; when given, must own the letter.
        multitask_strategy: As in `run`: a replay is a turn of the letter's session.

    Raises:
        DeadLetterAccessError: `user_id` does not own the letter (worded as for an unknown id).
        InvalidInputError: The record has no checkpoint to resume from.
        GraphNotFoundError: `graph` is not the graph the run failed in (nothing is run).
    """
    steps = replaying(graph, letter, context, dlq, user_id, time.monotonic())
    deadline_s = (restored_context(letter.settings, context) or Context()).deadline_s
    turn = (letter.thread_id, multitask_strategy, deadline_s)
    result: RunResult = drive_turn(graph, steps, *turn)
    return result


async def areplay(
    graph: Pregel[Any, Any, Any, Any],
    letter: DeadLetter,
    *,
    context: Context | None = None,
    dlq: DeadLetterQueue | None = None,
    user_id: str | None = None,
    multitask_strategy: MultitaskStrategy = "enqueue",
) -> RunResult:
    """Async form of `replay` (use with an async checkpointer).

    Raises:
        DeadLetterAccessError: As `replay`.
        InvalidInputError: As `replay`.
        GraphNotFoundError: As `replay`.
    """
    steps = replaying(graph, letter, context, dlq, user_id, time.monotonic())
    deadline_s = (restored_context(letter.settings, context) or Context()).deadline_s
    turn = (letter.thread_id, multitask_strategy, deadline_s)
    result: RunResult = await adrive_turn(graph, steps, *turn)
    return result
