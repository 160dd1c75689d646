"""Slow one-time loads (a model, a fitted classifier) announce themselves to progress displays.

A cold process spends most of its first request loading things: the embedding model, a fitted
classifier read from disk or fitted anew. Without a word about it a progress display shows the
routing node at "0 ms" for seconds and looks hung. Code that loads wraps the load in `loading`;
a display subscribes with `add_listener` and shows "loading embedding model 0.4 s".

Listeners run in the loading thread and must be quick; an exception in one is swallowed (a
display must never break a load). Nothing here imports anything heavy.

Example:
    ```python
    with loading("embedding model"):
        model = expensive_load()
    ```
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadEvent:
    """A load started (`seconds` is None) or finished (`seconds` is how long it took).

    Attributes:
        what: What is loading, for a person ("embedding model").
        seconds: None when the load starts; its duration when it ends.
        failed: The load ended with an exception.
    """

    what: str
    seconds: float | None = None
    failed: bool = False


Listener = Callable[[LoadEvent], None]
"""Called with each `LoadEvent`, in the thread that loads."""

_listeners: list[Listener] = []
_lock = threading.Lock()


def add_listener(listener: Listener) -> Callable[[], None]:
    """Call `listener` for every load from now on; returns a function that unsubscribes it."""
    with _lock:
        _listeners.append(listener)

    def remove() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def _emit(event: LoadEvent) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        with contextlib.suppress(Exception):  # a display's bug must not fail the load it watches
            listener(event)


@contextmanager
def loading(what: str) -> Iterator[None]:
    """Announce a slow load to the listeners: once as it starts, once as it ends."""
    _emit(LoadEvent(what))
    started = time.perf_counter()
    failed = True
    try:
        yield
        failed = False
    finally:
        _emit(LoadEvent(what, time.perf_counter() - started, failed))
