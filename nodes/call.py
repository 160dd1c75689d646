"""One agent call, guarded: the agent's model and tools in a bounded loop, through its middleware.

An agent call shows the agent's model the messages it was given (its view, chosen by the pattern)
after its system message, runs the tools it calls (its declared tools only) for up to
`MAX_TOOL_ROUNDS` rounds, stops at the first handoff call, asks for structured output when the
agent has an output schema, and returns an `AgentReply`. Every model and tool call goes through the
agent's middleware chain (`switchyard.nodes.chain`): guardrails and LangChain middleware alike.

Why not `langchain.agents.create_agent`: it runs the same protocol as a graph of its own, one node
per hook, a run per agent call. Measured on this machine (bench/AGENT_CALL.md), a create_agent
call costs about 550 microseconds more than this loop on the offline model, and about 1 ms more
with two middleware: more than the whole of Switchyard's per-hop overhead. The loop here runs the
same hooks, in the same order, with the same state scopes, inline.

The loop is written once, as a generator of the calls it needs (`_steps`); `_drive` runs it for
`invoke` and `_adrive` for `ainvoke`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from langchain.agents.middleware import ModelRequest, ModelResponse
from langchain.agents.structured_output import AutoStrategy
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.config import get_config
from langgraph.errors import GraphBubbleUp
from langgraph.graph.message import add_messages
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolRuntime
from langgraph.runtime import Runtime, get_runtime
from pydantic import BaseModel, ValidationError
from typing_extensions import TypedDict, Unpack

from switchyard.core.capabilities import (
    endpoint_of,
    first_line,
    refusals,
    refuse,
    structured_methods,
    takes_tools,
)
from switchyard.core.errors import CapabilityError, OutputTruncatedError
from switchyard.core.models import default_model, load_chat_model
from switchyard.core.redact import masked_logger
from switchyard.core.resilience import (
    ATTEMPT_KEY,
    capability_error,
    provider_fault,
    raised_in,
    retry_attempt,
)
from switchyard.core.tokens import truncated
from switchyard.guardrails.scope import current_scope
from switchyard.nodes.binding import as_base_tool, bound_model
from switchyard.nodes.chain import AgentChain, defines, model_params
from switchyard.nodes.graph_agent import acall_graph_agent, call_graph_agent
from switchyard.nodes.record import (
    AgentReply,
    CallRecord,
    OutputValidationError,
    parse_problem,
    recording,
)
from switchyard.nodes.textcalls import as_calls, as_text_transcript, names_a_call, protocol_prompt
from switchyard.state.agents import AgentSpec
from switchyard.state.context import Context, current_context

logger = masked_logger(__name__)

MAX_TOOL_ROUNDS = 5
"""Model/tool round trips one agent call may make before it must answer."""

_PARSE_ERRORS = (ValidationError, json.JSONDecodeError, OutputParserException)
"""Errors that mean "the answer did not fit the schema" when a structured-output call raises."""

_RESPONSE_ERRORS = (IndexError, KeyError)
"""Errors that may mean "the provider's response lacked its parts" (`provider_fault` decides)."""

Validate = Callable[[BaseModel], None]
"""A pattern's own check of structured output; raises `OutputValidationError` to re-ask."""


def model_for(spec: AgentSpec, context: Context) -> str:
    """The model string an agent uses in this run: the run's, else the agent's, else the default."""
    return context.model or spec.model or default_model()


def system_message(spec: AgentSpec) -> SystemMessage:
    """The agent's system message: its prompt, or its description when it has none."""
    return SystemMessage(spec.system_prompt or f"You are the {spec.name} agent. {spec.description}")


def schema_of(request: ModelRequest[Any]) -> Any:
    """The output schema a request asks for (its response format's schema)."""
    response_format = request.response_format
    return getattr(response_format, "schema", response_format)


def schema_name(request: ModelRequest[Any]) -> str:
    """The name of the output schema a request asks for, for error messages."""
    schema = schema_of(request)
    return str(getattr(schema, "__name__", schema))


def _runtime(context: Context) -> Runtime[Any]:
    try:
        return get_runtime()
    except RuntimeError:  # called outside a graph (a unit test, say)
        return Runtime(context=context)


def _config() -> RunnableConfig:
    try:
        return get_config()
    except RuntimeError:
        return {}


# The effects `_steps` asks its driver for (tuples: made several times on every call).


