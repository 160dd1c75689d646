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


def text_calls(text: str, names: Collection[str]) -> list[ToolCall]:
    """The tool calls written in `text` that name one of `names` or a handoff, in order.

    `<tool_call>` blocks are read first; without any, every JSON object or list of objects in the
    text is considered.
    """
    if not text or not ("{" in text or "(" in text):
        return []
    tagged = _TAGGED.findall(text)
    sources = tagged if tagged else [text]
    calls: list[ToolCall] = []
    for source in sources:
        for value in _objects(source):
            for item in value if isinstance(value, list) else [value]:
                found = _call(item, names)
                if found is not None:
                    calls.append(found)
    return calls or _python_calls(text, names)


_PYTHON_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]{0,63})\s*\(")


def _python_calls(text: str, names: Collection[str]) -> list[ToolCall]:
    """Calls written as Python, `transfer_to_math(task="add 2 and 3")`: literal keywords only."""
    calls: list[ToolCall] = []
    for match in _PYTHON_CALL.finditer(text):
        name = match.group(1)
        if name not in names and not name.startswith(HANDOFF_PREFIX):
            continue
        end = text.find(")", match.end())
        while end >= 0:
            try:
                node = ast.parse(text[match.start(1) : end + 1], mode="eval").body
            except SyntaxError:
                end = text.find(")", end + 1)
                continue
            break
        else:
            continue
        if not isinstance(node, ast.Call) or node.args:
            continue
        try:
            args = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
        except ValueError:
            continue
        calls.append(tool_call(name=name, args=args, id=f"call_{uuid.uuid4().hex[:24]}"))
    return calls


def as_calls(reply: AIMessage, names: Collection[str]) -> AIMessage:
    """`reply` with the calls it wrote as text made native (itself when it wrote none)."""
    if reply.tool_calls or not isinstance(reply.content, str):
        return reply
    calls = text_calls(reply.content, names)
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

    A reply that writes `"name": "transfer_to_math"`, `transfer_to_math(` or a `<tool_call>`
    block naming it, but holds no call Switchyard could read (broken JSON, say), is a model that
    tried to hand off and could not: the pattern reports that, not the text as an answer. A
    reply that merely mentions the tool's name (a summary of the work done) is an answer.
    """
    for name in names:
        if not name.startswith(HANDOFF_PREFIX) or name not in text:
            continue
        quoted = re.escape(name)
        attempt = (
            rf'"(?:name|tool|function)"\s*:\s*"{quoted}"|\b{quoted}\s*\(|<tool_call>[^<]*{quoted}'
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
