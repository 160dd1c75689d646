"""Models bound to tools or to an output schema, and declared tools as `BaseTool`s, built once.

Binding converts every tool's schema to the provider's format (about 70 microseconds for two
handoff tools on a 2-core machine, more than the guardrails of a call together); the result
depends only on the model and the tools, so it is built once per (model, tools) and reused.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as as_tool

_CACHE_SIZE = 1024
_bound: OrderedDict[tuple[Any, ...], tuple[Any, ...]] = OrderedDict()
_tools: OrderedDict[int, tuple[Any, BaseTool]] = OrderedDict()
_lock = threading.Lock()


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    with _lock:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)


def bound_model(
    model: BaseChatModel, kind: str, items: tuple[Any, ...], *, method: str | None = None
) -> Runnable[Any, Any]:
    """`model.bind_tools(items)` ("tools") or `with_structured_output(items[0])` ("schema").

    `method` names the structured-output method (`None`: the model's default). Entries hold their
    model and items, so the identities in a key stay valid while cached.
    """
    key = (kind, method, id(model), *(id(item) for item in items))
    hit = _bound.get(key)
    if hit is not None:
        runnable: Runnable[Any, Any] = hit[0]
        return runnable
    if kind == "tools":
        runnable = model.bind_tools(list(items))
    elif method is None:
        runnable = model.with_structured_output(items[0], include_raw=True)
    else:
        runnable = model.with_structured_output(items[0], include_raw=True, method=method)
    _remember(_bound, key, (runnable, model, items))
    return runnable


def as_base_tool(candidate: Any) -> BaseTool:
    """A declared tool as a `BaseTool` (a function is converted once and the result reused).

    Raises:
        TypeError: `candidate` is neither a `BaseTool` nor a function.
    """
    if isinstance(candidate, BaseTool):
        return candidate
    if callable(candidate):
        hit = _tools.get(id(candidate))
        if hit is not None and hit[0] is candidate:
            return hit[1]
        converted: BaseTool = as_tool(candidate)
        _remember(_tools, id(candidate), (candidate, converted))
        return converted
    raise TypeError(f"agent tools must be BaseTool instances or functions, got {candidate!r}")