class _Hook(NamedTuple):
    middleware: Any
    name: str
    state: dict[str, Any]


class _Model(NamedTuple):
    request: ModelRequest[Any]


class _Tool(NamedTuple):
    request: ToolCallRequest


_Effect = _Hook | _Model | _Tool


TEXT_TOOLS = "text"
"""The feature of a request whose tools are described in the system message (no `tools`)."""


def _with_note(system: SystemMessage | None, note: str) -> SystemMessage:
    text = system.text if system is not None else ""
    return SystemMessage(f"{text}\n\n{note}" if text else note)


def _json_instruction(schema: Any) -> str:
    shape = (
        schema.model_json_schema()
        if isinstance(schema, type) and issubclass(schema, BaseModel)
        else schema
    )
    return (
        "Reply with only one JSON object, no other text, that matches this JSON schema:\n"
        + json.dumps(shape, ensure_ascii=False)
    )


def tool_names(request: ModelRequest[Any]) -> set[str]:
    """The names of the tools a request offers (`BaseTool`s and provider-format dicts)."""
    names: set[str] = set()
    for item in request.tools:
        if isinstance(item, BaseTool):
            names.add(item.name)
        elif isinstance(item, dict):
            function = item.get("function")
            name = function.get("name") if isinstance(function, dict) else item.get("name")
            if isinstance(name, str):
                names.add(name)
    return names


def bound_request(
    request: ModelRequest[Any], method: str | None = None, *, text_tools: bool = False
) -> tuple[Runnable[Any, Any], list[BaseMessage]]:
    """The runnable a request goes to (bound to its tools or schema) and the messages it sends.

    Args:
        request: The request.
        method: The structured-output method (`None`: the model's own default).
        text_tools: Describe the request's tools in the system message instead of sending
            `tools`, and write earlier calls and results as text (an endpoint without tools).
    """
    model = request.model
    runnable: Runnable[Any, Any] = model
    system = request.system_message
    messages: list[BaseMessage] = list(request.messages)
    if request.response_format is not None:
        runnable = bound_model(model, "schema", (schema_of(request),), method=method)
        if method == "json_mode":  # JSON mode promises JSON, not this schema: say which
            system = _with_note(system, _json_instruction(schema_of(request)))
    elif request.tools and text_tools:
        system = _with_note(system, protocol_prompt(request.tools))
    elif request.tools:
        runnable = bound_model(model, "tools", tuple(request.tools))
    if text_tools or not takes_tools(model):  # no `tools`: no tool calls or results either
        messages = as_text_transcript(messages)
    if system is not None:
        messages.insert(0, system)
    return runnable, messages


def request_plans(
    request: ModelRequest[Any],
) -> Iterator[tuple[str | None, Runnable[Any, Any], list[BaseMessage]]]:
    """Each way left to send `request` to its endpoint, best first: (feature, runnable, messages).

    A structured request is tried with each structured-output method the endpoint has not
    refused (`switchyard.core.capabilities`); a request with tools natively, then with the tools
    described as text once the endpoint refuses `tools`. The caller records a refusal with
    `refuse` before it asks for the next plan, so the next one reflects it.
    """
    model = request.model
    if request.response_format is not None:
        tried: set[str | None] = set()
        while True:
            left = [m for m in structured_methods(model) if m not in tried]
            if not left:
                return
            method = left[0]
            tried.add(method)
            try:
                runnable, messages = bound_request(request, method)
            except (ValueError, NotImplementedError) as exc:  # the integration lacks the method
                refuse(model, str(method), first_line(exc))
                continue
            yield method, runnable, messages
    elif request.tools:
        if takes_tools(model):
            yield "tools", *bound_request(request)
        if not takes_tools(model):
            yield TEXT_TOOLS, *bound_request(request, text_tools=True)
    else:
        yield None, *bound_request(request)


_FEATURE_WORDS: dict[str, tuple[str, ...]] = {
    "json_schema": ("response_format", "json_schema", "json_object", "'text'"),
    "json_mode": ("response_format", "json_object", "json mode"),
    "function_calling": ("tool", "function"),
    "tools": ("tool", "function", "--jinja"),
}
"""What a refusal of each feature names: an endpoint refusing something else of the request (a
`temperature` a reasoning model does not take, say) has not refused the feature."""


