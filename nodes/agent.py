"""The agent node: one factory that turns an `AgentSpec` into a graph node, for every pattern.

An agent call builds the agent's own view of the conversation, calls its model (running its declared
tools, and only those, in a bounded loop), validates structured output against the agent's schema
(re-asking once with the error), and records usage. Patterns that pass typed payloads instead of a
transcript call `call_agent` / `acall_agent` directly with the messages they choose.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
    set_config_context,
)
from langchain_core.runnables.utils import coro_with_context
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as as_tool
from langgraph.config import get_config
from langgraph.runtime import get_runtime
from pydantic import BaseModel, ValidationError

from switchyard.core.errors import SwitchyardError
from switchyard.core.models import OFFLINE, default_model, load_chat_model
from switchyard.core.pricing import cost_usd
from switchyard.guardrails.breaker import breaker_for
from switchyard.guardrails.budgets import current_meter
from switchyard.guardrails.cache import CACHE_HIT_KEY
from switchyard.state.agents import AgentSpec
from switchyard.state.context import Context
from switchyard.state.reducers import merge_usage
from switchyard.state.usage import UsageLedger, usage_entry
from switchyard.state.views import agent_view

MAX_TOOL_ROUNDS = 5
"""Model/tool round trips one agent call may make before it must answer."""

MAX_VALIDATION_RETRIES = 1
"""Times an agent is re-asked, with the validation error, when its output fails its schema."""


class OutputValidationError(SwitchyardError):
    """An agent's output failed its output schema even after being re-asked."""


class AgentTimeoutError(SwitchyardError, TimeoutError):
    """An agent's model call took longer than its `timeout_s` (transient: retried)."""

    status_code = 408


_EXPECTED_OUTPUT_TOKENS = 512
"""Output tokens assumed for a call's budget estimate when the agent sets no max_tokens."""

logger = logging.getLogger(__name__)


@dataclass
class AgentReply:
    """What one agent call produced.

    Attributes:
        messages: New messages, in order: the agent's replies (named after the agent), tool calls
            and tool results. The last one is the agent's answer, or its handoff call.
        output: The answer: text, or a validated instance of the agent's output schema.
        usage: Ledger update for every model call made.
        handoff: The handoff tool call the agent made, if it made one (the pattern routes it).
        refusals: Tool calls refused because the agent did not declare the tool.
    """

    messages: list[AnyMessage]
    output: str | BaseModel
    usage: UsageLedger
    handoff: dict[str, Any] | None = None
    refusals: list[str] = field(default_factory=list)


def resolve_context(context: Context | None) -> Context:
    """The run's context, or the defaults when the caller gave none."""
    return context if context is not None else Context()


def current_context() -> Context:
    """The `Context` of the graph run executing this code, or the defaults outside a run."""
    try:
        return resolve_context(get_runtime(Context).context)
    except RuntimeError:  # called outside a graph (a unit test, say)
        return Context()


def steps_after_first_node() -> int | None:
    """Graph steps a run may take after its first node, from the run's recursion limit.

    The first node runs two steps after the run's input, and the last step allowed is the input's
    step plus the limit; None outside a graph run.
    """
    try:
        limit = get_config().get("recursion_limit")
    except RuntimeError:
        return None
    return int(limit) - 2 if isinstance(limit, int) else None


def model_for(spec: AgentSpec, context: Context) -> str:
    """The model string an agent uses in this run: the run's, else the agent's, else the default."""
    return context.model or spec.model or default_model()


def system_message(spec: AgentSpec) -> SystemMessage:
    """The agent's system message: its prompt, or its description when it has none."""
    return SystemMessage(spec.system_prompt or f"You are the {spec.name} agent. {spec.description}")


def own_view(
    spec: AgentSpec, messages: Sequence[AnyMessage], context: Context, *, shared: bool = False
) -> list[AnyMessage]:
    """The agent's window onto `messages` (see `switchyard.state.views.agent_view`)."""
    return agent_view(
        messages,
        None if shared else spec.name,
        max_pairs=context.max_message_pairs or spec.max_message_pairs,
        max_tokens=context.max_context_tokens or spec.max_context_tokens,
    )


