"""The run facade: one call from a user message to a `RunResult`, with sessions kept per user.

`run` / `arun` validate the message, derive the thread from (user, session) so one user can never
read or continue another's session, always pass an explicit recursion limit, and report which agent
answered, how sure the router was, how long it took, the tokens and the cost.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphRecursionError
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot
from pydantic import BaseModel, ConfigDict, Field

from state.context import Context
from state.usage import UsageLedger, ledger_delta
from switchyard.errors import InvalidInputError, SessionAccessError
from switchyard.models import default_model, load_chat_model

_THREAD_NAMESPACE = uuid.UUID("8d3c6a4e-1f0b-5c2e-9a7d-2b6f4e8c1a90")


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
        cost_usd: Dollars this run cost (0 for the offline model).
        usage: Per agent and model usage of this run.
        end_reason: "completed", "error", "recursion_limit", or a pattern's own reason.
        error: One line describing the failure, when `ok` is False.
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
    cost_usd: float
    usage: UsageLedger = Field(default_factory=dict)
    end_reason: str
    error: str | None = None
    correlation_id: str
    thread_id: str
    user_id: str
    session_id: str


def thread_id_for(user_id: str, session_id: str) -> str:
    """The thread of a user's session: a name-based UUID, so ids cannot be forged or collide.

    Raises:
        InvalidInputError: The user or session id is empty.
    """
    for label, value in (("user_id", user_id), ("session_id", session_id)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(f"{label} must be a non-empty string, got {value!r}")
    # Length-prefixing keeps ("a:b", "c") and ("a", "b:c") apart.
    return str(uuid.uuid5(_THREAD_NAMESPACE, f"{len(user_id)}:{user_id}|{session_id}"))


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


def _prepare(
    graph: Pregel[Any, Any, Any, Any],
    text: Any,
    user_id: str,
    session_id: str | None,
    context: Context | None,
    correlation_id: str | None,
) -> tuple[Context, str, RunnableConfig, str]:
    context = context or Context()
    text = check_text(text, context.max_input_chars)
    # Fail before touching the thread when the model cannot be loaded (unknown provider,
    # missing key): the error names what to set.
    load_chat_model(context.model or default_model())
    session = session_id or uuid.uuid4().hex
    thread_id = thread_id_for(user_id, session)
    correlation = correlation_id or uuid.uuid4().hex
    config: RunnableConfig = {
        "configurable": {"thread_id": thread_id},
        "recursion_limit": context.recursion_limit,
        "metadata": {
            "user_id": user_id,
            "session_id": session,
            "correlation_id": correlation,
            "pattern": graph.name,
        },
        "tags": [f"pattern:{graph.name}", f"correlation:{correlation}"],
        "run_name": f"switchyard.{graph.name}",
    }
    return context, text, config, session


def _check_owner(snapshot: StateSnapshot | None, user_id: str) -> None:
    owner = (snapshot.metadata or {}).get("user_id") if snapshot is not None else None
    if owner is not None and owner != user_id:
        raise SessionAccessError("this session belongs to another user; start a new session")


def _usage_of(snapshot: StateSnapshot | None) -> UsageLedger:
    if snapshot is None:
        return {}
    usage: UsageLedger = snapshot.values.get("usage") or {}
    return usage


def _result(
    values: dict[str, Any] | None,
    before: UsageLedger,
    *,
    started: float,
    config: RunnableConfig,
    user_id: str,
    session_id: str,
    error: BaseException | None = None,
) -> RunResult:
    values = values or {}
    usage = ledger_delta(values.get("usage") or {}, before)
    messages: list[AnyMessage] = values.get("messages") or []
    answer = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    answered_this_run = bool(messages) and not isinstance(messages[-1], HumanMessage)
    route = values.get("route") or {}
    if error is None:
        end_reason = values.get("end_reason") or "completed"
    elif isinstance(error, GraphRecursionError):
        end_reason = "recursion_limit"
    else:
        end_reason = "error"
    metadata = config.get("metadata", {})
    return RunResult(
        ok=error is None and end_reason == "completed",
        output=answer.text if answer is not None and answered_this_run else "",
        agent_name=route.get("agent") or (answer.name if answer is not None else None),
        confidence=route.get("confidence"),
        route_reason=route.get("reason"),
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        input_tokens=sum(e["input_tokens"] for e in usage.values()),
        output_tokens=sum(e["output_tokens"] for e in usage.values()),
        total_tokens=sum(e["total_tokens"] for e in usage.values()),
        cost_usd=round(sum(e["cost_usd"] for e in usage.values()), 8),
        usage=usage,
        end_reason=end_reason,
        error=None if error is None else _describe(error),
        correlation_id=metadata["correlation_id"],
        thread_id=config["configurable"]["thread_id"],
        user_id=user_id,
        session_id=session_id,
    )


def _describe(error: BaseException) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def run(
    graph: Pregel[Any, Any, Any, Any],
    text: str,
    *,
    user_id: str = "local",
    session_id: str | None = None,
    context: Context | None = None,
    correlation_id: str | None = None,
) -> RunResult:
    """Send one user message through a compiled pattern graph.

    Args:
        graph: A compiled graph; compile it with a checkpointer for sessions that continue.
        text: The user's message.
        user_id: Owner of the session; sessions of different users never mix.
        session_id: Continue this session; None starts a new one (its id is in the result).
        context: Run settings (model, thresholds, limits); defaults when None.
        correlation_id: Reuse the caller's id; a new one is made when None.

    Returns:
        The run's result. A failure inside the graph (a provider error, say) is reported in the
        result (`ok=False`), and the thread keeps its last checkpoint so the run can be resumed.

    Raises:
        InvalidInputError: The message or ids are invalid (nothing is written).
        ModelConfigError: The model cannot be loaded (nothing is written).
        SessionAccessError: The session belongs to another user (nothing is read or written).

    Example:
        ```python
        result = run(graph, "I need a refund", user_id="ada", session_id="s1")
        print(result.agent_name, result.confidence, result.output)
        ```
    """
    context, text, config, session = _prepare(
        graph, text, user_id, session_id, context, correlation_id
    )
    snapshot = graph.get_state(config) if graph.checkpointer is not None else None
    _check_owner(snapshot, user_id)
    before = _usage_of(snapshot)
    started = time.perf_counter()
    try:
        values = graph.invoke(
            {"messages": [HumanMessage(text)]}, config, context=context, stream_mode="values"
        )
    except Exception as exc:  # reported in the result; the checkpoint keeps the run resumable
        error: BaseException | None = exc
        values = None
    else:
        error = None
    if graph.checkpointer is not None:  # the full state, not just the output schema's keys
        values = graph.get_state(config).values
    return _result(
        values,
        before,
        started=started,
        config=config,
        user_id=user_id,
        session_id=session,
        error=error,
    )


async def arun(
    graph: Pregel[Any, Any, Any, Any],
    text: str,
    *,
    user_id: str = "local",
    session_id: str | None = None,
    context: Context | None = None,
    correlation_id: str | None = None,
) -> RunResult:
    """Async form of `run` (use with an async checkpointer)."""
    context, text, config, session = _prepare(
        graph, text, user_id, session_id, context, correlation_id
    )
    snapshot = await graph.aget_state(config) if graph.checkpointer is not None else None
    _check_owner(snapshot, user_id)
    before = _usage_of(snapshot)
    started = time.perf_counter()
    try:
        values = await graph.ainvoke(
            {"messages": [HumanMessage(text)]}, config, context=context, stream_mode="values"
        )
    except Exception as exc:  # reported in the result; the checkpoint keeps the run resumable
        error: BaseException | None = exc
        values = None
    else:
        error = None
    if graph.checkpointer is not None:  # the full state, not just the output schema's keys
        values = (await graph.aget_state(config)).values
    return _result(
        values,
        before,
        started=started,
        config=config,
        user_id=user_id,
        session_id=session,
        error=error,
    )