def refused(request: ModelRequest[Any], feature: str | None, exc: Exception) -> bool:
    """Whether `exc` is the endpoint refusing `feature`; if so, it is remembered (and logged)."""
    if feature in (None, TEXT_TOOLS) or not capability_error(exc):
        return False
    said = str(exc).lower()
    if not any(word in said for word in _FEATURE_WORDS.get(str(feature), ())):
        return False
    refuse(request.model, str(feature), first_line(exc))
    logger.warning(
        "%s refused %s (%s); trying the next way",
        endpoint_of(request.model),
        feature,
        first_line(exc),
    )
    return True


def no_way_left(request: ModelRequest[Any], agent: str) -> CapabilityError:
    """The error of a request none of whose plans the endpoint accepts."""
    why = "; ".join(f"{k}: {v}" for k, v in refusals(request.model).items())
    wanted = (
        f"structured output ({schema_name(request)})" if request.response_format else "this call"
    )
    return CapabilityError(
        f"agent {agent!r}: {endpoint_of(request.model)} accepts no way of asking for {wanted} "
        f"({why or 'nothing left to try'}); declare what it supports with "
        "switchyard.declare_capabilities, or use another model"
    )


def failure_of(request: ModelRequest[Any], exc: Exception, agent: str) -> Exception:
    """What a call that raised `exc` fails with (`exc` itself unless it is a reading problem).

    The OpenAI SDK's `LengthFinishReasonError` (a `json_schema` answer cut off at `max_tokens`)
    is an `OutputTruncatedError` carrying the billed usage.
    """
    if type(exc).__name__ == "LengthFinishReasonError":
        return _cut_off(request, _sdk_reply(getattr(exc, "completion", None)), agent)
    if isinstance(exc, _PARSE_ERRORS + _RESPONSE_ERRORS):
        return unusable(request, exc, agent)
    if (
        request.response_format is not None
        and type(exc) is ValueError
        and any(m.startswith("openai.lib") for m in raised_in(exc))
    ):  # a streamed `json_schema` answer that is not JSON (the SDK's jiter parser): re-ask
        return parse_failure(request, exc, agent)
    return exc


def _sdk_reply(completion: Any) -> AIMessage:
    """An OpenAI SDK completion's text and usage as a message (what was billed)."""
    choices = getattr(completion, "choices", None) or []
    text = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
    usage = getattr(completion, "usage", None)
    if usage is None:  # streamed: cut off before the usage chunk; the recorder estimates it
        return AIMessage(content=text or "", response_metadata={"finish_reason": "length"})
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    output = int(getattr(usage, "completion_tokens", 0) or 0)
    return AIMessage(
        content=text or "",
        usage_metadata={
            "input_tokens": prompt,
            "output_tokens": output,
            "total_tokens": prompt + output,
        },
        response_metadata={"finish_reason": "length"},
    )


def _cut_off(request: ModelRequest[Any], reply: AIMessage, agent: str) -> OutputTruncatedError:
    limit = getattr(request.model, "max_tokens", None)
    limit = limit if isinstance(limit, int) else None
    said = f"its limit of {limit} output tokens" if limit else "its output-token limit"
    return OutputTruncatedError(
        f"agent {agent!r} stopped at {said} and its answer was cut off; raise the agent's "
        "max_tokens (or SWITCHYARD_MAX_TOKENS), or ask for a shorter answer",
        agent=agent,
        max_tokens=limit,
        partial=reply.text,
        reply=reply,
    )


def model_response(
    request: ModelRequest[Any],
    output: Any,
    agent: str,
    validate: Validate | None,
    feature: str | None = None,
) -> ModelResponse[Any]:
    """The innermost result: the reply, or the validated structured output.

    A reply that is a tool call written as text is given that call (`switchyard.nodes.textcalls`;
    under the text protocol, `feature` "text", every call in its text); a reply cut off at the
    output-token limit raises `OutputTruncatedError`, calls and all (their arguments may be cut).
    """
    if request.response_format is None:
        reply = output if isinstance(output, AIMessage) else AIMessage(content=output.content)
        if truncated(reply):
            raise _cut_off(request, reply, agent)
        if request.tools:
            reply = as_calls(reply, tool_names(request), anywhere=feature == TEXT_TOOLS)
        return ModelResponse(result=[reply])
    raw = output.get("raw")
    raw = raw if isinstance(raw, AIMessage) else None
    parsed = output.get("parsed")
    if not isinstance(parsed, BaseModel) and raw is not None and truncated(raw):
        raise _cut_off(request, raw, agent)
    if not isinstance(parsed, BaseModel):
        problem = parse_problem(output.get("parsing_error"))
        raise OutputValidationError(
            f"agent {agent!r} returned output that does not match "
            f"{schema_name(request)}: {problem}",
            reply=raw,
            problem=problem,
        )
    if validate is not None:
        try:
            validate(parsed)
        except OutputValidationError as exc:
            exc.reply = exc.reply or raw
            raise
    return ModelResponse(result=[raw or AIMessage(content="")], structured_response=parsed)


