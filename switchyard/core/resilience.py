"""Which failures are worth retrying, and the one retry implementation for model calls."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langchain.agents.middleware import ModelRetryMiddleware
from langgraph.types import RetryPolicy

from switchyard.core.errors import SwitchyardError

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


_CAPABILITY = re.compile(
    r"input should be|not supported|unsupported|does not support|doesn't support|"
    r"not implemented|not available for this model|unknown (?:field|parameter|argument)|"
    r"unrecognized (?:field|parameter|argument|request argument)|extra (?:inputs|fields) "
    r"are not permitted|must be one of|invalid (?:value|type) for '?(?:response_format|"
    r"tool_choice|tools)|requires --jinja|response_format type|tool.choice requires|"
    r"enable-auto-tool-choice",
    re.IGNORECASE,
)
"""What a server says when a request asks for something it cannot do (a `response_format` type,
`tools`, a forced `tool_choice`): OpenAI, vLLM ("auto" tool choice requires
--enable-auto-tool-choice), Ollama, llama.cpp's server and llama-cpp-python,
FastAPI/pydantic validation ("Input should be 'text' or 'json_object'")."""

_NOT_CAPABILITY_STATUS = frozenset({401, 403, 408, 425, 429})
"""Statuses that never mean "cannot do this": credentials, timeouts and rate limits. Otherwise
the message decides, whatever the status: llama-cpp-python refuses `json_schema` with a 500."""


def capability_error(exc: BaseException) -> bool:
    """Whether `exc` is an endpoint refusing a feature of the request (not a passing fault).

    Such a request fails the same way every time: it is never retried as transient, whatever
    status the server chose; the caller drops the feature (another structured-output method, tool
    calls written as text) instead.
    """
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in _NOT_CAPABILITY_STATUS:
        return False
    if status is None and not any(cls.__name__ == "APIStatusError" for cls in type(exc).__mro__):
        return False
    return bool(_CAPABILITY.search(str(exc)))


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a transient provider failure (rate limit, 5xx, timeout, dropped connection).

    Validation errors, authentication and permission errors, bad requests and an endpoint refusing
    a feature (`capability_error`, even sent as a 500) are not transient: retrying them only
    spends money and time.
    """
    if capability_error(exc):
        return False
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status in TRANSIENT_STATUS
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


class ProviderResponseError(SwitchyardError):
    """The provider answered with a body the client could not use: not JSON, or no choices.

    A broken gateway or an overloaded provider does this now and then, like a 5xx: it is transient
    (`status_code` 502), so the call is retried.
    """

    status_code = 502


_PROVIDER_MODULES = ("httpx.", "openai.", "anthropic.", "botocore.", "langchain_")
"""Where a provider's response is read and turned into a message (`langchain_core` aside)."""

_REPLY_INDEXING = "langchain_core.language_models.chat_models"
"""Where `invoke` takes the first generation of a result (none when `choices` was empty)."""


def raised_in(exc: BaseException) -> list[str]:
    """The modules of the frames `exc` passed through, outermost first."""
    modules: list[str] = []
    tb = exc.__traceback__
    while tb is not None:
        modules.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    return modules


def provider_fault(exc: BaseException) -> ProviderResponseError | None:
    """`exc` as a `ProviderResponseError` when it is a provider's unusable response, else None.

    A malformed body surfaces as the `json.JSONDecodeError` of the HTTP client reading it (told
    apart from a structured answer that fails to parse, which is re-asked, by where it was
    raised). A reply with empty `choices` becomes a result with no generations, and so the
    `IndexError` of the chat model's `invoke` taking the first one; a reply missing another part,
    an `IndexError` or `KeyError` in the provider's integration.
    """
    modules = raised_in(exc)
    if isinstance(exc, json.JSONDecodeError):
        if any(m.startswith(("httpx.", "openai._", "anthropic._")) for m in modules):
            return ProviderResponseError(f"provider sent a malformed response body ({exc})")
        return None
    if isinstance(exc, IndexError | KeyError) and modules:
        innermost = modules[-1]
        if innermost == _REPLY_INDEXING:
            return ProviderResponseError("provider sent a reply with no choices in it")
        if innermost.startswith(_PROVIDER_MODULES) and not innermost.startswith("langchain_core"):
            return ProviderResponseError(
                f"provider sent a reply without the expected parts ({type(exc).__name__}: {exc})"
            )
    return None


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds a provider asked to wait before the next call (`Retry-After`), if it said.

    Read from the error's HTTP response: `retry-after-ms`, else `Retry-After` as seconds or as an
    HTTP date.
    """
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        milliseconds = headers.get("retry-after-ms")
        if milliseconds is not None:
            return max(float(milliseconds) / 1000, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max((when - datetime.now(UTC)).total_seconds(), 0.0)
    except (TypeError, ValueError, AttributeError):  # a header we cannot read is ignored
        return None


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


def current_backoff() -> Backoff:
    """The back-off `configure_retries` set (the defaults unless it was called)."""
    return _backoff


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