class _Call:
    """State of one agent call, shared by the sync and async drivers.

    Every model round goes through `begin` (deadline, budgets, circuit breaker: may switch to a
    cheaper model or refuse the call) and ends in `record` (usage, cost, meter) or `failed`
    (breaker bookkeeping).
    """

    def __init__(
        self,
        spec: AgentSpec,
        messages: Sequence[BaseMessage],
        context: Context,
        handoff_tools: Sequence[BaseTool],
        model: str | None,
    ) -> None:
        self.spec = spec
        self.fallback = model is not None
        self.tools = {t.name: t for t in (_as_tool(t) for t in spec.tools)}
        self.handoffs = {t.name: t for t in handoff_tools}
        self._use_model(model or model_for(spec, context))
        self.transcript: list[BaseMessage] = [system_message(spec), *messages]
        self.new: list[AnyMessage] = []
        self.usage: UsageLedger = {}
        self.refusals: list[str] = []
        self.handoff: dict[str, Any] | None = None
        self.structured: BaseModel | None = None
        self.meter = current_meter()
        self.retries = _attempt() - 1

    def _use_model(self, model_name: str) -> None:
        params: dict[str, Any] = {}
        if self.spec.temperature is not None:
            params["temperature"] = self.spec.temperature
        if self.spec.max_tokens is not None:
            params["max_tokens"] = self.spec.max_tokens
        if self.spec.timeout_s is not None and not model_name.startswith(OFFLINE):
            # Sync calls cannot be cancelled in-process, so the HTTP client enforces the timeout.
            params["timeout"] = self.spec.timeout_s
        self.model_name = model_name
        self.model: BaseChatModel = load_chat_model(model_name, **params)
        self.breaker = breaker_for(model_name)
        bound = (*self.tools.values(), *self.handoffs.values())
        self.with_tools: Runnable[Any, BaseMessage] = (
            _prepared(self.model, "tools", bound) if bound else self.model
        )

    def begin(
        self, kind: Literal["tools", "plain", "schema"]
    ) -> tuple[Runnable[Any, Any], RunnableConfig]:
        """Admit the next model round; return what to invoke for it, and the call's config."""
        if self.meter is not None:
            expected_in = count_tokens_approximately(self.transcript)
            expected_out = self.spec.max_tokens or _EXPECTED_OUTPUT_TOKENS
            chosen = self.meter.admit(
                self.spec.name,
                self.model_name,
                expected_in + expected_out,
                cost_usd(self.model_name, expected_in, expected_out),
                self.spec.budget,
            )
            if chosen != self.model_name:
                self._use_model(chosen)
        self.breaker.before_call()
        runnable: Runnable[Any, Any]
        if kind == "tools":
            runnable = self.with_tools
        elif kind == "plain":
            runnable = self.model
        else:
            assert self.spec.output_schema is not None
            runnable = _prepared(self.model, "schema", (self.spec.output_schema,))
        # Name the agent on the model call, so traces (OpenTelemetry, LangSmith) group calls per
        # agent even when the node calling it has another name. (Passed as the call's config:
        # the same as `with_config`, without building a binding per call.)
        config: RunnableConfig = {
            "metadata": {"agent": self.spec.name},
            "tags": [f"agent:{self.spec.name}"],
        }
        return runnable, config

    def failed(self, exc: BaseException) -> None:
        self.breaker.on_failure(exc)

    def record(self, message: BaseMessage, started: float) -> AIMessage:
        self.breaker.on_success()
        ai = message if isinstance(message, AIMessage) else AIMessage(content=message.content)
        ai.name = self.spec.name
        tokens: Mapping[str, Any] = ai.usage_metadata or {}
        input_tokens = int(tokens.get("input_tokens", 0))
        output_tokens = int(tokens.get("output_tokens", 0))
        cached = int((tokens.get("input_token_details") or {}).get("cache_read", 0) or 0)
        cache_hit = bool(ai.response_metadata.get(CACHE_HIT_KEY))
        if cache_hit:  # answered from the response cache: nothing was sent, nothing is owed
            input_tokens = output_tokens = cached = 0
        cost = cost_usd(self.model_name, input_tokens, output_tokens, cached) or 0.0
        first = not self.usage
        self.usage = merge_usage(
            self.usage,
            usage_entry(
                self.spec.name,
                self.model_name,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                latency_ms=(time.perf_counter() - started) * 1000,
                cost_usd=cost,
                cache_hits=int(cache_hit),
                retries=self.retries if first else 0,
                fallbacks=int(self.fallback and first),
            ),
        )
        if self.meter is not None:
            self.meter.charge(self.spec.name, input_tokens + output_tokens, cost, self.spec.budget)
        self.new.append(ai)
        self.transcript.append(ai)
        return ai

    def wants_tools(self, ai: AIMessage) -> bool:
        """Handle the tool calls of `ai`; True when another model round is needed."""
        if not ai.tool_calls and not ai.invalid_tool_calls:
            return False
        for call in ai.tool_calls:
            if call["name"] in self.handoffs:
                self.handoff = dict(call)
                return False
        results = [self.run_tool(call) for call in ai.tool_calls]
        # A call whose arguments are not JSON is answered with the error, so the model can call
        # again; left unanswered, it would also make the provider reject the next request.
        results += [self.reject_arguments(bad) for bad in ai.invalid_tool_calls]
        self.new.extend(results)
        self.transcript.extend(results)
        return True

    def reject_arguments(self, bad: Any) -> ToolMessage:
        name = bad.get("name") or ""
        if name not in self.tools and name not in self.handoffs:
            return self.run_tool({"name": name, "id": bad.get("id") or "", "args": {}})
        return ToolMessage(
            f"error: the arguments of this call to {name!r} are not valid JSON "
            f"({bad.get('error') or bad.get('args')!r}); call it again with valid JSON arguments",
            tool_call_id=bad.get("id") or "",
            name=name,
            status="error",
        )

    def run_tool(self, call: Any) -> ToolMessage:
        tool = self.tools.get(call["name"])
        if tool is None:
            allowed = ", ".join(self.tools) or "none"
            note = (
                f"refused: agent {self.spec.name!r} has no tool {call['name']!r} "
                f"(its tools: {allowed})"
            )
            logger.warning(note)
            self.refusals.append(note)
            return ToolMessage(note, tool_call_id=call["id"], name=call["name"], status="error")
        try:
            result = tool.invoke({**call, "type": "tool_call"})
        except Exception as exc:  # a failing tool is reported to the model, not the user
            return ToolMessage(
                f"error: {type(exc).__name__}: {exc}",
                tool_call_id=call["id"],
                name=call["name"],
                status="error",
            )
        if isinstance(result, ToolMessage):
            return result
        return ToolMessage(str(result), tool_call_id=call["id"], name=call["name"])

    def accept_structured(self, output: dict[str, Any], started: float, attempt: int) -> bool:
        """Record a structured-output attempt; True when it validated."""
        raw = output.get("raw")
        parsed = output.get("parsed")
        ai = self.record(raw if isinstance(raw, BaseMessage) else AIMessage(content=""), started)
        if isinstance(parsed, BaseModel):
            ai.content = parsed.model_dump_json()
            ai.tool_calls = []
            self.structured = parsed
            return True
        error = output.get("parsing_error")
        if attempt >= MAX_VALIDATION_RETRIES:
            assert self.spec.output_schema is not None
            raise OutputValidationError(
                f"agent {self.spec.name!r} returned output that does not match "
                f"{self.spec.output_schema.__name__} after {attempt + 1} attempts: {error}"
            )
        # The failed attempt stays out of the transcript shown to the user; the model is
        # re-asked with the error so it can correct itself.
        self.new.pop()
        self.transcript.append(
            HumanMessage(
                f"Your previous answer did not match the required schema: {error}. "
                "Answer again, following the schema exactly."
            )
        )
        return False

    def reply(self) -> AgentReply:
        output: str | BaseModel
        if self.structured is not None:
            output = self.structured
        else:
            last = self.new[-1]
            output = last.text if isinstance(last, AIMessage) else str(last.content)
        return AgentReply(
            messages=self.new,
            output=output,
            usage=self.usage,
            handoff=self.handoff,
            refusals=self.refusals,
        )


