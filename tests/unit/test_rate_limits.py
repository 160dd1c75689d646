"""Provider rate limits: requests and tokens per minute per provider+model, within the deadline.

The limiter counts in `limits`' in-memory storage here (Redis: tests/integration/
test_rate_limits_redis.py). Time is a fake clock that `limits` and the limiter both read, and the
limiter's waits advance it instead of sleeping: the tests see each wait, never take one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import limits.storage.memory
import limits.strategies
import pytest
from limits import RateLimitItemPerMinute
from limits.strategies import SlidingWindowCounterRateLimiter

from switchyard import (
    Context,
    DeadLetterQueue,
    RateLimit,
    RateLimitedError,
    configure_rate_limits,
)
from switchyard.core.errors import ConfigError
from switchyard.core.offline import SimulatedProviderError
from switchyard.guardrails import limits as limits_module
from switchyard.guardrails import ratelimit
from switchyard.guardrails.ratelimit import (
    RATE_LIMITS_ENV,
    ProviderLimiter,
    RateLimitGuard,
    rate_limit_for,
)
from switchyard.nodes.chain import default_middleware
from switchyard.runtime.run import arun, run
from switchyard.state.outcomes import end_reason_for, guardrail_stop
from tests.fakes import scripted
from tests.patterns import PATTERNS, helper, run_or_invoke

MODEL = "fake:helper"


@dataclass
class FakeClock:
    """Wall-clock time for `limits` and the limiter; waits advance it and are recorded."""

    now: float = 1_000_020.0  # 20 s into a minute
    waits: list[float] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """A fake clock, and a fresh in-memory limiter with no process-wide limits."""
    fake = FakeClock()
    fake_time = SimpleNamespace(time=fake.time)
    monkeypatch.setattr(limits.storage.memory, "time", fake_time)
    monkeypatch.setattr(limits.strategies, "time", fake_time)
    monkeypatch.setattr(ratelimit, "_clock", fake.time)
    monkeypatch.setattr(ratelimit, "_sleep", fake.sleep)
    monkeypatch.setattr(ratelimit, "_asleep", fake.asleep)
    # CallLimits' own Retry-After wait before a retry: recorded apart, never taken
    monkeypatch.setattr(limits_module, "_sleep", lambda seconds: None)
    configure_rate_limits(None, limiter=ProviderLimiter.in_memory())
    yield fake
    configure_rate_limits(None)


def limited(**limit: int) -> Context:
    """A run whose `fake:helper` calls are under `limit`."""
    return Context(rate_limits={MODEL: RateLimit(**limit)})


def ask(graph: Any, text: str = "I need a refund", **kwargs: Any) -> Any:
    return run(graph, text, user_id="ada", dlq=None, **kwargs)


pytestmark = pytest.mark.usefixtures("eager")


# --- the limiter ------------------------------------------------------------------------------


def test_the_limit_admits_its_requests_then_the_next_waits_for_the_oldest(
    clock: FakeClock,
) -> None:
    limiter = ratelimit.shared_limiter()
    limit = RateLimit(rpm=3)
    for _ in range(3):
        assert limiter.try_acquire(MODEL, limit, 0) is None
        clock.now += 1
    denial = limiter.try_acquire(MODEL, limit, 0)
    assert denial is not None
    assert denial.wait_s == pytest.approx(
        57.0, abs=0.02
    )  # the first request leaves the window then
    assert denial.reason == "3 requests per minute"
    clock.now += denial.wait_s
    assert limiter.try_acquire(MODEL, limit, 0) is None
    assert limiter.try_acquire(MODEL, limit, 0) is not None  # the second one is still in it


def test_tokens_per_minute_count_tokens_and_a_refund_makes_room(clock: FakeClock) -> None:
    limiter = ratelimit.shared_limiter()
    limit = RateLimit(tpm=1_000)
    assert limiter.try_acquire(MODEL, limit, 600) is None
    denial = limiter.try_acquire(MODEL, limit, 600)
    assert denial is not None
    assert denial.reason == "1,000 tokens per minute"
    assert 0 < denial.wait_s <= 60
    assert limiter.try_acquire(MODEL, limit, 400) is None  # tokens, not requests, are counted
    limiter.correct(MODEL, limit, -500)  # the first call used 100, not 600
    assert limiter.try_acquire(MODEL, limit, 500) is None


def test_a_call_that_used_more_than_its_estimate_fills_the_minute(clock: FakeClock) -> None:
    limiter = ratelimit.shared_limiter()
    limit = RateLimit(tpm=10_000)
    assert limiter.try_acquire(MODEL, limit, 9_000) is None
    limiter.correct(MODEL, limit, 3_000)  # it used 12,000: more than the minute's room
    assert limiter.try_acquire(MODEL, limit, 900) is not None  # the next call waits


def test_a_refused_request_gives_its_tokens_back(clock: FakeClock) -> None:
    limiter = ratelimit.shared_limiter()
    limit = RateLimit(rpm=1, tpm=1_000)
    tokens = SlidingWindowCounterRateLimiter(limiter.storage)
    item = RateLimitItemPerMinute(1_000)
    assert limiter.try_acquire(MODEL, limit, 500) is None
    assert tokens.get_window_stats(item, MODEL, "tpm").remaining == 500
    denial = limiter.try_acquire(MODEL, limit, 500)
    assert denial is not None
    assert denial.reason == "1 request per minute"
    assert tokens.get_window_stats(item, MODEL, "tpm").remaining == 500


def test_limits_of_different_models_are_separate(clock: FakeClock) -> None:
    limiter = ratelimit.shared_limiter()
    assert limiter.try_acquire("openai:gpt-4o-mini", RateLimit(rpm=1), 0) is None
    assert limiter.try_acquire("openai:gpt-4o", RateLimit(rpm=1), 0) is None
    assert limiter.try_acquire("openai:gpt-4o-mini", RateLimit(rpm=1), 0) is not None


def test_a_hold_stops_every_caller_of_the_model_until_it_ends(clock: FakeClock) -> None:
    limiter = ratelimit.shared_limiter()
    limiter.hold(MODEL, 20)
    limiter.hold(MODEL, 5)  # a shorter hold does not cut the longer one
    denial = limiter.try_acquire(MODEL, RateLimit(rpm=100), 0)
    assert denial is not None
    assert (denial.wait_s, denial.reason) == (20, "the provider asked to wait (Retry-After)")
    assert limiter.try_acquire("fake:other", RateLimit(rpm=100), 0) is None
    clock.now += 20
    assert limiter.try_acquire(MODEL, RateLimit(rpm=100), 0) is None


# --- through runs -----------------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_run_waits_for_room_then_answers(clock: FakeClock, asynchronous: bool) -> None:
    graph = PATTERNS["pipeline"](helper(model=MODEL))
    context = limited(rpm=2)
    with scripted(MODEL, "one", "two", "three") as model:
        for turn in range(3):
            if asynchronous:
                result = await arun(graph, f"turn {turn}", user_id="ada", dlq=None, context=context)
            else:
                result = ask(graph, f"turn {turn}", context=context)
            assert result.ok, result.error
    assert len(model.calls) == 3
    # the third call waited for the first to leave the minute (the fake clock stood still)
    assert clock.waits == [pytest.approx(60, abs=0.02)]


def test_tokens_per_minute_are_corrected_to_the_reported_usage(clock: FakeClock) -> None:
    # each call is estimated at its prompt plus 512 expected output tokens, and reports 15
    graph = PATTERNS["pipeline"](helper(model=MODEL))
    context = limited(tpm=1_200)
    with scripted(MODEL, *["answer"] * 5) as model:
        for turn in range(5):
            assert ask(graph, f"turn {turn}", context=context).ok
    assert len(model.calls) == 5
    assert clock.waits == []  # 5 x 15 tokens used; without the correction the third would wait


def test_a_429_with_retry_after_holds_other_callers_off(clock: FakeClock) -> None:
    busy = SimulatedProviderError("429 too many requests", status_code=429)
    busy.response = SimpleNamespace(headers={"retry-after": "20"})  # type: ignore[attr-defined]
    graph = PATTERNS["pipeline"](helper(model=MODEL))
    context = limited(rpm=100)
    with scripted(MODEL, busy):
        # the agent has one attempt: its run fails, but the model is held for 20 s
        assert not ask(graph, "first", context=context).ok
    with scripted(MODEL, "answered") as model:
        # another run (another session, another caller) waits out the hold before its call
        result = ask(graph, "second", context=context)
    assert result.ok, result.error
    assert len(model.calls) == 1
    assert clock.waits == [pytest.approx(20)]


def test_the_retry_after_a_429_waits_for_the_hold(clock: FakeClock) -> None:
    busy = SimulatedProviderError("429 too many requests", status_code=429)
    busy.response = SimpleNamespace(headers={"retry-after": "20"})  # type: ignore[attr-defined]
    graph = PATTERNS["pipeline"](helper(model=MODEL, max_attempts=2))
    with scripted(MODEL, busy, "answered") as model:
        result = ask(graph, context=limited(rpm=100))
    assert result.ok, result.error
    assert len(model.calls) == 2
    assert clock.waits == [pytest.approx(20)]


@pytest.mark.parametrize("entry", ["run", "invoke"])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_wait_past_the_deadline_ends_the_run_rate_limited(
    clock: FakeClock, pattern: str, entry: str
) -> None:
    ratelimit.shared_limiter().try_acquire(MODEL, RateLimit(rpm=1), 0)  # the minute is used up
    context = Context(rate_limits={MODEL: RateLimit(rpm=1)}, deadline_s=30)
    graph = PATTERNS[pattern](helper(model=MODEL))
    with scripted(MODEL) as model:  # no reply: a call would fail the test
        ended = run_or_invoke(graph, entry, context=context)
    assert model.calls == []
    assert clock.waits == []  # not waited for: it would end past the deadline
    assert ended.end_reason == "rate_limited"
    if entry == "run":
        assert [letter.end_reason for letter in DeadLetterQueue().list()] == ["rate_limited"]
        assert "fake:helper is rate limited (1 request per minute)" in ended.error
        assert "past the run's deadline" in ended.error


def test_a_rate_limited_model_goes_to_the_fallback_model(clock: FakeClock) -> None:
    ratelimit.shared_limiter().try_acquire(MODEL, RateLimit(rpm=1), 0)
    context = Context(rate_limits={MODEL: RateLimit(rpm=1)}, deadline_s=30)
    graph = PATTERNS["pipeline"](helper(model=MODEL, fallback_models=("fake:spare",)))
    with scripted(MODEL), scripted("fake:spare", "from the spare") as spare:
        result = ask(graph, context=context)
    assert result.ok, result.error
    assert len(spare.calls) == 1


def test_a_call_larger_than_the_minute_is_refused_at_once(clock: FakeClock) -> None:
    graph = PATTERNS["pipeline"](helper(model=MODEL))  # expects 512 output tokens, at least
    with scripted(MODEL) as model:
        result = ask(graph, context=limited(tpm=100))
    assert result.end_reason == "rate_limited"
    assert "can never be admitted" in str(result.error)
    assert model.calls == []


def test_the_rate_limited_end_reason_is_a_guardrail_stop() -> None:
    error = RateLimitedError("busy")
    assert end_reason_for(error) == "rate_limited"
    assert guardrail_stop(error) == "rate_limited"


# --- configuration ----------------------------------------------------------------------------


def test_the_run_overrides_the_agent_which_overrides_the_process(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_rate_limits({MODEL: RateLimit(rpm=1)})
    assert rate_limit_for(MODEL) == RateLimit(rpm=1)
    assert rate_limit_for(MODEL, {MODEL: RateLimit(rpm=2)}) == RateLimit(rpm=2)
    assert rate_limit_for("offline") is None  # nothing limits a model no limit names
    graph = PATTERNS["pipeline"](helper(model=MODEL, rate_limits={MODEL: RateLimit(rpm=2)}))
    with scripted(MODEL, "one", "two", "three"):
        for turn in range(2):
            assert ask(graph, f"turn {turn}").ok  # the agent's 2, not the process's 1
        assert ask(graph, "turn 2", context=limited(rpm=5)).ok  # the run's 5
    assert clock.waits == []


def test_the_environment_variable_sets_the_process_limits(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RATE_LIMITS_ENV, json.dumps({MODEL: {"rpm": 60, "tpm": 100_000}}))
    assert rate_limit_for(MODEL) == RateLimit(rpm=60, tpm=100_000)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "SWITCHYARD_RATE_LIMITS is not JSON"),
        ('["openai:gpt-4o"]', "must map model strings to rate limits, got list"),
        ('{"openai:gpt-4o": {"rpm": 0}}', "SWITCHYARD_RATE_LIMITS['openai:gpt-4o'].rpm"),
        ('{"openai:gpt-4o": {"rpm": "many"}}', "valid integer"),
        ('{"openai:gpt-4o": {}}', "set rpm, tpm or both"),
        ('{"openai:gpt-4o": {"rpd": 5}}', "Extra inputs are not permitted"),
    ],
)
def test_a_bad_environment_variable_is_one_config_error(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv(RATE_LIMITS_ENV, value)
    with pytest.raises(ConfigError, match=None) as raised:
        rate_limit_for(MODEL)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_bad_limits_in_a_context_or_the_process_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"rate_limits\['fake:helper'\]\.tpm"):
        Context(rate_limits={MODEL: {"tpm": -5}})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="model names must be non-empty strings"):
        configure_rate_limits({"": RateLimit(rpm=1)})
    # a context sent as JSON (Studio, the Agent Server) gets its limits validated
    assert Context(rate_limits={MODEL: {"rpm": 5}}).rate_limits == {  # type: ignore[dict-item]
        MODEL: RateLimit(rpm=5)
    }


def test_the_guard_is_in_every_agents_chain_inside_the_breaker() -> None:
    names = [type(layer).__name__ for layer in default_middleware(helper())]
    assert names.index("RateLimitGuard") == names.index("BreakerGuard") + 1
    assert names.index("RateLimitGuard") < names.index("CallLimits")
    guard = next(
        m
        for m in default_middleware(helper(rate_limits={MODEL: {"rpm": 3}}))
        if isinstance(m, RateLimitGuard)
    )
    assert guard.rate_limits == {MODEL: RateLimit(rpm=3)}


def test_a_model_without_a_limit_passes_untouched(clock: FakeClock) -> None:
    graph = PATTERNS["pipeline"](helper(model=MODEL))
    with scripted(MODEL, *["answer"] * 3):
        for turn in range(3):
            assert ask(graph, f"turn {turn}").ok
    assert clock.waits == []
