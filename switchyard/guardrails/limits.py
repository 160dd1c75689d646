"""`CallLimits`: the agent's per-call timeout and the run's deadline, on model and tool calls.

Both limits hold while a call is in flight, sync or async: an async call is cancelled at its
limit; a sync one runs on a worker thread that the run stops waiting for
(`switchyard.core.workers`). LangGraph's own `TimeoutPolicy` bounds whole node attempts, and only
async ones; these bound each model and tool call inside a node, on every entry path.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest

from switchyard.core.errors import SwitchyardError, describe_error
from switchyard.core.models import model_name_of
from switchyard.core.offline import OfflineChatModel
from switchyard.core.resilience import (
    TransientRetry,
    current_backoff,
    is_transient,
    retry_after_s,
)
from switchyard.core.tokens import expected_tokens
from switchyard.core.workers import CallAbandonedError, call_within
from switchyard.guardrails.budgets import DeadlineExceededError, RetryBudgetExhaustedError
from switchyard.guardrails.guard import AsyncModelCall, ModelCall
from switchyard.guardrails.scope import current_scope

AsyncToolCall = Callable[[ToolCallRequest], Awaitable[Any]]


class AgentTimeoutError(SwitchyardError, TimeoutError):
    """An agent's model call took longer than its `timeout_s` (transient: retried)."""

    status_code = 408


def time_limit(agent: str, what: str, timeout_s: float | None) -> tuple[float | None, bool]:
    """Seconds a call may take, and whether the run's deadline (not `timeout_s`) sets it.

    The run's `Context.timeout_s`, when set, replaces the agent's `timeout_s`.

    Raises:
        DeadlineExceededError: The run's deadline has passed: the call must not start.
    """
    scope = current_scope()
    if scope is not None and scope.call_timeout_s is not None:
        timeout_s = scope.call_timeout_s
    remaining = scope.remaining_s() if scope is not None else None
    if remaining is not None and remaining <= 0:
        raise DeadlineExceededError(
            f"run deadline passed before agent {agent!r} could {what}; "
            "raise Context.deadline_s for longer runs"
        )
    if remaining is not None and (timeout_s is None or remaining < timeout_s):
        return remaining, True
    return timeout_s, False


def expired(
    agent: str,
    what: str,
    limit: float,
    *,
    by_deadline: bool,
    request: ModelRequest[Any] | None = None,
) -> SwitchyardError:
    """The error of a call still running at its limit: the deadline's, or the agent's timeout.

    For a model call (`request`), the error carries the usage the abandoned call is charged.
    """
    error: SwitchyardError
    if by_deadline:
        error = DeadlineExceededError(
            f"run deadline reached while agent {agent!r} was waiting to {what}; "
            "raise Context.deadline_s for longer runs"
        )
    else:
        error = AgentTimeoutError(f"agent {agent!r} timed out after {limit:.3g}s waiting to {what}")
        error.expired_here = True  # type: ignore[attr-defined]  # not a tool's own timeout
    return error if request is None else _charged(error, request)


async def bounded(
    call: Awaitable[Any],
    agent: str,
    limit: float | None,
    *,
    by_deadline: bool,
    what: str = "finish",
    request: ModelRequest[Any] | None = None,
) -> Any:
    """Await `call`, cancelled after `limit` seconds (`time_limit` gives both arguments).

    Raises:
        DeadlineExceededError: The run's deadline came first.
        AgentTimeoutError: The agent's timeout came first.
    """
    if limit is None:
        return await call
    try:
        async with asyncio.timeout(limit) as bound:
            return await call
    except TimeoutError:
        if not bound.expired():  # the call's own timeout error, not ours
            raise
        raise expired(agent, what, limit, by_deadline=by_deadline, request=request) from None


def within(
    call: Callable[[], Any],
    agent: str,
    limit: float | None,
    *,
    by_deadline: bool,
    what: str = "finish",
    request: ModelRequest[Any] | None = None,
) -> Any:
    """Sync form of `bounded`: `call()` on a worker thread, given up on after `limit` seconds.

    Raises:
        DeadlineExceededError: The run's deadline came first.
        AgentTimeoutError: The agent's timeout came first.
    """
    if limit is None:
        return call()
    try:
        return call_within(call, limit)
    except CallAbandonedError:
        raise expired(agent, what, limit, by_deadline=by_deadline, request=request) from None


