"""A local OpenAI-compatible chat-completions server that fails on a schedule.

Tests point the real `ChatOpenAI` client (and so the real `openai`/`httpx` stack) at it and make it
answer each request with the next *fault* of its schedule:

| fault           | what the client sees                                                    |
|-----------------|-------------------------------------------------------------------------|
| `ok`            | a valid completion: text, a tool call, or schema-shaped JSON            |
| `429`           | HTTP 429 with a `Retry-After` header                                    |
| `500`, `503`    | HTTP 500 / 503 with an OpenAI-style error body                          |
| `slow`          | nothing for `slow_s` seconds (past the client's timeout), then `ok`     |
| `drop`          | the connection closed without a response                                |
| `malformed`     | HTTP 200 whose JSON body does not parse                                 |
| `empty_choices` | HTTP 200, a well-formed completion with `"choices": []`                 |
| `hang`          | nothing at all until the server stops (a provider that never answers)   |
| `bad_tool_args` | a tool call whose arguments are not JSON; for a `response_format`       |
|                 | request, JSON content that does not match the schema                    |
| `length`        | the answer cut off at the token limit (`finish_reason: "length"`)       |
| `broken_text_call` | a handoff written as text whose JSON is broken (no call to read)     |

Like a local model server, it can also refuse features (`refuse`: `json_schema`, `json_object`,
`tools`, `forced_tool`, `temperature`, answered with the given status and message, as llama-cpp-
python answers `json_schema` with a 500) and write its tool calls as text (`text_calls`), as small
models do. With `tools` refused, it reads the tools from the system message (Switchyard's text
protocol).

Schedules are per model (`plan(..., model="gpt-4o-mini")`) or shared (`plan(...)`); when a
schedule runs out the model's `fail_always` fault applies, else `ok`. The server counts and keeps
every request body, thread-safely, so tests can prove how many calls reached it.

An `ok` answer is deterministic: a tool call when the request forces one (`tool_choice`), when
the user names a declared tool, or when the last tool result is an error (the call is made again);
JSON built from the schema for `response_format` requests; else a short text. `stream: true` is
answered with server-sent events and `data: [DONE]`, with a usage chunk when
`stream_options.include_usage` is set.

This module also has helpers that keep LangGraph's retry back-off tiny in tests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from switchyard.core.offline import sample_from_schema

FAULTS = frozenset(
    {
        "ok",
        "429",
        "500",
        "503",
        "slow",
        "hang",
        "drop",
        "malformed",
        "empty_choices",
        "bad_tool_args",
        "length",
        "broken_text_call",
    }
)
"""Every fault the server knows."""

ANY_MODEL: str | None = None
"""Key of the shared schedule (requests whose model has no schedule of its own use it)."""


class FaultServer:
    """The server and its schedule; use `running()` or `start()`/`stop()`.

    Attributes:
        usage: (prompt_tokens, completion_tokens) reported in every successful answer.
        slow_s: How long a `slow` fault stalls before answering.
        retry_after: Value of the `Retry-After` header sent with 429.
        reply_prefix: Start of every text answer.
    """

    def __init__(
        self,
        *,
        usage: tuple[int, int] = (20, 10),
        slow_s: float = 5.0,
        retry_after: str = "0",
        reply_prefix: str = "fault-server reply",
    ) -> None:
        self.usage = usage
        self.slow_s = slow_s
        self.retry_after = retry_after
        self.reply_prefix = reply_prefix
        self.refuse: dict[str, tuple[int, str]] = {}
        self.text_calls = False
        self.write_call: dict[str, Any] | None = None  # written as text once, whatever was offered
        self._lock = threading.Lock()
        self._queues: dict[str | None, deque[str]] = {}
        self._always: dict[str | None, str] = {}
        self._requests: list[dict[str, Any]] = []
        self._served: list[tuple[str, str]] = []
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve in a background thread."""
        handler = type("Handler", (_Handler,), {"server_state": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; stalled (`slow`) requests are released at once."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        assert self._httpd is not None, "start() the server first"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """What to pass as the client's `base_url`."""
        return f"http://127.0.0.1:{self.port}/v1"

    # --- schedule ----------------------------------------------------------------------------

    def plan(self, *faults: str, model: str | None = ANY_MODEL) -> None:
        """Append faults to a schedule (one per request, in order)."""
        for fault in faults:
            _check(fault)
        with self._lock:
            self._queues.setdefault(model, deque()).extend(faults)

    def fail_always(self, fault: str, *, model: str | None = ANY_MODEL) -> None:
        """Answer with `fault` whenever the schedule is empty (a persistent outage)."""
        _check(fault)
        with self._lock:
            self._always[model] = fault

    def recover(self, *, model: str | None = ANY_MODEL) -> None:
        """End an outage: drop the schedule and the persistent fault of `model`."""
        with self._lock:
            self._queues.pop(model, None)
            self._always.pop(model, None)

    def pending(self, model: str | None = ANY_MODEL) -> int:
        """Faults still scheduled (a test that scheduled faults expects 0 at its end)."""
        with self._lock:
            return len(self._queues.get(model, ()))

    def unused(self) -> dict[str | None, list[str]]:
        """Scheduled faults no request consumed, by schedule (empty when all were served)."""
        with self._lock:
            return {model: list(queue) for model, queue in self._queues.items() if queue}

    def _next_fault(self, model: str) -> str:
        with self._lock:
            own = self._queues.get(model)
            if own:
                fault = own.popleft()
            elif model in self._always:
                fault = self._always[model]
            elif self._queues.get(ANY_MODEL):
                fault = self._queues[ANY_MODEL].popleft()
            else:
                fault = self._always.get(ANY_MODEL, "ok")
            self._served.append((model, fault))
            return fault

    # --- what reached the server --------------------------------------------------------------

    def _log(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(body)

    def requests(self, model: str | None = ANY_MODEL) -> list[dict[str, Any]]:
        """Bodies of the requests received (all, or those for `model`), oldest first."""
        with self._lock:
            return [r for r in self._requests if model is None or r.get("model") == model]

    def count(self, model: str | None = ANY_MODEL) -> int:
        """How many requests reached the server (all, or those for `model`)."""
        return len(self.requests(model))

    def served(self) -> list[tuple[str, str]]:
        """(model, fault) of every request, in order."""
        with self._lock:
            return list(self._served)

    # --- answers -----------------------------------------------------------------------------

    def refusal(self, body: dict[str, Any]) -> tuple[int, str] | None:
        """The (status, message) refusing a feature `body` uses, if `refuse` names one."""
        response_type = (body.get("response_format") or {}).get("type")
        used = {
            "json_schema": response_type == "json_schema",
            "json_object": response_type == "json_object",
            "tools": bool(body.get("tools")),
            "forced_tool": isinstance(body.get("tool_choice"), dict),
            "temperature": "temperature" in body,
        }
        return next((self.refuse[k] for k, on in used.items() if on and k in self.refuse), None)

    def completion(
        self, body: dict[str, Any], *, bad: bool = False, fault: str = "ok"
    ) -> dict[str, Any]:
        """The chat.completion object answering `body` (`bad`: the bad-output variant)."""
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = "stop"
        response_format = body.get("response_format") or {}
        tool = _tool_to_call(body) or _text_protocol_tool(body)
        if self.write_call is not None:
            written, self.write_call = self.write_call, None
            message["content"] = json.dumps(written)
        elif fault == "broken_text_call":
            name = tool["function"]["name"] if tool is not None else "transfer_to_nobody"
            message["content"] = f'{{"name": "{name}", "arguments": {{"task": '
        elif fault == "length" and tool is not None and body.get("tools"):
            name = tool["function"]["name"]  # a call cut off in its arguments
            message["tool_calls"] = [
                {
                    "id": "call_cut",
                    "type": "function",
                    "function": {"name": name, "arguments": '{"x": "'},
                }
            ]
            finish = "length"
        elif fault == "length" and response_format.get("type") == "json_schema":
            message["content"] = '{"topic": "solar", "key_points": ["Solar panels conv'
            finish = "length"
        elif fault == "length":
            message["content"] = f"{self.reply_prefix}: and so on and so on and so"
            finish = "length"
        elif response_format.get("type") == "json_object":
            schema = _instructed_schema(body)
            message["content"] = json.dumps(sample_from_schema(schema, _last_user_text(body)))
        elif tool is not None and (self.text_calls or not body.get("tools")):
            params = tool["function"].get("parameters", {})
            written = {
                "name": tool["function"]["name"],
                "arguments": sample_from_schema(params, _last_user_text(body)),
            }
            message["content"] = f"I will call a tool.\n```json\n{json.dumps(written)}\n```"
        elif response_format.get("type") == "json_schema":
            schema = response_format.get("json_schema", {}).get("schema", {})
            content = (
                {"unexpected_field": "not what the schema asked for"}
                if bad
                else sample_from_schema(schema, _last_user_text(body))
            )
            message["content"] = json.dumps(content)
        elif tool is not None or bad:
            name = tool["function"]["name"] if tool is not None else "undeclared_tool"
            if bad:
                arguments = '{"value": '  # truncated: not JSON
            else:
                params = tool["function"].get("parameters", {}) if tool is not None else {}
                arguments = json.dumps(sample_from_schema(params, _last_user_text(body)))
            number = self.count()
            message["tool_calls"] = [
                {
                    "id": f"call_{number:04d}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ]
            finish = "tool_calls"
        else:
            message["content"] = f"{self.reply_prefix}: {_last_user_text(body)}"
        prompt, completion = self.usage
        return {
            "id": f"chatcmpl-{self.count():06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "unknown"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }


@contextmanager
def running(**settings: Any) -> Iterator[FaultServer]:
    """A started server, stopped on exit (settings as for `FaultServer`)."""
    server = FaultServer(**settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _check(fault: str) -> None:
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose one of {sorted(FAULTS)}")


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content blocks
                return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
            return str(content or "")
    return ""


def _system_text(body: dict[str, Any]) -> str:
    return "\n".join(
        str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "system"
    )


def _instructed_schema(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema a JSON-mode request's system message asks for (Switchyard's note)."""
    text = _system_text(body)
    marker = "matches this JSON schema:\n"
    if marker not in text:
        return {"type": "object"}
    schema, _ = json.JSONDecoder().raw_decode(text.split(marker, 1)[1])
    return dict(schema)


def _text_protocol_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """With no `tools` sent, the tool the user names among those the system message lists."""
    if body.get("tools"):
        return None
    text = _system_text(body)
    if "You can call these tools:" not in text:
        return None
    last = _last_user_text(body)
    if last.startswith("Result of "):
        return None  # the call was answered: now answer
    listed = text.split("You can call these tools:\n", 1)[1].splitlines()
    tools = []
    for line in listed:
        try:
            tools.append({"type": "function", "function": json.loads(line)})
        except json.JSONDecodeError:
            break
    return next((t for t in tools if t["function"]["name"].lower() in last.lower()), None)


def _tool_to_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The declared tool to call: the forced one, else one the user names.

    After a tool result, none, unless the result is an error (`error: ...`): then the same tool
    again, as a model correcting its call would.
    """
    tools: list[dict[str, Any]] = body.get("tools") or []
    messages = body.get("messages") or []
    if not tools:
        return None
    if messages and messages[-1].get("role") == "tool":
        if not str(messages[-1].get("content", "")).startswith("error:"):
            return None
        failed_id = messages[-1].get("tool_call_id")
        calls = [c for m in messages if m.get("tool_calls") for c in m["tool_calls"]]
        name = next((c["function"]["name"] for c in calls if c.get("id") == failed_id), None)
        return next((t for t in tools if t["function"]["name"] == name), None)
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        named = choice.get("function", {}).get("name")
        return next((t for t in tools if t["function"]["name"] == named), tools[0])
    if choice == "required":
        return tools[0]
    if choice == "none":
        return None
    text = _last_user_text(body).lower()
    return next((t for t in tools if t["function"]["name"].lower() in text), None)


class _Handler(BaseHTTPRequestHandler):
    server_state: FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the log
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body: dict[str, Any] = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"message": "request body is not JSON", "type": "bad"}})
            return
        state = self.server_state
        state._log(body)
        fault = state._next_fault(str(body.get("model", "")))
        try:
            self._answer(fault, body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.close_connection = True

    def _answer(self, fault: str, body: dict[str, Any]) -> None:
        state = self.server_state
        refused = state.refusal(body)
        if refused is not None:
            status, text = refused
            self._json(status, {"error": {"message": text, "type": "invalid_request_error"}})
            return
        if fault in ("429", "500", "503"):
            status = int(fault)
            headers = {"Retry-After": state.retry_after} if status == 429 else {}
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            self._json(status, {"error": {"message": f"injected {fault}", "type": kind}}, headers)
            return
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "malformed":
            payload = b'{"id": "chatcmpl-broken", "choices": [{"message": '
            self._send(200, payload, "application/json")
            return
        if fault == "hang":
            state._stopping.wait()
            return  # the server is stopping; the client never got an answer
        if fault == "slow" and state._stopping.wait(state.slow_s):
            return  # the server is stopping
        if fault == "empty_choices":
            self._json(200, {**state.completion(body), "choices": []})
            return
        answer = state.completion(body, bad=fault == "bad_tool_args", fault=fault)
        if body.get("stream"):
            self._stream(answer, body)
        else:
            self._json(200, answer)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _stream(self, answer: dict[str, Any], body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for chunk in _chunks(answer, body):
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def _chunks(answer: dict[str, Any], body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The chat.completion.chunk objects that stream `answer`."""
    base = {
        "id": answer["id"],
        "object": "chat.completion.chunk",
        "created": answer["created"],
        "model": answer["model"],
    }
    choice = answer["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    content: str = message.get("content") or ""
    for start in range(0, len(content), 8):
        yield chunk({"content": content[start : start + 8]})
    for index, call in enumerate(message.get("tool_calls") or []):
        yield chunk({"tool_calls": [{"index": index, **call}]})
    yield chunk({}, choice["finish_reason"])
    if (body.get("stream_options") or {}).get("include_usage"):
        yield {**base, "choices": [], "usage": answer["usage"]}
