"""Which failures are worth retrying, and the one retry implementation for model calls."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from langchain.agents.middleware import ModelRetryMiddleware
from langgraph.types import RetryPolicy

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
"""HTTP statuses that mean "try again": timeouts, rate limits, overload and server errors."""

_TRANSIENT_NAMES = frozenset(
    {
        "APIConnectionError",
        "APITimeoutError",
        "RateLimitError",
        "InternalServerError",
        "ServiceUnavailableError",
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "RemoteProtocolError",
        "ThrottlingException",
        "ServiceUnavailableException",
        "ModelTimeoutException",
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a transient provider failure (rate limit, 5xx, timeout, dropped connection).

    Validation errors, authentication and permission errors and bad requests are not transient:
    retrying them only spends money.
    """
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status in TRANSIENT_STATUS
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


def model_retry_policy(max_attempts: int = 3) -> RetryPolicy:
    """LangGraph retry policy for nodes that call a model: transient failures only, with jitter."""
    return RetryPolicy(
        max_attempts=max_attempts,
        initial_interval=0.5,
        backoff_factor=2.0,
        max_interval=8.0,
        jitter=True,
        retry_on=is_transient,
    )


@dataclass(frozen=True)
class Backoff:
    """How long model-call retries wait: `initial_s * 2 ** n`, capped at `max_s`, with jitter."""

    initial_s: float = 0.5
    max_s: float = 8.0
    jitter: bool = True


_backoff = Backoff()

ATTEMPT_KEY = "switchyard_attempt"
"""Metadata key of a model call's attempt number (traces count retries with it)."""
_attempt: ContextVar[int] = ContextVar("switchyard_retry_attempt", default=1)


def configure_retries(backoff: Backoff | None = None) -> None:
    """Set the back-off of every model-call retry in the process (None: the defaults).

    Retry counts stay per agent (`AgentSpec.max_attempts`); tests shorten the waits with
    `configure_retries(Backoff(initial_s=0.001, max_s=0.001, jitter=False))`.
    """
    global _backoff
    _backoff = backoff or Backoff()


def retry_attempt() -> int:
    """The attempt the current model call is (1 for the first; retries count up)."""
    return _attempt.get()


class TransientRetry(ModelRetryMiddleware):
    """LangChain's `ModelRetryMiddleware`, for transient provider failures only.

    The one retry implementation: each model call (not the whole agent node, whose tool calls
    would run again) is retried on `is_transient` failures, up to the agent's `max_attempts`, with
    exponential back-off and jitter; the provider SDK's own retries are off, so attempts do not
    multiply. Anything else (validation, authentication, a bad request, an open circuit, a budget)
    is raised at once. The back-off comes from `configure_retries`, read at each wait, and each
    attempt's number is visible to inner middleware through `retry_attempt()` (the usage ledger
    counts retries with it).

    Args:
        max_attempts: Calls in all, the first included (1: no retry).
    """

    def __init__(self, max_attempts: int = 3) -> None:
        super().__init__(max_retries=max_attempts - 1, retry_on=is_transient, on_failure="error")

    # The base class reads these three on every retry; they follow `configure_retries`.
    initial_delay = property(lambda self: _backoff.initial_s, lambda self, value: None)
    max_delay = property(lambda self: _backoff.max_s, lambda self, value: None)
    jitter = property(lambda self: _backoff.jitter, lambda self, value: None)

    def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        """Retry transient failures of `handler`, numbering the attempts."""
        return super().wrap_model_call(request, _numbered(handler))

    async def awrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        """Async form of `wrap_model_call`."""
        return await super().awrap_model_call(request, _anumbered(handler))


def _numbered(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`handler`, with `retry_attempt()` giving each call's number while it runs."""
    attempts = itertools.count(1)

    def attempt(request: Any) -> Any:
        token = _attempt.set(next(attempts))
        try:
            return handler(request)
        finally:
            _attempt.reset(token)

    return attempt


def _anumbered(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """Async form of `_numbered`: the number holds while the awaited call runs."""
    attempts = itertools.count(1)

    async def attempt(request: Any) -> Any:
        token = _attempt.set(next(attempts))
        try:
            return await handler(request)
        finally:
            _attempt.reset(token)

    return attempt