def unusable(request: ModelRequest[Any], exc: Exception, agent: str) -> Exception:
    """What a call that raised `exc` while its answer was read fails with.

    A provider's malformed body or empty `choices` is a transient `ProviderResponseError`
    (retried); a structured answer that does not parse is an `OutputValidationError` (re-asked);
    anything else is `exc` itself.
    """
    fault = provider_fault(exc)
    if fault is not None:
        return fault
    if request.response_format is None or not isinstance(exc, _PARSE_ERRORS):
        return exc
    return parse_failure(request, exc, agent)


def parse_failure(request: ModelRequest[Any], exc: Exception, agent: str) -> OutputValidationError:
    """A client that validates inside the call (ChatOpenAI's `json_schema`) raised: re-ask."""
    if request.response_format is None:
        raise exc
    problem = parse_problem(exc)
    return OutputValidationError(
        f"agent {agent!r} returned output that does not match {schema_name(request)}: {problem}",
        problem=problem,
    )


class AgentCall:
    """The state of one agent call; `_steps` drives it, a driver runs what it asks for."""

    def __init__(
        self,
        spec: AgentSpec,
        messages: Sequence[BaseMessage],
        context: Context,
        *,
        chain: AgentChain,
        handoff_tools: Sequence[BaseTool] = (),
        state: Mapping[str, Any] | None = None,
        validate: Validate | None = None,
        reasks: int | None = None,
    ) -> None:
        self.spec = spec
        self.chain = chain
        self.context = context
        self.runtime = _runtime(context)
        self.graph_state = dict(state or {})
        self.validate = validate
        self.tools = {t.name: t for t in (as_base_tool(t) for t in spec.tools)}
        self.handoffs = {t.name: t for t in handoff_tools}
        name = model_for(spec, context)
        self.model: BaseChatModel = load_chat_model(name, **model_params(spec, name))
        self.system = system_message(spec)
        self.transcript: list[AnyMessage] = list(messages)  # type: ignore[arg-type]
        self.new: list[AnyMessage] = []
        self.memory: dict[str, Any] = {}
        self.run_values: dict[str, Any] = {}
        self.handoff: dict[str, Any] | None = None
        self.structured: BaseModel | None = None
        self.record = CallRecord(spec.name, reasks=reasks)
        self.started = time.perf_counter()

    # -- state seen by middleware ------------------------------------------------------------

    def hook_state(self) -> dict[str, Any]:
        """The agent state middleware sees: the graph's, this agent's messages and its state."""
        saved = (self.graph_state.get("agent_state") or {}).get(self.spec.name) or {}
        scope = current_scope()
        run = scope.agent_values(self.spec.name) if scope is not None else self.run_values
        return {**self.graph_state, **saved, **self.memory, **run, "messages": self.transcript}

    def apply(self, update: Mapping[str, Any] | None) -> bool:
        """Apply a hook's update; True when it jumps to the end of the call."""
        if not update:
            return False
        for key, value in update.items():
            if key == "messages":
                messages = value if isinstance(value, list) else [value]
                for message in messages:  # what a middleware answers, the agent answered
                    if isinstance(message, AIMessage) and not message.name:
                        message.name = self.spec.name
                current: list[Any] = list(self.transcript)
                merged: Any = add_messages(current, messages)
                self.transcript = merged
                self.new += [m for m in messages if not isinstance(m, RemoveMessage)]
            elif key in self.chain.run_keys:
                scope = current_scope()
                if scope is not None:
                    scope.set_agent_values(self.spec.name, {key: value})
                else:
                    self.run_values[key] = value
            elif key != "jump_to":
                self.memory[key] = value
        return update.get("jump_to") == "end"

    def hooks(self, name: str) -> Generator[_Effect, Any, bool]:
        """Run hook `name` of every middleware that has it; True when one jumps to the end."""
        for middleware in self.chain.hooks.get(name, ()):
            if self.apply((yield _Hook(middleware, name, self.hook_state()))):
                return True
        return False

    # -- model calls ---------------------------------------------------------------------------

    def request(self, kind: str) -> ModelRequest[Any]:
        """The next model request: with tools ("tools"), without ("plain"), or for the schema."""
        tools: list[BaseTool | dict[str, Any]] = []
        if kind == "tools":
            tools = [*self.tools.values(), *self.handoffs.values()]
        return ModelRequest(
            model=self.model,
            messages=list(self.transcript),
            system_message=self.system,
            tools=tools,
            response_format=(
                AutoStrategy(self.spec.output_schema)
                if kind == "schema" and self.spec.output_schema is not None
                else None
            ),
            state=self.hook_state(),  # type: ignore[arg-type]
            runtime=self.runtime,
        )

    def _call_config(self) -> RunnableConfig:
        # Name the agent (and the attempt) on the model call, so traces (OpenTelemetry,
        # LangSmith) group calls per agent even when the node calling it has another name, and
        # show which calls were retries.
        metadata = {"agent": self.spec.name, ATTEMPT_KEY: retry_attempt()}
        return {"metadata": metadata, "tags": [f"agent:{self.spec.name}"]}

    def execute(self, request: ModelRequest[Any]) -> ModelResponse[Any]:
        """Call the model (the chain's innermost handler), the endpoint's best way first."""
        for feature, runnable, messages in request_plans(request):
            try:
                output = runnable.invoke(messages, self._call_config())
            except Exception as exc:
                if refused(request, feature, exc):
                    continue
                failure = failure_of(request, exc, self.spec.name)
                if failure is exc:
                    raise
                raise failure from exc
            return model_response(request, output, self.spec.name, self.validate, feature)
        raise no_way_left(request, self.spec.name)

    async def aexecute(self, request: ModelRequest[Any]) -> ModelResponse[Any]:
        """Async form of `execute`."""
        for feature, runnable, messages in request_plans(request):
            try:
                output = await runnable.ainvoke(messages, self._call_config())
            except Exception as exc:
                if refused(request, feature, exc):
                    continue
                failure = failure_of(request, exc, self.spec.name)
                if failure is exc:
                    raise
                raise failure from exc
            return model_response(request, output, self.spec.name, self.validate, feature)
        raise no_way_left(request, self.spec.name)

    def answer(self, response: ModelResponse[Any]) -> AIMessage:
        """Take the model's reply into the transcript (named after the agent)."""
        reply = next((m for m in response.result if isinstance(m, AIMessage)), None)
        reply = reply if reply is not None else AIMessage(content="")
        reply.name = self.spec.name
        self.transcript.append(reply)
        self.new.append(reply)
        self.apply(getattr(response, "switchyard_update", None))
        return reply

    def take_structured(self, response: ModelResponse[Any]) -> None:
        """Record the structured answer: the reply's content becomes its JSON."""
        reply = self.answer(response)
        parsed = response.structured_response
        if isinstance(parsed, BaseModel):
            reply.content = parsed.model_dump_json()
            reply.tool_calls = []
            self.structured = parsed

    # -- tools -------------------------------------------------------------------------------

    def wants_tools(self, reply: AIMessage) -> bool:
        """Whether the reply calls tools to run (a handoff call ends the loop instead)."""
        if not reply.tool_calls and not reply.invalid_tool_calls:
            return False
        for call in reply.tool_calls:
            if call["name"] in self.handoffs:
                self.handoff = dict(call)
                return False
        return True

    def tool_requests(self, reply: AIMessage) -> list[ToolCallRequest | ToolMessage]:
        """What each call of `reply` needs: a request to run, or its answer already."""
        runtime: Any = ToolRuntime(
            state=self.hook_state(),
            context=self.context,
            config=_config(),
            stream_writer=self.runtime.stream_writer,
            tool_call_id=None,
            store=self.runtime.store,
            tools=list(self.tools.values()),
        )
        work: list[ToolCallRequest | ToolMessage] = [
            ToolCallRequest(
                tool_call=call,
                tool=self.tools.get(call["name"]),
                state=runtime.state,
                runtime=runtime,
            )
            for call in reply.tool_calls
        ]
        # A call whose arguments are not JSON is answered with the error, so the model can call
        # again; left unanswered, it would also make the provider reject the next request.
        for bad in reply.invalid_tool_calls:
            name = bad.get("name") or ""
            call = {"name": name, "id": bad.get("id") or "", "args": {}, "type": "tool_call"}
            if name not in self.tools:  # refused as any undeclared tool is
                work.append(ToolCallRequest(call, None, runtime.state, runtime))  # type: ignore[arg-type]
                continue
            work.append(
                ToolMessage(
                    f"error: the arguments of this call to {name!r} are not valid JSON "
                    f"({bad.get('error') or bad.get('args')!r}); call it again with valid "
                    "JSON arguments",
                    tool_call_id=call["id"],
                    name=name,
                    status="error",
                )
            )
        return work

    def take_tool_result(self, result: Any, request: ToolCallRequest | None = None) -> None:
        """Add a tool's answer to the transcript."""
        if not isinstance(result, ToolMessage):
            assert request is not None
            call = request.tool_call
            result = ToolMessage(str(result), tool_call_id=call["id"] or "", name=call["name"])
        self.transcript.append(result)
        self.new.append(result)

    def reply(self) -> AgentReply:
        """The call's outcome."""
        output: str | BaseModel
        if self.structured is not None:
            output = self.structured
        else:
            last = next((m for m in reversed(self.new) if isinstance(m, AIMessage)), None)
            output = last.text if last is not None else ""
        unread = None
        if self.handoff is None and isinstance(output, str):
            unread = names_a_call(output, self.handoffs)
        return AgentReply(
            unread_handoff=unread,
            messages=self.new,
            output=output,
            usage=self.record.usage,
            handoff=self.handoff,
            refusals=self.record.refusals,
            memory=self.memory,
            rejections=self.record.rejections,
            duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
        )