@contextmanager
def _keeping_usage(call: _Call) -> Iterator[None]:
    """Attach the usage of a failed call's completed rounds to the exception (`partial_usage`)."""
    try:
        yield
    except Exception as exc:
        exc.switchyard_usage = call.usage  # type: ignore[attr-defined]
        raise


def partial_usage(error: BaseException) -> UsageLedger:
    """Usage of the model rounds an agent call completed before it failed with `error`.

    Error handlers add it to their update, so spend is never lost from the ledger.
    """
    usage: UsageLedger = getattr(error, "switchyard_usage", None) or {}
    return usage


_retry_attempt: ContextVar[int | None] = ContextVar("switchyard_retry_attempt", default=None)


@contextmanager
def retry_attempt(number: int) -> Iterator[None]:
    """Count the agent calls made inside the block as attempt `number` (1 is the first try).

    For code that retries agent calls itself rather than through a node's `RetryPolicy` (a
    fan-out shard retries each of its workers alone), so the usage ledger's `retries` stays
    right; elsewhere the attempt is LangGraph's `node_attempt`.
    """
    token = _retry_attempt.set(number)
    try:
        yield
    finally:
        _retry_attempt.reset(token)


def _attempt() -> int:
    """This attempt's number (1 on the first try; LangGraph's RetryPolicy counts up)."""
    override = _retry_attempt.get()
    if override is not None:
        return override
    try:
        info = get_runtime().execution_info
    except RuntimeError:  # not inside a graph
        return 1
    return info.node_attempt if info is not None else 1


