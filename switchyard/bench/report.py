"""RESULTS.md and its plots, from the result files in `bench/results/`.

The report is regenerated from whatever result files exist, so a single benchmark re-run updates
its own section. Targets are checked from the numbers; the reading names where Switchyard leads,
where it trails and why, with the figures that show it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from switchyard.bench.harness import Result, load_result
from switchyard.bench.startup import HEADER as STARTUP_HEADER
from switchyard.bench.startup import table_rows as startup_rows

BENCHMARKS = ("overhead", "fanout", "context", "throughput", "startup", "fleet", "local")
BACKEND_ORDER = ("none", "memory", "sqlite", "postgres")
CONTENDER_ORDER = (
    "switchyard",
    "langgraph",
    "asyncio",
    "asyncio-langchain",
    "langgraph-supervisor",
    "langgraph-swarm",
    "agent-squad",
    "openai-agents",
)
PEERS = ("langgraph-supervisor", "langgraph-swarm", "agent-squad", "openai-agents")
"""Third-party frameworks (bare LangGraph and raw asyncio are baselines, not peers)."""

COLORS = {
    "switchyard": "#1f77b4",
    "langgraph": "#ff7f0e",
    "asyncio": "#2ca02c",
    "asyncio-langchain": "#98df8a",
    "langgraph-supervisor": "#d62728",
    "langgraph-swarm": "#9467bd",
    "agent-squad": "#8c564b",
    "openai-agents": "#e377c2",
}

PEER_NOTES = {
    "agent-squad": (
        "AWS Agent Squad is a thin dispatcher: `route_request` awaits the classifier, then the "
        "agent's `process_request`, then appends two messages to an in-memory list. It has no "
        "graph, no checkpoints (no durable state, no resume), no retries, timeouts, circuit "
        "breakers, fallbacks, budgets or deadlines, no usage or cost ledger, no per-agent "
        "windows beyond a message-count trim, and no recursion or handoff limits. Each of "
        "those is work Switchyard does on every hop; what Agent Squad costs per hop is the "
        "price of an `await` and a dict lookup."
    ),
    "openai-agents": (
        "The OpenAI Agents SDK runs a run loop per agent turn (items, usage, hooks, guardrail "
        "checks) without a checkpointer: nothing is persisted between steps, so a crashed run "
        "cannot resume, and it has no circuit breakers, fallback models, budgets or deadlines."
    ),
    "langgraph-supervisor": (
        "langgraph-supervisor runs every agent as a ReAct subgraph (a model node and a tool "
        "node per handoff), passes the whole conversation to every worker and adds a "
        "handoff-back message pair after each worker: more graph steps and bigger state than "
        "Switchyard's typed task payloads."
    ),
    "langgraph-swarm": (
        "langgraph-swarm runs every agent as a ReAct subgraph whose handoff tool returns "
        "`Command(graph=PARENT)`: each handoff costs a tool-node step inside the subgraph plus "
        "the parent's step."
    ),
}


# -- formatting ---------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    """A number for a table ("-" for none or NaN), with thousands separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def fmt_stat(stats: dict[str, Any] | None, digits: int = 0) -> str:
    """Median with the interquartile range in brackets."""
    if not stats:
        return "-"
    return f"{fmt(stats['median'], digits)} [{fmt(stats['q1'], digits)}-{fmt(stats['q3'], digits)}]"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _order(key: str) -> int:
    return CONTENDER_ORDER.index(key) if key in CONTENDER_ORDER else len(CONTENDER_ORDER)


def _label(result: Result, key: str) -> str:
    labels: dict[str, str] = result.config.get("labels", {})
    return labels.get(key, key)


# -- overhead -----------------------------------------------------------------------------------


def _ok(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row.get("status") == "ok"]


def overhead_cell(
    result: Result, pattern: str, contender: str, backend: str, latency_ms: float
) -> dict[str, Any] | None:
    """The row of one contender in one comparison (None when it did not run)."""
    for row in _ok(result.rows):
        if (
            row["pattern"] == pattern
            and row["contender"] == contender
            and row["latency_ms"] == latency_ms
            and row["backend"] == backend
            and row.get("reference_for") is None
        ):
            return row
    return None


def reference_cell(
    result: Result, pattern: str, backend: str, latency_ms: float
) -> dict[str, Any] | None:
    """Raw asyncio's row in the comparison of `backend` (it persists nothing itself)."""
    for row in _ok(result.rows):
        if (
            row["pattern"] == pattern
            and row["contender"] == "asyncio"
            and row["latency_ms"] == latency_ms
            and (row.get("reference_for") or row["backend"]) == backend
        ):
            return row
    return None


def _contenders(result: Result, pattern: str) -> list[str]:
    keys = {row["contender"] for row in _ok(result.rows) if row["pattern"] == pattern}
    return sorted(keys, key=_order)


