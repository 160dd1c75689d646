"""The live progress of `switchyard run`: each node as it runs, the reply as it is written.

- on a terminal, a live display (rich) shows the running nodes and the reply being written, and a
  line is printed as each node finishes;
- elsewhere (a pipe, a log file, CI) only the finished-node lines are printed.

Subgraph nodes are shown under the node that runs them (`team / researcher`). Everything printed is
redacted (`switchyard.core.redact`).

Example:
    ```python
    progress = StreamProgress(Console(stderr=True))
    result = run(graph, "I need a refund", progress=progress)
    ```
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from switchyard.core.redact import redact

_TAIL_CHARS = 240  # how much of a reply being written the live display shows


def _path(ns: tuple[str, ...] | list[str], node: str | None = None) -> str:
    """`("team:ab12", "researcher:cd34")` -> `team / researcher`."""
    names = [segment.split(":", 1)[0] for segment in ns]
    if node is not None:
        names.append(node)
    return " / ".join(names)


def _usage_summary(update: Mapping[str, Any]) -> str:
    usage = update.get("usage")
    if not isinstance(usage, Mapping) or not usage:
        return ""
    entries = [e for e in usage.values() if isinstance(e, Mapping)]
    tokens_in = sum(int(e.get("input_tokens", 0)) for e in entries)
    tokens_out = sum(int(e.get("output_tokens", 0)) for e in entries)
    cost = sum(float(e.get("cost_usd", 0.0)) for e in entries)
    calls = sum(int(e.get("calls", 0)) for e in entries)
    return f"{calls} call{'s' if calls != 1 else ''}, {tokens_in}/{tokens_out} tokens, ${cost:.6f}"


def _route_summary(update: Mapping[str, Any]) -> str:
    route = update.get("route")
    if not isinstance(route, Mapping) or not route.get("agent"):
        return ""
    confidence = route.get("confidence")
    sure = f" (confidence {confidence:.2f})" if isinstance(confidence, int | float) else ""
    return f"-> {route['agent']}{sure}"


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
        self._running: dict[str, tuple[str, float]] = {}  # task id -> (path, started)
        self._reply: dict[str, str] = {}  # path -> text so far
        self._display: Live | None = None

    # ----------------------------------------------------------------- a run

    def __enter__(self) -> StreamProgress:
        """A run starts: clear what the last one showed, start the live display."""
        self._running.clear()
        self._reply.clear()
        if self.live:
            self._display = Live(
                self._renderable(), console=self.console, transient=True, refresh_per_second=10
            )
            self._display.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """The run ended: stop the live display."""
        if self._display is not None:
            self._display.stop()
            self._display = None

    # ----------------------------------------------------------------- stream parts

    def handle(self, part: Mapping[str, Any]) -> None:
        """Render one stream part (see `stream_graph`)."""
        kind = part.get("type")
        ns = tuple(part.get("ns") or ())
        data = part.get("data")
        if kind == "tasks" and isinstance(data, Mapping):
            self._task(ns, data)
        elif kind == "messages" and isinstance(data, tuple | list) and len(data) == 2:
            self._message(ns, data[0], data[1])
        if self._display is not None:
            self._display.update(self._renderable(), refresh=True)

    def _task(self, ns: tuple[str, ...], data: Mapping[str, Any]) -> None:
        task_id = str(data.get("id"))
        name = str(data.get("name"))
        if "triggers" in data and "result" not in data:  # a task started
            self._running[task_id] = (_path(ns, name), time.perf_counter())
            return
        path, started = self._running.pop(task_id, (_path(ns, name), time.perf_counter()))
        self._reply.pop(path, None)
        elapsed = (time.perf_counter() - started) * 1000
        error = data.get("error")
        if error:
            self._line(f"x {path} failed after {elapsed:.1f} ms: {error}", style="red")
            return
        if data.get("interrupts"):
            values = [getattr(i, "value", i) for i in data["interrupts"]]
            self._line(f"|| {path} is waiting for a person: {values}", style="yellow")
            return
        details = [f"{elapsed:.1f} ms"]
        result = data.get("result")
        if isinstance(result, Mapping):
            details.extend(d for d in (_route_summary(result), _usage_summary(result)) if d)
        self._line(f"ok {path}  " + ", ".join(details), style="green")

    def _message(self, ns: tuple[str, ...], message: Any, metadata: Any) -> None:
        if not self.show_tokens or not isinstance(message, AIMessageChunk | AIMessage):
            return
        node = metadata.get("langgraph_node") if isinstance(metadata, Mapping) else None
        path = _path(ns, str(node) if node else None)
        text = message.text if isinstance(message, BaseMessage) else ""
        if text:
            self._reply[path] = self._reply.get(path, "") + text

    # ----------------------------------------------------------------- output

    def _line(self, text: str, *, style: str) -> None:
        self.console.print(Text(redact(text), style=style if self.live else ""))

    def _renderable(self) -> Group:
        rows: list[Any] = []
        for path, started in self._running.values():
            elapsed = (time.perf_counter() - started) * 1000
            rows.append(Spinner("dots", text=Text(f"{path}  {elapsed:.0f} ms")))
            reply = self._reply.get(path)
            if reply:
                # Redact the whole reply so far: a secret split across tokens is still caught.
                tail = redact(reply)[-_TAIL_CHARS:].replace("\n", " ")
                rows.append(Text(f"   {tail}", style="dim"))
        return Group(*rows)