def _tool_failed(request: ToolCallRequest, problem: str) -> ToolMessage:
    """A tool call that could not be run is reported to the model, not the user."""
    call = request.tool_call
    return ToolMessage(
        f"error: {problem}", tool_call_id=call["id"] or "", name=call["name"], status="error"
    )


# The innermost tool handlers, sync and async: the one place a tool is invoked. They differ only in
# `invoke` / `ainvoke`; everything around them (the loop, the middleware) is written once.


def run_tool(request: ToolCallRequest) -> Any:
    """Run one tool call (the tool chain's innermost handler)."""
    if request.tool is None:
        return _tool_failed(request, f"there is no tool {request.tool_call['name']!r}")
    try:
        return request.tool.invoke({**request.tool_call, "type": "tool_call"})
    except GraphBubbleUp:
        raise
    except Exception as exc:
        return _tool_failed(request, f"{type(exc).__name__}: {exc}")


async def arun_tool(request: ToolCallRequest) -> Any:
    """Async form of `run_tool`."""
    if request.tool is None:
        return _tool_failed(request, f"there is no tool {request.tool_call['name']!r}")
    try:
        return await request.tool.ainvoke({**request.tool_call, "type": "tool_call"})
    except GraphBubbleUp:
        raise
    except Exception as exc:
        return _tool_failed(request, f"{type(exc).__name__}: {exc}")