def overhead_section(result: Result, plots: dict[str, str]) -> str:
    """The overhead section: workloads, per-hop tables, wall-time ratios, what was not run."""
    latencies = result.config["latencies_ms"]
    low, high = min(latencies), max(latencies)
    backends = [b for b in BACKEND_ORDER if b in result.config["backends"]]
    parts = ["## 1. Overhead per hop", ""]
    parts.append(
        "Per-hop overhead is `(wall - L x model calls on the critical path) / hops`, a hop being "
        "one agent invocation, in microseconds: median [interquartile range] of "
        f"{result.config['repetitions']['L=0']} interleaved samples (each the mean of a batch of "
        f"runs lasting about {result.config['target_sample_s'] * 1000:g} ms). Raw asyncio "
        "persists nothing: its numbers repeat in every column as the floor."
    )
    parts.append("")
    workloads = result.config["topologies"]
    parts.append(
        table(
            ["pattern", "one run", "model calls", "on the critical path"],
            (
                [p, w["summary"], str(w["calls"]), str(w["sequential_calls"])]
                for p, w in workloads.items()
            ),
        )
    )
    parts += ["", f"### Per-hop overhead at L = {fmt(low)} ms (microseconds)", ""]
    rows = []
    for pattern in result.config["patterns"]:
        for key in _contenders(result, pattern):
            cells = []
            for backend in backends:
                row = overhead_cell(result, pattern, key, backend, low)
                if row is None and key == "asyncio":
                    row = reference_cell(result, pattern, backend, low)
                cells.append(fmt_stat(row["per_hop_us"]) if row else "-")
            rows.append([pattern, _label(result, key), *cells])
    parts.append(table(["pattern", "contender", *backends], rows))
    if "overhead_per_hop" in plots:
        parts += ["", f"![per-hop overhead]({plots['overhead_per_hop']})"]
    parts += [
        "",
        f"### Wall time at L = {fmt(high)} ms: milliseconds, and ratio to raw asyncio",
        "",
    ]
    rows = []
    for pattern in result.config["patterns"]:
        for key in _contenders(result, pattern):
            if key == "asyncio":
                continue
            cells = []
            for backend in backends:
                row = overhead_cell(result, pattern, key, backend, high)
                cells.append(
                    f"{fmt(row['wall_ms']['median'], 1)} ({fmt(row['ratio_to_asyncio'], 3)}x)"
                    if row and row.get("ratio_to_asyncio")
                    else "-"
                )
            rows.append([pattern, _label(result, key), *cells])
        floor = reference_cell(result, pattern, "none", high)
        if floor:
            rows.append(
                [
                    pattern,
                    "raw asyncio (floor)",
                    f"{fmt(floor['wall_ms']['median'], 1)}",
                    *(["" for _ in backends[1:]]),
                ]
            )
    parts.append(table(["pattern", "contender", *backends], rows))
    if "overhead_ratio" in plots:
        parts += ["", f"![wall time ratio]({plots['overhead_ratio']})"]
    parts += [
        "",
        "At L > 0 every contender's per-hop figure also holds the event loop's timer overshoot "
        "(what raw asyncio shows above zero) and code that runs with caches cooled by the "
        "wait; the ratio to raw asyncio in the same comparison cancels the first.",
    ]
    skipped = [
        row for row in result.rows if row.get("status") in {"n/a", "not installed", "unavailable"}
    ]
    if skipped:
        parts += ["", "Not measured, and why:", ""]
        seen: set[tuple[str, str]] = set()
        lines = []
        for row in skipped:
            marker = (row["contender"], row.get("reason", ""))
            if row["status"] == "n/a":
                marker = (row["contender"], row["pattern"])
            if marker in seen:
                continue
            seen.add(marker)
            where = row["pattern"] if row["status"] == "n/a" else "all"
            lines.append(
                [row.get("label", row["contender"]), where, row["status"], row.get("reason", "")]
            )
        parts.append(table(["contender", "pattern", "status", "reason"], lines))
    per_hop: dict[str, dict[str, str]] = result.config.get("per_hop", {})
    if per_hop:
        parts += ["", "### What each contender does per hop", ""]
        rows = []
        for key in sorted(per_hop, key=_order):
            for pattern, text in per_hop[key].items():
                rows.append([_label(result, key), pattern, text])
        parts.append(table(["contender", "pattern", "per hop"], rows))
    return "\n".join(parts)


# -- fan-out ------------------------------------------------------------------------------------


def fanout_section(result: Result, plots: dict[str, str]) -> str:
    """The fan-out section."""
    parts = ["## 2. Fan-out", ""]
    parts.append(
        f"Workers in parallel at L = {fmt(result.config['latency_ms'])} ms; the physical limit "
        "of wall / L is 1.0. Overhead per branch is `(wall - L) / workers`: the CPU each branch "
        "costs on the one core an event loop uses. Peak memory per branch is `tracemalloc`'s "
        "peak during one untimed run, divided by the workers; above 1,000 workers only for "
        "Switchyard (tracing every contender there would take minutes). Samples per size: "
        + ", ".join(f"{k}: {v}" for k, v in result.config["repetitions"].items())
        + "."
    )
    parts.append("")
    rows = []
    for row in sorted(_ok(result.rows), key=lambda r: (r["workers"], _order(r["contender"]))):
        rows.append(
            [
                fmt(row["workers"]),
                row["label"],
                fmt_stat(row["wall_over_latency"], 2),
                fmt(row["wall_ms"]["median"], 1),
                fmt(row["overhead_per_branch_us"]),
                fmt(row["peak_kib_per_branch"], 1),
                fmt(row["build_s"], 2),
            ]
        )
    parts.append(
        table(
            [
                "workers",
                "contender",
                "wall / L",
                "wall ms",
                "overhead per branch (us)",
                "peak KiB per branch",
                "build s",
            ],
            rows,
        )
    )
    if "fanout" in plots:
        parts += ["", f"![fan-out]({plots['fanout']})"]
    others = [r for r in result.rows if r.get("status") in {"n/a", "not installed"}]
    if others:
        parts += [
            "",
            "Not measured: " + "; ".join(f"{r['label']} ({r['reason']})" for r in others) + ".",
        ]
    return "\n".join(parts)


