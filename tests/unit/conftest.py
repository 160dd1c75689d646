"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

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