def _charged(error: SwitchyardError, request: ModelRequest[Any]) -> SwitchyardError:
    """`error`, carrying the prompt's estimated tokens as the abandoned call's usage.

    The provider got the request and may well have processed (and billed) it; what it used never
    came back, so the usage recorder and the budgets are charged the prompt's estimate instead of
    nothing (`reply_of` reads an error's `reply`).
    """
    prompt = [request.system_message, *request.messages] if request.system_message else []
    tokens_in, _ = expected_tokens(prompt or request.messages, None)
    usage = {"input_tokens": tokens_in, "output_tokens": 0, "total_tokens": tokens_in}
    error.reply = AIMessage(content="", usage_metadata=usage)  # type: ignore[attr-defined]
    return error


_resume_at: ContextVar[tuple[str, float] | None] = ContextVar(
    "switchyard_provider_resume_at", default=None
)
"""The model whose provider asked to wait, and when its next call may go (`Retry-After`).

Attempts of one model call run one after another in one context (the retry middleware's loop),
so the next attempt reads what the last one set; a fallback model (another provider) does not
wait for it."""

_sleep = time.sleep
"""Blocking wait before an attempt (tests replace it to see the waits without taking them)."""
_asleep = asyncio.sleep


def _wait_asked(request: ModelRequest[Any]) -> float:
    """Seconds this attempt must still wait for the last failure's `Retry-After` (and forget it)."""
    asked = _resume_at.get()
    if asked is None:
        return 0.0
    _resume_at.set(None)
    model, at = asked
    return max(at - time.monotonic(), 0.0) if model == model_name_of(request.model) else 0.0


class RateLimitedError(SwitchyardError):
    """The provider asked for a wait (`Retry-After`) that ends past the run's deadline.

    Also raised by the shared rate limits (`switchyard.guardrails.ratelimit`) when the wait for
    room would end past it. Not retried (the retry would only be refused again), but the agent's
    fallback models, each under its own limit, may still answer in time; past them the run ends
    with end reason `rate_limited`. (No `status_code`: with 429 it would count as transient and
    be retried.)
    """


def _note_retry_after(agent: str, request: ModelRequest[Any], error: BaseException) -> None:
    """Remember a failure's `Retry-After` for the next attempt, or give up on this model.

    Raises:
        RateLimitedError: The provider asked for a wait that ends past the run's deadline.
    """
    wait = retry_after_s(error)
    if not wait:
        return
    scope = current_scope()
    remaining = scope.remaining_s() if scope is not None else None
    if remaining is not None and wait >= remaining:
        raise RateLimitedError(
            f"agent {agent!r}: the provider asked to wait {wait:.3g}s before calling again "
            f"(Retry-After), past the run's deadline in {max(remaining, 0):.3g}s "
            f"({describe_error(error)})"
        ) from error
    _resume_at.set((model_name_of(request.model), time.monotonic() + wait))


def _in_process(request: ModelRequest[Any]) -> bool:
    """The embedded offline model answers in microseconds and cannot hang: no worker thread.

    Unless it simulates latency (`latency_s`): then it is bounded like any provider.
    """
    model = request.model
    return isinstance(model, OfflineChatModel) and not model.latency_s


def _tool_timed_out(request: ToolCallRequest, limit: float) -> ToolMessage:
    """A tool that ran past the agent's timeout is reported to the model, which can go on."""
    call = request.tool_call
    return ToolMessage(
        f"error: tool {call['name']!r} did not finish within {limit:.3g}s and was abandoned",
        tool_call_id=call["id"] or "",
        name=call["name"],
        status="error",
    )


