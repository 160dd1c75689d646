"""Child processes started in a session of their own, and stopped with all they started."""

from __future__ import annotations

import contextlib
import os
import signal
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
