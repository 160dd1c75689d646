"""Context over a long session: 1,000 turns through the router and the swarm.

Per turn it records the tokens sent to the model (what the provider bills), the bytes the thread's
checkpoints occupy in SQLite, and the process's resident memory. Three variants per pattern:

- `switchyard`: the pattern as shipped; every agent sees its window (the last
  `max_message_pairs` turns, at most `max_context_tokens`), the checkpointer keeps every
  checkpoint (LangGraph's default);
- `switchyard+retention`: the same, with `switchyard.storage.retention.aprune` keeping the newest
  checkpoints after every turn (what a deployment runs on a schedule);
- `untrimmed`: bare LangGraph sending the whole conversation every call, keeping everything.

The limit: tokens per turn flat once the window is full, and storage that grows by a constant
amount per turn (linear in the session's length, not quadratic).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig

from switchyard.bench.contenders import BenchError, ours
from switchyard.bench.contenders import bare as bare_mod
from switchyard.bench.harness import Progress, Result, frozen_heap, rss_mb
from switchyard.bench.llm import ANY_PEER, BenchChatModel, Tally
from switchyard.bench.topology import Topology
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.runtime.run import arun, thread_id_for
from switchyard.storage.persistence import open_async_checkpointer

VARIANTS = ("switchyard", "switchyard+retention", "untrimmed")


@dataclass(frozen=True)
class ContextConfig:
    """Sizes of the context benchmark.

    Attributes:
        turns: Turns in the session.
        sample_every: Keep every n-th turn's numbers in the result file (all are summarised).
        keep_latest: Checkpoints per thread the retention variant keeps.
    """

    turns: int = 1_000
    sample_every: int = 10
    keep_latest: int = 5

    @classmethod
    def quick(cls) -> ContextConfig:
        """Tiny sizes for the test suite."""
        return cls(turns=12, sample_every=3)


def router_topology() -> Topology:
    """The router of the overhead benchmark (one model call per turn)."""
    return Topology(
        pattern="router",
        agents=("alpha", "beta", "gamma"),
        plan=(),
        calls=1,
        sequential_calls=1,
        summary="each turn names one of 3 agents in rotation; it answers",
    )


def swarm_topology() -> Topology:
    """A swarm turn: the active agent hands off once to its first peer, which answers."""
    return Topology(
        pattern="swarm",
        agents=("agent_a", "agent_b", "agent_c"),
        plan=(ANY_PEER,),
        calls=2,
        sequential_calls=2,
        summary="each turn the active agent hands off once, to its first declared peer, "
        "which answers (a -> b, then b -> a, ...)",
    )


def turn_text(pattern: str, turn: int) -> str:
    """The user's message of a turn (the router's rotates through the agents)."""
    agent = ("alpha", "beta", "gamma")[turn % 3]
    if pattern == "router":
        return f"Turn {turn}: please ask {agent} about order {1000 + turn} and its delivery date."
    return f"Turn {turn}: what happened to order {1000 + turn} and when will it be delivered?"


def storage_bytes(path: Path, thread_id: str) -> tuple[int, int]:
    """Bytes of a thread's checkpoints and writes in a SQLite file, and its checkpoint count.

    The same measure as `switchyard.storage.retention.thread_storage_bytes`, read through a separate
    read-only connection.
    """
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        size, count = connection.execute(
            "SELECT coalesce(sum(length(thread_id) + length(checkpoint_ns) + length(checkpoint_id)"
            " + coalesce(length(parent_checkpoint_id), 0) + coalesce(length(type), 0)"
            " + coalesce(length(checkpoint), 0) + coalesce(length(metadata), 0)), 0), count(*)"
            " FROM checkpoints WHERE thread_id = ?",
            (thread_id,),
        ).fetchone()
        (writes,) = connection.execute(
            "SELECT coalesce(sum(length(thread_id) + length(checkpoint_ns) + length(checkpoint_id)"
            " + length(task_id) + length(channel) + coalesce(length(type), 0)"
            " + coalesce(length(value), 0)), 0) FROM writes WHERE thread_id = ?",
            (thread_id,),
        ).fetchone()
    finally:
        connection.close()
    return int(size) + int(writes), int(count)


Turn = Callable[[str], Awaitable[None]]


async def _session(
    pattern: str,
    variant: str,
    config: ContextConfig,
    workdir: Path,
    progress: Progress,
) -> dict[str, Any]:
    topology = router_topology() if pattern == "router" else swarm_topology()
    model = BenchChatModel(latency_s=0.0, plan=topology.plan)
    path = workdir / f"context-{pattern}-{variant.replace('+', '-')}-{uuid.uuid4().hex[:6]}.sqlite"
    prune: Callable[[], Awaitable[None]] | None = None
    model_name = f"offline:context-{uuid.uuid4().hex[:8]}"
    async with open_async_checkpointer(str(path)) as saver:
        turn: Turn
        if variant == "untrimmed":
            graph = bare_mod.build(topology, model).compile(checkpointer=saver)
            thread_id = uuid.uuid4().hex
            run_config: RunnableConfig = {"configurable": {"thread_id": thread_id}}

            async def turn(text: str) -> None:
                await graph.ainvoke({"messages": [HumanMessage(text)], "last": text}, run_config)

        else:
            register_chat_model(model_name, model)
            graph = ours.build(topology).compile(checkpointer=saver, name=pattern)
            context = ours.context_for(topology, model_name)
            session = uuid.uuid4().hex
            thread_id = thread_id_for("bench", session)

            async def turn(text: str) -> None:
                result = await arun(
                    graph, text, user_id="bench", session_id=session, context=context, dlq=None
                )
                if not result.ok:
                    raise BenchError(f"context {pattern}: {result.end_reason}: {result.error}")

            if variant == "switchyard+retention":
                try:
                    from switchyard.storage.retention import RetentionPolicy, aprune
                except ImportError as exc:
                    unregister_chat_model(model_name)
                    return {
                        "pattern": pattern,
                        "variant": variant,
                        "status": "unavailable",
                        "reason": f"switchyard.storage.retention cannot be imported: {exc}",
                    }
                policy = RetentionPolicy(keep_latest=config.keep_latest)

                async def prune() -> None:
                    await aprune(saver, policy, thread_ids=[thread_id])

        try:
            with frozen_heap():
                series = await _drive(
                    turn,
                    prune,
                    pattern,
                    model.tally,
                    path,
                    thread_id,
                    config,
                    lambda status: progress(f"context {pattern} {variant}: {status}"),
                )
        finally:
            unregister_chat_model(model_name)
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {
        "pattern": pattern,
        "variant": variant,
        "status": "ok",
        "calls_per_turn": topology.calls,
        **series,
    }


async def _drive(
    turn: Turn,
    prune: Callable[[], Awaitable[None]] | None,
    pattern: str,
    tally: Tally,
    path: Path,
    thread_id: str,
    config: ContextConfig,
    progress: Progress,
) -> dict[str, Any]:
    tokens: list[int] = []
    total_bytes: list[int] = []
    checkpoints: list[int] = []
    memory: list[float] = []
    seconds: list[float] = []
    previous_tokens = tally.input_tokens
    for number in range(1, config.turns + 1):
        calls = tally.calls
        started = time.perf_counter()
        await turn(turn_text(pattern, number))
        if prune is not None:
            await prune()
        seconds.append(time.perf_counter() - started)
        if tally.calls == calls:
            raise BenchError(f"context {pattern}: turn {number} made no model call")
        tokens.append(tally.input_tokens - previous_tokens)
        previous_tokens = tally.input_tokens
        size, count = storage_bytes(path, thread_id)
        total_bytes.append(size)
        checkpoints.append(count)
        memory.append(rss_mb())
        if number % max(1, config.turns // 10) == 0:
            progress(f"turn {number}/{config.turns}")
    per_turn = [total_bytes[0]]
    per_turn += [after - before for before, after in itertools.pairwise(total_bytes)]
    keep = [i for i in range(config.turns) if (i + 1) % config.sample_every == 0 or i == 0]
    return {
        "turns": config.turns,
        "summary": summarise(tokens, per_turn, total_bytes, memory, seconds),
        "series": {
            "turn": [i + 1 for i in keep],
            "tokens": [tokens[i] for i in keep],
            "bytes_per_turn": [per_turn[i] for i in keep],
            "total_bytes": [total_bytes[i] for i in keep],
            "checkpoints": [checkpoints[i] for i in keep],
            "rss_mb": [round(memory[i], 1) for i in keep],
            "turn_ms": [round(seconds[i] * 1000, 3) for i in keep],
        },
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarise(
    tokens: Sequence[int],
    per_turn: Sequence[int],
    total_bytes: Sequence[int],
    memory: Sequence[float],
    seconds: Sequence[float],
) -> dict[str, float]:
    """Early and late averages (10th and last 10% of turns) and how much they grew.

    "Flat" per-turn tokens have a late/early ratio near 1 once the window is full; "constant"
    storage per turn likewise. A ratio near `late turn / early turn` means linear growth per turn
    (quadratic in total).
    """
    n = len(tokens)
    span = max(1, n // 10)
    early = slice(span, 2 * span) if n >= 4 * span else slice(0, max(1, n // 2))
    late = slice(n - span, n)

    def ratio(values: Sequence[float]) -> float:
        first = _mean(values[early])
        return _mean(values[late]) / first if first else float("nan")

    return {
        "early_turns": float(early.stop or 0),
        "tokens_first": float(tokens[0]),
        "tokens_early": _mean(tokens[early]),
        "tokens_late": _mean(tokens[late]),
        "tokens_growth": ratio(tokens),
        "bytes_per_turn_early": _mean(per_turn[early]),
        "bytes_per_turn_late": _mean(per_turn[late]),
        "bytes_per_turn_growth": ratio(per_turn),
        "total_mib": total_bytes[-1] / 1024 / 1024,
        "rss_mb_start": memory[0],
        "rss_mb_end": memory[-1],
        "turn_ms_early": _mean(seconds[early]) * 1000,
        "turn_ms_late": _mean(seconds[late]) * 1000,
    }


def scratch_parent(workdir: Path) -> Path:
    """Where the sessions' SQLite files go: memory-backed `/dev/shm` when there is one.

    This benchmark measures tokens and bytes, not disk speed; on a VM disk every checkpoint's
    fsync costs milliseconds, which over 1,000 turns and four checkpoints a turn would make the
    run take several times longer without changing any number it reports.
    """
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else workdir


async def run_context(
    result: Result, *, config: ContextConfig, workdir: Path, progress: Progress
) -> Result:
    """Run the sessions (router and swarm, each variant) and fill `result`."""
    with tempfile.TemporaryDirectory(
        prefix="switchyard-context-", dir=scratch_parent(workdir)
    ) as tmp:
        return await _run_all(result, config=config, workdir=Path(tmp), progress=progress)


async def _run_all(
    result: Result, *, config: ContextConfig, workdir: Path, progress: Progress
) -> Result:
    result.config = {
        "turns": config.turns,
        "sample_every": config.sample_every,
        "keep_latest": config.keep_latest,
        "checkpointer": "SQLite (AsyncSqliteSaver)"
        + (" on tmpfs" if str(workdir).startswith("/dev/shm") else ""),
        "window": "AgentSpec defaults: max_message_pairs=10, max_context_tokens=8000",
        "patterns": {
            "router": router_topology().summary,
            "swarm": swarm_topology().summary,
        },
    }
    for pattern in ("router", "swarm"):
        for variant in VARIANTS:
            result.rows.append(await _session(pattern, variant, config, workdir, progress))
    return result
