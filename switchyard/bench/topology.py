"""The workloads: one per pattern, identical for every contender.

A topology fixes the agents, the request, the handoffs the simulated model makes (its plan) and so
the number of model calls a correct run makes. Contenders build the same topology with their own
primitives; the harness checks after every batch that each made exactly `calls` model calls per run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

REQUEST: Final = "Please look into the order for beta and report back on what you find."
"""The user's message in every run (the router's classifier stub finds the agent named in it)."""

PATTERNS: Final = ("pipeline", "fanout", "router", "supervisor", "swarm")
"""The five patterns of the overhead benchmark, in report order."""

_WORD = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class Topology:
    """One workload.

    Attributes:
        pattern: "pipeline", "fanout", "router", "supervisor" or "swarm".
        agents: Agent names. For the supervisor these are the workers (the supervisor is extra).
        plan: Handoff targets the simulated model makes in one turn, in order.
        calls: Model calls one correct run makes.
        sequential_calls: Model calls on the critical path (what latency the run must wait for).
        summary: What one run does, in words, for the report.
    """

    pattern: str
    agents: tuple[str, ...]
    plan: tuple[str, ...]
    calls: int
    sequential_calls: int
    summary: str

    @property
    def hops(self) -> int:
        """Agent invocations per run: the unit per-hop overhead is divided by."""
        return self.calls

    def min_wall_s(self, latency_s: float) -> float:
        """The physical limit: the latency of the agents on the critical path."""
        return latency_s * self.sequential_calls


def pick(text: str, agents: Sequence[str]) -> str:
    """The classifier stub every router uses: the agent named in the request, else the first."""
    words = set(_WORD.findall(text.lower()))
    return next((agent for agent in agents if agent in words), agents[0])


def pipeline(stages: int = 5) -> Topology:
    """Stages in order, each given the previous stage's output."""
    return Topology(
        pattern="pipeline",
        agents=tuple(f"stage_{i}" for i in range(1, stages + 1)),
        plan=(),
        calls=stages,
        sequential_calls=stages,
        summary=f"{stages} agents in sequence, each given the previous one's output",
    )


def fanout(workers: int = 5) -> Topology:
    """Workers in parallel on the same request; their outputs are collected."""
    width = max(2, len(str(workers)))
    return Topology(
        pattern="fanout",
        agents=tuple(f"worker_{i:0{width}d}" for i in range(1, workers + 1)),
        plan=(),
        calls=workers,
        sequential_calls=1,
        summary=f"{workers} agents in parallel on the request, outputs collected",
    )


def router() -> Topology:
    """A classifier stub picks one of three agents, which answers."""
    return Topology(
        pattern="router",
        agents=("alpha", "beta", "gamma"),
        plan=(),
        calls=1,
        sequential_calls=1,
        summary="classifier stub (no model call) picks 1 of 3 agents, which answers",
    )


def supervisor(workers: int = 3) -> Topology:
    """A supervisor delegates to each worker in turn, then answers."""
    names = tuple(f"worker_{i}" for i in range(1, workers + 1))
    return Topology(
        pattern="supervisor",
        agents=names,
        plan=names,
        calls=2 * workers + 1,
        sequential_calls=2 * workers + 1,
        summary=f"supervisor delegates to {workers} workers one after another "
        f"({workers} handoffs, {workers} reports back), then answers",
    )


def swarm() -> Topology:
    """Three agents hand the conversation on three times (a -> b -> c -> a), then a answers."""
    return Topology(
        pattern="swarm",
        agents=("agent_a", "agent_b", "agent_c"),
        plan=("agent_b", "agent_c", "agent_a"),
        calls=4,
        sequential_calls=4,
        summary="3 handoffs a -> b -> c -> a over the shared conversation, then a answers",
    )


def for_pattern(pattern: str) -> Topology:
    """The overhead benchmark's topology of a pattern.

    Raises:
        ValueError: Unknown pattern.
    """
    builders = {
        "pipeline": pipeline,
        "fanout": fanout,
        "router": router,
        "supervisor": supervisor,
        "swarm": swarm,
    }
    if pattern not in builders:
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")
    return builders[pattern]()


def system_prompt(agent: str) -> str:
    """The system prompt of an agent (the same text in every contender)."""
    return f"You are the {agent.replace('_', ' ')} agent. Do your part of the request precisely."
