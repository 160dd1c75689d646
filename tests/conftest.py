"""Suite-wide fixtures: every test starts from a clean model cache and no provider keys."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.globals import set_llm_cache

from switchyard.core import models
from switchyard.core.capabilities import forget_capabilities
from switchyard.core.resilience import Backoff, configure_retries
from switchyard.guardrails.breaker import configure_breakers
from switchyard.nodes.classifiers import semantic_available

FAST_RETRIES = Backoff(initial_s=0.001, max_s=0.001, jitter=False)
"""Retries keep their attempts and their transient filter in tests; only the waits shrink."""

PROVIDER_ENV = (
    "SWITCHYARD_MODEL",
    "SWITCHYARD_CHECKPOINTER",
    "SWITCHYARD_REDIS_URL",
    "SWITCHYARD_CLASSIFIER",
    "SWITCHYARD_MAX_TOKENS",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "LANGSMITH_TRACING",
    "LANGCHAIN_TRACING_V2",
)


def pytest_configure(config: pytest.Config) -> None:
    """Caches go to a folder of this test session even for objects built at import time.

    Some test modules build classifiers when they are collected, before any fixture runs; their
    fitted state must not land in the user's `~/.cache/switchyard`.
    """
    folder = tempfile.mkdtemp(prefix="switchyard-test-cache-")
    os.environ["SWITCHYARD_CACHE_DIR"] = folder
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


@pytest.fixture(autouse=True)
def _isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """No provider keys, fresh models and breakers, 1 ms retry back-off, a per-test DLQ."""
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SWITCHYARD_DLQ", str(tmp_path_factory.mktemp("dlq") / "dlq.sqlite"))
    # Embeddings of agents' examples go to the session's temporary folder, not ~/.cache.
    monkeypatch.setenv("SWITCHYARD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    models.clear_model_cache()
    forget_capabilities()
    configure_breakers()
    configure_retries(FAST_RETRIES)
    set_llm_cache(None)
    yield
    models.clear_model_cache()
    configure_retries(None)
    configure_breakers()
    set_llm_cache(None)


@pytest.fixture(scope="session")
def semantic_extra() -> None:
    """Skip (locally) or fail (in CI) a test that needs the `switchyard-agents[semantic]` extra."""
    if semantic_available():
        return
    message = "needs the semantic extra: pip install 'switchyard-agents[semantic]'"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: `make install` installs it)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def fresh_cache_dir(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty cache folder (for `SWITCHYARD_CACHE_DIR`) that shares the session's exported model.

    Exporting the embedding model to ONNX takes ~10 s; a test that needs an empty cache (fitted
    classifiers, embeddings) in a subprocess still reuses the one export of the test session.
    """
    shared = tmp_path_factory.getbasetemp() / "cache" / "models"
    shared.mkdir(parents=True, exist_ok=True)
    cache = tmp_path / "fresh-cache"
    cache.mkdir()
    (cache / "models").symlink_to(shared, target_is_directory=True)
    return cache
