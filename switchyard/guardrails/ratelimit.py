"""Provider rate limits: requests and tokens per minute per provider+model, shared through Redis.

Every actual model call (each retry, each fallback model) first takes a request and its
estimated tokens from its model's limits; when the minute is full it waits for room, within the
run's deadline. A wait that would end past the deadline ends the run at once with
`RateLimitedError` (end reason `rate_limited`), instead of waiting to fail. After the call the
token count is corrected to what the provider reported it used, and a provider's 429 with a
`Retry-After` holds every caller of that model off until then.

The counts live in one storage for the process, or, when `SWITCHYARD_REDIS_URL` is set, in Redis,
so every worker process on every host that points at the same Redis shares one budget per
provider+model (the circuit breakers share theirs the same way: `switchyard.guardrails.breaker`).

Limits come from three places; the most specific one that names the model wins:
`Context.rate_limits` (one run), then `AgentSpec.rate_limits` (one agent), then the process's
(`configure_rate_limits`, else the `SWITCHYARD_RATE_LIMITS` environment variable, JSON such as
`{"openai:gpt-4o-mini": {"rpm": 60, "tpm": 100000}}`). A model no limit names (the offline model,
by default) is not limited. Callers that give a model the same limit share one budget; a
different limit for the same model counts separately, so configure a provider's limit once.

The counting is the `limits` library's: a moving window (a log of request times, exact) for
requests, and its sliding window counter for tokens, whose cost is a count, not one log entry per
token as the moving window would keep. Two things are written here because `limits` has no
primitive for them: the wait (it only says yes or no, and when its window resets) and the
`Retry-After` hold, a shared "nobody calls this model before T" (a key with an expiry in Redis).

Async calls use the same (sync) storage as sync ones and wait with `asyncio.sleep`. `limits.aio`
was not used: its in-memory storage is separate from the sync one (a process making both kinds of
call would count two budgets), and its Redis client is bound to the event loop that opened it,
while one process may run graphs on several loops. A check is one short round trip to Redis
(see bench/RATE_LIMITS.md for what it costs).

When Redis cannot be reached mid-run, calls go through without the shared counts (logged): the
provider still enforces its own limit, and its 429s are retried.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest
from langgraph.errors import GraphBubbleUp
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from switchyard.core.errors import ConfigError, describe_error
from switchyard.core.models import model_name_of
from switchyard.core.redact import masked_logger
from switchyard.core.resilience import retry_after_s
from switchyard.core.tokens import expected_tokens, tokens_of
from switchyard.guardrails.breaker import REDIS_ENV, check_redis
from switchyard.guardrails.guard import Outcome, reply_of
from switchyard.guardrails.limits import RateLimitedError
from switchyard.guardrails.scope import current_scope

logger = masked_logger(__name__)

RATE_LIMITS_ENV = "SWITCHYARD_RATE_LIMITS"
"""Environment variable with the process's limits, as JSON: `{"provider:model": {"rpm": 60}}`."""

WINDOW_S = 60
"""Both limits count over a minute."""

_MIN_WAIT_S = 0.01
"""Shortest wait before asking again (a window that reset a moment ago, a lost race)."""


class RateLimit(BaseModel):
    """Requests and tokens per minute allowed to one provider+model; a field left None is free.

    Example:
        ```python
        configure_rate_limits({"openai:gpt-4o-mini": RateLimit(rpm=60, tpm=100_000)})
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpm: int | None = Field(default=None, gt=0, description="Most requests per minute.")
    tpm: int | None = Field(
        default=None,
        gt=0,
        description="Most tokens per minute (a call's prompt estimate plus its expected output "
        "before it is sent, corrected to what the provider reports afterwards).",
    )

    @model_validator(mode="after")
    def _limits_something(self) -> RateLimit:
        if self.rpm is None and self.tpm is None:
            raise ValueError("set rpm, tpm or both")
        return self


RateLimits = Mapping[str, RateLimit]
"""Limits by model string (`"provider:model"`, as agents name their models)."""


def parse_rate_limits(value: Any, *, where: str) -> dict[str, RateLimit]:
    """Limits by model from `RateLimit`s, dicts or a JSON object; one `ConfigError` otherwise.

    Args:
        value: A mapping of model strings to `RateLimit` (or its fields as a dict), or that
            mapping as JSON text.
        where: What holds the value, for the error (a setting's or variable's name).

    Raises:
        ConfigError: Not a mapping, an empty model name, or a limit that is not valid.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f'{where} is not JSON ({exc.msg}); expected {{"provider:model": {{"rpm": 60, '
                '"tpm": 100000}}'
            ) from None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where} must map model strings to rate limits, got {type(value).__name__}"
        )
    parsed: dict[str, RateLimit] = {}
    for model, limit in value.items():
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"{where}: model names must be non-empty strings, got {model!r}")
        if isinstance(limit, RateLimit):
            parsed[model] = limit
            continue
        try:
            parsed[model] = RateLimit.model_validate(limit)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"])
            at = f"{where}[{model!r}]" + (f".{field}" if field else "")
            raise ConfigError(f"{at}: {error['msg']}, got {error.get('input')!r}") from None
    return parsed


