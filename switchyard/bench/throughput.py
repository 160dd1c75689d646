"""Throughput: concurrent sessions through the router, runs per second and latency percentiles.

`concurrency` clients each send one request after another (a new session per request) for
`duration_s`, all on one event loop; runs per second is completed runs over the window, latency is
per run. With PostgreSQL the same load also runs in `processes` worker processes (multiprocessing
with the spawn context), each with its own connection pool, sharing one database: the scale-out
deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import multiprocessing
import queue
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchyard.bench.contenders import Contender, Prepared, Setup
from switchyard.bench.harness import (
    Progress,
    Result,
    frozen_heap,
    open_backend,
    percentile,
    postgres_schema,
)
from switchyard.bench.topology import router

CONTENDER_CLASSES = {
    "switchyard": ("switchyard.bench.contenders.ours", "SwitchyardContender"),
    "langgraph": ("switchyard.bench.contenders.bare", "BareLangGraph"),
}
"""Contenders of the throughput benchmark (importable in a fresh worker process)."""

WARMUP_RUNS = 20
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ThroughputConfig:
    """Sizes of the throughput benchmark.

    Attributes:
        latencies_s: Simulated model latencies.
        backends: Checkpointers.
        concurrency: Clients (sessions in flight) per process.
        duration_s: Measured window per cell.
        processes: Worker processes of the multi-process PostgreSQL cells (0: skip them).
        contenders: Contender keys (see `CONTENDER_CLASSES`).
    """

    latencies_s: tuple[float, ...] = (0.0, 0.05)
    backends: tuple[str, ...] = ("memory", "sqlite", "postgres")
    concurrency: int = 32
    duration_s: float = 4.0
    processes: int = 4
    contenders: tuple[str, ...] = ("switchyard", "langgraph")

    @classmethod
    def quick(cls) -> ThroughputConfig:
        """Tiny sizes for the test suite."""
        return cls(
            latencies_s=(0.0,),
            concurrency=4,
            duration_s=0.3,
            processes=2,
            contenders=("switchyard",),
        )


def load_contender(key: str) -> Contender:
    """Instantiate a throughput contender by key (also in a spawned worker)."""
    module_name, class_name = CONTENDER_CLASSES[key]
    contender: Contender = getattr(importlib.import_module(module_name), class_name)()
    return contender


async def drive(prepared: Prepared, concurrency: int, duration_s: float) -> list[float]:
    """Run `concurrency` clients for `duration_s`; the latency (s) of every run that finished."""
    latencies: list[float] = []
    deadline = time.perf_counter() + duration_s

    async def client() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await prepared.run()
            finished = time.perf_counter()
            if finished <= deadline:
                latencies.append(finished - started)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(client())
    return latencies


def _row(
    contender: Contender,
    backend: str,
    latency_s: float,
    processes: int,
    concurrency: int,
    latencies: Sequence[float],
    duration_s: float,
) -> dict[str, Any]:
    ok = bool(latencies)
    return {
        "contender": contender.key,
        "label": contender.label,
        "backend": backend,
        "latency_ms": latency_s * 1000,
        "processes": processes,
        "concurrency": concurrency * processes,
        "status": "ok" if ok else "no runs",
        "runs": len(latencies),
        "runs_per_s": len(latencies) / duration_s,
        "p50_ms": percentile(latencies, 50) * 1000 if ok else None,
        "p99_ms": percentile(latencies, 99) * 1000 if ok else None,
    }


async def _single(
    contender: Contender,
    backend: str,
    latency_s: float,
    config: ThroughputConfig,
    workdir: Path,
    postgres: str | None,
) -> dict[str, Any]:
    async with open_backend(backend, workdir, postgres) as saver:
        setup = Setup(latency_s=latency_s, backend=backend, checkpointer=saver)
        prepared = await contender.prepare(router(), setup)
        try:
            for _ in range(WARMUP_RUNS):
                await prepared.run()
            with frozen_heap():
                latencies = await drive(prepared, config.concurrency, config.duration_s)
        finally:
            if prepared.close is not None:
                await prepared.close()
    return _row(contender, backend, latency_s, 1, config.concurrency, latencies, config.duration_s)


def worker_main(
    key: str,
    latency_s: float,
    dsn: str,
    concurrency: int,
    duration_s: float,
    ready: Any,
    start: Any,
    results: Any,
) -> None:
    """Entry point of one worker process: prepare, report ready, wait, drive, report latencies."""

    async def main() -> list[float]:
        contender = load_contender(key)
        async with open_backend("postgres", Path("."), dsn) as saver:
            setup = Setup(latency_s=latency_s, backend="postgres", checkpointer=saver)
            prepared = await contender.prepare(router(), setup)
            for _ in range(WARMUP_RUNS):
                await prepared.run()
            ready.put("ready")
            with frozen_heap():
                while not start.is_set():  # a blocking wait would stall the pool's event loop
                    await asyncio.sleep(0.005)
                latencies = await drive(prepared, concurrency, duration_s)
            if prepared.close is not None:
                await prepared.close()
            return latencies

    try:
        results.put(("ok", asyncio.run(main())))
    except BaseException as exc:  # reported to the parent, which fails the cell
        ready.put("failed")
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def _await_ready(workers: Sequence[Any], ready: Any) -> None:
    """Wait until every worker reported ready (or failed); a worker that died counts as failed."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    reported = 0
    while reported < len(workers):
        try:
            ready.get(timeout=0.2)
            reported += 1
        except queue.Empty:
            if any(not w.is_alive() and w.exitcode not in (None, 0) for w in workers):
                return
            if time.monotonic() > deadline:
                return


