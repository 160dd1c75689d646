"""Servers the tests start themselves: on loopback, on a free port, stopped by the test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

STARTUP_DEADLINE_S = 180.0

_PROVIDER_VARIABLES = ("SWITCHYARD_", "OPENAI_", "ANTHROPIC_", "AWS_", "LANGSMITH_", "LANGCHAIN_")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def offline_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without provider keys or tracing: everything stays offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PROVIDER_VARIABLES)}
    env.update(
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"langgraph dev exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/ok", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(
        f"langgraph dev did not answer /ok in {STARTUP_DEADLINE_S:.0f}s:\n{log.read_text()}"
    )


@contextlib.contextmanager
def langgraph_dev(
    config: Path, *, cwd: Path, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """`langgraph dev` serving `config`, in its own process group; yields its URL.

    The whole process group is stopped afterwards, whether the test passed or the server never
    came up (then the failure shows the server's log, not the clean-up).
    """
    port = free_port()
    cli = Path(sys.executable).with_name("langgraph")
    command = [
        str(cli), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
        "--no-reload", "--config", str(config), "--server-log-level", "WARNING",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env) if env is not None else offline_environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