# -- context ------------------------------------------------------------------------------------


def context_section(result: Result, plots: dict[str, str]) -> str:
    """The context section."""
    cfg = result.config
    parts = ["## 3. Context over a long session", ""]
    parts.append(
        f"One session of {fmt(cfg['turns'])} turns per pattern, {cfg['checkpointer']}; windows: "
        f"{cfg['window']}. Router: {cfg['patterns']['router']}. Swarm: {cfg['patterns']['swarm']}."
        f" The retention variant runs `aprune(keep_latest={cfg['keep_latest']})` after every "
        "turn. Early = turns "
        "10-20% of the session, late = its last 10%. Growth = late / early: 1.0 is flat, about "
        "the ratio of the turn numbers means growing linearly per turn (quadratic in total)."
    )
    parts.append("")
    rows = []
    for row in result.rows:
        if row.get("status") != "ok":
            rows.append(
                [
                    row["pattern"],
                    row["variant"],
                    row.get("status", ""),
                    row.get("reason", ""),
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            continue
        s = row["summary"]
        rows.append(
            [
                row["pattern"],
                row["variant"],
                f"{fmt(s['tokens_early'])} -> {fmt(s['tokens_late'])}",
                f"{fmt(s['tokens_growth'], 2)}x",
                f"{fmt(s['bytes_per_turn_early'] / 1024, 1)} -> "
                f"{fmt(s['bytes_per_turn_late'] / 1024, 1)}",
                f"{fmt(s['bytes_per_turn_growth'], 2)}x",
                fmt(s["total_mib"], 1),
                f"{fmt(s['rss_mb_start'])} -> {fmt(s['rss_mb_end'])}",
                f"{fmt(s['turn_ms_early'], 1)} -> {fmt(s['turn_ms_late'], 1)}",
            ]
        )
    parts.append(
        table(
            [
                "pattern",
                "variant",
                "tokens per turn (early -> late)",
                "growth",
                "KiB stored per turn (early -> late)",
                "growth",
                "total MiB",
                "RSS MiB",
                "ms per turn",
            ],
            rows,
        )
    )
    parts += [
        "",
        "Time per turn grows with the session for every variant: each checkpoint serialises "
        "the whole conversation. Switchyard's grows faster than the bare graph's because the "
        "run facade reads the thread before each run (session owner check, session budget), "
        "one more full deserialisation per turn. The SQLite files live on tmpfs when the "
        "machine has one: this benchmark measures bytes and tokens, not disk speed.",
    ]
    for name in ("context_tokens", "context_storage"):
        if name in plots:
            parts += ["", f"![{name.replace('_', ' ')}]({plots[name]})"]
    return "\n".join(parts)


# -- throughput ---------------------------------------------------------------------------------


def throughput_section(result: Result, plots: dict[str, str]) -> str:
    """The throughput section."""
    cfg = result.config
    parts = ["## 4. Throughput", ""]
    parts.append(
        f"The router, {cfg['concurrency_per_process']} concurrent clients per process (a new "
        f"session per request), {fmt(cfg['duration_s'], 1)} s measured after a warm-up; with "
        f"PostgreSQL also {cfg['processes']} worker processes (spawned), each with its own pool, "
        "sharing one database."
    )
    parts.append("")
    rows = []
    for row in result.rows:
        if row.get("status") != "ok":
            rows.append(
                [
                    row["label"],
                    row["backend"],
                    fmt(row["latency_ms"]),
                    str(row.get("processes", 1)),
                    "-",
                    row.get("status", ""),
                    row.get("reason", "") or "",
                    "",
                ]
            )
            continue
        rows.append(
            [
                row["label"],
                row["backend"],
                fmt(row["latency_ms"]),
                str(row["processes"]),
                str(row["concurrency"]),
                fmt(row["runs_per_s"]),
                fmt(row["p50_ms"], 1),
                fmt(row["p99_ms"], 1),
            ]
        )
    parts.append(
        table(
            [
                "contender",
                "checkpointer",
                "L (ms)",
                "processes",
                "clients",
                "runs/s",
                "p50 ms",
                "p99 ms",
            ],
            rows,
        )
    )
    if "throughput" in plots:
        parts += ["", f"![throughput]({plots['throughput']})"]
    parts += ["", _throughput_note(result)]
    return "\n".join(parts)


def startup_section(result: Result, plots: dict[str, str]) -> str:
    """Section 5: cold start, fresh processes against the targets of issue 14."""
    config = result.config
    slow = (
        f" ({config['slow_repetitions']} for the `switchyard run` rows)"
        if config["slow_repetitions"] != config["repetitions"]
        else ""
    )
    rows = [
        [name, f"`{command}`", *(_bold_missed(cell) for cell in rest)]
        for name, command, *rest in startup_rows(result)
    ]
    parts = [
        "## 5. Startup",
        "",
        f"Cold-start cost of a fresh process: each figure is the median over "
        f"{config['repetitions']} fresh processes{slow}, interleaved, of the wall time from "
        "spawning the child to "
        "reaping it and of the child's own peak RSS (`os.wait4`). \"Cold\" is a user's second "
        "run: a new process, run in a scratch directory, with `SWITCHYARD_CACHE_DIR` holding "
        "what the first run cached; the first run ever (empty cache, no `.switchyard/`) is one "
        "process, reported on its own. The page cache is not dropped. The warm route is one "
        "process timing `classify` with its own clock after the first request loaded the "
        "classifier (its N counts calls). Peak RSS includes about "
        f"{fmt(config.get('rss_floor_mb'))} MB that a child doing nothing reports. The peers "
        "import only themselves (`switchyard/bench/startup_children.py`) and answer from a "
        "fixed-reply model. Reproduce with `switchyard bench startup`.",
        "",
        table(STARTUP_HEADER, rows),
    ]
    top = config.get("importtime_top")
    if top:
        parts += [
            "",
            "Slowest top-level imports of the semantic `switchyard run` (one run, "
            "`python -X importtime`, cumulative): "
            + ", ".join(f"`{t['module']}` {fmt(t['cumulative_ms'])} ms" for t in top)
            + ".",
        ]
    packages = config.get("import_packages")
    if packages:
        parts += [
            "",
            "The same run's import time by package (self time summed over each package's "
            "modules; `-X importtime` adds its own overhead): "
            + ", ".join(f"`{p['package']}` {fmt(p['self_ms'])} ms" for p in packages)
            + ".",
        ]
    parts += [f"\n> {note}" for note in result.notes]
    return "\n".join(parts)


def _bold_missed(cell: str) -> str:
    return "**missed**" if cell == "missed" else cell


def _throughput_note(result: Result) -> str:
    """What bounds the persistent cells, and how PostgreSQL scales with processes."""
    ok = _ok(result.rows)

    def rate(backend: str, processes: int) -> float | None:
        rows = [
            r
            for r in ok
            if r["contender"] == "switchyard"
            and r["backend"] == backend
            and r["processes"] == processes
            and r["latency_ms"] == 0
        ]
        return float(rows[0]["runs_per_s"]) if rows else None

    memory, one, many = rate("memory", 1), rate("postgres", 1), rate("postgres", 4)
    text = (
        "The SQLite and PostgreSQL cells are bound by the savers more than by the framework: "
        "LangGraph's savers serialise a process's checkpoint reads and writes on one lock "
        "(aiosqlite's worker thread; one PostgreSQL connection at a time), and a router run "
        "makes several of them (the thread read, four checkpoints, pending writes), for "
        "Switchyard and bare LangGraph alike. The database server and the disk were shared "
        "with other work during the run (see the load average below)."
    )
    if memory and one:
        text += f" In memory Switchyard does {fmt(memory)} runs/s; on PostgreSQL {fmt(one)}"
        if many:
            text += (
                f", and {fmt(many)} with 4 worker processes ({many / one:.1f}x): the scale-out "
                "path is more processes, each with its own small pool"
            )
        text += "."
    return text


# -- targets ------------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def targets(results: dict[str, Result]) -> list[list[str]]:
    """One line per target of issue 8: what was measured and whether it meets the target."""
    lines: list[list[str]] = []
    overhead = results.get("overhead")
    if overhead is not None:
        latencies = overhead.config["latencies_ms"]
        low, high = min(latencies), max(latencies)
        for pattern in overhead.config["patterns"]:
            ratios = []
            for backend in BACKEND_ORDER:
                ours = overhead_cell(overhead, pattern, "switchyard", backend, low)
                bare = overhead_cell(overhead, pattern, "langgraph", backend, low)
                if ours and bare and bare["per_hop_us"]["median"] > 0:
                    ratios.append(
                        (ours["per_hop_us"]["median"] / bare["per_hop_us"]["median"], backend)
                    )
            if ratios:
                text = ", ".join(f"{b} {r:.2f}x" for r, b in ratios)
                lines.append(
                    [
                        f"{pattern}: per-hop overhead <= 1.25x bare LangGraph",
                        text,
                        _verdict(max(r for r, _ in ratios) <= 1.25),
                    ]
                )
        for pattern in overhead.config["patterns"]:
            cells = [
                (overhead_cell(overhead, pattern, "switchyard", b, high), b) for b in BACKEND_ORDER
            ]
            ratios = [(c["ratio_to_asyncio"], b) for c, b in cells if c and c["ratio_to_asyncio"]]
            if ratios:
                text = ", ".join(f"{b} {r:.3f}x" for r, b in ratios)
                lines.append(
                    [
                        f"{pattern}: wall <= 1.02x raw asyncio at L = {fmt(high)} ms",
                        text,
                        _verdict(max(r for r, _ in ratios) <= 1.02),
                    ]
                )
        for pattern in overhead.config["patterns"]:
            ours = overhead_cell(overhead, pattern, "switchyard", "none", low)
            if ours is None:
                continue
            behind: list[str] = []
            ahead: list[str] = []
            for peer in PEERS:
                theirs = overhead_cell(overhead, pattern, peer, "none", low)
                if theirs is None:
                    continue
                (
                    ahead
                    if ours["per_hop_us"]["median"] <= theirs["per_hop_us"]["median"]
                    else behind
                ).append(_label(overhead, peer))
            if ahead or behind:
                text = f"ahead of {', '.join(ahead) or 'none'}" + (
                    f"; behind {', '.join(behind)} (see the reading)" if behind else ""
                )
                lines.append(
                    [
                        f"{pattern}: ahead of every peer per hop (no checkpointer)",
                        text,
                        "met" if not behind else "explained below",
                    ]
                )
    fan = results.get("fanout")
    if fan is not None:
        for size, limit in ((100, 1.3), (1_000, 3.0)):
            row = next(
                (
                    r
                    for r in _ok(fan.rows)
                    if r["contender"] == "switchyard" and r["workers"] == size
                ),
                None,
            )
            if row:
                value = row["wall_over_latency"]["median"]
                lines.append(
                    [
                        f"fan-out {size:,} workers: wall <= {limit}x L",
                        f"{value:.2f}x L",
                        _verdict(value <= limit),
                    ]
                )
        biggest = max((r["workers"] for r in _ok(fan.rows)), default=0)
        row = next(
            (
                r
                for r in _ok(fan.rows)
                if r["contender"] == "switchyard" and r["workers"] == biggest
            ),
            None,
        )
        if row and biggest >= 10_000:
            lines.append(
                [
                    f"fan-out {biggest:,} workers completes without error",
                    f"{row['wall_over_latency']['median']:.1f}x L",
                    "met",
                ]
            )
    context = results.get("context")
    if context is not None:
        for row in context.rows:
            if row.get("status") != "ok" or row["variant"] == "untrimmed":
                continue
            s = row["summary"]
            lines.append(
                [
                    f"context {row['pattern']} ({row['variant']}): flat tokens per turn",
                    f"growth {s['tokens_growth']:.2f}x",
                    _verdict(s["tokens_growth"] <= 1.1),
                ]
            )
            lines.append(
                [
                    f"context {row['pattern']} ({row['variant']}): constant storage per turn",
                    f"growth {s['bytes_per_turn_growth']:.2f}x",
                    _verdict(s["bytes_per_turn_growth"] <= 1.1),
                ]
            )
    through = results.get("throughput")
    if through is not None:
        row = next(
            (
                r
                for r in _ok(through.rows)
                if r["contender"] == "switchyard"
                and r["backend"] == "memory"
                and r["latency_ms"] == 0
                and r["processes"] == 1
            ),
            None,
        )
        if row:
            lines.append(
                [
                    "router >= 300 runs/s at L = 0, in-memory checkpointer",
                    f"{row['runs_per_s']:.0f} runs/s",
                    _verdict(row["runs_per_s"] >= 300),
                ]
            )
    startup = results.get("startup")
    if startup is not None:
        lines += _startup_targets(startup)
    return lines


def _startup_targets(result: Result) -> list[list[str]]:
    lines: list[list[str]] = []
    for row in result.rows:
        if row.get("status") != "ok":
            if row.get("target_s") is not None or row.get("target_ms") is not None:
                lines.append([f"cold start: {row['name']}", str(row.get("status")), "n/a"])
            continue
        if row.get("met") is None:
            continue
        if row["kind"] == "warm-route":
            target, measured = (
                f"warm route <= {row['target_ms']:g} ms",
                f"{row['median_ms']:.2f} ms",
            )
        else:
            target = f"cold `{row['command']}` <= {row['target_s']:g} s"
            measured = f"{row['median_s']:.2f} s"
            if row.get("target_rss_mb") is not None:
                target += f", <= {row['target_rss_mb']:g} MB peak RSS"
                measured += f", {row['peak_rss_mb']:.0f} MB"
        lines.append([target, measured, _verdict(row["met"])])
    return lines


# -- plots --------------------------------------------------------------------------------------


def make_plots(results: dict[str, Result], directory: Path) -> dict[str, str]:
    """Draw the PNGs into `directory`; returns name -> path relative to the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, str] = {}

    def save(figure: Any, name: str) -> None:
        figure.tight_layout()
        figure.savefig(directory / f"{name}.png", dpi=110)
        plt.close(figure)
        made[name] = f"results/{name}.png"

    overhead = results.get("overhead")
    if overhead is not None:
        latencies = overhead.config["latencies_ms"]
        low, high = min(latencies), max(latencies)
        patterns = list(overhead.config["patterns"])
        keys = sorted({r["contender"] for r in _ok(overhead.rows)}, key=_order)
        figure, axis = plt.subplots(figsize=(10, 4.5))
        width = 0.8 / max(1, len(keys))
        for index, key in enumerate(keys):
            values = []
            for pattern in patterns:
                row = overhead_cell(overhead, pattern, key, "none", low)
                values.append(row["per_hop_us"]["median"] if row else float("nan"))
            positions = [p + index * width for p in range(len(patterns))]
            axis.bar(positions, values, width, label=_label(overhead, key), color=COLORS.get(key))
        axis.set_xticks([p + width * (len(keys) - 1) / 2 for p in range(len(patterns))], patterns)
        axis.set_yscale("log")
        axis.set_ylabel("per-hop overhead (us, log scale)")
        axis.set_title(f"Per-hop overhead at L = {low:g} ms, no checkpointer (lower is better)")
        axis.legend(fontsize=8, ncol=2)
        save(figure, "overhead_per_hop")

        figure, axes = plt.subplots(1, len(patterns), figsize=(3 * len(patterns), 3.6), sharey=True)
        for axis, pattern in zip(axes, patterns, strict=True):
            for key in ("switchyard", "langgraph", "langgraph-supervisor", "langgraph-swarm"):
                xs, ys = [], []
                for backend in BACKEND_ORDER:
                    row = overhead_cell(overhead, pattern, key, backend, high)
                    if row and row.get("ratio_to_asyncio"):
                        xs.append(backend)
                        ys.append(row["ratio_to_asyncio"])
                if ys:
                    axis.plot(
                        xs, ys, marker="o", label=_label(overhead, key), color=COLORS.get(key)
                    )
            axis.axhline(1.02, color="grey", linestyle="--", linewidth=1)
            axis.set_title(pattern)
            axis.tick_params(axis="x", labelrotation=45)
        axes[0].set_ylabel(f"wall / raw asyncio at L = {high:g} ms")
        axes[0].legend(fontsize=7)
        save(figure, "overhead_ratio")

    fan = results.get("fanout")
    if fan is not None and _ok(fan.rows):
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for key in sorted({r["contender"] for r in _ok(fan.rows)}, key=_order):
            rows = sorted(
                (r for r in _ok(fan.rows) if r["contender"] == key), key=lambda r: r["workers"]
            )
            xs = [r["workers"] for r in rows]
            label = rows[0]["label"]
            left.plot(
                xs,
                [r["wall_over_latency"]["median"] for r in rows],
                marker="o",
                label=label,
                color=COLORS.get(key),
            )
            memory = [
                (r["workers"], r["peak_kib_per_branch"])
                for r in rows
                if r["peak_kib_per_branch"] is not None
            ]
            if memory:
                right.plot(
                    [m[0] for m in memory],
                    [m[1] for m in memory],
                    marker="o",
                    label=label,
                    color=COLORS.get(key),
                )
        left.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xlabel("parallel workers")
        left.set_ylabel("wall time / L (1.0 = physical limit)")
        left.set_title(f"Fan-out at L = {fan.config['latency_ms']:g} ms")
        left.legend(fontsize=8)
        right.set_xscale("log")
        right.set_xlabel("parallel workers")
        right.set_ylabel("peak KiB per branch")
        right.set_title("Peak memory per branch")
        save(figure, "fanout")

    context = results.get("context")
    if context is not None:
        ok_rows = [r for r in context.rows if r.get("status") == "ok"]
        if ok_rows:
            for metric, name, ylabel in (
                ("tokens", "context_tokens", "tokens sent to the model per turn"),
                ("bytes_per_turn", "context_storage", "checkpoint bytes added per turn"),
            ):
                figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
                for axis, pattern in zip(axes, ("router", "swarm"), strict=True):
                    for row in ok_rows:
                        if row["pattern"] != pattern:
                            continue
                        series = row["series"]
                        axis.plot(series["turn"], series[metric], label=row["variant"])
                    axis.set_title(pattern)
                    axis.set_xlabel("turn")
                    axis.set_ylabel(f"{ylabel} (log scale)")
                    axis.set_yscale("log")
                    axis.legend(fontsize=8)
                save(figure, name)

    through = results.get("throughput")
    if through is not None and _ok(through.rows):
        rows = _ok(through.rows)
        figure, axis = plt.subplots(figsize=(10, 4))
        labels = []
        for index, row in enumerate(rows):
            labels.append(
                f"{row['label']}\n{row['backend']} x{row['processes']}\nL={row['latency_ms']:g}"
            )
            axis.bar(index, row["runs_per_s"], color=COLORS.get(row["contender"]))
        axis.set_xticks(range(len(rows)), labels, fontsize=6)
        axis.axhline(300, color="grey", linestyle="--", linewidth=1)
        axis.set_ylabel("runs per second")
        axis.set_title("Router throughput (dashed: 300 runs/s target)")
        save(figure, "throughput")
    return made


# -- the report ---------------------------------------------------------------------------------


def load_results(directory: Path) -> dict[str, Result]:
    """The result files present in `directory`, by benchmark name."""
    found: dict[str, Result] = {}
    for name in BENCHMARKS:
        path = directory / f"{name}.json"
        if path.exists():
            found[name] = load_result(path)
    return found


def command_line(name: str, result: Result) -> str:
    """The machine section's list entry of one result file: its command, when, the load after."""
    quick = " (quick sizes)" if result.quick else ""
    end = result.environment.get("finished_at")
    load = result.environment.get("load_average_end")
    return (
        f"- `{name}`: `{result.environment['command']}`, {result.environment['started_at']}"
        + (f" to {end}" if end else "")
        + (f", load average at the end {load}" if load else "")
        + quick
    )


def machine_section(results: dict[str, Result]) -> str:
    """Machine, interpreter, package versions and the commands that produced the results."""
    first = next(iter(results.values()))
    env = first.environment
    parts = ["## Machine, versions, command", ""]
    parts.append(
        table(
            ["", ""],
            [
                ["CPU", f"{env['cpu']} ({env['cores']} cores)"],
                ["memory", f"{env['memory_gb']} GB"],
                ["platform", env["platform"]],
                ["Python", env["python"]],
                ["Switchyard commit", str(env.get("git_commit"))],
                ["load average (1, 5, 15 min) at start", str(env.get("load_average"))],
            ],
        )
    )
    parts += ["", "Commands (one per result file):", ""]
    parts += [command_line(name, result) for name, result in results.items()]
    parts += [
        "",
        table(
            ["package", "version"], ([k, v or "not installed"] for k, v in env["packages"].items())
        ),
    ]
    return "\n".join(parts)


def _fleet_section(result: Result, plots: Any = None) -> str:
    from switchyard.bench.fleet import fleet_section  # imports nothing of Temporal's at load

    return fleet_section(result)


def _local_section(result: Result, plots: Any = None) -> str:
    from switchyard.bench.local import local_section  # loads no model and starts no server

    return local_section(result)


def write_report(base: Path, reading: str | None = None) -> Path:
    """Write `<base>/RESULTS.md` and the plots from `<base>/results/*.json`.

    Args:
        base: The bench directory (results in `results/`).
        reading: The interpretation to include (default: `default_reading` of the numbers).
    """
    directory = base / "results"
    results = load_results(directory)
    path = base / "RESULTS.md"
    if not results:
        path.write_text("# Switchyard benchmarks\n\nNo results yet: run `switchyard bench all`.\n")
        return path
    plots = make_plots(results, directory)
    parts = [
        "# Switchyard benchmarks",
        "",
        "Orchestration cost of Switchyard's patterns side by side with bare LangGraph, "
        "hand-written asyncio, langgraph-supervisor, langgraph-swarm, AWS Agent Squad and the "
        "OpenAI Agents SDK, with the model held constant: every contender calls the same "
        "simulated model (a fixed latency L, the same replies and the same handoffs, counted "
        "and checked after every sample). Generated by `switchyard bench`; do not edit by hand.",
        "",
    ]
    if any(r.quick for r in results.values()):
        parts += [
            "> These results use the tiny `--quick` sizes: they show the harness works, "
            "not how fast anything is.",
            "",
        ]
    lines = targets(results)
    if lines:
        parts += ["## Targets", "", table(["target", "measured", "verdict"], lines), ""]
    parts += ["## Reading", "", reading or default_reading(results), ""]
    sections = {
        "overhead": overhead_section,
        "fanout": fanout_section,
        "context": context_section,
        "throughput": throughput_section,
        "startup": startup_section,
        "fleet": _fleet_section,
        "local": _local_section,
    }
    for name, render in sections.items():
        if name in results:
            parts += [render(results[name], plots), ""]
        else:
            parts += [f"## {name}", "", f"Not run yet: `switchyard bench {name}`.", ""]
    parts += [machine_section(results), ""]
    path.write_text("\n".join(parts))
    return path


def _per_hop(result: Result, pattern: str, key: str, backend: str = "none") -> float | None:
    low = min(result.config["latencies_ms"])
    row = overhead_cell(result, pattern, key, backend, low)
    return float(row["per_hop_us"]["median"]) if row else None


def _guardrails(result: Result) -> dict[str, Any] | None:
    return next((r for r in _ok(result.rows) if r.get("pattern") == "guardrails"), None)


def default_reading(results: dict[str, Result]) -> str:
    """Where Switchyard leads and trails, computed from the numbers, with the reasons."""
    parts: list[str] = []
    overhead = results.get("overhead")
    if overhead is not None:
        parts += ["**Per pattern** (per-hop overhead at L = 0, no checkpointer):", ""]
        for pattern in overhead.config["patterns"]:
            ours = _per_hop(overhead, pattern, "switchyard")
            bare = _per_hop(overhead, pattern, "langgraph")
            if ours is None or bare is None:
                continue
            ahead: list[str] = []
            behind: list[str] = []
            for peer in PEERS:
                theirs = _per_hop(overhead, pattern, peer)
                if theirs is None:
                    continue
                entry = f"{_label(overhead, peer)} ({fmt(theirs)} us)"
                (ahead if theirs >= ours else behind).append(entry)
            text = (
                f"**{pattern}**: Switchyard {fmt(ours)} us per hop, bare LangGraph {fmt(bare)} us "
                f"({ours / bare:.2f}x)"
            )
            if ahead:
                text += f"; ahead of {', '.join(ahead)}"
            if behind:
                text += f"; behind {', '.join(behind)}"
            parts.append(f"- {text}.")
        parts += ["", "**Where the time goes** (per hop, L = 0, no checkpointer):", ""]
        guard = _guardrails(overhead)
        if guard is not None:
            parts.append(
                f"- Switchyard's per-call guardrails (budget admit and charge with a token "
                f"estimate, circuit-breaker check, usage and cost ledger) cost "
                f"{fmt(guard['guardrails_us'])} us per model call: `acall_agent` "
                f"{fmt(guard['agent_call_us']['median'])} us against "
                f"{fmt(guard['model_call_us']['median'])} us for the bare LangChain model call."
            )
        floor = [
            (p, _per_hop(overhead, p, "asyncio-langchain"), _per_hop(overhead, p, "asyncio"))
            for p in overhead.config["patterns"]
        ]
        known = [(p, lc, raw) for p, lc, raw in floor if lc is not None and raw is not None]
        if known:
            parts.append(
                "- A LangChain model call is the floor under every LangChain-based contender "
                "(Switchyard, bare LangGraph, langgraph-supervisor and -swarm): hand-written "
                "asyncio calling the same model through LangChain costs "
                + ", ".join(
                    f"{fmt(lc)} us ({p}; {fmt(raw)} us without LangChain)" for p, lc, raw in known
                )
                + " per hop."
            )
        steps = [
            (p, bare - lc)
            for p, lc, _ in known
            if (bare := _per_hop(overhead, p, "langgraph")) is not None and lc is not None
        ]
        if steps:
            parts.append(
                "- LangGraph's own step (task, channels, reducers, checkpoint bookkeeping) adds "
                + ", ".join(f"{fmt(v)} us ({p})" for p, v in steps)
                + " per hop on top of that: bare LangGraph minus asyncio with the LangChain model."
            )
        parts.append(
            "- The rest of Switchyard's gap to bare LangGraph is structure, not guardrails: "
            "the pipeline and the fan-out run two more graph steps than the hand-built graphs "
            "(intake and finish, intake and merge) that validate input and record per-stage "
            "results; states carry more reducer-managed channels (usage ledger, per-stage "
            "records, refusals, handoff history); and the run facade reads the session's newest "
            "checkpoint (the saver's `get_tuple`, not a full `get_state`) before every run to "
            "check its owner and prime the session budget. Pattern nodes are "
            "`switchyard.nodes.agent.NodeRunnable`s, which skip the signature inspection "
            "`RunnableLambda` does on every call."
        )
        trailing = sorted(
            {
                peer
                for pattern in overhead.config["patterns"]
                for peer in PEERS
                if (o := _per_hop(overhead, pattern, "switchyard")) is not None
                and (t := _per_hop(overhead, pattern, peer)) is not None
                and t < o
            },
            key=_order,
        )
        if trailing:
            parts += ["", "**Why Switchyard trails some peers per hop:**", ""]
            for peer in trailing:
                parts.append(f"- {_label(overhead, peer)}: {PEER_NOTES[peer]}")
        high = max(overhead.config["latencies_ms"])
        for pattern in ("router", "fanout"):
            if pattern not in overhead.config["patterns"]:
                continue
            meeting = [
                _label(overhead, row["contender"])
                for row in _ok(overhead.rows)
                if row["pattern"] == pattern
                and row["latency_ms"] == high
                and row["backend"] == "none"
                and row["contender"] != "asyncio"
                and row.get("ratio_to_asyncio") is not None
                and row["ratio_to_asyncio"] <= 1.02
            ]
            parts += [
                "",
                f"At L = {fmt(high)} ms the {pattern} makes one model call on its critical path, "
                f"so the 1.02x target leaves {fmt(high * 0.02, 1)} ms for everything else; "
                f"contenders within it (no checkpointer): {', '.join(meeting) or 'none'}.",
            ]
    fan = results.get("fanout")
    if fan is not None and _ok(fan.rows):
        parts += [
            "",
            "**Fan-out.** Wall time per branch grows with the number of branches for every "
            "LangGraph-based contender: LangGraph's `put_writes` "
            "(`langgraph/pregel/_loop.py`) rebuilds the step's pending-writes list each time a "
            "task finishes, so a step of n `Send`s costs O(n^2) (in a profile of 5,000 branches "
            "that list comprehension alone took 1.2 s). Below that, every branch pays one "
            "LangGraph task and one LangChain model call, on one core: at 1,000 branches that is "
            "several times L before any Switchyard code runs (compare asyncio with the LangChain "
            "model). Switchyard's fan-out therefore runs wide fan-outs in shards (64 workers per "
            "shard by default): one `Send` and one LangGraph task per shard, the shard's workers "
            "concurrent inside it, each still with its own agent call, retries, fallbacks and "
            "failure record; what remains per branch is the LangChain model call, the "
            "guardrails and garbage collection over the calls in flight. The OpenAI Agents "
            "SDK's run loop costs more per branch still; raw asyncio (a `TaskGroup`) stays near "
            "the physical limit.",
        ]
    context = results.get("context")
    if context is not None:
        parts += [
            "",
            "**Context.** Switchyard's windows keep the tokens sent per turn flat once they fill "
            "(the untrimmed baseline grows linearly per turn, quadratically in total). Storage "
            "is another matter: LangGraph's savers store every channel's full value at every "
            "checkpoint, so a thread's bytes per turn grow with the conversation unless old "
            "checkpoints are pruned; with `switchyard.storage.retention` keeping the newest "
            "checkpoints the bytes per turn stay constant (linear total). LangGraph's beta "
            "`DeltaChannel` for `messages` would make every checkpoint store only the turn's "
            "new messages, without pruning.",
        ]
    return "\n".join(parts) if parts else "No results yet."