_PARSE_ERRORS = (ValidationError, json.JSONDecodeError, OutputParserException)
"""Errors that mean "the answer did not fit the schema" when a structured-output call raises."""


def _parse_failure(exc: Exception) -> dict[str, Any]:
    """A structured-output call that raised a parse error, as the parser's failed result.

    Some clients validate inside the call (ChatOpenAI's default `json_schema` method parses the
    reply with the schema in the OpenAI SDK and raises), so the agent is re-asked with the error
    exactly as when the parser reports it.
    """
    return {"raw": None, "parsed": None, "parsing_error": exc}


def _invoke(call: _Call, kind: Literal["tools", "plain", "schema"]) -> tuple[Any, float]:
    runnable, config = call.begin(kind)
    started = time.perf_counter()
    try:
        return runnable.invoke(call.transcript, config), started
    except _PARSE_ERRORS as exc:
        if kind != "schema":  # not transient: the fallback chain handles it
            call.failed(exc)
            raise
        return _parse_failure(exc), started
    except Exception as exc:
        call.failed(exc)
        raise


async def _ainvoke(call: _Call, kind: Literal["tools", "plain", "schema"]) -> tuple[Any, float]:
    runnable, config = call.begin(kind)
    started = time.perf_counter()
    try:
        if call.spec.timeout_s is None:
            return await runnable.ainvoke(call.transcript, config), started
        # LangGraph's TimeoutPolicy refuses nodes that also run synchronously, and agent nodes
        # run under both invoke and ainvoke; so the async path bounds the model call itself.
        return await asyncio.wait_for(
            runnable.ainvoke(call.transcript, config), call.spec.timeout_s
        ), started
    except TimeoutError as exc:
        timeout = AgentTimeoutError(
            f"agent {call.spec.name!r} timed out after {call.spec.timeout_s}s"
        )
        call.failed(timeout)
        raise timeout from exc
    except _PARSE_ERRORS as exc:
        if kind != "schema":  # not transient: the fallback chain handles it
            call.failed(exc)
            raise
        return _parse_failure(exc), started
    except Exception as exc:
        call.failed(exc)
        raise