def _steps(call: AgentCall) -> Generator[_Effect, Any, AgentReply]:
    """The agent loop, as the calls it needs (see the module docstring)."""
    if (yield from call.hooks("before_agent")):
        return call.reply()
    rounds, ended = 0, False
    # With an output schema and nothing to call, the answer is the structured output alone (one
    # call, as create_agent does); otherwise the agent works with its tools, then answers in the
    # schema.
    direct = call.spec.output_schema is not None and not call.tools and not call.handoffs
    while not ended and not direct:
        kind = "tools" if rounds < MAX_TOOL_ROUNDS else "plain"
        if (yield from call.hooks("before_model")):
            ended = True
            break
        reply = call.answer((yield _Model(call.request(kind))))
        ended = yield from call.hooks("after_model")
        if ended or kind == "plain" or not call.wants_tools(reply):
            break
        for work in call.tool_requests(reply):
            if isinstance(work, ToolMessage):
                call.take_tool_result(work)
            else:
                call.take_tool_result((yield _Tool(work)), work)
        rounds += 1
    structured = not ended and call.spec.output_schema is not None and call.handoff is None
    if structured and not (yield from call.hooks("before_model")):
        call.take_structured((yield _Model(call.request("schema"))))
        yield from call.hooks("after_model")
    yield from call.hooks("after_agent")
    return call.reply()


