"""Fixtures shared by the unit tests."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from opentelemetry import trace

from switchyard.observability.telemetry import use_tracer_provider
from tests.fakes import Reply, ScriptedChatModel, scripted
from tests.patterns import eager_supervisor

Script = Callable[..., dict[str, ScriptedChatModel]]
"""`script(alpha=[...], ...)`: registers a scripted `fake:<agent>` model per agent."""


@pytest.fixture
def models() -> Iterator[Script]:
    """Scripted models per agent: `script(alpha=[...], ...)` registers `fake:<agent>`."""
    stack = ExitStack()
    registered: dict[str, ScriptedChatModel] = {}

    def script(**replies: list[Reply]) -> dict[str, ScriptedChatModel]:
        for name, replies_of in replies.items():
            registered[name] = stack.enter_context(scripted(f"fake:{name}", *replies_of))
        return registered

    with stack:
        yield script


@pytest.fixture
def eager() -> Iterator[None]:
    """The supervisor model of `tests.patterns.PATTERNS` (offline, delegating whenever it can)."""
    with eager_supervisor():
        yield


@pytest.fixture
def cli_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let `main` configure logging and tracing as in its own process, and undo it afterwards.

    OpenTelemetry's global provider can be set once per process, so the CLI's is kept local.
    """
    logger = logging.getLogger("switchyard")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    monkeypatch.setattr(trace, "set_tracer_provider", lambda provider: None)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps to the terminal's width
    yield
    use_tracer_provider(None)
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
