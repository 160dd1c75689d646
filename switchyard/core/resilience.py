"""Which failures are worth retrying, and the retry policy model-calling nodes get by default."""

from __future__ import annotations

import asyncio

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
