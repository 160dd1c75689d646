"""Worker processes that hold one shared rate limit together, through Redis.

`switchyard bench ratelimit` starts a local OpenAI-compatible provider that logs when each
request arrives (`switchyard.bench.ratelimit_provider`), then several worker processes. Each
worker runs the same one-agent pipeline (model `openai:gpt-4o-mini`, pointed at the local
provider) over and over, as fast as it is allowed, with the same limit (`RateLimit(rpm=...)`)
counted in one Redis (`ProviderLimiter.redis`). No worker knows about the others: only the shared
counts keep the total in bounds. Each run's deadline is the end of the measurement, so a worker
still waiting then ends its run `rate_limited` rather than overrunning.

What is measured is what the provider saw: requests per minute of the measurement, the most
requests in any 60-second window, and the rate after the first minute; and what each worker did:
runs completed and runs that ended `rate_limited`. A benchmark, not a test: nothing here asserts
a speed.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from switchyard.bench.harness import Result
from switchyard.bench.ratelimit_provider import recording_provider

MODEL = "openai:gpt-4o-mini"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class RateLimitConfig:
    """Sizes of one measurement.

    Attributes:
        workers: Worker processes sharing the limit.
        rpm: The limit they share (requests per minute of `MODEL`).
        duration_s: How long the workers keep calling.
    """

    workers: int = 4
    rpm: int = 60
    duration_s: float = 180.0
    overhead_calls: int = 2_000
    overhead_samples: int = 5

    @classmethod
    def quick(cls) -> RateLimitConfig:
        """A few seconds: checks that the harness runs, not the rate (the limit fills at once)."""
        return cls(workers=4, rpm=20, duration_s=2.0, overhead_calls=20, overhead_samples=1)


@dataclass(frozen=True)
class WorkerReport:
    """What one worker did.

    Attributes:
        worker: Its number.
        endings: How many of its runs ended with each end reason.
        waited_out: Its last run ended `rate_limited`: no room before the end of the measurement.
        first_error: The first run that ended otherwise, if any.
    """

    worker: int
    endings: dict[str, int]
    waited_out: bool
    first_error: str | None = None


def worker(
    number: int,
    redis_url: str,
    prefix: str,
    base_url: str,
    rpm: int,
    duration_s: float,
    start: Any,
    ready: Any,
    reports: Any,
) -> None:
    """One worker process: runs the pipeline from the common start for `duration_s`, reports.

    `start` is a shared double the parent sets once every worker is `ready` (0 until then).
    """
    os.environ["OPENAI_API_KEY"] = "bench"
    os.environ["OPENAI_BASE_URL"] = base_url
    from langchain_core.messages import HumanMessage

    from switchyard import AgentSpec, Context, RateLimit, build_pipeline_graph, configure_breakers
    from switchyard.core.models import clear_model_cache
    from switchyard.guardrails.ratelimit import ProviderLimiter, configure_rate_limits

    # A forked worker inherits its parent's models (a client bound to another base URL) and
    # circuit breakers (one an earlier failure opened): it starts from neither.
    clear_model_cache()
    configure_breakers()

    agent = AgentSpec(
        name="caller", description="Answers.", model=MODEL, max_attempts=1, timeout_s=10
    )
    graph = build_pipeline_graph([agent]).compile()
    # One call before the start, without a limit, loads what a first call loads (the provider
    # does not count it: it arrives before the start).
    configure_rate_limits({})
    graph.invoke({"messages": [HumanMessage("warm up")]})
    configure_rate_limits(
        {MODEL: RateLimit(rpm=rpm)}, limiter=ProviderLimiter.redis(redis_url, prefix=prefix)
    )
    ready.put(number)
    while not start.value:
        time.sleep(0.01)
    end_at = start.value + duration_s
    time.sleep(max(start.value - time.time(), 0.0))
    endings: dict[str, int] = {}
    first_error: str | None = None
    reason = None
    while (left := end_at - time.time()) > 0:
        state = graph.invoke(
            {"messages": [HumanMessage(f"request from worker {number}")]},
            context=Context(deadline_s=left),
        )
        reason = state.get("end_reason") or "completed"
        endings[reason] = endings.get(reason, 0) + 1
        if reason == "rate_limited":
            break  # the next request could only go after the end: this worker is done
        if reason not in ("completed", "deadline"):
            first_error = first_error or f"{reason}: {state.get('end_detail')}"
            time.sleep(0.05)  # do not spin on a broken setup
    report = WorkerReport(number, endings, reason == "rate_limited", first_error)
    reports.put(asdict(report))


def summarise(
    arrivals: Sequence[float], start: float, duration_s: float, rpm: int
) -> dict[str, Any]:
    """Requests per minute as the provider saw them (`arrivals`: `time.time()` of each).

    Besides counts, the shortest time in which `rpm + 1` requests arrived: 60 s or more means
    the limit held at the provider in every window, not only in the minutes of the run.
    """
    times = sorted(t - start for t in arrivals if t >= start)
    minutes = max(1, int(-(-duration_s // 60)))
    per_minute = [sum(1 for t in times if k * 60 <= t < (k + 1) * 60) for k in range(minutes)]
    busiest = 0
    for i, t in enumerate(times):
        j = i
        while j < len(times) and times[j] < t + 60:
            j += 1
        busiest = max(busiest, j - i)
    after_first = [t for t in times if t >= 60]
    steady = len(after_first) / (duration_s - 60) * 60 if duration_s > 60 else None
    spans = [times[i + rpm] - times[i] for i in range(len(times) - rpm)]
    return {
        "requests": len(times),
        "requests_per_minute": per_minute,
        "max_in_any_60s": busiest,
        "rpm_after_first_minute": None if steady is None else round(steady, 1),
        "first_s": round(times[0], 3) if times else None,
        "last_s": round(times[-1], 3) if times else None,
        "shortest_span_of_limit_plus_one_s": round(min(spans), 3) if spans else None,
        "arrivals_s": [round(t, 4) for t in times],
    }


def run_ratelimit(
    result: Result,
    *,
    config: RateLimitConfig,
    redis_url: str,
    progress: Callable[[str], None],
) -> None:
    """Measure `config.workers` processes holding `config.rpm` together; fill `result`."""
    prefix = f"switchyard:bench:ratelimit:{uuid.uuid4().hex[:8]}"
    # Forked workers start at once with Switchyard already imported (a spawned one spends tens
    # of seconds importing on a small machine); spawn where fork is not available.
    fork = "fork" in multiprocessing.get_all_start_methods()
    if fork:
        _preload()
    context = multiprocessing.get_context("fork") if fork else multiprocessing.get_context("spawn")
    ready, reports = context.Queue(), context.Queue()
    result.config = {**asdict(config), "model": MODEL, "strategy": "moving window (limits)"}
    with recording_provider() as provider:
        start = context.Value("d", 0.0)
        processes = [
            context.Process(
                target=worker,
                args=(n, redis_url, prefix, provider.base_url, config.rpm, config.duration_s),
                kwargs={"start": start, "ready": ready, "reports": reports},
                daemon=True,
            )
            for n in range(config.workers)
        ]
        for process in processes:
            process.start()
        for _ in processes:  # every worker has imported Switchyard and built its graph
            ready.get(timeout=180)
        started = time.time() + 0.5
        start.value = started
        progress(f"{config.workers} workers ready; measuring for {config.duration_s:g}s")
        workers = [reports.get(timeout=config.duration_s + 120) for _ in processes]
        for process in processes:
            process.join(timeout=30)
        arrivals = provider.arrivals()
    progress("measuring what the guard adds to one call")
    overhead = measure_overhead(config, redis_url, prefix)
    _clear(redis_url, prefix)
    summary = summarise(arrivals, started, config.duration_s, config.rpm)
    result.rows = [
        {"kind": "provider", **summary},
        *({"kind": "worker", **w} for w in sorted(workers, key=lambda w: w["worker"])),
        *overhead,
    ]
    progress(
        f"provider saw {summary['requests']} requests; at most {summary['max_in_any_60s']} "
        f"in any 60 s (limit {config.rpm} per minute)"
    )


OVERHEAD_CASES: tuple[tuple[str, str, dict[str, int] | None], ...] = (
    ("no limit for the model", "memory", None),
    ("rpm, in memory", "memory", {"rpm": 1_000_000}),
    ("rpm + tpm, in memory", "memory", {"rpm": 1_000_000, "tpm": 10**12}),
    ("rpm, Redis", "redis", {"rpm": 1_000_000}),
    ("rpm + tpm, Redis", "redis", {"rpm": 1_000_000, "tpm": 10**12}),
)
"""What one guarded call costs: (label, storage, limit of the model)."""


def measure_overhead(config: RateLimitConfig, redis_url: str, prefix: str) -> list[dict[str, Any]]:
    """Microseconds `RateLimitGuard` adds to one model call, per case of `OVERHEAD_CASES`.

    The call itself is a function returning a ready reply, so the figure is the guard's own
    work: the limit lookup, the storage's window checks (one round trip each to Redis) and the
    token correction. Each sample is the mean of `overhead_calls` calls; rows give the median of
    `overhead_samples` samples. The limits are high enough never to wait; the request log holds
    at most `overhead_calls * overhead_samples` entries.
    """
    import statistics
    import timeit

    from langchain.agents.middleware import ModelRequest, ModelResponse
    from langchain_core.messages import AIMessage, HumanMessage

    from switchyard.core.models import load_chat_model
    from switchyard.guardrails.ratelimit import (
        ProviderLimiter,
        RateLimit,
        RateLimitGuard,
        configure_rate_limits,
    )

    model = load_chat_model("offline")
    request: ModelRequest[Any] = ModelRequest(
        model=model, messages=[HumanMessage("hello")], state={"messages": []}, runtime=None
    )
    usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    response: ModelResponse[Any] = ModelResponse(result=[AIMessage("ok", usage_metadata=usage)])
    guard = RateLimitGuard("bench")
    rows = []
    for label, storage, fields in OVERHEAD_CASES:
        limiter = (
            ProviderLimiter.redis(redis_url, prefix=f"{prefix}:overhead")
            if storage == "redis"
            else ProviderLimiter.in_memory()
        )
        limits = {} if fields is None else {"offline": RateLimit(**fields)}
        configure_rate_limits(limits, limiter=limiter)
        samples = []
        for _ in range(config.overhead_samples):
            total = timeit.timeit(
                lambda: guard.wrap_model_call(request, lambda _: response),
                number=config.overhead_calls,
            )
            samples.append(total / config.overhead_calls * 1e6)
        rows.append(
            {
                "kind": "overhead",
                "case": label,
                "us_per_call": round(statistics.median(samples), 1),
                "samples": [round(x, 1) for x in samples],
            }
        )
    configure_rate_limits(None)
    return rows


def _preload() -> None:
    """Import what a worker uses, in the parent, before it forks."""
    import langchain_openai  # noqa: F401

    import switchyard.graphs.pipeline
    import switchyard.guardrails.ratelimit  # noqa: F401


def _clear(redis_url: str, prefix: str) -> None:
    """Drop the measurement's keys from Redis."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
    finally:
        client.close()


