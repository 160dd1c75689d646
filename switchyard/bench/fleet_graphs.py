"""The graphs of the fleet benchmark, importable by worker processes (`--graph module:attr`).

`switchyard bench fleet` runs these graphs in process and on Temporal workers started with
`switchyard worker --graph switchyard.bench.fleet_graphs:fanout_1000` (and the others); a worker
serves each under its compiled name, which is the name a run asks for. Every agent calls a
scripted model registered here at import (`BenchChatModel`: a fixed latency, a fixed reply,
usage reported as a provider would), so the bench process and every worker resolve the same
model names without a key or a network.

Each graph is built when it is first asked for (`fleet_graphs.fanout_1000`), so a worker that
serves the pipeline does not build 1,000 agents.

- `fanout_1000`: 1,000 workers at 50 ms, as `build_fanout_graph` builds it by default: above
  `DEFAULT_SHARD_SIZE` (64) workers run in shards, one `shard` node (one Activity on Temporal)
  per shard, so 1,000 workers are 16 Activities of 62 or 63 workers each.
- `fanout_1000_unsharded`: the same 1,000 workers with `shard_size=None`: one Activity each.
- `fanout_20`: 20 workers at 50 ms (below the shard size: one Activity each), for `--quick`.
- `pipeline_5`: 5 stages at L = 0, so its wall time is orchestration only (per-hop cost).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from switchyard.bench.llm import BenchChatModel
from switchyard.bench.topology import fanout, pipeline, system_prompt
from switchyard.core.models import register_chat_model
from switchyard.graphs.fanout import DEFAULT_SHARD_SIZE, shards_of
from switchyard.state.agents import AgentSpec

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

LATENCY_S: Final = 0.05
"""Scripted latency of every fan-out worker's model call."""

FANOUT_MODEL: Final = "offline:fleet-50ms"
"""The scripted model of the fan-out workers (registered at import)."""

PIPELINE_MODEL: Final = "offline:fleet-0ms"
"""The scripted model of the pipeline stages: no latency, so wall time is orchestration."""

PIPELINE_STAGES: Final = 5

register_chat_model(FANOUT_MODEL, BenchChatModel(latency_s=LATENCY_S))
register_chat_model(PIPELINE_MODEL, BenchChatModel(latency_s=0.0))


def agent(name: str, model: str) -> AgentSpec:
    """A benchmark agent on `model` (defaults for windows, retries and budgets)."""
    return AgentSpec(
        name=name,
        description=f"The {name.replace('_', ' ')} agent.",
        system_prompt=system_prompt(name),
        model=model,
    )


def fanout_graph(
    workers: int, *, shard_size: int | None = DEFAULT_SHARD_SIZE, name: str | None = None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A "collect" fan-out of `workers` scripted agents at 50 ms, compiled without checkpointer."""
    from switchyard.graphs.fanout import build_fanout_graph

    topology = fanout(workers)
    builder = build_fanout_graph(
        [agent(n, FANOUT_MODEL) for n in topology.agents], strategy="collect", shard_size=shard_size
    )
    return builder.compile(name=name or f"fleet_fanout_{workers}")


def pipeline_graph(stages: int = PIPELINE_STAGES) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A pipeline of `stages` scripted agents at L = 0, compiled without checkpointer."""
    from switchyard.graphs.pipeline import build_pipeline_graph

    topology = pipeline(stages)
    builder = build_pipeline_graph([agent(n, PIPELINE_MODEL) for n in topology.agents])
    return builder.compile(name=f"fleet_pipeline_{stages}")


def activities_per_run(workers: int, shard_size: int | None = DEFAULT_SHARD_SIZE) -> int:
    """Agent Activities one run of a fan-out of `workers` starts (one per shard, or per worker)."""
    if shard_size is None or workers <= shard_size:
        return workers
    return len(shards_of([str(i) for i in range(workers)], shard_size))


def shard_sizes(workers: int, shard_size: int | None = DEFAULT_SHARD_SIZE) -> list[int]:
    """Workers in each Activity of one run (all 1 when unsharded)."""
    if shard_size is None or workers <= shard_size:
        return [1] * workers
    return [len(s) for s in shards_of([str(i) for i in range(workers)], shard_size)]


_BUILDERS: dict[str, Callable[[], CompiledStateGraph[Any, Any, Any, Any]]] = {
    "fanout_1000": lambda: fanout_graph(1_000),
    "fanout_1000_unsharded": lambda: fanout_graph(
        1_000, shard_size=None, name="fleet_fanout_1000_unsharded"
    ),
    "fanout_20": lambda: fanout_graph(20),
    "pipeline_5": pipeline_graph,
}
"""The module's graphs by attribute name."""

GRAPHS: Final = tuple(_BUILDERS)

_built: dict[str, CompiledStateGraph[Any, Any, Any, Any]] = {}
_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    """Build a graph on first access (PEP 562)."""
    if name not in _BUILDERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        if name not in _built:
            _built[name] = _BUILDERS[name]()
        return _built[name]


def __dir__() -> list[str]:
    return sorted([*globals(), *_BUILDERS])


if TYPE_CHECKING:
    fanout_1000: CompiledStateGraph[Any, Any, Any, Any]
    fanout_1000_unsharded: CompiledStateGraph[Any, Any, Any, Any]
    fanout_20: CompiledStateGraph[Any, Any, Any, Any]
    pipeline_5: CompiledStateGraph[Any, Any, Any, Any]
