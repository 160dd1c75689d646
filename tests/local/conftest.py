"""The tests on a real local model: one `llama-server` for the session (`local_llm`).

Every test here that uses `local_llm` is marked `local_llm` and `server` (it talks to a server on
loopback), so `-m "not local_llm"` leaves them out and `make unit` never runs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local_server import LocalLLM, local_llm_server

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of this folder that use the `local_llm` fixture."""
    for item in items:
        if "local_llm" in getattr(item, "fixturenames", ()) and HERE in item.path.parents:
            item.add_marker(pytest.mark.local_llm)
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLLM]:
    """One SmolLM2 server on a free loopback port for the whole session.

    Skips (fails in CI) without the local extra.
    """
    with local_llm_server(tmp_path_factory.mktemp("llama-server") / "llama-server.log") as llm:
        yield llm
