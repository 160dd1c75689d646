"""The lean process that starts and reaps every child of `switchyard bench startup`.

Linux records a process's peak RSS at `exec` as at least the resident size of the memory it was
started from: a child spawned by the benchmark itself (LangGraph and NumPy imported, ~180 MB)
would report that much even for `/bin/true`. So the children are spawned from this script,
run as `python -I -S startup_spawner.py`, which imports nothing but `os`, `sys`, `json`, `signal`
and `time` (a floor of about 10 MB, which the benchmark measures and records).

Protocol: one JSON request per line on stdin, `{"argv", "env", "cwd", "stdout", "stderr",
"timeout_s"}` (stdout and stderr are file paths the child writes to); one JSON reply per line on
stdout, `{"wall_s", "maxrss_kb", "code"}`, or `{"error"}` when the child could not be started.
"""

import json
import os
import signal
import sys
import time

_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def spawn(request: dict[str, object]) -> dict[str, object]:
    """Run one child to completion: its wall time, its own peak RSS (`os.wait4`), exit code."""
    argv, env, timeout = request["argv"], request["env"], request["timeout_s"]
    if not (isinstance(argv, list) and isinstance(env, dict) and isinstance(timeout, int | float)):
        return {"error": f"malformed request {request!r}"}
    # posix_spawn has no working-directory action in Python 3.11; this process does nothing else.
    os.chdir(str(request["cwd"]))
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(request["stdout"]), _WRITE, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, str(request["stderr"]), _WRITE, 0o600),
    ]
    started = time.perf_counter()
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    except OSError as exc:
        return {"error": f"cannot start {argv[0]}: {exc}"}
    reaped = False

    def kill(signum: int, frame: object) -> None:
        if not reaped:  # a reaped pid may already belong to another process
            os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGALRM, kill)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        _, status, usage = os.wait4(pid, 0)
        reaped = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "maxrss_kb": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status)}


def main() -> int:
    """Serve requests until stdin closes."""
    for line in sys.stdin:
        print(json.dumps(spawn(json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
