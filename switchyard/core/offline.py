"""The offline model: a deterministic chat model; every pattern runs with no key and no network.

It is not an LLM and never pretends to be one: every text reply starts with a marker that says it is
simulated. It does what orchestration needs of a model: answers in the agent's role and reflects the
request, picks a tool (a handoff, say) whose name and description best match the request, returns a
valid instance of any structured-output schema, reports estimated token usage, and can simulate
latency and provider failures on a schedule for tests and benchmarks. Same input, same output.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from switchyard.core.redact import redact

OFFLINE_MARKER = "[offline model: simulated reply, no LLM was called]"
"""Every text reply of the offline model starts with this."""

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    (  # noqa: SIM905 - one readable line of words beats 60 quoted ones
        "a an and are as at be but by can could do does for from has have how i in into is it its "
        "me my of on or our please should so than that the their them then there these they this "
        "to us was we were what when where which who why will with would you your"
    ).split()
)
_FORCING_CHOICES = frozenset({"any", "required"})
# Strings with a JSON-schema `format` must parse as that format (a date, a UUID, ...).
_FORMAT_SAMPLES = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00",
    "duration": "PT1M",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}


class SimulatedProviderError(Exception):
    """A failure the offline model raises on schedule, shaped like a provider's HTTP error.

    Attributes:
        status_code: The HTTP status a real provider would have answered (503 by default), so retry
            policies can treat it like the real thing.
    """

    def __init__(self, message: str, *, status_code: int = 503) -> None:
        super().__init__(message)
        self.status_code = status_code


def keywords(text: str) -> list[str]:
    """Lowercase content words of `text`, in order, without stop words or repeats."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in _STOPWORDS and len(word) > 1:
            seen.setdefault(word, None)
    return list(seen)


def _overlap(request: set[str], text: str) -> float:
    """Share of `text`'s keywords (and their 4-letter stems) that the request mentions."""
    words = keywords(text)
    if not words or not request:
        return 0.0
    stems = {w[:4] for w in request}
    hits = sum(1.0 if w in request else 0.5 if w[:4] in stems else 0.0 for w in words)
    return float(hits / (len(words) ** 0.5))


