"""Per-hop overhead of Switchyard's patterns, and of bare LangGraph, at zero model latency.

The overhead benchmark's own cells (`switchyard.bench.overhead`: every pattern, no checkpointer,
L = 0, Switchyard and bare LangGraph interleaved), with more repetitions than `--quick`. Each
invocation adds one run to `--out` and rewrites its summary (the median over runs of each run's
median per-hop microseconds, by pattern and contender). To compare two checkouts on one machine,
alternate them, one run at a time:

    for i in 1 2 3; do
        python bench/per_hop.py --out bench/results/per_hop_after.json
        PYTHONPATH=/path/to/old/checkout python bench/per_hop.py \\
            --out bench/results/per_hop_before.json
    done

A benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import switchyard
from switchyard.bench.contenders import load_contenders
from switchyard.bench.harness import Result, environment
from switchyard.bench.overhead import OverheadConfig, run_overhead

CONTENDERS = ("switchyard", "langgraph")


async def one_run(repetitions: int) -> dict[str, dict[str, float]]:
    """Median per-hop microseconds, by pattern then contender, from one benchmark run."""
    contenders, _ = load_contenders()
    chosen = [c for c in contenders if c.key in CONTENDERS]
    result = Result(name="per_hop", quick=False, environment=environment(["bench/per_hop.py"]))
    config = OverheadConfig(
        latencies_s=(0.0,), backends=("none",), repetitions=(repetitions, 1), target_sample_s=0.03
    )
    with tempfile.TemporaryDirectory() as workdir:
        await run_overhead(
            chosen,
            [],
            result,
            config=config,
            workdir=Path(workdir),
            postgres=None,
            postgres_reason="not measured here",
            progress=lambda text: None,
        )
    medians: dict[str, dict[str, float]] = {}
    for row in result.rows:
        if row.get("status") == "ok" and row.get("backend") == "none" and "per_hop_us" in row:
            medians.setdefault(row["pattern"], {})[row["contender"]] = row["per_hop_us"]["median"]
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=13)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    saved = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs: list[dict[str, Any]] = saved.get("runs", [])
    load = os.getloadavg()[0]
    runs.append(
        {
            "switchyard": importlib.metadata.version("switchyard-agents"),
            "source": str(Path(switchyard.__file__).parent.parent),
            "load_1m": round(load, 2),
            "per_hop_us": asyncio.run(one_run(args.repetitions)),
        }
    )
    summary = {
        pattern: {
            contender: round(
                statistics.median(r["per_hop_us"][pattern][contender] for r in runs), 1
            )
            for contender in runs[0]["per_hop_us"][pattern]
        }
        for pattern in runs[0]["per_hop_us"]
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"median_per_hop_us": summary, "runs": runs}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
