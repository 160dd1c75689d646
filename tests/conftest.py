"""Suite-wide fixtures: every test starts from a clean model cache and no provider keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from switchyard import models

PROVIDER_ENV = (
    "SWITCHYARD_MODEL",
    "SWITCHYARD_CHECKPOINTER",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "LANGSMITH_TRACING",
    "LANGCHAIN_TRACING_V2",
)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    models._cache.clear()
    yield
    models._cache.clear()