class OfflineChatModel(BaseChatModel):
    """Deterministic, offline stand-in for a chat model (see the module docstring).

    Example:
        ```python
        model = OfflineChatModel(latency_s=0.05, fail_on_calls=(1,))
        model.invoke("hi")  # raises SimulatedProviderError (call 1 is scheduled to fail)
        model.invoke("hi")  # AIMessage starting with OFFLINE_MARKER
        ```
    """

    model_name: str = Field(default="offline", description="Name reported in usage and traces.")
    latency_s: float = Field(default=0.0, ge=0.0, description="Simulated latency of every call.")
    fail_on_calls: tuple[int, ...] = Field(
        default=(), description="1-based call numbers that raise SimulatedProviderError."
    )
    failure_status: int = Field(default=503, description="HTTP status of simulated failures.")
    tool_threshold: float = Field(
        default=0.5,
        description="Least match score for choosing a tool when the caller does not force one.",
    )

    _calls: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "switchyard-offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        # The provider traces and ledgers name (LangChain's default would say "offlinechatmodel").
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "offline"
        params["ls_model_name"] = self.model_name
        return params

    @property
    def calls(self) -> int:
        """How many calls this instance has received, failed ones included."""
        return self._calls

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools in OpenAI format; `tool_choice` may force any tool or a named one."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _start_call(self) -> None:
        with self._lock:
            self._calls += 1
            number = self._calls
        if number in self.fail_on_calls:
            raise SimulatedProviderError(
                f"simulated provider failure on call {number} (HTTP {self.failure_status})",
                status_code=self.failure_status,
            )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._start_call()
        if self.latency_s:
            time.sleep(self.latency_s)
        return self._result(messages, kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._start_call()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return self._result(messages, kwargs)

    def _result(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        tools: list[dict[str, Any]] = kwargs.get("tools") or []
        message = respond(
            messages,
            tools,
            kwargs.get("tool_choice"),
            tool_threshold=self.tool_threshold,
        )
        return self._billed(
            message, count_tokens_approximately(messages), count_tokens_approximately([message])
        )

    def _billed(self, message: AIMessage, input_tokens: int, output_tokens: int) -> ChatResult:
        """`message` as the result, reporting usage and model as a provider's reply does."""
        message.usage_metadata = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        message.response_metadata = {"model_name": self.model_name, "model_provider": "offline"}
        return ChatResult(generations=[ChatGeneration(message=message)])


def respond(
    messages: Sequence[BaseMessage],
    tools: Sequence[dict[str, Any]],
    tool_choice: str | dict[str, Any] | bool | None,
    *,
    tool_threshold: float = 0.5,
) -> AIMessage:
    """The offline model's deterministic answer to `messages` (pure; exposed for tests).

    The request is redacted first: the reply quotes it, and a key pasted into a message must not
    come back in the answer (whole or in pieces).
    """
    request = redact(_last_text(messages, HumanMessage))
    role = _role(_last_text(messages, SystemMessage))
    last = messages[-1] if messages else None
    if tools and tool_choice != "none" and not isinstance(last, ToolMessage):
        chosen = _choose_tool(request, tools, tool_choice, tool_threshold)
        if chosen is not None:
            function = chosen["function"]
            args = sample_from_schema(
                function.get("parameters", {}), request, hints=_last_text(messages, SystemMessage)
            )
            digest = hashlib.sha256(f"{function['name']}\n{request}".encode()).hexdigest()
            call_id = f"call_{digest[:16]}"
            return AIMessage(
                content="",
                tool_calls=[{"name": function["name"], "args": args, "id": call_id}],
            )
    if isinstance(last, ToolMessage):
        return AIMessage(
            content=f"{OFFLINE_MARKER} {role}: the tool `{last.name or 'tool'}` returned "
            f"{_excerpt(str(last.content))!r}; a real model would now use it to answer "
            f"{_excerpt(request)!r}."
        )
    return AIMessage(content=_text_reply(role, request))


def _text_reply(role: str, request: str) -> str:
    terms = ", ".join(keywords(request)[:6]) or "none"
    return (
        f"{OFFLINE_MARKER} {role}: I received your request {_excerpt(request)!r} "
        f"(key terms: {terms}). With a real model configured, for example "
        "SWITCHYARD_MODEL=openai:gpt-4o-mini, this agent would answer it here."
    )


def _choose_tool(
    request: str,
    tools: Sequence[dict[str, Any]],
    tool_choice: str | dict[str, Any] | bool | None,
    threshold: float,
) -> dict[str, Any] | None:
    by_name = {tool["function"]["name"]: tool for tool in tools}
    named: str | None = None
    if isinstance(tool_choice, dict):
        named = tool_choice.get("function", {}).get("name") or tool_choice.get("name")
    elif isinstance(tool_choice, str) and tool_choice not in _FORCING_CHOICES | {"auto"}:
        named = tool_choice
    if named is not None:
        return by_name.get(named)
    words = set(keywords(request))
    scored = [
        (
            _overlap(
                words,
                f"{tool['function']['name'].replace('_', ' ')} "
                f"{tool['function'].get('description', '')}",
            ),
            -index,
            tool,
        )
        for index, tool in enumerate(tools)
    ]
    score, _, best = max(scored, key=lambda item: (item[0], item[1]))
    forced = tool_choice is True or tool_choice in _FORCING_CHOICES
    if forced or score >= threshold:
        return best
    return None


def sample_from_schema(
    schema: dict[str, Any],
    request: str,
    defs: dict[str, Any] | None = None,
    depth: int = 0,
    name: str = "",
    hints: str = "",
) -> Any:
    """A value that validates against a JSON schema, chosen to reflect `request` where it can.

    Enums take the member that best matches the request; strings carry an excerpt of it; numbers
    sit inside their bounds; objects fill their required properties. Handles `$ref`, `anyOf`,
    `oneOf`, `allOf`, `const`, `enum` and `default`.
    """
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        return sample_from_schema(defs.get(ref, {}), request, defs, depth, name, hints)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return _best_match(request, list(schema["enum"]), hints)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return sample_from_schema(options[0], request, defs, depth, name, hints)
    if "allOf" in schema:
        return sample_from_schema(schema["allOf"][0], request, defs, depth, name, hints)
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        if depth > 6:
            return {}
        properties: dict[str, Any] = schema.get("properties", {})
        return {
            key: sample_from_schema(properties[key], request, defs, depth + 1, key, hints)
            for key in schema.get("required", [])
            if key in properties
        }
    if kind == "array":
        if "prefixItems" in schema:  # a tuple: one value per position
            return [
                sample_from_schema(item, request, defs, depth + 1, name, hints)
                for item in schema["prefixItems"]
            ]
        count = max(1, int(schema.get("minItems", 1)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        items = schema.get("items", {})
        return [
            sample_from_schema(items, request, defs, depth + 1, name, hints) for _ in range(count)
        ]
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string(schema, request, name)


def _number(schema: dict[str, Any], *, integer: bool) -> float | int:
    def bound(key: str) -> float | None:
        value = schema.get(key)
        return None if value is None or isinstance(value, bool) else float(value)

    minimum, exclusive_min = bound("minimum"), bound("exclusiveMinimum")
    maximum, exclusive_max = bound("maximum"), bound("exclusiveMaximum")
    lows = [v for v in (minimum, exclusive_min) if v is not None]
    highs = [v for v in (maximum, exclusive_max) if v is not None]
    low, high = (max(lows) if lows else None), (min(highs) if highs else None)
    if low is not None and high is not None:
        value = (low + high) / 2
    elif low is not None:
        value = low + 1
    elif high is not None:
        value = high - 1
    else:
        value = 1.0
    step = bound("multipleOf") or (1.0 if integer else None)
    if step is None:
        return value
    # On a grid (integers, multipleOf): the multiple nearest the value that meets every bound.
    k_lows = [math.ceil(minimum / step)] if minimum is not None else []
    if exclusive_min is not None:
        k_lows.append(math.floor(exclusive_min / step) + 1)
    k_highs = [math.floor(maximum / step)] if maximum is not None else []
    if exclusive_max is not None:
        k_highs.append(math.ceil(exclusive_max / step) - 1)
    k = round(value / step)
    if k_lows:
        k = max(k, *k_lows)
    if k_highs:
        k = min(k, *k_highs)
    result = k * step
    return int(result) if integer else result


def _string(schema: dict[str, Any], request: str, name: str) -> str:
    if schema.get("format") in _FORMAT_SAMPLES:
        return _FORMAT_SAMPLES[schema["format"]]
    label = name.replace("_", " ") or "value"
    text = f"(simulated {label}) {_excerpt(request, 120)}".strip()
    min_length = int(schema.get("minLength", 0))
    if len(text) < min_length:
        text = text.ljust(min_length, ".")
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    return text


def _best_match(request: str, options: list[Any], hints: str = "") -> Any:
    words = set(keywords(request))
    lines = hints.lower().splitlines()

    def described(option: Any) -> str:
        label = str(option).lower()
        mentions = [line for line in lines if re.search(rf"\b{re.escape(label)}\b", line)]
        return " ".join([label.replace("_", " "), *mentions])

    scores = [_overlap(words, described(option)) for option in options]
    return options[max(range(len(options)), key=lambda i: (scores[i], -i))]


def _last_text(messages: Sequence[BaseMessage], kind: type[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, kind):
            return message.text if hasattr(message, "text") else str(message.content)
    return ""


def _role(system_prompt: str) -> str:
    first = system_prompt.strip().split("\n", 1)[0]
    first = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0].strip().rstrip(".")
    first = re.sub(r"^you are (an? |the )?", "", first, flags=re.IGNORECASE)
    return first[:1].upper() + first[1:] if first else "Assistant"


def _excerpt(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