def call_agent(
    spec: AgentSpec,
    messages: Sequence[BaseMessage],
    context: Context | None = None,
    *,
    handoff_tools: Sequence[BaseTool] = (),
    model: str | None = None,
) -> AgentReply:
    """Run one agent on `messages` (its view; the system prompt is added here).

    Args:
        spec: The agent.
        messages: What the agent sees, oldest first, without a system message.
        context: The run's context (model override, windows); defaults when None.
        handoff_tools: Tools that hand control to another agent. They are offered to the model but
            not run: the call stops at the first one and returns it as `AgentReply.handoff`.
        model: Use this model instead of the agent's (the fallback chain passes its models here;
            the call is counted as a fallback in the usage ledger).

    Raises:
        OutputValidationError: The agent has an output schema and its answer failed it twice.
        CircuitOpenError: The model's circuit breaker is open.
        BudgetExceededError: A budget would be exceeded.
        DeadlineExceededError: The run's deadline has passed.
    """
    call = _Call(spec, messages, resolve_context(context), handoff_tools, model)
    with _keeping_usage(call):
        return _drive(call)


def _drive(call: _Call) -> AgentReply:
    spec = call.spec
    for _ in range(MAX_TOOL_ROUNDS):
        ai = call.record(*_invoke(call, "tools"))
        if not call.wants_tools(ai):
            break
    else:
        call.record(*_invoke(call, "plain"))
    if spec.output_schema is not None and call.handoff is None:
        for attempt in range(MAX_VALIDATION_RETRIES + 1):
            if call.accept_structured(*_invoke(call, "schema"), attempt):
                break
    return call.reply()


async def acall_agent(
    spec: AgentSpec,
    messages: Sequence[BaseMessage],
    context: Context | None = None,
    *,
    handoff_tools: Sequence[BaseTool] = (),
    model: str | None = None,
) -> AgentReply:
    """Async form of `call_agent`."""
    call = _Call(spec, messages, resolve_context(context), handoff_tools, model)
    with _keeping_usage(call):
        return await _adrive(call)


async def _adrive(call: _Call) -> AgentReply:
    spec = call.spec
    for _ in range(MAX_TOOL_ROUNDS):
        ai = call.record(*await _ainvoke(call, "tools"))
        if not call.wants_tools(ai):
            break
    else:
        call.record(*await _ainvoke(call, "plain"))
    if spec.output_schema is not None and call.handoff is None:
        for attempt in range(MAX_VALIDATION_RETRIES + 1):
            if call.accept_structured(*await _ainvoke(call, "schema"), attempt):
                break
    return call.reply()


_CACHE_SIZE = 1024
_prepared_cache: OrderedDict[tuple[Any, ...], tuple[Any, ...]] = OrderedDict()
_tool_cache: OrderedDict[int, tuple[Any, BaseTool]] = OrderedDict()
_cache_lock = threading.Lock()


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    with _cache_lock:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)


def _prepared(model: BaseChatModel, kind: str, items: tuple[Any, ...]) -> Runnable[Any, Any]:
    """`model.bind_tools(items)` ("tools") or `with_structured_output(items[0])` ("schema"), cached.

    Binding converts every tool's schema to the provider's format (about 70 microseconds for two
    handoff tools on a 2-core machine, more than the call's budget, breaker and ledger work
    together); the result depends only on the model and the tools, so it is built once per
    (model, tools). Entries hold their model and tools, so the identities in a key stay valid
    while it is cached.
    """
    key = (kind, id(model), *(id(item) for item in items))
    hit = _prepared_cache.get(key)
    if hit is not None:
        runnable: Runnable[Any, Any] = hit[0]
        return runnable
    if kind == "tools":
        runnable = model.bind_tools(list(items))
    else:
        runnable = model.with_structured_output(items[0], include_raw=True)
    _remember(_prepared_cache, key, (runnable, model, items))
    return runnable


