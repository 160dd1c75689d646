"""Rate limits shared through Redis: limiters of different processes draw on one budget.

Each test counts under a key prefix of its own on the suite's Redis (127.0.0.1:6379 here and in
CI; skipped with the reason locally when it does not answer, failed in CI: see conftest). The
`switchyard bench ratelimit --quick` run at the end has four worker processes share one limit.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from switchyard import Context, RateLimit, configure_rate_limits
from switchyard.cli import bench as bench_cli
from switchyard.core.errors import ConfigError
from switchyard.guardrails import ratelimit
from switchyard.guardrails.ratelimit import ProviderLimiter, shared_limiter
from switchyard.runtime.run import run
from tests.fakes import scripted
from tests.patterns import PATTERNS, eager_supervisor, helper

MODEL = "fake:helper"


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are dropped afterwards."""
    import redis

    name = f"switchyard:test:ratelimit:{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(f"{name}*"):
            client.delete(key)
    finally:
        client.close()
    configure_rate_limits(None)


def two_workers(redis_url: str, prefix: str) -> tuple[ProviderLimiter, ProviderLimiter]:
    """Two limiters with connections of their own, as two worker processes would have."""
    return ProviderLimiter.redis(redis_url, prefix=prefix), ProviderLimiter.redis(
        redis_url, prefix=prefix
    )


def test_two_limiters_share_one_budget_of_requests(redis_url: str, prefix: str) -> None:
    first, second = two_workers(redis_url, prefix)
    limit = RateLimit(rpm=3)
    assert first.try_acquire(MODEL, limit, 0) is None
    assert second.try_acquire(MODEL, limit, 0) is None
    assert first.try_acquire(MODEL, limit, 0) is None
    for limiter in (first, second):
        denial = limiter.try_acquire(MODEL, limit, 0)
        assert denial is not None
        assert denial.reason == "3 requests per minute"
        assert 55 < denial.wait_s <= 60.1
    alone = ProviderLimiter.redis(redis_url, prefix=f"{prefix}:other")
    assert alone.try_acquire(MODEL, limit, 0) is None  # another prefix: another budget


def test_two_limiters_share_tokens_and_refunds(redis_url: str, prefix: str) -> None:
    first, second = two_workers(redis_url, prefix)
    limit = RateLimit(tpm=1_000)
    assert first.try_acquire(MODEL, limit, 700) is None
    denial = second.try_acquire(MODEL, limit, 700)
    assert denial is not None
    assert denial.reason == "1,000 tokens per minute"
    first.correct(MODEL, limit, -600)  # the first call reported 100 tokens
    assert second.try_acquire(MODEL, limit, 700) is None


def test_a_retry_after_from_one_worker_holds_the_other_off(redis_url: str, prefix: str) -> None:
    first, second = two_workers(redis_url, prefix)
    first.hold(MODEL, 20)
    denial = second.try_acquire(MODEL, RateLimit(rpm=100), 0)
    assert denial is not None
    assert denial.reason == "the provider asked to wait (Retry-After)"
    assert 19 < denial.wait_s <= 20
    second.hold(MODEL, 1)  # a shorter hold keeps the longer one
    assert first.holds.held_for(MODEL) > 19


def test_the_redis_url_shares_the_processs_limiter(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_REDIS_URL", redis_url)
    configure_rate_limits(None)
    assert type(shared_limiter().holds).__name__ == "RedisHolds"


def test_a_run_is_rate_limited_by_another_processs_calls(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the other worker used the minute; this process's run would wait past its deadline
    other, here = two_workers(redis_url, prefix)
    assert other.try_acquire(MODEL, RateLimit(rpm=1), 0) is None
    configure_rate_limits({MODEL: RateLimit(rpm=1)}, limiter=here)
    graph = PATTERNS["pipeline"](helper(model=MODEL))
    with eager_supervisor(), scripted(MODEL) as model:
        result = run(graph, "I need a refund", user_id="ada", context=Context(deadline_s=30))
    assert result.end_reason == "rate_limited"
    assert model.calls == []


def test_an_unreachable_redis_is_one_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(ratelimit, "_limiter", None)
    with pytest.raises(ConfigError, match=r"Redis at 127\.0\.0\.1:1 \(SWITCHYARD_REDIS_URL\)"):
        shared_limiter()


def test_the_benchmark_runs_four_workers_through_redis(redis_url: str, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    bench_cli.add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["bench", "ratelimit", "--quick", "--dir", str(tmp_path), "--redis", redis_url]
    )
    assert args.handler(args, Console(file=None, quiet=True)) == 0
    result = json.loads((tmp_path / "results" / "ratelimit.json").read_text())
    provider = next(row for row in result["rows"] if row["kind"] == "provider")
    workers = [row for row in result["rows"] if row["kind"] == "worker"]
    assert len(workers) == 4
    assert provider["requests"] > 0  # it ran and measured: no speed is asserted
    # the shared limit held: a count, whatever the machine's speed (a quick run is under a minute)
    assert provider["requests"] <= result["config"]["rpm"]
    completed = sum(w["endings"].get("completed", 0) for w in workers)
    # a worker's last request may reach the provider and still end its run at the deadline
    assert completed <= provider["requests"] <= completed + len(workers)
    report = (tmp_path / "RATE_LIMITS.md").read_text()
    assert "switchyard bench ratelimit --quick" in report


@pytest.mark.enable_socket
def test_a_redis_that_went_away_lets_calls_through(caplog: pytest.LogCaptureFixture) -> None:
    # the provider still enforces its own limit: an outage of the shared counts stops nothing
    gone = ProviderLimiter.redis("redis://127.0.0.1:1/0", prefix="switchyard:test:gone")
    configure_rate_limits({MODEL: RateLimit(rpm=1)}, limiter=gone)
    graph = PATTERNS["pipeline"](helper(model=MODEL))
    try:
        with eager_supervisor(), scripted(MODEL, "one", "two") as model:
            for turn in range(2):
                result = run(graph, f"turn {turn}", user_id="ada", dlq=None)
                assert result.ok, result.error
    finally:
        configure_rate_limits(None)
    assert len(model.calls) == 2
    assert "rate limits of fake:helper cannot be read" in caplog.text