def _multi(
    contender: Contender, latency_s: float, config: ThroughputConfig, dsn: str
) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    ready, results = spawn.Queue(), spawn.Queue()
    start = spawn.Event()
    workers = [
        spawn.Process(
            target=worker_main,
            args=(
                contender.key,
                latency_s,
                dsn,
                config.concurrency,
                config.duration_s,
                ready,
                start,
                results,
            ),
            daemon=True,
        )
        for _ in range(config.processes)
    ]
    for worker in workers:
        worker.start()
    latencies: list[float] = []
    errors: list[str] = []
    try:
        _await_ready(workers, ready)
        start.set()
        for _ in workers:
            try:
                status, payload = results.get(timeout=30 + config.duration_s)
            except queue.Empty:
                errors.append("a worker did not report")
                continue
            if status == "ok":
                latencies.extend(payload)
            else:
                errors.append(str(payload))
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    row = _row(
        contender,
        "postgres",
        latency_s,
        config.processes,
        config.concurrency,
        latencies,
        config.duration_s,
    )
    if errors:
        row["status"] = "error"
        row["reason"] = "; ".join(errors)
    return row


async def run_throughput(
    result: Result,
    *,
    config: ThroughputConfig,
    workdir: Path,
    postgres: str | None,
    postgres_reason: str | None,
    progress: Progress,
) -> Result:
    """Run every cell and fill `result`."""
    contenders = [load_contender(key) for key in config.contenders]
    result.config = {
        "latencies_ms": [latency * 1000 for latency in config.latencies_s],
        "backends": list(config.backends),
        "concurrency_per_process": config.concurrency,
        "duration_s": config.duration_s,
        "processes": config.processes,
        "pattern": router().summary,
        "contenders": list(config.contenders),
    }
    with contextlib.ExitStack() as stack:
        schema = None
        if postgres is not None and "postgres" in config.backends:
            schema = stack.enter_context(postgres_schema(postgres))
        for latency in config.latencies_s:
            for backend in config.backends:
                for contender in contenders:
                    if backend == "postgres" and schema is None:
                        result.rows.append(
                            {
                                "contender": contender.key,
                                "label": contender.label,
                                "backend": backend,
                                "latency_ms": latency * 1000,
                                "processes": 1,
                                "status": "unavailable",
                                "reason": postgres_reason,
                            }
                        )
                        continue
                    progress(f"throughput {contender.label} {backend} L={latency * 1000:g} ms")
                    result.rows.append(
                        await _single(contender, backend, latency, config, workdir, schema)
                    )
                    if backend == "postgres" and schema is not None and config.processes > 1:
                        progress(
                            f"throughput {contender.label} postgres x{config.processes} "
                            f"processes L={latency * 1000:g} ms"
                        )
                        row = await asyncio.to_thread(_multi, contender, latency, config, schema)
                        result.rows.append(row)
    return result