def render(result: Result) -> str:
    """`bench/RATE_LIMITS.md` from a result."""
    config = result.config
    provider = next(row for row in result.rows if row["kind"] == "provider")
    workers = [row for row in result.rows if row["kind"] == "worker"]
    env = result.environment
    per_minute = ", ".join(str(n) for n in provider["requests_per_minute"])
    lines = [
        "# Rate limits: worker processes holding one limit together through Redis",
        "",
        f"{config['workers']} worker processes each run a one-agent pipeline (model "
        f"`{config['model']}`) as fast as they are allowed, for {config['duration_s']:g} s, "
        f"all under `RateLimit(rpm={config['rpm']})` counted in one Redis "
        "(`switchyard.guardrails.ratelimit`, the `limits` library's moving window). The model "
        "is a local OpenAI-compatible server that logs when each request arrives; the figures "
        "are what it saw. Each run's deadline is the end of the measurement: a worker still "
        "waiting for room then ends its run `rate_limited`, and a worker stops once its next "
        "request could only go after the end.",
        "",
        "## Reproduce",
        "",
        "```bash",
        f"{env['command']}    # needs Redis: --redis URL, else SWITCHYARD_REDIS_URL, else "
        f"{DEFAULT_REDIS}",
        "```",
        "",
        f"Machine: {env.get('cpu')}, {env.get('cores')} cores, shared with other work "
        f"(load average {env.get('load_average')} before, {env.get('load_average_end')} after); "
        f"{env.get('python')}; commit {env.get('git_commit')}; {env.get('started_at')}.",
        "",
        "## At the provider",
        "",
        "| limit | requests | per minute of the run | most in any 60 s | shortest span of "
        f"{config['rpm'] + 1} requests | rate after the first minute |",
        "|---:|---:|---|---:|---:|---:|",
        f"| {config['rpm']} / min | {provider['requests']} | {per_minute} | "
        f"**{provider['max_in_any_60s']}** | {_seconds(provider)} | "
        f"{provider['rpm_after_first_minute']} / min |",
        "",
        "The limiter counts a request when it admits it; the provider counts it when it arrives, "
        "after the rest of the agent's middleware and the HTTP client. That time varies "
        "(milliseconds, more on a loaded machine), so a 60-second window at the provider can "
        "hold a few more requests than the limit even though no 60 seconds of admissions do: "
        "the shortest span in which one request more than the limit arrived says by how much. "
        "Leave a provider's published limit that margin. The moving window admits a minute's "
        "requests as soon as they come, so workers that always have work send them in a burst "
        "at the start of each minute, then wait for the oldest to leave the window.",
        "",
        "## Per worker",
        "",
        "| worker | runs completed | how its last run ended | other endings |",
        "|---:|---:|---|---|",
        *[
            f"| {w['worker']} | {w['endings'].get('completed', 0)} | "
            f"{'rate_limited' if w['waited_out'] else 'deadline (end of the measurement)'} | "
            + (
                ", ".join(
                    f"{reason}: {n}"
                    for reason, n in sorted(w["endings"].items())
                    if reason not in ("completed", "rate_limited", "deadline")
                )
                or "none"
            )
            + " |"
            for w in workers
        ],
        "",
    ]
    overhead = [row for row in result.rows if row["kind"] == "overhead"]
    if overhead:
        lines += [
            "## What the guard adds to one call",
            "",
            "`RateLimitGuard.wrap_model_call` around a call that returns a ready reply (the "
            "offline model's request), in the parent process after the workers have finished: "
            "the limit lookup, the window checks and the token correction. Median of "
            f"{config['overhead_samples']} samples of {config['overhead_calls']:,} calls each; "
            "Redis on the same machine.",
            "",
            "| case | microseconds per call |",
            "|---|---:|",
            *[f"| {row['case']} | {row['us_per_call']:,} |" for row in overhead],
            "",
        ]
    errors = [w["first_error"] for w in workers if w.get("first_error")]
    if errors:
        lines += ["Other endings (first of each worker):", "", *[f"- {e}" for e in errors], ""]
    return "\n".join(lines)


def _seconds(provider: dict[str, Any]) -> str:
    span = provider.get("shortest_span_of_limit_plus_one_s")
    return "none (never more than the limit)" if span is None else f"{span:.2f} s"


def write_markdown(result: Result, base: Path) -> Path:
    """Write `<base>/RATE_LIMITS.md` and return its path."""
    path = base / "RATE_LIMITS.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(result))
    return path
