"""The live progress of `switchyard run`: each node as it runs, the reply as it is written.

- on a terminal, a live display (rich) shows the running nodes and the reply being written, and a
  line is printed as each node finishes;
- elsewhere (a pipe, a log file, CI) only the finished-node lines are printed.

Subgraph nodes are shown under the node that runs them (`team / researcher`). A slow one-time load
(`switchyard.core.loading`: the embedding model, a fitted classifier) shows under the node that
waits for it, `classify  loading embedding model 0.4 s`, and the node's finished line says what it
waited for; a load outside any node gets a line of its own. Everything printed is redacted
(`switchyard.core.redact`).

Example:
    ```python
    progress = StreamProgress(Console(stderr=True))
    result = run(graph, "I need a refund", progress=progress)
    ```
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from switchyard.core.loading import LoadEvent, add_listener
from switchyard.core.redact import redact

# LangGraph and LangChain are imported where they are used, not here: every module of the
# command line stays light to import, so its parser builds at once.

_TAIL_CHARS = 240  # how much of a reply being written the live display shows


def _path(ns: tuple[str, ...] | list[str], node: str | None = None) -> str:
    """`("team:ab12", "researcher:cd34")` -> `team / researcher`."""
    names = [segment.split(":", 1)[0] for segment in ns]
    if node is not None:
        names.append(node)
    return " / ".join(names)


def _usage_summary(update: Mapping[str, Any]) -> str:
    """`1 call, 120/30 tokens, $0.000042`; the cost is `unknown` when a call had no price."""
    from switchyard.core.pricing import format_cost  # loads LangChain: only once a run streams
    from switchyard.state.usage import total_cost

    usage = update.get("usage")
    if not isinstance(usage, Mapping) or not usage:
        return ""
    entries = [e for e in usage.values() if isinstance(e, Mapping)]
    tokens_in = sum(int(e.get("input_tokens", 0)) for e in entries)
    tokens_out = sum(int(e.get("output_tokens", 0)) for e in entries)
    cost = total_cost(entries)
    calls = sum(int(e.get("calls", 0)) for e in entries)
    return (
        f"{calls} call{'s' if calls != 1 else ''}, {tokens_in}/{tokens_out} tokens, "
        f"{format_cost(cost.cost_usd, known=cost.known_cost_usd)}"
    )


def _route_summary(update: Mapping[str, Any]) -> str:
    route = update.get("route")
    if not isinstance(route, Mapping) or not route.get("agent"):
        return ""
    confidence = route.get("confidence")
    sure = f" (confidence {confidence:.2f})" if isinstance(confidence, int | float) else ""
    return f"-> {route['agent']}{sure}"


def _load_summary(event: LoadEvent) -> str:
    """A finished load for a person: `loading embedding model 0.38 s`."""
    took = f"{event.seconds or 0.0:.2f} s"
    return f"loading {event.what} {'failed after ' if event.failed else ''}{took}"


def _current_task() -> str | None:
    """The id of the graph task running in this thread, or None outside any node."""
    from langgraph.config import get_config

    try:
        namespace = str(get_config().get("configurable", {}).get("checkpoint_ns", ""))
    except RuntimeError:  # not inside a graph node
        return None
    # A task's namespace ends with `node:task id`; a subgraph's tasks are nested with `|`.
    return namespace.rsplit("|", 1)[-1].rpartition(":")[2] or None


@dataclass(frozen=True)
class _Load:
    """A load in progress: what, since when, and the task that waits for it (None: no node)."""

    what: str
    started: float
    task: str | None


class StreamProgress:
    """Shows a streamed run's progress on a console; pass it to `run(..., progress=...)`.

    Args:
        console: Where to draw; standard error by default, so standard output keeps only the
            answer (or the JSON).
        live: Draw the live display (running nodes, the reply being written); by default only
            when `console` is a terminal.
        show_tokens: Show the reply as its tokens arrive (live display only).
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        live: bool | None = None,
        show_tokens: bool = True,
    ) -> None:
        self.console = console if console is not None else Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self.show_tokens = show_tokens
        # Loads are reported from the loading threads and the live display redraws from its own:
        # the lock guards everything below. Nothing is printed while it is held, since printing
        # waits for the display, which may be waiting for the lock.
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, float]] = {}  # task id -> (path, started)
        self._reply: dict[str, str] = {}  # path -> text so far
        self._loads: dict[tuple[int, str], _Load] = {}  # (thread, what) -> load in progress
        self._waited: dict[str, list[str]] = {}  # task id -> its finished loads, summarised
        self._spinners: dict[object, Spinner] = {}  # one per row, so each keeps spinning
        self._display: Live | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # ----------------------------------------------------------------- a run

    def __enter__(self) -> StreamProgress:
        """A run starts: clear what the last one showed, watch for loads, start the display."""
        with self._lock:
            self._running.clear()
            self._reply.clear()
            self._loads.clear()
            self._waited.clear()
            self._spinners.clear()
        self._unsubscribe = add_listener(self._on_load)
        if self.live:
            self._display = Live(
                console=self.console,
                transient=True,
                refresh_per_second=10,
                get_renderable=self._renderable,  # redrawn on every refresh: times keep ticking
            )
            self._display.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """The run ended: stop watching for loads, stop the live display."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._display is not None:
            self._display.stop()
            self._display = None

    # ----------------------------------------------------------------- stream parts

    def handle(self, part: Mapping[str, Any]) -> None:
        """Render one stream part (see `stream_graph`)."""
        kind = part.get("type")
        ns = tuple(part.get("ns") or ())
        data = part.get("data")
        line = None
        if kind == "tasks" and isinstance(data, Mapping):
            with self._lock:
                line = self._task(ns, data)
        elif kind == "messages" and isinstance(data, tuple | list) and len(data) == 2:
            self._message(ns, data[0], data[1])
        self._redraw()
        if line is not None:
            self._line(*line)

    def _task(self, ns: tuple[str, ...], data: Mapping[str, Any]) -> tuple[str, str] | None:
        """Track a task starting or finishing (under the lock); the line to print, with style."""
        task_id = str(data.get("id"))
        name = str(data.get("name"))
        if "triggers" in data and "result" not in data:  # a task started
            self._running[task_id] = (_path(ns, name), time.perf_counter())
            return None
        path, started = self._running.pop(task_id, (_path(ns, name), time.perf_counter()))
        self._reply.pop(path, None)
        timing = f"{(time.perf_counter() - started) * 1000:.1f} ms"
        waited = self._waited.pop(task_id, [])
        if waited:
            timing += f" ({', '.join(waited)})"
        error = data.get("error")
        if error:
            return f"x {path} failed after {timing}: {error}", "red"
        if data.get("interrupts"):
            values = [getattr(i, "value", i) for i in data["interrupts"]]
            return f"|| {path} is waiting for a person: {values}", "yellow"
        details = [timing]
        result = data.get("result")
        if isinstance(result, Mapping):
            details.extend(d for d in (_route_summary(result), _usage_summary(result)) if d)
        return f"ok {path}  " + ", ".join(details), "green"

    def _message(self, ns: tuple[str, ...], message: Any, metadata: Any) -> None:
        from langchain_core.messages import AIMessage, AIMessageChunk

        if not self.show_tokens or not isinstance(message, AIMessageChunk | AIMessage):
            return
        node = metadata.get("langgraph_node") if isinstance(metadata, Mapping) else None
        path = _path(ns, str(node) if node else None)
        text = message.text
        if text:
            with self._lock:
                self._reply[path] = self._reply.get(path, "") + text

    # ----------------------------------------------------------------- loads

    def _on_load(self, event: LoadEvent) -> None:
        """A load started or ended (in the loading thread): show it under its node, or alone."""
        key = (threading.get_ident(), event.what)
        if event.seconds is None:
            load = _Load(event.what, time.perf_counter(), _current_task())
            with self._lock:
                self._loads[key] = load
            return
        with self._lock:
            started = self._loads.pop(key, None)
            task = started.task if started is not None else _current_task()
            if task is not None:
                self._waited.setdefault(task, []).append(_load_summary(event))
        if task is None:
            self._redraw()
            self._line(f".. {_load_summary(event)}", "dim")

    # ----------------------------------------------------------------- output

    def _redraw(self) -> None:
        # Before a line is printed, so the display drawn under it is already without its row.
        display = self._display  # read once: the run may end in another thread
        if display is not None:
            display.refresh()

    def _line(self, text: str, style: str) -> None:
        # Elsewhere than a terminal (a log, CI) a step stays one line, however long, for grep.
        live = self.live
        self.console.print(Text(redact(text), style=style if live else ""), soft_wrap=not live)

    def _renderable(self) -> Group:
        now = time.perf_counter()
        rows: list[Any] = []
        spinners: dict[object, Spinner] = {}

        def spinner(key: object, text: str) -> Spinner:
            shown = self._spinners.get(key) or Spinner("dots")
            shown.update(text=Text(text))
            spinners[key] = shown
            return shown

        with self._lock:
            loads = list(self._loads.values())
            for task_id, (path, started) in self._running.items():
                load = next((load for load in loads if load.task == task_id), None)
                if load is not None:
                    loads.remove(load)
                status = (
                    f"loading {load.what} {now - load.started:.1f} s"
                    if load is not None
                    else f"{(now - started) * 1000:.0f} ms"
                )
                rows.append(spinner(task_id, f"{path}  {status}"))
                reply = self._reply.get(path)
                if reply:
                    # Redact the whole reply so far: a secret split across tokens is still caught.
                    tail = redact(reply)[-_TAIL_CHARS:].replace("\n", " ")
                    rows.append(Text(f"   {tail}", style="dim"))
            # Loads outside any node, or of a node whose start has not been shown yet.
            for load in loads:
                rows.append(spinner(load, f"loading {load.what} {now - load.started:.1f} s"))
            self._spinners = spinners
        return Group(*rows)
