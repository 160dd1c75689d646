"""Fan-out at scale: 10 to 10,000 parallel agents at L = 50 ms.

The physical limit of a fan-out is one agent's latency: every branch waits for its model at the
same time. Wall time / L says how close each contender gets (1.0 is the limit); what it adds per
branch is CPU time spent on one core before, between and after the waits. Peak memory per branch
is measured in a separate, untimed run under `tracemalloc` (exact, but it slows execution several
times): for every contender up to `tracemalloc_max` workers, above that for Switchyard only (the
peak resident memory of the process cannot be attributed to one run once earlier runs have grown
the heap, and tracing every contender at 10,000 workers would take minutes).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from switchyard.bench.contenders import Contender, Missing, Prepared, Setup
from switchyard.bench.harness import (
    Case,
    Progress,
    Result,
    Stats,
    close_all,
    frozen_heap,
    interleaved,
)
from switchyard.bench.topology import fanout


@dataclass(frozen=True)
class FanoutConfig:
    """Sizes of the fan-out benchmark.

    Attributes:
        latency_s: Simulated latency of every worker's model call.
        sizes: Worker counts, with the samples taken at each.
        memory: Whether to measure peak memory per branch (one extra run per cell).
        tracemalloc_max: Largest size whose memory is measured for every contender; above it
            only the contenders in `memory_large` are measured.
        memory_large: Contenders measured above `tracemalloc_max`.
    """

    latency_s: float = 0.05
    sizes: tuple[tuple[int, int], ...] = ((10, 9), (100, 7), (1_000, 5), (10_000, 1))
    memory: bool = True
    tracemalloc_max: int = 1_000
    memory_large: tuple[str, ...] = ("switchyard",)

    @classmethod
    def quick(cls) -> FanoutConfig:
        """Tiny sizes for the test suite."""
        return cls(latency_s=0.002, sizes=((10, 2), (50, 1)))


async def peak_bytes(prepared: Prepared) -> int:
    """Peak bytes allocated (and still alive at the peak) during one run."""
    tracemalloc.start()
    try:
        await prepared.run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def _prefixed(progress: Progress, prefix: str) -> Progress:
    def report(status: str) -> None:
        progress(f"{prefix}: {status}")

    return report


async def run_fanout(
    contenders: Sequence[Contender],
    missing: Sequence[Missing],
    result: Result,
    *,
    config: FanoutConfig,
    progress: Progress,
) -> Result:
    """Run every size with every contender that has a fan-out; fill `result`."""
    entrants = [c for c in contenders if c.supports("fanout", "none")]
    result.config = {
        "latency_ms": config.latency_s * 1000,
        "sizes": [size for size, _ in config.sizes],
        "repetitions": {str(size): reps for size, reps in config.sizes},
        "labels": {c.key: c.label for c in entrants},
    }
    for item in missing:
        result.notes.append(f"{item.label}: {item.reason}")
        result.rows.append(
            {
                "contender": item.key,
                "label": item.label,
                "status": "not installed",
                "reason": item.reason,
            }
        )
    for contender in contenders:
        if contender not in entrants:
            result.rows.append(
                {
                    "contender": contender.key,
                    "label": contender.label,
                    "status": "n/a",
                    "reason": "no fan-out construction",
                }
            )
    for size, repetitions in config.sizes:
        topology = fanout(size)
        prepared: dict[str, Prepared] = {}
        build_s: dict[str, float] = {}
        try:
            for contender in entrants:
                started = time.perf_counter()
                prepared[contender.key] = await contender.prepare(
                    topology, Setup(latency_s=config.latency_s)
                )
                build_s[contender.key] = time.perf_counter() - started
            cases = [Case(c.key, prepared[c.key], topology.calls) for c in entrants]
            samples = await interleaved(
                cases,
                repetitions=repetitions,
                warmup=1 if size <= 1_000 else 0,
                progress=_prefixed(progress, f"fanout {size}"),
            )
            peaks: dict[str, int | None] = {c.key: None for c in entrants}
            measured = [
                c
                for c in entrants
                if config.memory
                and (size <= config.tracemalloc_max or c.key in config.memory_large)
            ]
            with frozen_heap():
                for contender in measured:
                    progress(f"fanout {size}: memory of {contender.label}")
                    gc.collect()
                    peaks[contender.key] = await peak_bytes(prepared[contender.key])
        finally:
            await close_all(prepared)
        for contender in entrants:
            wall = Stats.of(samples[contender.key])
            peak = peaks[contender.key]
            row: dict[str, Any] = {
                "contender": contender.key,
                "label": contender.label,
                "status": "ok",
                "workers": size,
                "wall_ms": wall.scaled(1000).as_dict(),
                "wall_over_latency": wall.scaled(1 / config.latency_s).as_dict(),
                "overhead_per_branch_us": (wall.median - config.latency_s) / size * 1e6,
                "peak_kib_per_branch": None if peak is None else peak / size / 1024,
                "build_s": build_s[contender.key],
            }
            result.rows.append(row)
    return result
