"""A local OpenAI-compatible provider for the rate-limit benchmark: answers at once, logs when.

It listens on loopback, answers every `POST .../chat/completions` with a short completion (with
usage), and records the wall-clock time each request arrived, which is what the benchmark counts:
requests per minute as the provider saw them, whichever worker process sent them. Streaming,
tools and faults are not needed here (the test suite has its own fault server, `tests/`, which
benchmark code must not import).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USAGE = (20, 5)
"""Prompt and completion tokens every answer reports."""


class RecordingProvider:
    """The server and the arrival times of the requests it answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrivals: list[float] = []
        handler = type("Handler", (_Handler,), {"provider": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url` (`OPENAI_BASE_URL`)."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def arrivals(self) -> list[float]:
        """`time.time()` of each answered request, in order."""
        with self._lock:
            return list(self._arrivals)

    def record(self) -> None:
        """Log one request's arrival, now."""
        with self._lock:
            self._arrivals.append(time.time())

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def recording_provider() -> Iterator[RecordingProvider]:
    """A started `RecordingProvider`, stopped on exit."""
    provider = RecordingProvider()
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """A minimal `chat.completion` answering `body`."""
    prompt, output = USAGE
    return {
        "id": f"chatcmpl-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "unknown"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": 25},
    }


class _Handler(BaseHTTPRequestHandler):
    provider: RecordingProvider
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the benchmark reads the arrival log, not the access log."""

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        self.provider.record()
        try:
            body: dict[str, Any] = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {}
        self._send(200, completion(body))

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
