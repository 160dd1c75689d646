"""Measurement: interleaved repetitions, robust statistics, the machine, and result files.

Every comparison runs its contenders in one process, one after another within each repetition,
with the order rotated from one repetition to the next, so drift (thermal, other load, the
allocator warming up) affects all of them alike. Garbage is collected before every timed sample;
the collector stays enabled while timing, as in production. The heap that exists before timing
starts (every imported library, the prepared graphs) is frozen with `gc.freeze()`, as servers do
after start-up: a full collection of it takes about half a second here, and would otherwise land
on whichever run happened to trigger it. Times come from
`time.perf_counter_ns`; a sample is the mean of a small batch of runs when one run is too short
to time on its own. Results are reported as median and interquartile range.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from langgraph.checkpoint.base import BaseCheckpointSaver

from switchyard.bench.contenders import BenchError, Prepared
from switchyard.core.machine import cpu_model

PACKAGES = (
    "switchyard",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint-postgres",
    "langchain-core",
    "langchain",
    "langgraph-supervisor",
    "langgraph-swarm",
    "openai-agents",
    "agent-squad",
    "openai",
    "pydantic",
    "psycopg",
    "aiosqlite",
    "matplotlib",
)
"""Distributions whose versions every result file records."""

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_ENV = "SWITCHYARD_BENCH_POSTGRES"


@dataclass(frozen=True)
class Stats:
    """Summary of samples: median, quartiles, extremes, count (units of the samples)."""

    median: float
    q1: float
    q3: float
    low: float
    high: float
    n: int

    @property
    def iqr(self) -> float:
        """Interquartile range."""
        return self.q3 - self.q1

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        """Summarise `samples` (at least one).

        Raises:
            ValueError: No samples.
        """
        if not samples:
            raise ValueError("no samples to summarise")
        ordered = sorted(samples)
        if len(ordered) == 1:
            q1 = q3 = ordered[0]
        else:
            q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        return cls(
            median=statistics.median(ordered),
            q1=q1,
            q3=q3,
            low=ordered[0],
            high=ordered[-1],
            n=len(ordered),
        )

    def scaled(self, factor: float) -> Stats:
        """The same statistics multiplied by `factor` (for unit changes)."""
        return Stats(
            self.median * factor,
            self.q1 * factor,
            self.q3 * factor,
            self.low * factor,
            self.high * factor,
            self.n,
        )

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready form."""
        return asdict(self)


def percentile(samples: Sequence[float], pct: float) -> float:
    """The `pct` percentile (0-100) of `samples`, by linear interpolation.

    Raises:
        ValueError: No samples.
    """
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Case:
    """One contender in one comparison.

    Attributes:
        key: Identifier in the result rows.
        prepared: The runnable workload.
        calls: Model calls one correct run makes (checked after every sample).
    """

    key: str
    prepared: Prepared
    calls: int


async def calibrate(case: Case, target_s: float, limit: int) -> int:
    """Runs per sample so one sample takes about `target_s` (at least 1, at most `limit`)."""
    started = time.perf_counter_ns()
    await _checked(case, 1)
    elapsed = max(time.perf_counter_ns() - started, 1) / 1e9
    return max(1, min(limit, round(target_s / elapsed)))


async def _checked(case: Case, runs: int) -> None:
    before = case.prepared.tally.calls
    for _ in range(runs):
        await case.prepared.run()
    made = case.prepared.tally.calls - before
    if made != case.calls * runs:
        raise BenchError(
            f"{case.key}: {made} model calls in {runs} runs, expected {case.calls * runs}: "
            "the contender does not run the same workload"
        )


