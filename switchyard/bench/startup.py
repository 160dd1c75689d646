"""Cold start: what a fresh process pays before it can answer (`switchyard bench startup`).

Every figure but two is the median over N fresh processes (10; 2 with `--quick`, 1 for the slow
`switchyard run` rows): the wall time from spawning the child to reaping it, and the child's own
peak resident memory, from `os.wait4` on that child (`RUSAGE_CHILDREN` would be the maximum over
every child reaped so far). Children are spawned by a lean helper process (`startup_spawner.py`),
since Linux counts the spawning process's resident memory into a child's peak. The processes of
all rows are interleaved, in an order rotated each repetition, so drift on the machine affects
every row alike; before that, each row runs once untimed (not with `--quick`).

"Cold" means a user's second run: a new process, with the on-disk state of a first run present.
Children run in a temporary working directory (so `.switchyard/` lands there, not in the
repository) with `SWITCHYARD_CACHE_DIR` pointing at a cache that the first run filled. That first
run, with the cache empty, is reported on its own (one process, not a median). The operating
system's page cache is not dropped (that needs root): files the first run read stay in memory.

The two other figures: the warm route (one child builds the demo router's classifier, classifies
once to load it, then times `classify` per request with its own clock) and, once, the slowest
top-level imports of the semantic run from `python -X importtime`.

Peer frameworks run as child scripts (`startup_children.py`) that import only the peer. Children
never reach the network: the model is Switchyard's offline model, the Hugging Face libraries are
told to stay offline, and the peers' tracing is off.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from switchyard.bench.contenders import BenchError
from switchyard.bench.harness import Result, Stats, percentile

REQUEST = "I need a refund for my last payment"
"""The message of the `switchyard run router` rows (the README's demo request)."""

CHILDREN = Path(__file__).with_name("startup_children.py")
"""The child script for the peers and the warm route (run as a file; see its docstring)."""

SPAWNER = Path(__file__).with_name("startup_spawner.py")
"""The lean process that spawns every child (see its docstring for why)."""

DATASET = Path(__file__).resolve().parents[2].parent / "shared/datasets/clinc150/val.jsonl"
"""Requests for the warm route when present (the CLINC150 validation set next to the checkout)."""

CHILD_TIMEOUT_S = 600.0
"""A child still running after this long is killed and its row reported as failed."""

WARM_ROUTE_TARGET_MS = 3.0
"""Median time of one `classify` call once the classifier is loaded."""

IMPORTTIME_TOP = 10
"""How many top-level imports of the semantic run the result file lists."""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StartupConfig:
    """How much to measure.

    Attributes:
        repetitions: Fresh processes per row.
        slow_repetitions: Fresh processes per slow row (the `switchyard run` rows).
        warmup: One untimed process per row first (fills the page cache for every row alike).
        warm_requests: Requests timed in the warm-route child.
        importtime: Run the semantic row once more under `-X importtime`.
    """

    repetitions: int = 10
    slow_repetitions: int = 10
    warmup: bool = True
    warm_requests: int = 200
    importtime: bool = True

    @classmethod
    def quick(cls) -> StartupConfig:
        """Tiny sizes: every row measured, in seconds rather than minutes."""
        return cls(
            repetitions=2, slow_repetitions=1, warmup=False, warm_requests=20, importtime=False
        )


@dataclass(frozen=True)
class Probe:
    """One row measured over fresh processes.

    Attributes:
        key: Identifier in the result file.
        name: What the row measures, for tables.
        argv: The child's command line.
        command: The command as a user types it.
        group: "switchyard" or "peer".
        settings: Environment variables this row sets on top of the common ones.
        target_s: Median wall time to meet (None: no target).
        target_rss_mb: Median peak RSS to meet (None: no target).
        slow: Measured `slow_repetitions` times instead of `repetitions`.
        semantic: Needs the semantic extra.
        expect: Text the child's stdout must contain (None: the exit code alone).
    """

    key: str
    name: str
    argv: tuple[str, ...]
    command: str
    group: str = "switchyard"
    settings: Mapping[str, str] = field(default_factory=dict)
    target_s: float | None = None
    target_rss_mb: float | None = None
    slow: bool = False
    semantic: bool = False
    expect: str | None = None


@dataclass(frozen=True)
class Sample:
    """One child process.

    Attributes:
        wall_s: From spawning it to reaping it.
        rss_mb: Its peak resident set size, MiB.
        code: Its exit code (negative: killed by that signal).
        stdout: What it printed.
        stderr: What it printed on stderr.
    """

    wall_s: float
    rss_mb: float
    code: int
    stdout: str
    stderr: str


class Spawner:
    """The lean process that starts and reaps every child (see `startup_spawner.py`).

    Use as a context manager; `run` measures one child.
    """

    def __init__(self, scratch: Path) -> None:
        """Start the spawner; children's output files go to `scratch`."""
        self._scratch = scratch
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(SPAWNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> Spawner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the spawner (it exits when its stdin closes)."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=30)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        timeout_s: float = CHILD_TIMEOUT_S,
    ) -> Sample:
        """Run one child to completion: its wall time, its own peak RSS and its output.

        Raises:
            BenchError: The child could not be started, or the spawner died.
        """
        out, err = self._scratch / "child.stdout", self._scratch / "child.stderr"
        request = {
            "argv": list(argv),
            "env": dict(env),
            "cwd": str(cwd),
            "stdout": str(out),
            "stderr": str(err),
            "timeout_s": timeout_s,
        }
        stdin, stdout = self._proc.stdin, self._proc.stdout
        if stdin is None or stdout is None:  # both are pipes (see __init__); this narrows types
            raise BenchError("the start-up spawner has no pipes")
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise BenchError(f"the start-up spawner exited (code {self._proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise BenchError(reply["error"])
        # ru_maxrss is KiB on Linux, bytes on macOS.
        rss = reply["maxrss_kb"] / (1024 * 1024 if sys.platform == "darwin" else 1024)
        return Sample(
            wall_s=reply["wall_s"],
            rss_mb=rss,
            code=reply["code"],
            stdout=out.read_text(errors="replace"),
            stderr=err.read_text(errors="replace"),
        )


def child_env(cache: Path, settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: this one without `SWITCHYARD_*`, plus the bench's own.

    The user's Switchyard settings are dropped so a configured provider, Redis or checkpointer
    does not turn the start-up figure into a network round trip; the run uses the offline model.
    `PYTHONDONTWRITEBYTECODE` is dropped too: an installed package has its bytecode, and without
    it every child would compile Switchyard's sources again (0.3 s on a 2-core machine).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SWITCHYARD_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        {
            "SWITCHYARD_CACHE_DIR": str(cache),
            "SWITCHYARD_MODEL": "offline",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OPENAI_AGENTS_DISABLE_TRACING": "1",
        }
    )
    env.update(settings or {})
    return env


def switchyard_argv() -> list[str]:
    """How to start the `switchyard` command: its console script beside this interpreter."""
    script = Path(sys.executable).parent / "switchyard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "switchyard"]


def probes() -> list[Probe]:
    """The rows measured over fresh processes, in table order."""
    cli = tuple(switchyard_argv())
    py = sys.executable
    run = (*cli, "run", "router", REQUEST)
    shown_run = f'switchyard run router "{REQUEST}"'
    child = (py, "-P", str(CHILDREN))
    return [
        Probe(
            "import",
            "import switchyard",
            (py, "-c", "import switchyard"),
            'python -c "import switchyard"',
            target_s=0.3,
        ),
        Probe("graphs", "switchyard graphs", (*cli, "graphs"), "switchyard graphs", target_s=0.3),
        Probe("help", "switchyard --help", (*cli, "--help"), "switchyard --help", target_s=0.3),
        Probe(
            "run-semantic",
            "run router, semantic",
            run,
            f"SWITCHYARD_CLASSIFIER=semantic {shown_run}",
            settings={"SWITCHYARD_CLASSIFIER": "semantic"},
            target_s=1.0,
            target_rss_mb=250.0,
            slow=True,
            semantic=True,
        ),
        Probe(
            "run-lexical",
            "run router, lexical",
            run,
            f"SWITCHYARD_CLASSIFIER=lexical {shown_run}",
            settings={"SWITCHYARD_CLASSIFIER": "lexical"},
            target_s=0.6,
            slow=True,
        ),
        Probe(
            "langgraph",
            "bare LangGraph",
            (*child, "langgraph"),
            "python -P switchyard/bench/startup_children.py langgraph",
            group="peer",
            expect="fixed reply",
        ),
        Probe(
            "openai-agents",
            "OpenAI Agents SDK",
            (*child, "openai-agents"),
            "python -P switchyard/bench/startup_children.py openai-agents",
            group="peer",
            expect="fixed reply",
        ),
        Probe(
            "agent-squad",
            "AWS Agent Squad",
            (*child, "agent-squad"),
            "python -P switchyard/bench/startup_children.py agent-squad",
            group="peer",
            expect="fixed reply",
        ),
    ]


def semantic_problem() -> str | None:
    """Why the semantic classifier cannot run here (None when its extra is installed)."""
    from switchyard.nodes.classifiers import semantic_available

    if semantic_available():
        return None
    return "the semantic extra is not installed: pip install 'switchyard-agents[semantic]'"


def _failure(sample: Sample) -> str | None:
    """Why `sample` does not count (None when it does): its exit code and last stderr lines."""
    if sample.code != 0:
        tail = " / ".join(sample.stderr.strip().splitlines()[-3:])
        return f"exit code {sample.code}: {tail}"
    return None


def _process_row(
    probe: Probe, samples: Sequence[Sample], status: str, reason: str
) -> dict[str, Any]:
    """The result row of `probe`: its statistics, or (status not "ok") the reason it has none."""
    row: dict[str, Any] = {
        "kind": "process",
        "key": probe.key,
        "name": probe.name,
        "command": probe.command,
        "group": probe.group,
        "settings": dict(probe.settings),
        "target_s": probe.target_s,
        "target_rss_mb": probe.target_rss_mb,
        "status": status,
    }
    if status != "ok":
        return row | {"reason": reason}
    wall = Stats.of([s.wall_s for s in samples])
    rss = Stats.of([s.rss_mb for s in samples])
    met: bool | None = None
    if probe.target_s is not None:
        met = wall.median <= probe.target_s and (
            probe.target_rss_mb is None or rss.median <= probe.target_rss_mb
        )
    row.update(
        {
            "n": wall.n,
            "median_s": wall.median,
            "min_s": wall.low,
            "max_s": wall.high,
            "samples_s": [s.wall_s for s in samples],
            "peak_rss_mb": rss.median,
            "rss_samples_mb": [s.rss_mb for s in samples],
            "met": met,
        }
    )
    return row


@dataclass
class _Session:
    """What every measurement shares: the spawner, the children's directory and cache."""

    spawner: Spawner
    cwd: Path
    cache: Path
    say: Progress

    def run(self, argv: Sequence[str], settings: Mapping[str, str]) -> Sample:
        return self.spawner.run(argv, env=child_env(self.cache, settings), cwd=self.cwd)


def run_startup(
    result: Result,
    *,
    config: StartupConfig,
    workdir: Path,
    progress: Progress | None = None,
) -> None:
    """Measure every row into `result` (rows, config, notes).

    Args:
        result: Where the rows go.
        config: Repetitions and sizes.
        workdir: A scratch directory: the children's working directory and cache go here.
        progress: Called with a short status line as rows finish.

    Raises:
        BenchError: A child could not be started at all.
    """
    cwd, cache, scratch = workdir / "cwd", workdir / "cache", workdir / "spawner"
    for directory in (cwd, cache, scratch):
        directory.mkdir(parents=True, exist_ok=True)
    unavailable = semantic_problem()
    rows = probes()
    with Spawner(scratch) as spawner:
        session = _Session(spawner, cwd, cache, progress or (lambda _: None))
        result.config = {
            "repetitions": config.repetitions,
            "slow_repetitions": config.slow_repetitions,
            "warmup": config.warmup,
            "warm_requests": config.warm_requests,
            "executable": sys.executable,
            "switchyard": shlex.join(switchyard_argv()),
            "request": REQUEST,
            "rss_floor_mb": _rss_floor(session),
        }
        semantic_run = next(p for p in rows if p.key == "run-semantic")
        # First, while the cache is empty: the first run ever is also what fills it.
        first = _first_run(session, semantic_run, unavailable)
        # The lexical row fits its own classifier: one untimed run fills that too, so every row
        # is timed as a user's second run (with --quick there is no warm-up run to do it).
        lexical = next(p for p in rows if p.key == "run-lexical")
        session.run(lexical.argv, lexical.settings)
        measured = [p for p in rows if not (p.semantic and unavailable)]
        samples = _interleaved(session, measured, config)
        for probe in rows:
            if probe.semantic and unavailable:
                result.rows.append(_process_row(probe, [], "unavailable", unavailable))
                continue
            got, reason = samples[probe.key]
            result.rows.append(_process_row(probe, got, "failed" if reason else "ok", reason or ""))
        result.rows.append(_warm_route(session, config, unavailable))
        result.rows.append(first)
        if config.importtime and not unavailable:
            top, packages = _importtime(session, semantic_run)
            result.config["importtime_top"] = top
            result.config["import_packages"] = packages
    if unavailable:
        result.notes.append(f"semantic rows not measured: {unavailable}")
    result.notes += [f"{row['name']}: {row['reason']}" for row in result.rows if "reason" in row]


def _rss_floor(session: _Session) -> float | None:
    """The peak RSS a child reports for doing nothing (what the spawner's own size adds)."""
    true = shutil.which("true")
    return session.run([true], {}).rss_mb if true else None


def _first_run(session: _Session, probe: Probe, unavailable: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "kind": "first-run",
        "key": "first-run",
        "name": "first run ever, semantic",
        "command": probe.command,
        "group": "switchyard",
        "settings": dict(probe.settings),
    }
    if unavailable:
        return row | {"status": "unavailable", "reason": unavailable}
    sample = session.run(probe.argv, probe.settings)
    failure = _failure(sample)
    if failure:
        session.say(f"first run ever failed: {failure}")
        return row | {"status": "failed", "reason": failure}
    session.say(f"first run ever: {sample.wall_s:.2f} s, {sample.rss_mb:.0f} MB")
    return row | {"status": "ok", "n": 1, "wall_s": sample.wall_s, "peak_rss_mb": sample.rss_mb}


def _interleaved(
    session: _Session, measured: Sequence[Probe], config: StartupConfig
) -> dict[str, tuple[list[Sample], str | None]]:
    """Samples per probe, and why it failed (a failed probe is not run again)."""
    samples: dict[str, list[Sample]] = {p.key: [] for p in measured}
    failed: dict[str, str] = {}

    def take(probe: Probe, *, record: bool) -> None:
        sample = session.run(probe.argv, probe.settings)
        failure = _failure(sample)
        if failure is None and probe.expect is not None and probe.expect not in sample.stdout:
            failure = f"expected {probe.expect!r} on stdout, got {sample.stdout[-200:]!r}"
        if failure is not None:
            failed[probe.key] = failure
            session.say(f"{probe.key} failed: {failure}")
        elif record:
            samples[probe.key].append(sample)

    if config.warmup:
        for probe in measured:
            take(probe, record=False)
        session.say("warm-up done")
    for repetition in range(config.repetitions):
        shift = repetition % len(measured)
        for probe in [*measured[shift:], *measured[:shift]]:
            wanted = config.slow_repetitions if probe.slow else config.repetitions
            if probe.key not in failed and len(samples[probe.key]) < wanted:
                take(probe, record=True)
        session.say(f"repetition {repetition + 1}/{config.repetitions}")
    return {p.key: (samples[p.key], failed.get(p.key)) for p in measured}


def _warm_route(
    session: _Session, config: StartupConfig, unavailable: str | None
) -> dict[str, Any]:
    settings = {"SWITCHYARD_CLASSIFIER": "semantic"}
    row: dict[str, Any] = {
        "kind": "warm-route",
        "key": "warm-route",
        "name": "warm route, semantic",
        "command": "python -P switchyard/bench/startup_children.py warm-route "
        f"../shared/datasets/clinc150/val.jsonl {config.warm_requests}",
        "group": "switchyard",
        "settings": settings,
        "target_ms": WARM_ROUTE_TARGET_MS,
    }
    if unavailable:
        return row | {"status": "unavailable", "reason": unavailable}
    argv = (sys.executable, "-P", str(CHILDREN), "warm-route", str(DATASET))
    sample = session.run((*argv, str(config.warm_requests)), settings)
    failure = _failure(sample)
    if failure:
        session.say(f"warm route failed: {failure}")
        return row | {"status": "failed", "reason": failure}
    data = json.loads(sample.stdout.strip().splitlines()[-1])
    ms: list[float] = data["samples_ms"]
    median = statistics.median(ms)
    session.say(f"warm route: {median:.2f} ms median, {len(ms)} requests ({data['classifier']})")
    return row | {
        "status": "ok",
        "classifier": data["classifier"],
        "source": data["source"],
        "requests": len(ms),
        "first_ms": data["first_ms"],
        "median_ms": median,
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "met": median <= WARM_ROUTE_TARGET_MS,
    }


def _importtime(
    session: _Session, probe: Probe
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One run of `probe` under `-X importtime`: the slowest top-level imports, and the packages.

    The top-level list names the import that pulls a stack in (the first module that needs
    LangGraph carries all of it); the per-package self times say whose code the time is spent in.
    """
    sample = session.run(probe.argv, {**probe.settings, "PYTHONPROFILEIMPORTTIME": "1"})
    top = parse_importtime(sample.stderr)[:IMPORTTIME_TOP]
    packages = import_packages(sample.stderr)[:IMPORTTIME_TOP]
    listed = ", ".join(f"{t['package']} {t['self_ms']:.0f} ms" for t in packages[:3])
    session.say(f"importtime: {listed}")
    return top, packages


def import_packages(stderr: str) -> list[dict[str, Any]]:
    """Self import time summed per top-level package from `-X importtime` output, largest first."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        parts = line[len("import time:") :].split("|") if line.startswith("import time:") else []
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # not an import line, or the header
        package = parts[2].strip().split(".", 1)[0]
        totals[package] = totals.get(package, 0.0) + int(parts[0]) / 1000
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    return [{"package": name, "self_ms": ms} for name, ms in ranked]


def parse_importtime(stderr: str) -> list[dict[str, Any]]:
    """Top-level modules from `-X importtime` output, by cumulative time, largest first.

    Lines look like `import time: <self us> | <cumulative us> | <two spaces per level><module>`;
    a top-level import has one space before its name.
    """
    found: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line
        name = parts[2]
        if name.startswith(" ") and not name.startswith("  "):
            found.append({"module": name.strip(), "cumulative_ms": int(parts[1]) / 1000})
    return sorted(found, key=lambda t: -float(t["cumulative_ms"]))


# -- the table ----------------------------------------------------------------------------------

HEADER = ("row", "command", "wall (median)", "min-max", "peak RSS (median)", "N", "target", "met")
"""Columns of the start-up table (console and RESULTS.md)."""


def _target(row: dict[str, Any]) -> str:
    parts = []
    if row.get("target_s") is not None:
        parts.append(f"<= {row['target_s']:g} s")
    if row.get("target_rss_mb") is not None:
        parts.append(f"<= {row['target_rss_mb']:g} MB")
    if row.get("target_ms") is not None:
        parts.append(f"<= {row['target_ms']:g} ms")
    return ", ".join(parts) or "-"


def _met(row: dict[str, Any]) -> str:
    met = row.get("met")
    return "n/a" if met is None else ("met" if met else "missed")


def table_rows(result: Result) -> list[list[str]]:
    """The start-up table's rows, one per result row (the first run last)."""
    lines: list[list[str]] = []
    for row in result.rows:
        name, command = row["name"], row["command"]
        if row.get("status") != "ok":
            # The reason is in the notes: it is too long for a cell.
            lines.append(
                [name, command, str(row.get("status")), "-", "-", "0", _target(row), "n/a"]
            )
        elif row["kind"] == "process":
            lines.append(
                [
                    name,
                    command,
                    f"{row['median_s']:.3f} s",
                    f"{row['min_s']:.3f}-{row['max_s']:.3f} s",
                    f"{row['peak_rss_mb']:.0f} MB",
                    str(row["n"]),
                    _target(row),
                    _met(row),
                ]
            )
        elif row["kind"] == "warm-route":
            lines.append(
                [
                    f"{name} ({row['classifier']})",
                    command,
                    f"{row['median_ms']:.2f} ms",
                    f"{row['min_ms']:.2f}-{row['max_ms']:.2f} ms",
                    "-",
                    f"{row['requests']} calls",
                    _target(row),
                    _met(row),
                ]
            )
        else:
            lines.append(
                [
                    name,
                    command,
                    f"{row['wall_s']:.3f} s",
                    "-",
                    f"{row['peak_rss_mb']:.0f} MB",
                    "1",
                    "-",
                    "n/a",
                ]
            )
    return lines