def _as_tool(candidate: Any) -> BaseTool:
    """A declared tool as a `BaseTool` (a function is converted once and the result reused)."""
    if isinstance(candidate, BaseTool):
        return candidate
    if callable(candidate):
        hit = _tool_cache.get(id(candidate))
        if hit is not None and hit[0] is candidate:
            return hit[1]
        converted: BaseTool = as_tool(candidate)
        _remember(_tool_cache, id(candidate), (candidate, converted))
        return converted
    raise TypeError(f"agent tools must be BaseTool instances or functions, got {candidate!r}")


def _update(reply: AgentReply) -> dict[str, Any]:
    return {"messages": reply.messages, "usage": reply.usage}


class NodeRunnable(Runnable[Any, Any]):
    """A graph node made of a sync and an async function, traced like `RunnableLambda`.

    `RunnableLambda` inspects its function's signature on every call (to learn whether it takes
    `config` or `run_manager`), four times per node call: about 150 microseconds per agent hop
    on a 2-core machine, more than the rest of Switchyard's guardrails together. The functions
    here take the state only, so nothing needs inspecting. The node still opens a chain run
    for callbacks (telemetry spans, LangSmith) and runs its function with the child config as
    the current config, exactly as `RunnableLambda` does.
    """

    def __init__(
        self,
        func: Callable[[Any], Any],
        afunc: Callable[[Any], Awaitable[Any]],
        *,
        name: str,
    ) -> None:
        """Wrap `func` (used by `invoke`) and `afunc` (used by `ainvoke`) as node `name`."""
        self.func = func
        self.afunc = afunc
        self.name = name

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run `func` on the state inside a chain run."""
        config = ensure_config(config)
        callback_manager = get_callback_manager_for_config(config)
        run_manager = callback_manager.on_chain_start(
            None, input, name=config.get("run_name") or self.name, run_id=config.pop("run_id", None)
        )
        try:
            child = patch_config(config, callbacks=run_manager.get_child())
            with set_config_context(child) as context:
                output = context.run(self.func, input)
        except BaseException as exc:
            run_manager.on_chain_error(exc)
            raise
        run_manager.on_chain_end(output)
        return output

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run `afunc` on the state inside a chain run."""
        config = ensure_config(config)
        callback_manager = get_async_callback_manager_for_config(config)
        run_manager = await callback_manager.on_chain_start(
            None, input, name=config.get("run_name") or self.name, run_id=config.pop("run_id", None)
        )
        try:
            child = patch_config(config, callbacks=run_manager.get_child())
            with set_config_context(child) as context:
                output = await coro_with_context(self.afunc(input), context)
        except BaseException as exc:
            await run_manager.on_chain_error(exc)
            raise
        await run_manager.on_chain_end(output)
        return output


def make_agent_node(spec: AgentSpec, *, shared_view: bool = False) -> Runnable[Any, dict[str, Any]]:
    """Turn an agent into a node for any graph whose state has `messages` and `usage`.

    The node reads the run's `Context` (through LangGraph's runtime), shows the agent its own view
    of `messages` (only the turns it answered, unless `shared_view`), and returns only the keys it
    changes: the new messages and the usage ledger update. It works under `invoke` and `ainvoke`.

    Example:
        ```python
        builder.add_node(spec.name, make_agent_node(spec), retry_policy=model_retry_policy())
        ```
    """

    def run_sync(state: dict[str, Any]) -> dict[str, Any]:
        context = current_context()
        view = own_view(spec, state["messages"], context, shared=shared_view)
        return _update(call_agent(spec, view, context))

    async def run_async(state: dict[str, Any]) -> dict[str, Any]:
        context = current_context()
        view = own_view(spec, state["messages"], context, shared=shared_view)
        return _update(await acall_agent(spec, view, context))

    return NodeRunnable(run_sync, run_async, name=spec.name)


def render_output(output: str | BaseModel) -> str:
    """An agent's output as text (structured output as indented JSON)."""
    if isinstance(output, BaseModel):
        return json.dumps(output.model_dump(mode="json"), indent=2)
    return output


NodeFactory = Callable[[AgentSpec], Runnable[Any, dict[str, Any]]]
"""Signature of `make_agent_node`, for patterns that accept a custom factory."""
