"""What the hard time limits and the one-turn-per-session lock cost, per call and per run.

1. `call_within` (`switchyard.core.workers`) and `CallLimits` (`switchyard.guardrails.limits`):
   a sync model or tool call runs on a reused daemon worker thread, so the run can stop waiting
   for it at the agent's timeout or the run's deadline; an async one runs under `asyncio.timeout`.
   A trivial in-process chat model is called directly, through `call_within`, and as one agent
   call (`call_agent` / `acall_agent`) with `timeout_s=60` (bounded) and `timeout_s=None` with no
   deadline (unbounded: the call is made in the caller's thread, as before). Each figure is the
   median, over rounds, of a round's mean microseconds per call; the cases of a round run back to
   back, in an order that rotates and reverses (`_order`), and "added" is the median over rounds
   of a bounded case minus its unbounded one in the same round, so load from other processes
   falls on both sides.
2. `one_turn` / `aone_turn` (`switchyard.runtime.sessions`): every `run` / `arun` holds its session
   for the turn. Timed alone, turn after turn (enter and exit, nobody else waiting), for each
   checkpointer; and at a run's cadence: whole runs of a one-stage offline pipeline, `run`
   (locked) against `drive` without the lock (what `run` does otherwise), with one turn entered
   and left on its own between them. Those cases take turns one call at a time; each figure is
   the median microseconds per call, and "added" the median of paired differences (`run` minus
   `drive` in the same iteration).

Usage: `.venv/bin/python bench/hard_limits.py`. Each invocation adds one run to `--out`
(`bench/results/hard_limits.json`) and rewrites its summary, the median over runs of each figure.
The PostgreSQL cases need the server of `--postgres`, and are skipped with a note when it is down.
A benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables.config import set_config_context
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel

import switchyard
from switchyard import AgentSpec, arun, build_pipeline_graph, run
from switchyard.core.errors import PersistenceConfigError
from switchyard.core.models import register_chat_model
from switchyard.core.workers import call_within
from switchyard.guardrails.budgets import Budget, RunMeter
from switchyard.guardrails.scope import RunScope, with_scope
from switchyard.nodes.call import acall_agent, call_agent
from switchyard.nodes.chain import AgentChain
from switchyard.runtime.effects import adrive, drive
from switchyard.runtime.run import execution, prepare
from switchyard.runtime.sessions import aone_turn, one_turn
from switchyard.state.context import Context
from switchyard.storage.persistence import open_async_persistence, open_persistence

MODEL = "bench:echo"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS = Path(__file__).parent / "results" / "hard_limits.json"

_T = TypeVar("_T")


class EchoChatModel(BaseChatModel):
    """Answers "ok" at once, in the caller's thread or task (no executor, no I/O)."""

    @property
    def _llm_type(self) -> str:
        return "bench-echo"

    def _reply(self) -> ChatResult:
        usage = {"input_tokens": 8, "output_tokens": 1, "total_tokens": 9}
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage("ok", usage_metadata=usage))]
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._reply()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._reply()


# --- timing ---------------------------------------------------------------------------------------


def _summary(samples: Sequence[float]) -> dict[str, Any]:
    quartiles = statistics.quantiles(samples, n=4)
    return {
        "median": round(statistics.median(samples), 2),
        "q1": round(quartiles[0], 2),
        "q3": round(quartiles[2], 2),
        "samples": len(samples),
    }


def _order(items: Sequence[_T], by: int) -> list[_T]:
    """`items` started at position `by`, reversed when `by` is odd: a case runs as often just
    before its neighbour as just after it (a second run of one graph finds warm caches), and the
    first place moves round."""
    start = by % len(items)
    order = [*items[start:], *items[:start]]
    return order[::-1] if by % 2 else order