# --- the holds a provider's Retry-After puts on a model ------------------------------------------


class MemoryHolds:
    """`Retry-After` holds in this process (the storage is in memory too)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def hold(self, model: str, seconds: float) -> None:
        """Nobody calls `model` for `seconds` (a longer hold already set is kept)."""
        with self._lock:
            until = _clock() + seconds
            if until > self._until.get(model, 0.0):
                self._until[model] = until

    def held_for(self, model: str) -> float:
        """Seconds until `model` may be called again (0: now)."""
        with self._lock:
            return max(self._until.get(model, 0.0) - _clock(), 0.0)


_HOLD = """
local ttl = redis.call('pttl', KEYS[1])
if ttl < tonumber(ARGV[1]) then
    redis.call('set', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
"""
"""Set a hold of ARGV[1] ms unless a longer one is already running (atomically)."""


class RedisHolds:
    """`Retry-After` holds in Redis: a key per model that expires when the hold ends.

    The time left is the key's TTL on the Redis server's clock, so hosts whose clocks differ still
    agree on when the hold ends.
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._hold = client.register_script(_HOLD)

    def hold(self, model: str, seconds: float) -> None:
        """Nobody calls `model` for `seconds` (a longer hold already set is kept)."""
        self._hold(keys=[f"{self._prefix}hold:{model}"], args=[max(1, int(seconds * 1000))])

    def held_for(self, model: str) -> float:
        """Seconds until `model` may be called again (0: now)."""
        ttl = int(self._client.pttl(f"{self._prefix}hold:{model}"))
        return ttl / 1000 if ttl > 0 else 0.0


# --- the limiter ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Denial:
    """Why a call may not go yet, and how long until it might.

    Attributes:
        wait_s: Seconds to wait before asking again.
        reason: What is full ("30 requests per minute", a `Retry-After`, ...).
        never: The call can never be admitted (it alone needs more tokens than a minute allows).
    """

    wait_s: float
    reason: str
    never: bool = False


class ProviderLimiter:
    """Requests and tokens per minute of each provider+model, counted in one `limits` storage.

    Args:
        storage: A `limits` storage (`MemoryStorage`, or `RedisStorage` to share across processes).
        holds: Where `Retry-After` holds are kept (the same place as the counts).
        unavailable: The errors of a storage that cannot be reached (a Redis that went away).
    """

    def __init__(
        self,
        storage: Storage,
        holds: MemoryHolds | RedisHolds,
        unavailable: tuple[type[Exception], ...] = (),
    ) -> None:
        self.storage = storage
        self.holds = holds
        self.unavailable = unavailable
        self._requests = MovingWindowRateLimiter(storage)
        self._tokens = SlidingWindowCounterRateLimiter(storage)

    @classmethod
    def in_memory(cls) -> ProviderLimiter:
        """A limiter for this process alone."""
        return cls(MemoryStorage(), MemoryHolds())

    @classmethod
    def redis(cls, url: str, *, prefix: str = "switchyard:ratelimit") -> ProviderLimiter:
        """A limiter shared by every process that uses the same Redis and `prefix`."""
        storage = RedisStorage(
            url, key_prefix=prefix, wrap_exceptions=True, socket_timeout=2, socket_connect_timeout=2
        )
        import redis

        holds = RedisHolds(storage.get_connection(), f"{prefix}:")
        return cls(storage, holds, (StorageError, redis.RedisError))

    def try_acquire(self, model: str, limit: RateLimit, tokens: int) -> Denial | None:
        """Take one request and `tokens` tokens of `model`'s minute, or say why not (nothing taken).

        Tokens go first: a refused request gives them back (the token counter can be given back
        to; the request log cannot).
        """
        held = self.holds.held_for(model)
        if held > 0:
            return Denial(held, "the provider asked to wait (Retry-After)")
        if limit.tpm is not None:
            item = RateLimitItemPerMinute(limit.tpm)
            if tokens > limit.tpm:
                return Denial(0.0, f"~{tokens:,} tokens > {limit.tpm:,} tokens per minute", True)
            if tokens > 0 and not self._tokens.hit(item, model, "tpm", cost=tokens):
                wait = self._tokens_wait(item, model, tokens)
                return Denial(wait, f"{limit.tpm:,} tokens per minute")
        if limit.rpm is not None:
            item = RateLimitItemPerMinute(limit.rpm)
            if not self._requests.hit(item, model, "rpm"):
                if limit.tpm is not None and tokens > 0:
                    self.correct(model, limit, -tokens)
                reset = self._requests.get_window_stats(item, model, "rpm").reset_time
                # just past the reset: the window still counts a request made exactly then
                wait = max(reset - _clock(), 0.0) + _MIN_WAIT_S
                plural = "" if limit.rpm == 1 else "s"
                return Denial(wait, f"{limit.rpm} request{plural} per minute")
        return None

    def _tokens_wait(self, item: RateLimitItemPerMinute, model: str, tokens: int) -> float:
        """Seconds until the token counter has room for `tokens` (an estimate: ask again then).

        The sliding window counter weighs the previous minute's count by the part of it still
        inside the window, so room appears as that part shrinks, or when the minute rolls over.
        """
        key = item.key_for(model, "tpm")
        previous, previous_ttl, current, current_ttl = self.storage.get_sliding_window(  # type: ignore[attr-defined]
            key, WINDOW_S
        )
        room = item.amount - tokens - current
        if room >= 0 and previous > 0:
            wait = previous_ttl - room * WINDOW_S / previous
        else:  # only the next minute has room
            wait = current_ttl - WINDOW_S
        return float(max(wait, _MIN_WAIT_S))

    def correct(self, model: str, limit: RateLimit, tokens: int) -> None:
        """Add `tokens` (negative: give back) to `model`'s token count, after a call reported use.

        `limits` takes a negative cost as a refund. It refuses a cost larger than the minute's
        room; then the room left is taken instead, so the minute is full and the next caller
        waits (what a call used beyond the minute's limit is not carried into the next one).
        """
        if limit.tpm is None or tokens == 0:
            return
        item = RateLimitItemPerMinute(limit.tpm)
        if self._tokens.hit(item, model, "tpm", cost=tokens) or tokens < 0:
            return
        room = self._tokens.get_window_stats(item, model, "tpm").remaining
        if room > 0:
            self._tokens.hit(item, model, "tpm", cost=room)

    def hold(self, model: str, seconds: float) -> None:
        """Nobody sharing this limiter calls `model` for `seconds` (a provider's `Retry-After`)."""
        if seconds > 0:
            self.holds.hold(model, seconds)


_clock: Callable[[], float] = time.time
"""Wall-clock seconds (what `limits` counts in; tests replace both)."""
_sleep: Callable[[float], None] = time.sleep
"""Blocking wait for room (tests replace it to see the waits without taking them)."""
_asleep: Callable[[float], Awaitable[None]] = asyncio.sleep

_limiter: ProviderLimiter | None = None
_configured: dict[str, RateLimit] | None = None
_from_env: tuple[str, dict[str, RateLimit]] | None = None
_lock = threading.Lock()


def configure_rate_limits(
    rate_limits: Mapping[str, RateLimit | Mapping[str, int]] | None = None,
    *,
    limiter: ProviderLimiter | None = None,
) -> None:
    """Set the process's rate limits by model (None: back to `SWITCHYARD_RATE_LIMITS`, if set).

    Agents (`AgentSpec.rate_limits`) and runs (`Context.rate_limits`) may set their own for a
    model; this is what applies otherwise.

    Args:
        rate_limits: Limits by model string, e.g.
            `{"openai:gpt-4o-mini": RateLimit(rpm=60, tpm=100_000)}`.
        limiter: Where the counts are kept (None: in Redis when `SWITCHYARD_REDIS_URL` is set,
            else in this process, opened at the first limited call).

    Raises:
        ConfigError: A limit that is not valid.

    Example:
        ```python
        configure_rate_limits({"openai:gpt-4o-mini": RateLimit(rpm=500, tpm=200_000)})
        ```
    """
    global _configured, _limiter
    parsed = None if rate_limits is None else parse_rate_limits(rate_limits, where="rate_limits")
    with _lock:
        _configured = parsed
        _limiter = limiter


def process_rate_limits() -> dict[str, RateLimit]:
    """The process's limits: `configure_rate_limits`'s, else `SWITCHYARD_RATE_LIMITS`'s.

    Raises:
        ConfigError: `SWITCHYARD_RATE_LIMITS` is not a valid JSON object of limits.
    """
    global _from_env
    if _configured is not None:
        return _configured
    raw = os.environ.get(RATE_LIMITS_ENV, "").strip()
    if not raw:
        return {}
    if _from_env is None or _from_env[0] != raw:  # parsed once, not at every call
        _from_env = (raw, parse_rate_limits(raw, where=RATE_LIMITS_ENV))
    return _from_env[1]


def shared_limiter() -> ProviderLimiter:
    """The process's limiter (opened once: in Redis when `SWITCHYARD_REDIS_URL` is set).

    Raises:
        ConfigError: `SWITCHYARD_REDIS_URL` is set but Redis is unusable (see `check_redis`).
    """
    global _limiter
    if _limiter is not None:
        return _limiter
    with _lock:
        if _limiter is None:
            url = os.environ.get(REDIS_ENV, "").strip()
            if url:
                check_redis(url)  # a config error, not a failure of every call
                _limiter = ProviderLimiter.redis(url)
            else:
                _limiter = ProviderLimiter.in_memory()
        return _limiter


def rate_limit_for(
    model: str, agent_limits: RateLimits | None = None, run_limits: RateLimits | None = None
) -> RateLimit | None:
    """The limit a call to `model` is under: the run's, else the agent's, else the process's."""
    for limits in (run_limits, agent_limits, process_rate_limits()):
        if limits and model in limits:
            return limits[model]
    return None


def _run_limits(request: ModelRequest[Any]) -> RateLimits | None:
    """`Context.rate_limits` of the run `request` belongs to, if any.

    Read from the request's runtime, by name: `switchyard.state`, where `Context` lives, sits
    above the guardrails.
    """
    context = getattr(getattr(request, "runtime", None), "context", None)
    limits = getattr(context, "rate_limits", None)
    return limits if isinstance(limits, Mapping) else None


def _estimate(request: ModelRequest[Any]) -> int:
    """Tokens a call is expected to use: its prompt, plus its `max_tokens` or the default."""
    prompt = [request.system_message, *request.messages] if request.system_message else []
    max_tokens = getattr(request.model, "max_tokens", None)
    tokens_in, tokens_out = expected_tokens(
        prompt or request.messages, max_tokens if isinstance(max_tokens, int) else None
    )
    return tokens_in + tokens_out


@dataclass(frozen=True)
class _Ticket:
    """An admitted call: what it took, to correct afterwards."""

    model: str
    limit: RateLimit
    tokens: int


class RateLimitGuard(AgentMiddleware[Any, Any, Any]):
    """Admits each model call under its model's requests and tokens per minute, waiting for room.

    Placed inside the retry and fallback middleware, so every actual attempt (a retry, each
    fallback model) is admitted under its own model's limit, and inside the breaker, so a call the
    breaker refuses takes nothing. The wait is bounded by the run's deadline: a wait that would
    end past it raises `RateLimitedError` at once (end reason `rate_limited`). After the call the
    token count is corrected to the reply's reported usage; a failure's `Retry-After` holds every
    caller of the model (every process, with Redis) off until it ends.

    Args:
        agent: The agent whose calls this admits.
        rate_limits: The agent's own limits by model (`AgentSpec.rate_limits`).
    """

    def __init__(self, agent: str, *, rate_limits: RateLimits | None = None) -> None:
        super().__init__()
        self.agent = agent
        self.rate_limits = dict(rate_limits or {})

    def _limit(self, request: ModelRequest[Any]) -> tuple[str, RateLimit | None]:
        """The model `request` goes to, and its limit (None: not limited)."""
        model = model_name_of(request.model)
        return model, rate_limit_for(model, self.rate_limits, _run_limits(request))

    def _admission(
        self, request: ModelRequest[Any], model: str, limit: RateLimit
    ) -> Generator[float, None, _Ticket | None]:
        """The waits before `request` may go (yielded), then its ticket (None: let through).

        Raises:
            RateLimitedError: The wait would end past the run's deadline, or never end.
        """
        tokens = _estimate(request) if limit.tpm is not None else 0
        limiter = shared_limiter()
        while True:
            try:
                denial = limiter.try_acquire(model, limit, tokens)
            except limiter.unavailable as exc:
                # The provider still enforces its own limit (a 429 is retried): a Redis outage
                # must not stop every call of every worker.
                logger.warning(
                    "rate limits of %s cannot be read (%s): the call goes without them",
                    model,
                    describe_error(exc),
                )
                return None
            if denial is None:
                return _Ticket(model, limit, tokens)
            scope = current_scope()
            remaining = scope.remaining_s() if scope is not None else None
            if denial.never:
                raise RateLimitedError(
                    f"agent {self.agent!r}: the call to {model} can never be admitted: "
                    f"{denial.reason}; raise its tpm or lower max_tokens"
                )
            if remaining is not None and denial.wait_s >= remaining:
                raise RateLimitedError(
                    f"agent {self.agent!r}: {model} is rate limited ({denial.reason}); the next "
                    f"call may go in {denial.wait_s:.3g}s, past the run's deadline in "
                    f"{max(remaining, 0):.3g}s"
                )
            logger.info(
                "agent %s waits %.3gs for %s (%s)", self.agent, denial.wait_s, model, denial.reason
            )
            yield denial.wait_s

    def _settle(self, ticket: _Ticket | None, outcome: Outcome) -> None:
        """After the call: correct the token count; a `Retry-After` holds the model for everyone."""
        if ticket is None:
            return
        limiter = shared_limiter()
        try:
            self._record(limiter, ticket, outcome)
        except limiter.unavailable as exc:
            logger.warning(
                "rate limits of %s cannot be written (%s)", ticket.model, describe_error(exc)
            )

    def _record(self, limiter: ProviderLimiter, ticket: _Ticket, outcome: Outcome) -> None:
        """The tokens the call used, or the hold its provider asked for."""
        if outcome.error is None:
            used = tokens_of(reply_of(outcome))
            actual = 0 if used.cache_hit else used.total
            if actual or used.cache_hit:
                limiter.correct(ticket.model, ticket.limit, actual - ticket.tokens)
            return
        error: BaseException | None = outcome.error
        while error is not None:  # `RateLimitedError` of `CallLimits` wraps the provider's 429
            wait = retry_after_s(error)
            if wait:
                limiter.hold(ticket.model, wait)
                logger.warning(
                    "%s asked to wait %.3gs (%s): holding its callers off",
                    ticket.model,
                    wait,
                    describe_error(outcome.error),
                )
                return
            error = error.__cause__

    def wrap_model_call(self, request: ModelRequest[Any], handler: Callable[..., Any]) -> Any:
        """Wait for room, make the call, settle its tokens and any `Retry-After`."""
        model, limit = self._limit(request)
        if limit is None:  # the common case: one lookup, nothing else
            return handler(request)
        admission = self._admission(request, model, limit)
        try:
            while True:
                _sleep(next(admission))
        except StopIteration as admitted:
            ticket: _Ticket | None = admitted.value
        try:
            response = handler(request)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            self._settle(ticket, Outcome(error=exc))
            raise
        self._settle(ticket, Outcome(response=response))
        return response

    async def awrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[..., Awaitable[Any]]
    ) -> Any:
        """Async form of `wrap_model_call` (the wait does not block the event loop)."""
        model, limit = self._limit(request)
        if limit is None:
            return await handler(request)
        admission = self._admission(request, model, limit)
        try:
            while True:
                await _asleep(next(admission))
        except StopIteration as admitted:
            ticket: _Ticket | None = admitted.value
        try:
            response = await handler(request)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            self._settle(ticket, Outcome(error=exc))
            raise
        self._settle(ticket, Outcome(response=response))
        return response
