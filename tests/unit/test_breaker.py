"""The circuit breaker's state machine, its shared registry, and its stores (memory and Redis).

Time is the breaker module's clock, replaced by one the test advances: no test waits.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from switchyard.core.offline import SimulatedProviderError
from switchyard.guardrails import breaker as breaker_module
from switchyard.guardrails.breaker import (
    BreakerStore,
    CircuitBreaker,
    CircuitOpenError,
    MemoryStore,
    RedisStore,
    breaker_for,
    configure_breakers,
)

REDIS_URL = "redis://127.0.0.1:6379/0"

TRANSIENT = SimulatedProviderError("overloaded", status_code=503)
PERMANENT = SimulatedProviderError("bad request", status_code=400)


class Clock:
    """Stands in for the `time` module inside `switchyard.guardrails.breaker`."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(breaker_module, "time", fake)
    return fake


def make(store: BreakerStore | None = None, **settings: Any) -> CircuitBreaker:
    settings = {"failure_threshold": 3, "cooldown_s": 10.0, **settings}
    return CircuitBreaker("openai:gpt-4o-mini", store or MemoryStore(), **settings)


def fail(breaker: CircuitBreaker, times: int, exc: BaseException = TRANSIENT) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.on_failure(exc)


# --- the state machine --------------------------------------------------------------------------


def test_closed_until_the_threshold_then_open(clock: Clock) -> None:
    breaker = make()
    fail(breaker, 2)
    assert breaker.state() == "closed"
    breaker.before_call()  # still allowed
    breaker.on_failure(TRANSIENT)
    assert breaker.state() == "open"
    assert breaker.store.get(breaker.name).failures == 3


def test_an_open_breaker_refuses_calls_and_says_when_to_retry(clock: Clock) -> None:
    breaker = make()
    fail(breaker, 3)
    clock.advance(4.0)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.before_call()
    assert raised.value.model == "openai:gpt-4o-mini"
    assert raised.value.retry_in_s == pytest.approx(6.0)
    assert str(raised.value) == (
        "circuit open for openai:gpt-4o-mini: too many consecutive failures; "
        "next trial call in 6.0s"
    )


def test_after_the_cooldown_a_trial_is_let_through_and_success_closes(clock: Clock) -> None:
    breaker = make()
    fail(breaker, 3)
    clock.advance(10.0)
    assert breaker.state() == "half_open"
    breaker.before_call()
    breaker.on_success()
    assert breaker.state() == "closed"
    assert breaker.store.get(breaker.name).failures == 0
    fail(breaker, 2)  # counting starts again from zero
    assert breaker.state() == "closed"


def test_a_failed_trial_opens_the_breaker_for_a_new_cooldown(clock: Clock) -> None:
    breaker = make()
    fail(breaker, 3)
    clock.advance(10.0)
    fail(breaker, 1)  # the trial call fails
    assert breaker.state() == "open"
    clock.advance(9.0)
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    clock.advance(1.0)
    assert breaker.state() == "half_open"


def test_state_can_be_asked_for_any_moment(clock: Clock) -> None:
    breaker = make()
    fail(breaker, 3)
    assert breaker.state(now=clock.now + 9.99) == "open"
    assert breaker.state(now=clock.now + 10.0) == "half_open"


def test_only_transient_failures_count(clock: Clock) -> None:
    breaker = make()
    fail(breaker, 10, PERMANENT)
    fail(breaker, 10, ValueError("schema mismatch"))
    assert breaker.state() == "closed"
    assert breaker.store.get(breaker.name).failures == 0


def test_failures_must_be_consecutive(clock: Clock) -> None:
    breaker = make()
    fail(breaker, 2)
    breaker.on_success()
    fail(breaker, 2)
    assert breaker.state() == "closed"


def test_a_threshold_of_one_opens_on_the_first_failure(clock: Clock) -> None:
    breaker = make(failure_threshold=1)
    fail(breaker, 1)
    assert breaker.state() == "open"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold must be at least 1, got 0"),
        ({"failure_threshold": -3}, "failure_threshold must be at least 1, got -3"),
        ({"cooldown_s": 0}, "cooldown_s must be positive, got 0"),
        ({"cooldown_s": -1.5}, "cooldown_s must be positive, got -1.5"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**settings)
    with pytest.raises(ValueError, match=message):
        configure_breakers(**settings)


def test_half_open_lets_exactly_one_trial_call_through(clock: Clock) -> None:
    breaker = make()
    fail(breaker, 3)
    clock.advance(10.0)
    breaker.before_call()  # the trial, still in flight
    with pytest.raises(CircuitOpenError):
        breaker.before_call()


# --- the shared registry ------------------------------------------------------------------------


def test_one_breaker_per_model_shared_by_every_caller(clock: Clock) -> None:
    configure_breakers(failure_threshold=2, cooldown_s=5.0)
    assert breaker_for("openai:gpt-4o") is breaker_for("openai:gpt-4o")
    fail(breaker_for("openai:gpt-4o"), 2)
    assert breaker_for("openai:gpt-4o").state() == "open"
    assert breaker_for("openai:gpt-4o-mini").state() == "closed"
    assert breaker_for("openai:gpt-4o").failure_threshold == 2
    assert breaker_for("openai:gpt-4o").cooldown_s == 5.0


