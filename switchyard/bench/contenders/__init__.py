"""The contenders: one module per framework family, each building the same topologies.

A contender turns a `Topology` into a `Prepared` run: an async callable that sends one request
end to end and returns the final answer, plus the `Tally` its simulated model counts into. Peer
frameworks are optional: a contender whose package is not installed is listed by `load_contenders`
with the reason, and every benchmark reports it as "not installed" rather than leaving it out.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from langgraph.checkpoint.base import BaseCheckpointSaver

from switchyard.bench.llm import Tally
from switchyard.bench.topology import Topology

BACKENDS = ("none", "memory", "sqlite", "postgres")
"""Persistence settings of the overhead benchmark: no checkpointer, then the three savers."""


class BenchError(RuntimeError):
    """A contender did not do what the workload requires (wrong answer, wrong number of calls)."""


@dataclass(frozen=True)
class Setup:
    """What a contender is given to prepare a run.

    Attributes:
        latency_s: Simulated latency of every model call.
        backend: "none", "memory", "sqlite" or "postgres".
        checkpointer: The saver for LangGraph-based contenders (None with backend "none").
    """

    latency_s: float
    backend: str = "none"
    checkpointer: BaseCheckpointSaver[Any] | None = None


@dataclass
class Prepared:
    """A ready-to-run workload.

    Attributes:
        run: Sends one request (a new session each time) and returns the final answer.
        tally: The model calls and tokens this contender's simulated model has seen.
        close: Releases what `prepare` opened (None when nothing needs closing).
    """

    run: Callable[[], Awaitable[str]]
    tally: Tally
    close: Callable[[], Awaitable[None]] | None = None


class Contender(ABC):
    """A framework family that can run some of the topologies.

    Class attributes:
        key: Stable identifier used in result files.
        label: Name shown in tables.
        distribution: The pip distribution it needs (its version is reported), if any.
        patterns: Patterns it has a native construction for.
        backends: Persistence settings it supports.
    """

    key: ClassVar[str]
    label: ClassVar[str]
    distribution: ClassVar[str | None] = None
    patterns: ClassVar[frozenset[str]]
    backends: ClassVar[frozenset[str]] = frozenset({"none"})

    @abstractmethod
    async def prepare(self, topology: Topology, setup: Setup) -> Prepared:
        """Build the topology with this framework (outside the timed region)."""

    @abstractmethod
    def per_hop(self, pattern: str) -> str:
        """What this contender does per hop of `pattern`, for RESULTS.md."""

    def supports(self, pattern: str, backend: str) -> bool:
        """Whether this contender runs `pattern` with `backend`."""
        return pattern in self.patterns and backend in self.backends


@dataclass(frozen=True)
class Missing:
    """A contender that could not be loaded.

    Attributes:
        key: The contender's identifier.
        label: Its display name.
        reason: Why it is missing ("not installed: pip install ...").
    """

    key: str
    label: str
    reason: str


_FAMILIES: tuple[tuple[str, str, str, str, str | None], ...] = (
    # (module, class, key, label, import that must succeed)
    ("switchyard.bench.contenders.ours", "SwitchyardContender", "switchyard", "Switchyard", None),
    ("switchyard.bench.contenders.bare", "BareLangGraph", "langgraph", "bare LangGraph", None),
    ("switchyard.bench.contenders.raw", "RawAsyncio", "asyncio", "raw asyncio", None),
    (
        "switchyard.bench.contenders.raw",
        "RawAsyncioLangChain",
        "asyncio-langchain",
        "asyncio + LangChain model",
        None,
    ),
    (
        "switchyard.bench.contenders.prebuilt",
        "LangGraphSupervisor",
        "langgraph-supervisor",
        "langgraph-supervisor",
        "langgraph_supervisor",
    ),
    (
        "switchyard.bench.contenders.prebuilt",
        "LangGraphSwarm",
        "langgraph-swarm",
        "langgraph-swarm",
        "langgraph_swarm",
    ),
    (
        "switchyard.bench.contenders.squad",
        "AgentSquad",
        "agent-squad",
        "AWS Agent Squad",
        "agent_squad",
    ),
    (
        "switchyard.bench.contenders.openai_sdk",
        "OpenAIAgents",
        "openai-agents",
        "OpenAI Agents SDK",
        "agents",
    ),
)

_PIP_NAMES = {
    "langgraph_supervisor": "langgraph-supervisor",
    "langgraph_swarm": "langgraph-swarm",
    "agent_squad": "agent-squad",
    "agents": "openai-agents",
}


def load_contenders() -> tuple[list[Contender], list[Missing]]:
    """Every contender family, instantiated; the ones whose package is missing, with the reason.

    Importing `agent_squad` calls `logging.basicConfig(level=INFO)` for the whole process, which
    would switch on every library's INFO logging (Switchyard's telemetry log lines among them) for
    every contender; the root logger's level and handlers are restored after the imports.
    """
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        return _load()
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def _load() -> tuple[list[Contender], list[Missing]]:
    loaded: list[Contender] = []
    missing: list[Missing] = []
    for module_name, class_name, key, label, needs in _FAMILIES:
        if needs is not None and importlib.util.find_spec(needs) is None:
            reason = (
                f"not installed: pip install {_PIP_NAMES[needs]} (or 'switchyard-agents[bench]')"
            )
            missing.append(Missing(key=key, label=label, reason=reason))
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing.append(Missing(key=key, label=label, reason=f"cannot be imported: {exc}"))
            continue
        contender: Contender = getattr(module, class_name)()
        loaded.append(contender)
    return loaded, missing
