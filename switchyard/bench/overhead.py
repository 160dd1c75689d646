"""Overhead: what each framework adds on top of its agents, per pattern, with and without a saver.

For every pattern, simulated latency and persistence setting, every contender that can run the
pattern runs the same workload, interleaved. Raw asyncio (which persists nothing) joins every
comparison as the floor the wall-time ratio is taken against. Per-hop overhead is
`(wall - L * sequential_calls) / hops`, computed per sample; at L = 0 it is the framework's whole
cost per agent invocation.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables.config import set_config_context
from langchain_core.runnables.utils import coro_with_context

from switchyard.bench.contenders import BACKENDS, Contender, Missing, Prepared, Setup, ours
from switchyard.bench.harness import (
    Case,
    Progress,
    Result,
    Stats,
    close_all,
    interleaved,
    open_backend,
    postgres_schema,
)
from switchyard.bench.llm import BenchChatModel
from switchyard.bench.topology import PATTERNS, REQUEST, for_pattern
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.guardrails.budgets import Budget, RunMeter
from switchyard.guardrails.scope import RunScope, with_scope
from switchyard.nodes.call import acall_agent
from switchyard.nodes.chain import AgentChain
from switchyard.state.context import Context

REFERENCE = "asyncio"
"""The contender every wall time is compared with."""


@dataclass(frozen=True)
class OverheadConfig:
    """Sizes of the overhead benchmark.

    Attributes:
        latencies_s: Simulated model latencies.
        patterns: Patterns to compare.
        backends: Persistence settings.
        repetitions: Samples per contender at L = 0 and at L > 0.
        target_sample_s: At L = 0, each sample averages a batch of runs lasting about this long.
    """

    latencies_s: tuple[float, ...] = (0.0, 0.05)
    patterns: tuple[str, ...] = PATTERNS
    backends: tuple[str, ...] = BACKENDS
    repetitions: tuple[int, int] = (13, 5)
    target_sample_s: float = 0.03

    @classmethod
    def quick(cls) -> OverheadConfig:
        """Tiny sizes for the test suite: every cell twice, at 1 ms latency."""
        return cls(latencies_s=(0.001,), repetitions=(2, 2), target_sample_s=0.0)


def _row(
    pattern: str, backend: str, latency_s: float, contender: str, label: str, **fields: Any
) -> dict[str, Any]:
    return {
        "pattern": pattern,
        "backend": backend,
        "latency_ms": latency_s * 1000,
        "contender": contender,
        "label": label,
        **fields,
    }


async def _compare(
    pattern: str,
    backend: str,
    latency_s: float,
    contenders: Sequence[Contender],
    config: OverheadConfig,
    workdir: Path,
    postgres: str | None,
    progress: Progress,
) -> list[dict[str, Any]]:
    topology = for_pattern(pattern)
    entrants = [c for c in contenders if c.supports(pattern, backend)]
    reference = next((c for c in contenders if c.key == REFERENCE), None)
    if reference is not None and reference not in entrants:
        entrants.append(reference)
    if not any(c.key != REFERENCE for c in entrants):
        return []
    rows: list[dict[str, Any]] = []
    async with open_backend(backend, workdir, postgres) as saver:
        prepared: dict[str, Prepared] = {}
        try:
            for contender in entrants:
                own = contender.supports(pattern, backend)
                setup = Setup(
                    latency_s=latency_s,
                    backend=backend if own else "none",
                    checkpointer=saver if own else None,
                )
                prepared[contender.key] = await contender.prepare(topology, setup)
            cases = [Case(c.key, prepared[c.key], topology.calls) for c in entrants]
            repetitions = config.repetitions[0 if latency_s == 0 else 1]
            samples = await interleaved(
                cases,
                repetitions=repetitions,
                target_sample_s=config.target_sample_s if latency_s == 0 else 0.0,
                progress=lambda status: progress(
                    f"overhead {pattern} {backend} L={latency_s * 1000:g} ms: {status}"
                ),
            )
        finally:
            await close_all(prepared)
    floor = latency_s * topology.sequential_calls
    reference_wall = Stats.of(samples[REFERENCE]).median if REFERENCE in samples else None
    for contender in entrants:
        wall = samples[contender.key]
        per_hop = [(sample - floor) / topology.hops * 1e6 for sample in wall]
        wall_stats = Stats.of(wall)
        own = contender.supports(pattern, backend)
        rows.append(
            _row(
                pattern,
                backend if own else "none",
                latency_s,
                contender.key,
                contender.label,
                status="ok",
                reference_for=backend if not own else None,
                calls=topology.calls,
                hops=topology.hops,
                sequential_calls=topology.sequential_calls,
                wall_ms=wall_stats.scaled(1000).as_dict(),
                per_hop_us=Stats.of(per_hop).as_dict(),
                ratio_to_asyncio=(wall_stats.median / reference_wall if reference_wall else None),
            )
        )
    return rows


async def guardrail_cost(repetitions: int, target_sample_s: float) -> dict[str, Any]:
    """What Switchyard's per-call guardrails cost: one agent call vs the bare model call.

    `acall_agent` (budget admit and charge with token estimate, breaker check, usage and cost
    ledger entry, agent name on the call) against `BenchChatModel.ainvoke` on the same messages,
    both with a run meter installed, as in a run.
    """
    spec = ours.agent_spec("agent")
    bare_model = BenchChatModel(latency_s=0.0)
    agent_model = BenchChatModel(latency_s=0.0)
    name = f"offline:guardrails-{uuid.uuid4().hex[:8]}"
    register_chat_model(name, agent_model)
    context = Context(model=name)
    messages = [HumanMessage(REQUEST)]
    system = SystemMessage(spec.system_prompt)

    async def model_call() -> str:
        reply = await bare_model.ainvoke([system, *messages])
        return str(reply.text)

    chain = AgentChain.of(spec)
    scope = RunScope(meter=RunMeter(run_budget=Budget(max_tokens=10**12)))

    async def agent_call() -> str:
        # The call inside a run's scope, as in a graph: the meter admits and charges it.
        with set_config_context(with_scope(None, scope)) as run_context:
            call = acall_agent(spec, messages, context, chain=chain)
            reply = await coro_with_context(call, run_context)
        return str(reply.output)

    cases = [
        Case("model call", Prepared(run=model_call, tally=bare_model.tally), 1),
        Case("agent call", Prepared(run=agent_call, tally=agent_model.tally), 1),
    ]
    try:
        samples = await interleaved(cases, repetitions=repetitions, target_sample_s=target_sample_s)
    finally:
        unregister_chat_model(name)
    model_us = Stats.of(samples["model call"]).scaled(1e6)
    agent_us = Stats.of(samples["agent call"]).scaled(1e6)
    return {
        "pattern": "guardrails",
        "contender": "switchyard",
        "label": "Switchyard",
        "status": "ok",
        "model_call_us": model_us.as_dict(),
        "agent_call_us": agent_us.as_dict(),
        "guardrails_us": agent_us.median - model_us.median,
    }


async def run_overhead(
    contenders: Sequence[Contender],
    missing: Sequence[Missing],
    result: Result,
    *,
    config: OverheadConfig,
    workdir: Path,
    postgres: str | None,
    postgres_reason: str | None,
    progress: Progress,
) -> Result:
    """Run every comparison and fill `result` (rows, config, notes).

    Args:
        contenders: The contenders that loaded.
        missing: The ones that did not (reported as "not installed" rows).
        result: Where rows go.
        config: Sizes.
        workdir: Scratch directory for SQLite files.
        postgres: Server DSN, or None when PostgreSQL is unavailable.
        postgres_reason: Why PostgreSQL is unavailable (when `postgres` is None).
        progress: Status callback.
    """
    result.config = {
        "latencies_ms": [latency * 1000 for latency in config.latencies_s],
        "patterns": list(config.patterns),
        "backends": list(config.backends),
        "repetitions": {"L=0": config.repetitions[0], "L>0": config.repetitions[1]},
        "target_sample_s": config.target_sample_s,
        "topologies": {
            p: {
                "summary": for_pattern(p).summary,
                "calls": for_pattern(p).calls,
                "sequential_calls": for_pattern(p).sequential_calls,
            }
            for p in config.patterns
        },
        "per_hop": {
            c.key: {p: c.per_hop(p) for p in config.patterns if p in c.patterns} for c in contenders
        },
        "labels": {c.key: c.label for c in contenders} | {m.key: m.label for m in missing},
    }
    for item in missing:
        result.notes.append(f"{item.label}: {item.reason}")
        for pattern in config.patterns:
            result.rows.append(
                _row(
                    pattern,
                    "none",
                    0.0,
                    item.key,
                    item.label,
                    status="not installed",
                    reason=item.reason,
                )
            )
    progress("overhead: guardrail cost per model call")
    result.rows.append(await guardrail_cost(config.repetitions[0], config.target_sample_s))
    with contextlib.ExitStack() as stack:
        schema_dsn = None
        if postgres is not None and "postgres" in config.backends:
            schema_dsn = stack.enter_context(postgres_schema(postgres))
        for latency in config.latencies_s:
            for pattern in config.patterns:
                for backend in config.backends:
                    if backend == "postgres" and schema_dsn is None:
                        result.rows.append(
                            _row(
                                pattern,
                                backend,
                                latency,
                                "*",
                                "all",
                                status="unavailable",
                                reason=postgres_reason or "PostgreSQL not configured",
                            )
                        )
                        continue
                    result.rows.extend(
                        await _compare(
                            pattern,
                            backend,
                            latency,
                            contenders,
                            config,
                            workdir,
                            schema_dsn,
                            progress,
                        )
                    )
    for contender in contenders:
        for pattern in config.patterns:
            if pattern not in contender.patterns:
                result.rows.append(
                    _row(
                        pattern,
                        "none",
                        0.0,
                        contender.key,
                        contender.label,
                        status="n/a",
                        reason=f"no native {pattern} construction",
                    )
                )
    return result