class CallLimits(AgentMiddleware[Any, Any, Any]):
    """Bounds every model and tool call of an agent in time, while it is in flight.

    No call starts once the run's deadline has passed (`DeadlineExceededError`). A call in flight
    is stopped at the agent's `timeout_s` or at the deadline, whichever comes first, sync or async.
    A model call past `timeout_s` raises `AgentTimeoutError` (transient: the retry middleware tries
    again) and is charged its prompt's estimated tokens; a tool call past it answers the model with
    an error. The deadline ends the agent's call (`DeadlineExceededError`), and so the run.

    A provider's `Retry-After` (on a 429 or 503) is honoured: the next attempt waits for it when
    the wait ends before the deadline; when it does not, this model is given up at once
    (`RateLimitedError`, which the fallback models may answer for; else the run is `rate_limited`)
    rather than retried into certain refusals.

    Args:
        agent: The agent whose calls this bounds.
        timeout_s: Longest a model or tool call may take (None: only the run's deadline).
    """

    def __init__(self, agent: str, *, timeout_s: float | None = None) -> None:
        super().__init__()
        self.agent = agent
        self.timeout_s = timeout_s

    def wrap_model_call(self, request: ModelRequest[Any], handler: ModelCall) -> Any:
        """Wait out a `Retry-After`; refuse the call after the deadline; bound it in flight."""
        what = "call its model"
        wait = _wait_asked(request)
        if wait:
            _sleep(wait)
        limit, by_deadline = time_limit(self.agent, what, self.timeout_s)
        if _in_process(request):
            return handler(request)
        try:
            return within(
                lambda: handler(request),
                self.agent,
                limit,
                by_deadline=by_deadline,
                what=what,
                request=request,
            )
        except Exception as exc:
            _note_retry_after(self.agent, request, exc)
            raise

    async def awrap_model_call(self, request: ModelRequest[Any], handler: AsyncModelCall) -> Any:
        """Async form of `wrap_model_call`: the call is cancelled at its limit."""
        what = "call its model"
        wait = _wait_asked(request)
        if wait:
            await _asleep(wait)
        limit, by_deadline = time_limit(self.agent, what, self.timeout_s)
        try:
            return await bounded(
                handler(request),
                self.agent,
                limit,
                by_deadline=by_deadline,
                what=what,
                request=request,
            )
        except Exception as exc:
            _note_retry_after(self.agent, request, exc)
            raise

    def wrap_tool_call(self, request: ToolCallRequest, handler: Callable[..., Any]) -> Any:
        """Refuse a tool call after the deadline; stop waiting at the timeout or the deadline."""
        what = f"run tool {request.tool_call['name']!r}"
        limit, by_deadline = time_limit(self.agent, what, self.timeout_s)
        try:
            return within(
                lambda: handler(request), self.agent, limit, by_deadline=by_deadline, what=what
            )
        except AgentTimeoutError as exc:
            if not getattr(exc, "expired_here", False):
                raise
            assert limit is not None
            return _tool_timed_out(request, limit)

    async def awrap_tool_call(self, request: ToolCallRequest, handler: AsyncToolCall) -> Any:
        """Refuse a tool call after the deadline; cancel it at the timeout or the deadline."""
        what = f"run tool {request.tool_call['name']!r}"
        limit, by_deadline = time_limit(self.agent, what, self.timeout_s)
        try:
            return await bounded(
                handler(request), self.agent, limit, by_deadline=by_deadline, what=what
            )
        except AgentTimeoutError as exc:
            if not getattr(exc, "expired_here", False):
                raise
            assert limit is not None
            return _tool_timed_out(request, limit)


class DeadlineRetry(TransientRetry):
    """`TransientRetry` within the run's limits: its deadline and its retry budget.

    Each back-off wait is capped at three quarters of the time left (the back-off's jitter adds
    up to a quarter): a retry that would start after the deadline is not waited for, and the
    attempt that follows is refused at once (`DeadlineExceededError`), so the run ends on time.
    Each retry also spends one of the run's retries (`Context.max_retries`, shared by every agent
    and fan-out shard); when none is left the run stops (`RetryBudgetExhaustedError`).
    """

    @property
    def max_delay(self) -> float:
        """The back-off's cap, or less when the deadline is nearer."""
        cap = current_backoff().max_s
        scope = current_scope()
        remaining = scope.remaining_s() if scope is not None else None
        return cap if remaining is None else max(0.0, min(cap, remaining * 0.75))

    @max_delay.setter
    def max_delay(self, value: float) -> None:
        """Ignored: the cap follows `configure_retries` and the deadline."""

    def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        """Retry transient failures while the run has retries left."""
        made = itertools.count(1)

        def attempt(request: Any) -> Any:
            try:
                return handler(request)
            except Exception as exc:
                self._spend_retry(exc, next(made))
                raise

        return super().wrap_model_call(request, attempt)

    async def awrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        """Async form of `wrap_model_call`."""
        made = itertools.count(1)

        async def attempt(request: Any) -> Any:
            try:
                return await handler(request)
            except Exception as exc:
                self._spend_retry(exc, next(made))
                raise

        return await super().awrap_model_call(request, attempt)

    def _spend_retry(self, failure: Exception, made: int) -> None:
        """After attempt `made` failed: spend one of the run's retries if it is to be retried.

        Spent when the failure happens, not before the next attempt, so a run without retries
        left stops at once instead of sleeping a back-off first.

        Raises:
            RetryBudgetExhaustedError: The run has none left; the failure is named.
        """
        if made > self.max_retries or not is_transient(failure):
            return  # not retried anyway
        scope = current_scope()
        if scope is None or scope.take_retry():
            return
        raise RetryBudgetExhaustedError(
            "the run's retries (Context.max_retries) are spent; last failure: "
            f"{describe_error(failure)}"
        ) from failure