def test_configure_breakers_applies_new_settings_to_every_model(clock: Clock) -> None:
    configure_breakers(failure_threshold=2)
    before = breaker_for("offline")
    configure_breakers(failure_threshold=7, cooldown_s=1.0)
    after = breaker_for("offline")
    assert after is not before
    assert (after.failure_threshold, after.cooldown_s) == (7, 1.0)


def test_configure_breakers_takes_a_store() -> None:
    store = MemoryStore()
    configure_breakers(store=store)
    assert breaker_for("offline").store is store


@pytest.mark.enable_socket
def test_the_redis_url_selects_the_redis_store(
    monkeypatch: pytest.MonkeyPatch, redis_server: str
) -> None:
    monkeypatch.setenv("SWITCHYARD_REDIS_URL", redis_server)
    configure_breakers()
    # The first breaker opens the store, which PINGs the server (an unreachable one is a
    # ConfigError, tests/unit/test_config_checks.py): hence a live Redis here.
    assert isinstance(breaker_for("offline").store, RedisStore)


def test_without_the_redis_url_the_store_is_in_memory() -> None:
    configure_breakers()
    assert isinstance(breaker_for("offline").store, MemoryStore)


def test_the_memory_store_counts_concurrent_failures_exactly() -> None:
    store = MemoryStore()

    def hammer() -> None:
        for _ in range(200):
            store.record_failure("m", 10_000, 1.0)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("m").failures == 1600


def test_the_memory_store_returns_copies() -> None:
    store = MemoryStore()
    store.record_failure("m", 5, 1.0)
    snapshot = store.get("m")
    snapshot.failures = 99
    assert store.get("m").failures == 1


# --- Redis: one breaker shared by several workers -----------------------------------------------


@pytest.fixture
def redis_server() -> str:
    """The Redis URL, once it answers PING; skips (or, with CI=true, fails) when Redis is down."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required in CI: {exc}", pytrace=False)
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    """A key prefix of this test's own, on a Redis that answers (see `redis_server`)."""
    import redis

    client = redis.Redis.from_url(redis_server, socket_timeout=2)
    prefix = f"switchyard-test:{uuid.uuid4().hex}:"
    yield prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.mark.enable_socket
def test_redis_workers_share_one_breaker(clock: Clock, redis_prefix: str) -> None:
    worker_a = make(RedisStore(REDIS_URL, prefix=redis_prefix))
    worker_b = make(RedisStore(REDIS_URL, prefix=redis_prefix))
    fail(worker_a, 2)
    fail(worker_b, 1)  # the third failure, counted by another worker
    assert worker_a.state() == "open"
    with pytest.raises(CircuitOpenError):
        worker_a.before_call()
    with pytest.raises(CircuitOpenError):
        worker_b.before_call()
    clock.advance(10.0)
    assert worker_a.state() == worker_b.state() == "half_open"
    worker_b.before_call()  # worker b claims the one trial call...
    with pytest.raises(CircuitOpenError):
        worker_a.before_call()  # ...so worker a fails fast while it is in flight
    worker_b.on_success()
    assert worker_a.state() == "closed"
    assert worker_a.store.get(worker_a.name).failures == 0


@pytest.mark.enable_socket
def test_redis_state_round_trips_and_expires(clock: Clock, redis_prefix: str) -> None:
    import redis

    store = RedisStore(REDIS_URL, prefix=redis_prefix)
    assert store.get("m").failures == 0
    assert store.get("m").opened_at is None
    state = store.record_failure("m", 1, 1234.5)
    assert (state.failures, state.opened_at) == (1, 1234.5)
    ttl = redis.Redis.from_url(REDIS_URL).ttl(f"{redis_prefix}m")
    assert 0 < ttl <= 24 * 3600  # a forgotten breaker does not stay open forever
    store.record_success("m")
    assert store.get("m").failures == 0


@pytest.mark.enable_socket
def test_redis_counts_concurrent_failures_exactly(redis_prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=redis_prefix)

    def hammer() -> None:
        for _ in range(50):
            store.record_failure("m", 10_000, 1.0)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("m").failures == 200


@pytest.mark.enable_socket
def test_the_registry_uses_redis_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, redis_prefix: str
) -> None:
    import redis

    model = f"openai:test-{uuid.uuid4().hex}"
    monkeypatch.setenv("SWITCHYARD_REDIS_URL", REDIS_URL)
    configure_breakers(failure_threshold=1)
    try:
        fail(breaker_for(model), 1)
        # another process: its own registry and client, the same Redis
        other = CircuitBreaker(model, RedisStore(REDIS_URL), failure_threshold=1)
        assert other.state() == "open"
    finally:
        redis.Redis.from_url(REDIS_URL).delete(f"switchyard:breaker:{model}")
