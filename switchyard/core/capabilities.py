"""What a model endpoint can do: structured-output methods and tool calls, probed once or declared.

Providers differ in how a structured answer can be asked for. OpenAI takes a `json_schema`
response format; llama-cpp-python's server refuses it ("Input should be 'text' or
'json_object'") but takes JSON mode; some servers take a forced tool call and nothing else; some
take no `tools` at all. LangChain offers all three through `with_structured_output(method=...)`
and has no notion of which one an endpoint serves, so this module keeps that, per endpoint (the
model's label and, for OpenAI-compatible clients, its base URL): the first call tries the
model's own default, then `json_schema`, function calling and JSON mode in that order, and every
method the endpoint refuses (`switchyard.core.resilience.capability_error`) is remembered for the
rest of the process, so the refusal costs one request once. `declare_capabilities` states them
up front instead.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from langchain_core.language_models import BaseChatModel

from switchyard.core.errors import ModelConfigError
from switchyard.core.models import model_name_of

StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]
"""A way of asking for a structured answer, as LangChain's `with_structured_output` names it."""

STRUCTURED_METHODS: tuple[StructuredMethod, ...] = get_args(StructuredMethod)
"""Every method, in the order they are tried after the model's own default."""


@dataclass
class _Endpoint:
    methods: tuple[StructuredMethod, ...] | None = None  # declared: exactly these, in order
    refused: dict[str, str] = field(default_factory=dict)  # method (or "tools") -> why
    tools: bool | None = None  # declared


_endpoints: dict[str, _Endpoint] = {}  # only endpoints that refused something
_declared: dict[str, _Endpoint] = {}
_lock = threading.Lock()
# Every model call asks these questions: the answers that depend only on the instance (its key)
# or its class (its default method) are worked out once. Entries hold their model, so an id is
# not reused while cached (as `switchyard.core.models` keeps its names).
_KEYS_CACHED = 1024
_keys: OrderedDict[int, tuple[BaseChatModel, str]] = OrderedDict()
_defaults: dict[type[BaseChatModel], str | None] = {}


def endpoint_of(model: BaseChatModel) -> str:
    """The key an endpoint's capabilities are kept under: model name and base URL, if any."""
    hit = _keys.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    base = getattr(model, "openai_api_base", None) or getattr(model, "base_url", None)
    if not base:  # langchain-openai leaves OPENAI_BASE_URL to the SDK client
        base = getattr(getattr(model, "root_client", None), "base_url", None)
    base = str(base or "").rstrip("/")
    key = f"{model_name_of(model)}@{base}" if base else model_name_of(model)
    with _lock:
        _keys[id(model)] = (model, key)
        while len(_keys) > _KEYS_CACHED:
            _keys.popitem(last=False)
    return key


def declare_capabilities(
    model: str,
    *,
    structured_output: Sequence[StructuredMethod] | None = None,
    tool_calls: bool | None = None,
) -> None:
    """State what a model's endpoint supports, so nothing is probed (None: leave as it was).

    Args:
        model: The model string, as agents name it (`'openai:smollm2'`).
        structured_output: The structured-output methods to use, in order of preference.
        tool_calls: False when the endpoint takes no `tools`: tool calls and handoffs are then
            described in the system message and read from the model's text.

    Raises:
        ModelConfigError: An unknown method, or an empty list.
    """
    if structured_output is not None:
        unknown = [m for m in structured_output if m not in STRUCTURED_METHODS]
        if unknown or not structured_output:
            raise ModelConfigError(
                f"structured_output must name one or more of {', '.join(STRUCTURED_METHODS)}; "
                f"got {list(structured_output)!r}"
            )
    with _lock:  # a later declaration adds to an earlier one
        entry = _declared.setdefault(model, _Endpoint())
        if structured_output is not None:
            entry.methods = tuple(structured_output)
        if tool_calls is not None:
            entry.tools = tool_calls


def forget_capabilities() -> None:
    """Forget everything probed and declared (tests; a server that was upgraded)."""
    with _lock:
        _endpoints.clear()
        _declared.clear()
        _keys.clear()


_NOTHING: dict[str, str] = {}


def _refused(model: BaseChatModel) -> dict[str, str]:
    """What `model`'s endpoint refused (the shared empty answer while nothing ever was)."""
    if not _endpoints:
        return _NOTHING
    found = _endpoints.get(endpoint_of(model))
    return found.refused if found is not None else _NOTHING


def _declared_for(model: BaseChatModel) -> _Endpoint | None:
    return _declared.get(model_name_of(model)) if _declared else None


def _default_method(model: BaseChatModel) -> str | None:
    """The method `model.with_structured_output` uses when none is named (None: it takes none)."""
    cls = type(model)
    if cls not in _defaults:
        try:
            parameter = inspect.signature(cls.with_structured_output).parameters.get("method")
        except (TypeError, ValueError):
            parameter = None
        default = getattr(parameter, "default", None)
        _defaults[cls] = default if isinstance(default, str) else None
    return _defaults[cls]


def structured_methods(model: BaseChatModel) -> list[StructuredMethod | None]:
    """The structured-output methods still worth trying for `model`, best first.

    `None` means "the model's own way" (a model whose `with_structured_output` takes no `method`,
    such as the offline model, gets only that).
    """
    declared = _declared_for(model)
    if declared is not None and declared.methods is not None:
        return list(declared.methods)
    default = _default_method(model)
    if default is None:
        return [None]
    refused = _refused(model)
    order = [default, *(m for m in STRUCTURED_METHODS if m != default)]
    return [m for m in order if m not in refused]  # type: ignore[misc]


def refuse(model: BaseChatModel, feature: str, why: str) -> None:
    """Remember that `model`'s endpoint refused `feature` (a method, or "tools")."""
    key = endpoint_of(model)
    with _lock:
        _endpoints.setdefault(key, _Endpoint()).refused.setdefault(feature, why)


def refusals(model: BaseChatModel) -> dict[str, str]:
    """What `model`'s endpoint refused so far, and why (its first words)."""
    return dict(_refused(model))


def takes_tools(model: BaseChatModel) -> bool:
    """Whether `model`'s endpoint takes `tools` (declared, else not refused so far)."""
    declared = _declared_for(model)
    if declared is not None and declared.tools is not None:
        return declared.tools
    return "tools" not in _refused(model)


def first_line(exc: BaseException) -> str:
    """An error's first line, short enough for a one-line message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def capability_summary(model: BaseChatModel) -> dict[str, Any]:
    """What is known of `model`'s endpoint, for `switchyard local` and error messages."""
    return {
        "endpoint": endpoint_of(model),
        "structured_output": structured_methods(model),
        "tool_calls": takes_tools(model),
        "refused": refusals(model),
    }
