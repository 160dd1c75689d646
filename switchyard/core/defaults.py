"""Defaults that `switchyard --help` shows; the modules that apply them import them from here.

The command line builds its parser without importing LangGraph, LangChain or scikit-learn, so the
values its help prints cannot be read from `Context`, `AgentSpec` or the routing evaluation. They
live here instead, and those modules take them from here: the help and the behaviour cannot drift
apart. Nothing here imports anything heavy.
"""

from __future__ import annotations

from typing import Literal, get_args

DEADLINE_S = 300.0
"""Seconds a run may take unless its `Context` sets another `deadline_s`."""

CONFIDENCE_THRESHOLD = 0.35
"""Routes below this confidence go to the default agent, unless `Context` sets another."""

DEFAULT_TIMEOUT_S = 60.0
"""Seconds one model or tool call of an agent may take unless the agent sets its own."""

MultitaskStrategy = Literal["enqueue", "reject"]
"""What a turn does when its session is busy: wait its turn, or be refused."""

MULTITASK_STRATEGIES: tuple[MultitaskStrategy, ...] = get_args(MultitaskStrategy)

DLQ_MAX_LIMIT = 1_000_000
"""Most dead letters one `list` returns (a bound both SQLite and PostgreSQL accept)."""

CLASSIFIERS = ("lexical", "semantic", "llm")
"""The classifiers the routing evaluation (`switchyard eval-router`) can measure."""

TEMPORAL_ADDRESS = "127.0.0.1:7233"
"""Temporal's default frontend address (`temporal server start-dev` listens there)."""

TEMPORAL_TASK_QUEUE = "switchyard"
"""The task queue Switchyard's Workflows and Activities use unless told otherwise."""

OverlapPolicy = Literal["skip", "queue", "cancel"]
"""What a scheduled job does when a firing is due while its previous one still runs: skip the new
one, queue it until the previous ends, or cancel the previous one and start the new one."""

OVERLAP_POLICIES: tuple[OverlapPolicy, ...] = get_args(OverlapPolicy)

CATCHUP_S = 60.0
"""Seconds after its time a missed firing of a scheduled job still fires (after downtime)."""

MAX_FAILURES = 3
"""Consecutive failed firings after which a scheduled job is paused."""