async def interleaved(
    cases: Sequence[Case],
    *,
    repetitions: int,
    warmup: int = 1,
    target_sample_s: float = 0.0,
    max_batch: int = 200,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Time every case `repetitions` times, rotating their order each repetition.

    Args:
        cases: The contenders of one comparison.
        repetitions: Samples per case.
        warmup: Untimed runs per case first (imports, caches, JIT-free warm paths).
        target_sample_s: When positive, each case's batch size is calibrated so one sample takes
            about this long (short runs are averaged over a batch); 0 times single runs.
        max_batch: Upper bound on the batch size.
        progress: Called with a short status line after every repetition.

    Returns:
        Seconds per run, one sample per repetition, by case key.

    Raises:
        BenchError: A case made the wrong number of model calls.
    """
    for case in cases:
        await _checked(case, warmup)
    batches = {case.key: 1 for case in cases}
    if target_sample_s > 0:
        for case in cases:
            batches[case.key] = await calibrate(case, target_sample_s, max_batch)
    samples: dict[str, list[float]] = {case.key: [] for case in cases}
    with frozen_heap():
        await _sample(cases, batches, samples, repetitions, progress)
    return samples


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Collect once, then freeze every surviving object for the block (see the module docstring)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _sample(
    cases: Sequence[Case],
    batches: Mapping[str, int],
    samples: dict[str, list[float]],
    repetitions: int,
    progress: Callable[[str], None] | None,
) -> None:
    for repetition in range(repetitions):
        shift = repetition % len(cases)
        for case in [*cases[shift:], *cases[:shift]]:
            batch = batches[case.key]
            gc.collect()
            before = case.prepared.tally.calls
            started = time.perf_counter_ns()
            for _ in range(batch):
                await case.prepared.run()
            elapsed = time.perf_counter_ns() - started
            made = case.prepared.tally.calls - before
            if made != case.calls * batch:
                raise BenchError(
                    f"{case.key}: {made} model calls in {batch} runs, expected {case.calls * batch}"
                )
            samples[case.key].append(elapsed / batch / 1e9)
        if progress is not None:
            progress(f"repetition {repetition + 1}/{repetitions}")


# -- the machine --------------------------------------------------------------------------------


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str | None]:
    """Installed versions of `PACKAGES` (None when not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def environment(command: Sequence[str]) -> dict[str, Any]:
    """The machine, the interpreter, the package versions and the exact command."""
    return {
        "command": "switchyard " + shlex.join(command),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": package_versions(),
        "git_commit": _git_commit(),
        "load_average": _load_average(),
    }


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other work on the machine shows here)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


# -- results ------------------------------------------------------------------------------------


@dataclass
class Result:
    """One benchmark's output file.

    Attributes:
        name: "overhead", "fanout", "context" or "throughput".
        quick: Whether the tiny `--quick` sizes were used.
        environment: See `environment`.
        config: The sizes, repetitions and latencies used.
        rows: One dict per measured cell.
        notes: Things the report must say (contenders not installed, backends unavailable).
    """

    name: str
    quick: bool
    environment: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def write(self, directory: Path) -> Path:
        """Write `<directory>/<name>.json` and return its path."""
        directory.mkdir(parents=True, exist_ok=True)
        self.environment["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.environment["load_average_end"] = _load_average()
        path = directory / f"{self.name}.json"
        path.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        return path


def load_result(path: Path) -> Result:
    """Read a result file written by `Result.write`."""
    data: dict[str, Any] = json.loads(path.read_text())
    return Result(**data)


# -- persistence for the benchmarks -------------------------------------------------------------


def postgres_dsn() -> str:
    """The PostgreSQL server the benchmarks use (`SWITCHYARD_BENCH_POSTGRES`, else local)."""
    return os.environ.get(POSTGRES_ENV, "").strip() or DEFAULT_POSTGRES


def postgres_problem(dsn: str) -> str | None:
    """Why PostgreSQL cannot be used (None when it answers)."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
    return None


@contextlib.contextmanager
def postgres_schema(dsn: str) -> Any:
    """A fresh schema for one benchmark's tables, dropped afterwards; yields a DSN that uses it."""
    import psycopg

    schema = f"switchyard_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in dsn else "?"
    try:
        yield f"{dsn}{separator}options={quote(f'-csearch_path={schema}', safe='')}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.asynccontextmanager
async def open_backend(
    backend: str, workdir: Path, postgres: str | None
) -> AsyncIterator[BaseCheckpointSaver[Any] | None]:
    """An async checkpointer for `backend` ("none" yields None), closed afterwards.

    Args:
        backend: "none", "memory", "sqlite" or "postgres".
        workdir: Where SQLite files go (a fresh file per call).
        postgres: A DSN whose schema the caller owns (see `postgres_schema`), for "postgres".

    Raises:
        BenchError: "postgres" without a DSN, or an unknown backend.
    """
    from switchyard.storage.persistence import open_async_checkpointer

    if backend == "none":
        yield None
    elif backend == "memory":
        async with open_async_checkpointer("memory") as saver:
            yield saver
    elif backend == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.sqlite"
        try:
            async with open_async_checkpointer(str(path)) as saver:
                yield saver
        finally:
            for suffix in ("", "-wal", "-shm", ".lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif backend == "postgres":
        if postgres is None:
            raise BenchError("the postgres backend needs a DSN")
        async with open_async_checkpointer(postgres) as saver:
            yield saver
    else:
        raise BenchError(f"unknown backend {backend!r}")


async def close_all(prepared: Mapping[str, Prepared]) -> None:
    """Release every prepared workload."""
    for item in prepared.values():
        if item.close is not None:
            await item.close()


def rss_mb() -> float:
    """The process's resident memory now, in MiB (Linux `/proc/self/statm`)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


Progress = Callable[[str], None]
AsyncFn = Callable[[], Awaitable[Any]]


def place_section(text: str, heading: str, section: str) -> str:
    """`text` (a RESULTS.md) with `section` in place of the one under `heading`.

    A section that is not there yet goes before the machine section, else at the end. The
    benchmarks that write their own section (fleet, local) keep the rest of the report as it is.
    """
    start = text.find(f"\n{heading}")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        return text[: start + 1] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    anchor = text.find("\n## Machine, versions, command")
    if anchor >= 0:
        return text[: anchor + 1] + section + "\n" + text[anchor + 1 :]
    return text.rstrip() + "\n\n" + section
