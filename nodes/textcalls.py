"""Tool calls a model wrote as text, read as calls; the text protocol for endpoints without tools.

Small local models often answer a request that offers tools with the call written out instead of
a native tool call: `{"name": "transfer_to_math", "arguments": {"task": "..."}}`, the same in a
code fence, Hermes/Qwen style `<tool_call>...</tool_call>` blocks, or an OpenAI-shaped
`{"function": {"name": ..., "arguments": "..."}}`, or Python, `transfer_to_math(task="...")`
(literal keyword arguments only, read with `ast.literal_eval`). LangChain leaves that text as
the answer, so a supervisor would return it as if it were the final answer. `text_calls` finds
such calls when they name a tool the request offered, or a handoff (`transfer_to_...`, so a call
to a peer that was not offered is refused like a native one), and `as_calls` turns the reply into
one with native tool calls: from there they go through the same authority checks as any other.

Only a reply that *is* a call is read as one (the whole text, its one JSON code fence with a line of
preamble, or `<tool_call>` blocks): an answer that shows code or JSON among its text stays an
answer. Under the text protocol (an endpoint without `tools`, where the model was told to write its
calls) every call in the text counts.

No maintained library does this for LangChain messages (llama.cpp's server parses some formats
itself, with `--jinja`, but only for templates it knows), so the reader is ours: a JSON scanner
over the text, never `eval`.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.tool import ToolCall, tool_call
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from switchyard.nodes.handoff import HANDOFF_PREFIX

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def _objects(text: str) -> Iterator[Any]:
    """Every JSON value that starts at a `{` or `[` in `text`, outermost first."""
    decoder = json.JSONDecoder()
    index = 0
    while True:
        starts = [i for i in (text.find("{", index), text.find("[", index)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        yield value
        index = end


def _call(value: Any, names: Collection[str]) -> ToolCall | None:
    """`value` as a call of a known tool (or any handoff), else None."""
    if not isinstance(value, dict):
        return None
    for wrapper in ("tool_call", "function_call", "function"):
        inner = value.get(wrapper)
        if isinstance(inner, dict) and "name" in inner:
            value = {**inner, **{k: v for k, v in value.items() if k not in (wrapper, "type")}}
            break
    name = value.get("name") or value.get("tool") or value.get("tool_name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return None
    if name not in names and not name.startswith(HANDOFF_PREFIX):
        return None
    args: Any = {}
    for key in _ARGUMENT_KEYS:
        if key in value:
            args = value[key]
            break
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return tool_call(name=name, args=args, id=f"call_{uuid.uuid4().hex[:24]}")


def text_calls(text: str, names: Collection[str], *, anywhere: bool = False) -> list[ToolCall]:
    """The tool calls written in `text` that name one of `names` or a handoff, in order.

    By default only a reply that *is* the call is read: the whole text one JSON call or list of
    calls, or one Python call; or its one JSON code fence with at most a line or two around it; or
    `<tool_call>` blocks, which say what they are wherever they stand. An answer that shows code or
    JSON among other text is an answer. `anywhere` (the text protocol, where the model was told to
    write its calls) reads every call object in the text.
    """
    if not text or not ("{" in text or "(" in text):
        return []
    tagged = _TAGGED.findall(text)
    if tagged:
        return [c for block in tagged for c in _json_calls(block, names, whole=not anywhere)]
    if anywhere:
        return _json_calls(text, names, whole=False) or _python_calls(text, names, whole=False)
    body = _unfenced(text.strip())
    return _json_calls(body, names, whole=True) or _python_calls(body, names, whole=True)


_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n(.*?)\n?[ \t]*```", re.DOTALL)
_PREAMBLE_CHARS = 200
"""Most text around a fenced call ("I will call a tool:") for the reply still to be that call."""


def _unfenced(text: str) -> str:
    """The call a reply is: its one JSON code fence when little else is said, else the text.

    "I'll look that up." and a JSON fence holding the call is a call; a `python` fence, two
    fences, or a fence in a longer answer are an answer that shows code.
    """
    blocks = list(re.finditer(r"```", text))
    match = _FENCE.search(text)
    if match is None or len(blocks) != 2:
        return text
    around = text[: match.start()] + text[match.end() :]
    return match.group(1).strip() if len(around.strip()) <= _PREAMBLE_CHARS else text


def _json_calls(text: str, names: Collection[str], *, whole: bool) -> list[ToolCall]:
    """Calls in the JSON of `text`: all of it one value (`whole`), else every value in it."""
    values: list[Any]
    if whole:
        try:
            values = [json.loads(text)]
        except json.JSONDecodeError:
            return []
    else:
        values = list(_objects(text))
    calls: list[ToolCall] = []
    for value in values:
        items = value if isinstance(value, list) else [value]
        found = [_call(item, names) for item in items]
        if whole and (not found or any(call is None for call in found)):
            return []  # a JSON answer that is not (only) calls is an answer
        calls += [call for call in found if call is not None]
    return calls


_PYTHON_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]{0,63})\s*\(")


def _python_calls(text: str, names: Collection[str], *, whole: bool) -> list[ToolCall]:
    """Calls written as Python, `transfer_to_math(task="add 2 and 3")`: literal keywords only.

    `whole`: only when the text is nothing but one such call.
    """
    if whole:
        match = _PYTHON_CALL.match(text)
        if match is None or not text.endswith(")"):
            return []
        found = _python_call(text, match.group(1), names)
        return [found] if found is not None else []
    calls: list[ToolCall] = []
    for match in _PYTHON_CALL.finditer(text):
        close = text.find(")", match.end())
        while close >= 0:
            found = _python_call(text[match.start(1) : close + 1], match.group(1), names)
            if found is not None:
                calls.append(found)
                break
            close = text.find(")", close + 1)
    return calls


def _python_call(source: str, name: str, names: Collection[str]) -> ToolCall | None:
    if name not in names and not name.startswith(HANDOFF_PREFIX):
        return None
    try:
        node = ast.parse(source, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(node, ast.Call) or node.args or not isinstance(node.func, ast.Name):
        return None
    try:
        args = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    except ValueError:
        return None
    return tool_call(name=name, args=args, id=f"call_{uuid.uuid4().hex[:24]}")


def as_calls(reply: AIMessage, names: Collection[str], *, anywhere: bool = False) -> AIMessage:
    """`reply` with the calls it wrote as text made native (itself when it wrote none).

    `anywhere`: see `text_calls`.
    """
    if reply.tool_calls or not isinstance(reply.content, str):
        return reply
    calls = text_calls(reply.content, names, anywhere=anywhere)
    if not calls:
        return reply
    return reply.model_copy(
        update={
            "content": "",
            "tool_calls": calls,
            "additional_kwargs": {**reply.additional_kwargs, "switchyard_text_calls": True},
        }
    )


def names_a_call(text: str, names: Collection[str]) -> str | None:
    """The handoff tool `text` tries to call without a readable call of it, if any.

    A reply that writes `"name": "transfer_to_math"`, `transfer_to_math(task=...` or a
    `<tool_call>` block naming it, but holds no call Switchyard could read (broken JSON, say), is
    a model that tried to hand off and could not: the pattern reports that, not the text as an
    answer. A reply that merely mentions the tool (`transfer_to_math (the math worker)`, a summary
    of the work done) is an answer.
    """
    for name in names:
        if not name.startswith(HANDOFF_PREFIX) or name not in text:
            continue
        quoted = re.escape(name)
        attempt = (
            rf'"(?:name|tool|function)"\s*:\s*"{quoted}"'
            rf"|\b{quoted}\((?:\s*[A-Za-z_]\w*\s*=|\s*[\"'{{])"
            rf"|<tool_call>[^<]*{quoted}"
        )
        if re.search(attempt, text):
            return name
    return None


def protocol_prompt(tools: Sequence[BaseTool | dict[str, Any]]) -> str:
    """System-message text describing `tools` for an endpoint that takes no `tools` parameter."""
    described = [
        json.dumps(convert_to_openai_tool(tool)["function"], ensure_ascii=False) for tool in tools
    ]
    return (
        "You can call these tools:\n"
        + "\n".join(described)
        + '\nTo call one, reply with only a JSON object: {"name": "<tool name>", "arguments": '
        "{...}}. Otherwise reply with your answer as plain text."
    )


def as_text_transcript(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """`messages` with tool calls and results written as text, for an endpoint without tools."""
    out: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            written = [{"name": c["name"], "arguments": c["args"]} for c in message.tool_calls]
            text = json.dumps(written[0] if len(written) == 1 else written, ensure_ascii=False)
            out.append(AIMessage(content=text, name=message.name))
        elif isinstance(message, ToolMessage):
            out.append(HumanMessage(content=f"Result of {message.name}: {message.text}"))
        else:
            out.append(message)
    return out
