"""Circuit breakers per provider+model, shared by all runs in a process or, with Redis, all workers.

closed -> open after `failure_threshold` consecutive transient failures -> half-open after
`cooldown_s` (one trial call is let through) -> closed on success, open again on failure. While
open, calls fail fast with `CircuitOpenError`, which the agent's fallback chain handles without
touching the provider. Only transient failures (`switchyard.core.resilience.is_transient`) count: a
validation error says nothing about the provider's health.

Why not a library: we evaluated pybreaker, purgatory and circuitbreaker. circuitbreaker has no
shared storage; pybreaker's async support requires Tornado; purgatory keeps its sync and async
breakers in separate stores (a process that uses both would see two breakers for one provider) and
can only be driven as a context manager around the call, not asked "may I call?" before a fallback
decision. The state machine is small, so we keep it here with a store interface (memory, Redis)
that makes it shared across workers.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from langchain.agents.middleware import ModelRequest

from switchyard.core.errors import ConfigError, SwitchyardError
from switchyard.core.models import model_name_of
from switchyard.core.resilience import is_transient
from switchyard.guardrails.guard import Attempt, CallGuard

REDIS_ENV = "SWITCHYARD_REDIS_URL"

State = Literal["closed", "open", "half_open"]


class CircuitOpenError(SwitchyardError):
    """The breaker for a model is open: the call was not made."""

    def __init__(self, model: str, retry_in_s: float) -> None:
        super().__init__(
            f"circuit open for {model}: too many consecutive failures; "
            f"next trial call in {retry_in_s:.1f}s"
        )
        self.model = model
        self.retry_in_s = retry_in_s


@dataclass
class BreakerState:
    """What a store keeps per breaker."""

    failures: int = 0
    opened_at: float | None = None


class BreakerStore(Protocol):
    """Where breaker state lives; implementations must be safe for concurrent use."""

    def get(self, name: str) -> BreakerState:
        """Current state of a breaker."""
        ...

    def record_failure(self, name: str, threshold: int, now: float) -> BreakerState:
        """Count a failure; open (or re-open) the breaker at `threshold`; return the new state."""
        ...

    def record_success(self, name: str) -> None:
        """Close the breaker and reset its count."""
        ...

    def claim_trial(self, name: str, now: float, lease_s: float) -> bool:
        """Atomically claim the one trial call of a half-open breaker.

        True for the first caller; False while that trial's lease (`lease_s`) is running.
        """
        ...


class MemoryStore:
    """Process-local store: shared by all runs (sync and async) in the process."""

    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}
        self._trials: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> BreakerState:
        """Current state of a breaker."""
        with self._lock:
            state = self._states.get(name, BreakerState())
            return BreakerState(state.failures, state.opened_at)

    def record_failure(self, name: str, threshold: int, now: float) -> BreakerState:
        """Count a failure; open at `threshold`."""
        with self._lock:
            state = self._states.setdefault(name, BreakerState())
            state.failures += 1
            if state.failures >= threshold:
                state.opened_at = now
                self._trials.pop(name, None)  # a failed trial re-opens: the next one is new
            return BreakerState(state.failures, state.opened_at)

    def record_success(self, name: str) -> None:
        """Close the breaker."""
        with self._lock:
            self._states.pop(name, None)
            self._trials.pop(name, None)

    def claim_trial(self, name: str, now: float, lease_s: float) -> bool:
        """Claim the half-open trial call (first caller wins until its lease runs out)."""
        with self._lock:
            claimed = self._trials.get(name)
            if claimed is not None and now - claimed < lease_s:
                return False
            self._trials[name] = now
            return True


class RedisStore:
    """Store shared by every worker that points at the same Redis (`SWITCHYARD_REDIS_URL`)."""

    def __init__(self, url: str, *, prefix: str = "switchyard:breaker:") -> None:
        import redis

        self._client: Any = redis.Redis.from_url(url, socket_timeout=2, decode_responses=True)
        self._prefix = prefix

    def get(self, name: str) -> BreakerState:
        """Current state of a breaker."""
        raw = self._client.hgetall(self._prefix + name)
        opened = raw.get("opened_at")
        return BreakerState(int(raw.get("failures", 0)), float(opened) if opened else None)

    def record_failure(self, name: str, threshold: int, now: float) -> BreakerState:
        """Count a failure atomically; open at `threshold`."""
        key = self._prefix + name
        failures = int(self._client.hincrby(key, "failures", 1))
        if failures >= threshold:
            self._client.hset(key, "opened_at", repr(now))
            self._client.delete(key + ":trial")
        self._client.expire(key, 24 * 3600)
        return self.get(name)

    def record_success(self, name: str) -> None:
        """Close the breaker."""
        self._client.delete(self._prefix + name, self._prefix + name + ":trial")

    def claim_trial(self, name: str, now: float, lease_s: float) -> bool:
        """Claim the half-open trial call across workers (`SET NX` with an expiry)."""
        lease_ms = max(1, int(lease_s * 1000))
        return bool(
            self._client.set(self._prefix + name + ":trial", repr(now), nx=True, px=lease_ms)
        )


class CircuitBreaker:
    """One breaker (one provider+model); see the module docstring for the state machine."""

    def __init__(
        self,
        name: str,
        store: BreakerStore,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if cooldown_s <= 0:
            raise ValueError(f"cooldown_s must be positive, got {cooldown_s}")
        self.name = name
        self.store = store
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s

    def state(self, now: float | None = None) -> State:
        """closed, open, or half_open (cool-down over: the next call is a trial)."""
        current = self.store.get(self.name)
        if current.opened_at is None:
            return "closed"
        now = time.time() if now is None else now
        return "half_open" if now - current.opened_at >= self.cooldown_s else "open"

    def before_call(self) -> None:
        """Raise `CircuitOpenError` when the call must not be made (open, or a trial in flight)."""
        current = self.store.get(self.name)
        if current.opened_at is None:
            return
        now = time.time()
        waited = now - current.opened_at
        if waited < self.cooldown_s:
            raise CircuitOpenError(self.name, self.cooldown_s - waited)
        # Half-open: one trial call goes through; the others fail fast until it reports back
        # (or its lease, one cool-down, runs out).
        if not self.store.claim_trial(self.name, now, self.cooldown_s):
            raise CircuitOpenError(self.name, self.cooldown_s)

    def on_success(self) -> None:
        """A call succeeded: close the breaker."""
        if self.store.get(self.name).failures:
            self.store.record_success(self.name)

    def on_failure(self, exc: BaseException) -> None:
        """A call failed: count it if the failure is transient."""
        if is_transient(exc):
            self.store.record_failure(self.name, self.failure_threshold, time.time())


_store: BreakerStore | None = None
_breakers: dict[str, CircuitBreaker] = {}
_lock = threading.Lock()
_settings = {"failure_threshold": 5, "cooldown_s": 30.0}


def configure_breakers(
    *, failure_threshold: int = 5, cooldown_s: float = 30.0, store: BreakerStore | None = None
) -> None:
    """Set the thresholds (and optionally the store) for breakers created from now on.

    Existing breakers are dropped, so the new settings apply to every model.
    """
    global _store
    CircuitBreaker(
        "check", MemoryStore(), failure_threshold=failure_threshold, cooldown_s=cooldown_s
    )  # validates
    with _lock:
        _settings["failure_threshold"] = failure_threshold
        _settings["cooldown_s"] = cooldown_s
        _store = store
        _breakers.clear()


def check_redis(url: str | None = None) -> None:
    """Refuse a Redis URL that cannot be used, in one line, before anything runs.

    Args:
        url: The URL to check; `SWITCHYARD_REDIS_URL` when None. Unset or empty: nothing to check.

    Raises:
        ConfigError: The URL is malformed, the `redis` package is missing, or the server does not
            answer a PING (host and port named, never the password).
    """
    url = (os.environ.get(REDIS_ENV, "") if url is None else url).strip()
    if not url:
        return
    try:
        import redis
    except ImportError:
        raise ConfigError(
            f"{REDIS_ENV} is set but the redis package is missing: "
            "pip install 'switchyard-agents[redis]', or unset it"
        ) from None
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    except ValueError as exc:
        raise ConfigError(
            f"{REDIS_ENV} is not a Redis URL ({exc}); expected redis://HOST:PORT/DB"
        ) from None
    settings = client.connection_pool.connection_kwargs
    host, port = settings.get("host", "localhost"), settings.get("port", 6379)
    where = settings.get("path") or f"{host}:{port}"
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
        raise ConfigError(
            f"Redis at {where} ({REDIS_ENV}) does not answer: {reason or type(exc).__name__}; "
            f"start it or fix the URL, or unset {REDIS_ENV} to keep breakers in this process"
        ) from None
    finally:
        client.close()


def _default_store() -> BreakerStore:
    url = os.environ.get(REDIS_ENV, "").strip()
    if not url:
        return MemoryStore()
    check_redis(url)  # a config error, not a transient failure retried at every call
    return RedisStore(url)


def check_breaker_store() -> None:
    """Open the process's breaker store now (once), so a bad Redis is refused before a run.

    Raises:
        ConfigError: `SWITCHYARD_REDIS_URL` is set but unusable (see `check_redis`).
    """
    global _store
    if _store is not None:
        return
    with _lock:
        if _store is None:
            _store = _default_store()


def breaker_for(model: str) -> CircuitBreaker:
    """The shared breaker of a provider+model string."""
    global _store
    breaker = _breakers.get(model)
    if breaker is not None:
        return breaker
    with _lock:
        if _store is None:
            _store = _default_store()
        breaker = _breakers.get(model)
        if breaker is None:
            breaker = CircuitBreaker(
                model,
                _store,
                failure_threshold=int(_settings["failure_threshold"]),
                cooldown_s=float(_settings["cooldown_s"]),
            )
            _breakers[model] = breaker
        return breaker


class BreakerGuard(CallGuard):
    """The circuit breaker of the model each call goes to: fail fast while open, count failures.

    Placed inside the fallback and retry middleware, so an open breaker sends the call straight
    to the agent's next fallback model, and every attempt (a retry, a fallback) is counted.
    """

    def before(self, request: ModelRequest[Any]) -> tuple[ModelRequest[Any], Any]:
        """Refuse the call with `CircuitOpenError` while its model's breaker is open."""
        breaker = breaker_for(model_name_of(request.model))
        breaker.before_call()
        return request, breaker

    def after(self, attempt: Attempt) -> None:
        """Close the breaker on success; count a transient failure."""
        breaker: CircuitBreaker = attempt.ticket
        if attempt.error is None:
            breaker.on_success()
        else:
            breaker.on_failure(attempt.error)
