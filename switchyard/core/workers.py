"""Blocking calls with a hard time limit: run on a daemon thread, stop waiting at the limit.

A sync model or tool call cannot be cancelled from inside the process: Python has no way to stop a
thread blocked in a socket read or a `time.sleep`. What can be bounded is how long the *run* waits
for it. `call_within` runs the call on a worker thread, in a copy of the caller's context (so the
run's config, callbacks, scope and records are the same ones), and gives up at the limit; the
abandoned call finishes (or times out in its HTTP client) on its own, and its result is dropped.

Why not `concurrent.futures.ThreadPoolExecutor` (or LangGraph's `TimeoutPolicy`): the executor's
threads are joined when the interpreter exits, so one hung provider call would keep a finished CLI
run from exiting; LangGraph's node timeouts are for async nodes only ("sync Python execution cannot
be safely cancelled in-process"). The workers here are daemon threads, reused while idle.
"""

from __future__ import annotations

import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

MAX_IDLE = 16
"""Idle workers kept for reuse; a burst beyond it starts fresh threads that end when done."""


class CallAbandonedError(TimeoutError):
    """The call was still running at its limit; the caller stopped waiting for it."""


class _Job:
    __slots__ = ("call", "done", "error", "result")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="switchyard-call", daemon=True)
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                job.result = job.call()
            except BaseException as exc:  # handed to the waiting caller, whatever it is
                job.error = exc
            finally:
                job.call = _nothing  # drop references held by an abandoned call
            with _lock:
                keep = len(_idle) < MAX_IDLE
                if keep:
                    _idle.append(self)
            job.done.set()
            if not keep:
                return


def _nothing() -> None:
    return None


_idle: list[_Worker] = []
_lock = threading.Lock()


def _forget_workers() -> None:
    """In a forked child: the parent's idle workers are objects without threads; drop them.

    A fork copies only the forking thread. A job handed to one of those workers would never run,
    and every bounded call would wait out its limit (as a forked benchmark worker did).
    """
    global _lock
    _lock = threading.Lock()
    _idle.clear()


os.register_at_fork(after_in_child=_forget_workers)


def _worker() -> _Worker:
    with _lock:
        if _idle:
            return _idle.pop()
    worker = _Worker()
    worker.start()
    return worker


def call_within(call: Callable[[], _T], limit: float) -> _T:
    """Run `call()` and return what it returns, waiting at most `limit` seconds for it.

    It runs on a worker thread in a copy of the caller's `contextvars` context. What it raises is
    raised here.

    Raises:
        CallAbandonedError: `limit` passed first; the call goes on in the background, unobserved.
    """
    context = contextvars.copy_context()
    job = _Job(lambda: context.run(call))
    _worker().jobs.put(job)
    if not job.done.wait(max(limit, 0.0)):
        raise CallAbandonedError(f"call still running after {limit:.3g}s")
    if job.error is not None:
        raise job.error
    result: _T = job.result
    return result