def _rounds(cases: dict[str, Callable[[], Any]], calls: int, rounds: int) -> dict[str, list[float]]:
    """Each case's mean µs per call over `calls` calls, once a round; the cases take turns."""
    for call in cases.values():  # warm up: workers started, models and chains built
        for _ in range(max(calls // 10, 10)):
            call()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(rounds):
        for name, call in _order(list(cases.items()), round_):
            started = time.perf_counter()
            for _ in range(calls):
                call()
            samples[name].append((time.perf_counter() - started) / calls * 1e6)
    return samples


async def _arounds(
    cases: dict[str, Callable[[], Awaitable[Any]]], calls: int, rounds: int
) -> dict[str, list[float]]:
    """Async form of `_rounds`."""
    for call in cases.values():
        for _ in range(max(calls // 10, 10)):
            await call()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(rounds):
        for name, call in _order(list(cases.items()), round_):
            started = time.perf_counter()
            for _ in range(calls):
                await call()
            samples[name].append((time.perf_counter() - started) / calls * 1e6)
    return samples


def _each(cases: dict[str, Callable[[], Any]], runs: int, warmup: int) -> dict[str, list[float]]:
    """µs of each call of each case; the cases take turns call by call (see `_order`)."""
    for call in cases.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for run_ in range(runs):
        for name, call in _order(list(cases.items()), run_):
            started = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - started) * 1e6)
    return samples


async def _aeach(
    cases: dict[str, Callable[[], Awaitable[Any]]], runs: int, warmup: int
) -> dict[str, list[float]]:
    """Async form of `_each`."""
    for call in cases.values():
        for _ in range(warmup):
            await call()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for run_ in range(runs):
        for name, call in _order(list(cases.items()), run_):
            started = time.perf_counter()
            await call()
            samples[name].append((time.perf_counter() - started) * 1e6)
    return samples


def _report(
    samples: dict[str, list[float]], added: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    """Each case's figures, and under "added" each `(base, case)` pair's paired differences.

    A difference is taken between the samples of one round (or one run), so slow spells caused
    by other processes fall on both sides of it.
    """
    report: dict[str, Any] = {name: _summary(values) for name, values in samples.items()}
    if added:
        report["added"] = {
            f"{case} - {base}": _summary(
                [c - b for b, c in zip(samples[base], samples[case], strict=True)]
            )
            for base, case in added
        }
    return report


# --- 1. a model call on a worker thread -----------------------------------------------------------


def _scoped() -> contextlib.AbstractContextManager[Any]:
    """A run scope with no deadline, as inside a run with `Context(deadline_s=None)`."""
    scope = RunScope(meter=RunMeter(run_budget=Budget(max_tokens=10**15)))
    return set_config_context(with_scope(None, scope))


def model_calls(calls: int, rounds: int) -> dict[str, Any]:
    """µs per call: the bare model, through `call_within`, and as one agent call, sync and async."""
    model = EchoChatModel()
    register_chat_model(MODEL, model)
    context = Context(model=MODEL, deadline_s=None)
    messages: list[BaseMessage] = [HumanMessage("Please handle this request.")]
    bounded = AgentSpec(name="bounded", description="x", timeout_s=60)
    unbounded = AgentSpec(name="unbounded", description="x", timeout_s=None)
    bounded_chain, unbounded_chain = AgentChain.of(bounded), AgentChain.of(unbounded)

    def nothing() -> None:
        return None

    sync_cases: dict[str, Callable[[], Any]] = {
        "no-op, direct": nothing,
        "no-op, call_within": lambda: call_within(nothing, 60),
        "model.invoke, direct": lambda: model.invoke(messages),
        "model.invoke, call_within": lambda: call_within(lambda: model.invoke(messages), 60),
        "call_agent, timeout_s=None": lambda: call_agent(
            unbounded, messages, context, chain=unbounded_chain
        ),
        "call_agent, timeout_s=60": lambda: call_agent(
            bounded, messages, context, chain=bounded_chain
        ),
    }

    async def anothing() -> None:
        return None

    async def anothing_timeout() -> None:
        async with asyncio.timeout(60):
            return None

    async def ainvoke() -> Any:
        return await model.ainvoke(messages)

    async def ainvoke_timeout() -> Any:
        async with asyncio.timeout(60):
            return await model.ainvoke(messages)

    async def acall_unbounded() -> Any:
        return await acall_agent(unbounded, messages, context, chain=unbounded_chain)

    async def acall_bounded() -> Any:
        return await acall_agent(bounded, messages, context, chain=bounded_chain)

    async_cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "no-op, direct": anothing,
        "no-op, asyncio.timeout": anothing_timeout,
        "model.ainvoke, direct": ainvoke,
        "model.ainvoke, asyncio.timeout": ainvoke_timeout,
        "acall_agent, timeout_s=None": acall_unbounded,
        "acall_agent, timeout_s=60": acall_bounded,
    }
    with _scoped():
        sync = _rounds(sync_cases, calls, rounds)
        asynchronous = asyncio.run(_arounds(async_cases, calls, rounds))
    return {
        "sync": _report(
            sync,
            [
                ("no-op, direct", "no-op, call_within"),
                ("model.invoke, direct", "model.invoke, call_within"),
                ("call_agent, timeout_s=None", "call_agent, timeout_s=60"),
            ],
        ),
        "async": _report(
            asynchronous,
            [
                ("no-op, direct", "no-op, asyncio.timeout"),
                ("model.ainvoke, direct", "model.ainvoke, asyncio.timeout"),
                ("acall_agent, timeout_s=None", "acall_agent, timeout_s=60"),
            ],
        ),
    }


# --- 2. one turn per session ----------------------------------------------------------------------


def _turn(saver: Any) -> Callable[[], None]:
    """Enter and leave one turn of a session on `saver`, nobody else waiting."""

    def turn() -> None:
        with one_turn(saver, "bench-turn", "enqueue", None):
            pass

    return turn


def _aturn(saver: Any) -> Callable[[], Awaitable[None]]:
    """Async form of `_turn` (`aone_turn`)."""

    async def turn() -> None:
        async with aone_turn(saver, "bench-turn", "enqueue", None):
            pass

    return turn


def _turns(savers: dict[str, Any], calls: int, rounds: int) -> dict[str, Any]:
    """µs per turn entered and left, by checkpointer, turn after turn."""
    cases = {"no checkpointer": _turn(None)}
    cases.update({name: _turn(saver) for name, (saver, _) in savers.items()})
    return _report(_rounds(cases, calls, rounds))


async def _aturns(savers: dict[str, Any], calls: int, rounds: int) -> dict[str, Any]:
    """Async form of `_turns`."""
    cases = {"no checkpointer": _aturn(None)}
    cases.update({name: _aturn(saver) for name, (saver, _) in savers.items()})
    return _report(await _arounds(cases, calls, rounds))


def _graph(saver: Any, store: Any) -> Pregel[Any, Any, Any, Any]:
    builder = build_pipeline_graph([AgentSpec(name="a", description="x")])
    return builder.compile(checkpointer=saver, store=store, name="pipeline")


def _runs(savers: dict[str, Any], runs: int, warmup: int) -> dict[str, Any]:
    """µs per whole `run` of a one-stage offline pipeline, `run` (locked) vs `drive` (unlocked),
    and per turn entered and left on its own between runs, by checkpointer."""
    context = Context(model="offline")
    cases: dict[str, Callable[[], Any]] = {}
    added: list[tuple[str, str]] = []
    for name, (saver, store) in savers.items():
        graph = _graph(saver, store)

        def locked(graph: Pregel[Any, Any, Any, Any] = graph) -> Any:
            return run(graph, "I need a refund", context=context, dlq=None)

        def unlocked(graph: Pregel[Any, Any, Any, Any] = graph) -> Any:
            prepared = prepare(graph, "I need a refund", "local", None, context, None)
            payload = {"messages": [HumanMessage(prepared.text)]}
            return drive(graph, execution(graph, payload, prepared, None))

        if not (locked().ok and unlocked().ok):
            raise RuntimeError(f"the offline pipeline failed on {name}")
        cases[f"{name}, drive"] = unlocked
        cases[f"{name}, run"] = locked
        cases[f"{name}, one_turn between runs"] = _turn(saver)
        added.append((f"{name}, drive", f"{name}, run"))
    return _report(_each(cases, runs, warmup), added)


async def _aruns(savers: dict[str, Any], runs: int, warmup: int) -> dict[str, Any]:
    """Async form of `_runs`: `arun` (locked) vs `adrive` (unlocked), and `aone_turn`."""
    context = Context(model="offline")
    cases: dict[str, Callable[[], Awaitable[Any]]] = {}
    added: list[tuple[str, str]] = []
    for name, (saver, store) in savers.items():
        graph = _graph(saver, store)

        async def locked(graph: Pregel[Any, Any, Any, Any] = graph) -> Any:
            return await arun(graph, "I need a refund", context=context, dlq=None)

        async def unlocked(graph: Pregel[Any, Any, Any, Any] = graph) -> Any:
            prepared = prepare(graph, "I need a refund", "local", None, context, None)
            payload = {"messages": [HumanMessage(prepared.text)]}
            return await adrive(graph, execution(graph, payload, prepared, None))

        if not ((await locked()).ok and (await unlocked()).ok):
            raise RuntimeError(f"the offline pipeline failed on {name}")
        cases[f"{name}, adrive"] = unlocked
        cases[f"{name}, arun"] = locked
        cases[f"{name}, aone_turn between runs"] = _aturn(saver)
        added.append((f"{name}, adrive", f"{name}, arun"))
    return _report(await _aeach(cases, runs, warmup), added)


@contextlib.contextmanager
def _sync_savers(workdir: Path, postgres: str | None) -> Iterator[dict[str, Any]]:
    """The checkpointers measured, with their stores, open for the block."""
    with contextlib.ExitStack() as stack:
        savers: dict[str, Any] = {"memory": (InMemorySaver(), None)}
        sqlite = stack.enter_context(open_persistence(str(workdir / "sync.sqlite")))
        savers["sqlite"] = (sqlite.checkpointer, sqlite.store)
        if postgres is not None:
            pg = stack.enter_context(open_persistence(postgres))
            savers["postgres"] = (pg.checkpointer, pg.store)
        yield savers


@contextlib.asynccontextmanager
async def _async_savers(workdir: Path, postgres: str | None) -> AsyncIterator[dict[str, Any]]:
    """Async form of `_sync_savers`."""
    async with contextlib.AsyncExitStack() as stack:
        savers: dict[str, Any] = {"memory": (InMemorySaver(), None)}
        path = str(workdir / "async.sqlite")
        sqlite = await stack.enter_async_context(open_async_persistence(path))
        savers["sqlite"] = (sqlite.checkpointer, sqlite.store)
        if postgres is not None:
            pg = await stack.enter_async_context(open_async_persistence(postgres))
            savers["postgres"] = (pg.checkpointer, pg.store)
        yield savers


def sessions(
    postgres: str | None, turn_calls: int, rounds: int, runs: int, warmup: int
) -> dict[str, Any]:
    """The turn lock alone and within whole runs, sync and async, by checkpointer."""
    with tempfile.TemporaryDirectory() as workdir:
        with _sync_savers(Path(workdir), postgres) as savers:
            turn = _turns(savers, turn_calls, rounds)
            whole = _runs(savers, runs, warmup)

        async def both() -> tuple[dict[str, Any], dict[str, Any]]:
            async with _async_savers(Path(workdir), postgres) as savers:
                return await _aturns(savers, turn_calls, rounds), await _aruns(savers, runs, warmup)

        aturn, awhole = asyncio.run(both())
    return {
        "one_turn": {"sync": turn, "async": aturn},
        "run": {"sync": whole, "async": awhole},
    }


# --- the report -----------------------------------------------------------------------------------


def _postgres(dsn: str) -> str | None:
    """`dsn` when its server answers, else None (the PostgreSQL cases are skipped)."""
    try:
        with open_persistence(dsn):
            return dsn
    except PersistenceConfigError as exc:
        print(f"PostgreSQL not measured: {exc}")
        return None


def _environment() -> dict[str, Any]:
    """Versions, and the commit measured: HEAD of the checkout `switchyard` is imported from
    (None when that is no git checkout, e.g. a `git archive` on `PYTHONPATH`)."""
    versions = {
        name: importlib.metadata.version(name)
        for name in ("switchyard-agents", "langgraph", "langchain", "langchain-core", "psycopg")
    }
    source = Path(switchyard.__file__).resolve().parent.parent
    commit = None
    with contextlib.suppress(OSError):
        head = source / ".git" / "HEAD"
        ref = head.read_text().strip()
        commit = ref if not ref.startswith("ref: ") else (head.parent / ref[5:]).read_text().strip()
    return {
        "source": str(source),
        "commit": commit,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        **versions,
    }


FIGURES = ("model_calls", "one_turn", "run")
UNIT = "microseconds: per call (model_calls, one_turn) or per run (run)"


def _median_of(parts: list[Any]) -> Any:
    """The median over runs of each figure's median (figures missing from a run are left out)."""
    first = parts[0]
    if "median" in first:
        return round(statistics.median(part["median"] for part in parts), 2)
    return {
        key: _median_of([part[key] for part in parts])
        for key in first
        if all(key in part for part in parts)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round (per-call cases)")
    parser.add_argument("--turns", type=int, default=1000, help="turns per round (one_turn cases)")
    parser.add_argument("--rounds", type=int, default=21, help="rounds (per-call and turn cases)")
    parser.add_argument("--runs", type=int, default=1000, help="whole runs per case")
    parser.add_argument("--postgres", default=POSTGRES, help="DSN; 'none' to skip PostgreSQL")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    postgres = None if args.postgres == "none" else _postgres(args.postgres)
    environment = _environment()  # before the runs: the checkout may move while they go
    load_before = os.getloadavg()
    started = time.perf_counter()
    calls = model_calls(args.calls, args.rounds)
    turns = sessions(postgres, args.turns, args.rounds, args.runs, warmup=20)
    this_run = {
        "environment": environment,
        "postgres": postgres is not None,
        "load_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.perf_counter() - started, 1),
        "settings": {
            "calls": args.calls,
            "turns": args.turns,
            "rounds": args.rounds,
            "runs": args.runs,
        },
        "model_calls": calls,
        **turns,
    }
    saved = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs: list[dict[str, Any]] = [*saved.get("runs", []), this_run]
    summary = {part: _median_of([r[part] for r in runs]) for part in FIGURES}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"unit": UNIT, "median_of_runs": summary, "runs": runs}, indent=2) + "\n"
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