# The drivers: `_run` / `_drive` carry `_steps` out with sync calls, `_arun` / `_adrive` with async
# ones. They are the whole of the difference between `call_agent` and `acall_agent`.


def _run(call: AgentCall, effect: _Effect) -> Any:
    if isinstance(effect, _Hook):
        return getattr(effect.middleware, effect.name)(effect.state, call.runtime)
    if isinstance(effect, _Model):
        return call.chain.model_call(call.execute)(effect.request)
    return call.chain.tool_call(run_tool)(effect.request)


async def _arun(call: AgentCall, effect: _Effect) -> Any:
    if isinstance(effect, _Hook):
        if defines(effect.middleware, f"a{effect.name}"):
            return await getattr(effect.middleware, f"a{effect.name}")(effect.state, call.runtime)
        return getattr(effect.middleware, effect.name)(effect.state, call.runtime)
    if isinstance(effect, _Model):
        return await call.chain.amodel_call(call.aexecute)(effect.request)
    return await call.chain.atool_call(arun_tool)(effect.request)


def _drive(call: AgentCall) -> AgentReply:
    steps, result = _steps(call), None
    with recording(call.record):
        while True:
            try:
                effect = steps.send(result)
            except StopIteration as done:
                reply: AgentReply = done.value
                return reply
            result = _run(call, effect)


async def _adrive(call: AgentCall) -> AgentReply:
    steps, result = _steps(call), None
    with recording(call.record):
        while True:
            try:
                effect = steps.send(result)
            except StopIteration as done:
                reply: AgentReply = done.value
                return reply
            result = await _arun(call, effect)


class CallOptions(TypedDict, total=False):
    """How a pattern calls an agent (`call_agent`'s keyword arguments).

    Attributes:
        chain: The agent's middleware; `AgentChain.of(spec)` when missing (build it once per
            agent and pass it: agent nodes do).
        handoff_tools: Tools that hand control to another agent. They are offered to the model
            but not run: the call stops at the first one and returns it as `AgentReply.handoff`.
        state: The graph state the node was given (middleware hooks see it).
        validate: The pattern's own check of structured output, run after the schema's.
        reasks: How often a rejected structured answer is asked for again (missing: once).
    """

    chain: AgentChain
    handoff_tools: Sequence[BaseTool]
    state: Mapping[str, Any]
    validate: Validate | None
    reasks: int | None


def _start(
    spec: AgentSpec, messages: Sequence[BaseMessage], context: Context | None, options: CallOptions
) -> AgentCall:
    return AgentCall(
        spec,
        messages,
        context or current_context(),
        chain=options.get("chain") or AgentChain.of(spec),
        handoff_tools=options.get("handoff_tools", ()),
        state=options.get("state"),
        validate=options.get("validate"),
        reasks=options.get("reasks"),
    )


# `call_agent` and `acall_agent` share their signature only: the loop is `_steps`, written once.


def call_agent(
    spec: AgentSpec,
    messages: Sequence[BaseMessage],
    context: Context | None = None,
    **options: Unpack[CallOptions],
) -> AgentReply:
    """Run one agent on `messages` (its view; the system prompt is added here).

    Args:
        spec: The agent (a model agent, or a graph agent: `AgentSpec.graph`).
        messages: What the agent sees, oldest first, without a system message.
        context: The run's context (model override, windows); the current run's when None.
        **options: See `CallOptions`.

    Raises:
        OutputValidationError: The agent has an output schema and its answer failed it, re-asked.
        CircuitOpenError: The model's circuit breaker is open (and no fallback model answered).
        BudgetExceededError: A budget would be exceeded.
        DeadlineExceededError: The run's deadline has passed.
    """
    if spec.graph is not None:
        return call_graph_agent(spec, messages)
    return _drive(_start(spec, messages, context, options))


async def acall_agent(
    spec: AgentSpec,
    messages: Sequence[BaseMessage],
    context: Context | None = None,
    **options: Unpack[CallOptions],
) -> AgentReply:
    """Async form of `call_agent`."""
    if spec.graph is not None:
        return await acall_graph_agent(spec, messages)
    return await _adrive(_start(spec, messages, context, options))
