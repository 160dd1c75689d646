"""Servers run as child processes: a free port for them, and a stop that takes all they started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from typing import Any


def stop_process_group(proc: subprocess.Popen[Any], grace: float) -> int:
    """Stop `proc`'s process group (it was started with `start_new_session=True`); its exit code.

    SIGTERM to the group first, so the server and whatever it started finish cleanly; SIGKILL
    when it has not exited after `grace` seconds. A process that has exited already is left alone.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
    return int(proc.returncode)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` (IPv4 or IPv6) that nothing listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
