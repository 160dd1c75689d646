"""What the spans say: GenAI and `switchyard.*` attributes read from LangChain's callbacks.

Pure functions of what a callback received (metadata, invocation parameters, responses, state
updates); recording them on spans, redacted, is `SpanBook`'s and the handler's part.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from switchyard.core.errors import SwitchyardError
from switchyard.core.redact import redact
from switchyard.observability.telemetry import conventions as semconv
from switchyard.observability.telemetry.spans import OpenSpan
from switchyard.state.usage import SUMMED, total_cost

# LangChain provider ids -> `gen_ai.provider.name` well-known values.
_PROVIDERS = {
    "openai": "openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "google_genai": "gcp.gemini",
    "google_vertexai": "gcp.vertex_ai",
    "mistralai": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "cohere": "cohere",
    "ollama": "ollama",
    "offline": "switchyard.offline",
    "offlinechatmodel": "switchyard.offline",
}
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_RUN_METADATA = ("correlation_id", "pattern", "user_id", "session_id", "thread_id")


# --------------------------------------------------------------------------- runs and nodes


def run_attributes(pattern: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of an `invoke_workflow {pattern}` span, from the run's config metadata."""
    return {
        semconv.GEN_AI_OPERATION: "invoke_workflow",
        semconv.GEN_AI_WORKFLOW_NAME: pattern,
        semconv.PATTERN: pattern,
        semconv.CORRELATION_ID: metadata.get("correlation_id"),
        semconv.USER_ID: metadata.get("user_id"),
        semconv.SESSION_ID: metadata.get("session_id"),
        semconv.THREAD_ID: metadata.get("thread_id"),
        semconv.GEN_AI_CONVERSATION_ID: metadata.get("thread_id"),
    }


def run_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What a run span keeps of its config metadata for the spans and log lines below it."""
    return {key: metadata.get(key) for key in _RUN_METADATA}


def node_attributes(
    node: str, metadata: Mapping[str, Any], *, attempt: int, root: OpenSpan
) -> dict[str, Any]:
    """The first attributes of a node span: the node, its step and attempt, and its run's ids."""
    return {
        semconv.NODE: node,
        semconv.STEP: metadata.get("langgraph_step"),
        semconv.ATTEMPT: attempt,
        semconv.PATTERN: root.metadata.get("pattern"),
        semconv.CORRELATION_ID: root.metadata.get("correlation_id"),
    }


def split_command(outputs: Any) -> tuple[Any, dict[str, Any]]:
    """The state update a node returned, and `switchyard.goto` when it returned a `Command`.

    Args:
        outputs: What the node returned.

    Returns:
        The update (the `Command`'s, else `outputs`) and the attributes to set for it.
    """
    from langgraph.types import Command

    if not isinstance(outputs, Command):
        return outputs, {}
    goto = outputs.goto if isinstance(outputs.goto, list | tuple) else [outputs.goto]
    names = [g if isinstance(g, str) else getattr(g, "node", str(g)) for g in goto if g]
    return outputs.update, {semconv.GOTO: names or None}


def agents_of(opened: OpenSpan, usage: Any) -> list[str]:
    """The agents a node span ran, in order; empty when it is not an agent call.

    Agents named by the runs inside the node (metadata `agent`) come first. A node that called a
    model itself but named no agent ran the agents its usage ledger update names (or, with no
    ledger, the agent it is named after); a node that called no model (a router, a subgraph's
    parent) is an agent only when its ledger update names it.
    """
    if opened.agents:
        return list(opened.agents)
    ledger_agents: list[str] = []
    if isinstance(usage, Mapping):
        for entry in usage.values():
            name = entry.get("agent") if isinstance(entry, Mapping) else None
            if isinstance(name, str) and name not in ledger_agents:
                ledger_agents.append(name)
    if opened.called_model:
        return ledger_agents or [str(opened.node)]
    return [str(opened.node)] if opened.node in ledger_agents else []


def agent_attributes(label: str | None, agents: list[str]) -> dict[str, Any]:
    """The attributes of an `invoke_agent {label}` span that ran `agents`."""
    return {
        semconv.GEN_AI_OPERATION: "invoke_agent",
        semconv.GEN_AI_AGENT_NAME: label,
        semconv.AGENT: label,
        semconv.AGENTS: agents if len(agents) > 1 else None,
    }


def usage_attributes(usage: Mapping[str, Any]) -> dict[str, Any]:
    """`switchyard.usage.*`: a node's usage-ledger update summed over its entries, its models.

    `switchyard.usage.cost_usd` is left unset when a call had no known price (its known part
    and the count of unpriced calls are there), never recorded as 0.
    """
    entries = [e for e in usage.values() if isinstance(e, Mapping)]
    totals: dict[str, float] = {}
    for entry in entries:
        for key in SUMMED:
            value = entry.get(key)
            if isinstance(value, int | float):
                totals[key] = totals.get(key, 0) + value
    cost = total_cost(entries)
    totals["known_cost_usd"] = cost.known_cost_usd
    totals["unpriced_calls"] = cost.unpriced_calls
    models = sorted({str(e.get("model")) for e in entries})
    attributes: dict[str, Any] = {f"{semconv.USAGE_PREFIX}{k}": v for k, v in totals.items()}
    attributes[f"{semconv.USAGE_PREFIX}cost_usd"] = cost.cost_usd
    attributes[f"{semconv.USAGE_PREFIX}models"] = models
    return attributes


def route_attributes(route: Mapping[str, Any]) -> dict[str, Any]:
    """`switchyard.route.*` of a routing decision (`agent`, `confidence`, `reason`)."""
    return {
        semconv.ROUTE_AGENT: route.get("agent"),
        semconv.ROUTE_CONFIDENCE: route.get("confidence"),
        semconv.ROUTE_REASON: route.get("reason"),
    }


def run_end_reason(opened: OpenSpan, outputs: Any, error: BaseException | None) -> str:
    """Why a run ended: what its nodes reported, else what its outputs or its error say."""
    from langgraph.errors import GraphBubbleUp, GraphRecursionError

    if error is None:
        interrupted = isinstance(outputs, Mapping) and outputs.get("__interrupt__")
        return opened.end_reason or ("interrupted" if interrupted else "completed")
    if isinstance(error, GraphRecursionError):
        return "recursion_limit"
    if isinstance(error, GraphBubbleUp):
        return "interrupted"
    return "error"


def run_end_attributes(opened: OpenSpan, end_reason: str) -> dict[str, Any]:
    """What a run span records as it ends: end reason, retries, token and cost totals, route."""
    route = opened.route or {}
    return {
        semconv.END_REASON: end_reason,
        semconv.RETRIES: opened.retries,
        semconv.MODEL_CALLS: opened.model_calls,
        semconv.GEN_AI_INPUT_TOKENS: opened.input_tokens,
        semconv.GEN_AI_OUTPUT_TOKENS: opened.output_tokens,
        semconv.COST_USD: opened.cost_usd,  # unset when a call had no known price
        semconv.ROUTE_AGENT: route.get("agent"),
        semconv.ROUTE_CONFIDENCE: route.get("confidence"),
        semconv.AGENT: opened.last_agent or route.get("agent"),
        semconv.FAILED_NODE: opened.failed_node if end_reason != "completed" else None,
    }


# --------------------------------------------------------------------------- model and tool calls


@dataclass(frozen=True)
class ModelRequest:
    """Which model a call asks for, as its callback reports it."""

    operation: str  # "chat" or "text_completion"
    model: str
    provider: str  # LangChain's provider id, as the pricing table knows it

    @property
    def span_name(self) -> str:
        """The span's name, `{operation} {model}`."""
        return f"{self.operation} {self.model}"


def model_request(
    metadata: Mapping[str, Any], params: Mapping[str, Any], *, chat: bool
) -> ModelRequest:
    """Read the model and provider from a call's metadata (`ls_*`) or invocation parameters."""
    model = (
        metadata.get("ls_model_name")
        or params.get("model")
        or params.get("model_name")
        or params.get("model_id")
        or "unknown"
    )
    provider = str(metadata.get("ls_provider") or params.get("_type") or "unknown")
    return ModelRequest("chat" if chat else "text_completion", str(model), provider)


def request_attributes(
    request: ModelRequest,
    metadata: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    agent: Any,
    correlation_id: Any,
) -> dict[str, Any]:
    """The first attributes of a model span: operation, provider, model, sampling settings."""
    return {
        semconv.GEN_AI_OPERATION: request.operation,
        semconv.GEN_AI_PROVIDER: _PROVIDERS.get(request.provider, request.provider),
        semconv.GEN_AI_REQUEST_MODEL: request.model,
        semconv.GEN_AI_TEMPERATURE: metadata.get("ls_temperature", params.get("temperature")),
        semconv.GEN_AI_MAX_TOKENS: metadata.get("ls_max_tokens", params.get("max_tokens")),
        semconv.AGENT: agent,
        semconv.CORRELATION_ID: correlation_id,
    }


@dataclass(frozen=True)
class ModelResponse:
    """What a model call's response reports: its message, tokens, model and finish reason."""

    message: BaseMessage | None
    input_tokens: int
    output_tokens: int
    cached: int
    reasoning: int
    model: Any
    response_id: Any
    finish_reason: Any
    provider: Any

    def cost_usd(self, provider: str, model: str) -> float | None:
        """The call's price; None when it is unknown.

        Args:
            provider: The provider the call asked for, when the response names none.
            model: The model the call asked for, when the response names none.
        """
        provider = str(self.provider or provider)
        model = str(self.model or model)
        return _price(provider, model, self.input_tokens, self.output_tokens, self.cached)

    def attributes(self, cost: float | None) -> dict[str, Any]:
        """The attributes a model span records as it ends."""
        finish_reasons = [str(self.finish_reason)] if self.finish_reason else None
        return {
            semconv.GEN_AI_INPUT_TOKENS: self.input_tokens,
            semconv.GEN_AI_OUTPUT_TOKENS: self.output_tokens,
            semconv.GEN_AI_CACHE_READ_TOKENS: self.cached or None,
            semconv.GEN_AI_REASONING_TOKENS: self.reasoning or None,
            semconv.GEN_AI_RESPONSE_MODEL: self.model,
            semconv.GEN_AI_RESPONSE_ID: self.response_id,
            semconv.GEN_AI_FINISH_REASONS: finish_reasons,
            semconv.COST_USD: cost,
        }


def model_response(response: LLMResult) -> ModelResponse:
    """Read a response: `usage_metadata` of its first message, else the provider's token usage."""
    message = _first_message(response)
    llm_output = response.llm_output or {}
    usage: Mapping[str, Any] = (
        message.usage_metadata or {} if isinstance(message, AIMessage) else {}
    )
    if not usage:
        token_usage = llm_output.get("token_usage") or {}
        usage = {
            "input_tokens": token_usage.get("prompt_tokens", 0),
            "output_tokens": token_usage.get("completion_tokens", 0),
        }
    meta: Mapping[str, Any] = message.response_metadata if message is not None else {}
    return ModelResponse(
        message=message,
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cached=int((usage.get("input_token_details") or {}).get("cache_read") or 0),
        reasoning=int((usage.get("output_token_details") or {}).get("reasoning") or 0),
        model=meta.get("model_name") or meta.get("model") or llm_output.get("model_name"),
        response_id=meta.get("id"),
        finish_reason=meta.get("finish_reason") or meta.get("stop_reason"),
        provider=meta.get("model_provider"),
    )


def tool_attributes(name: str, call_id: Any, agent: str | None) -> dict[str, Any]:
    """The attributes of an `execute_tool {name}` span."""
    return {
        semconv.GEN_AI_OPERATION: "execute_tool",
        semconv.GEN_AI_TOOL_NAME: name,
        semconv.GEN_AI_TOOL_CALL_ID: call_id,
        semconv.AGENT: agent,
    }


def messages_json(messages: Sequence[BaseMessage]) -> str:
    """Messages as `gen_ai.*.messages` JSON (`role` and `content`), their text redacted."""
    return json.dumps(
        [{"role": _ROLES.get(m.type, m.type), "content": redact(m.text)} for m in messages],
        ensure_ascii=False,
    )


def prompt_json(prompt: str) -> str:
    """A completion-style prompt as `gen_ai.input.messages` JSON (one user message)."""
    return json.dumps([{"role": "user", "content": prompt}])


def _first_message(response: LLMResult) -> BaseMessage | None:
    for generations in response.generations:
        for generation in generations:
            if isinstance(generation, ChatGeneration):
                return generation.message
    return None


def _price(
    provider: str, model: str, input_tokens: int, output_tokens: int, cached: int
) -> float | None:
    from switchyard.core.pricing import cost_usd

    name = model.split(":", 1)[1] if model.startswith(f"{provider}:") else model
    try:
        return cost_usd(
            "offline" if provider == "offline" else f"{provider}:{name}",
            input_tokens,
            output_tokens,
            cached,
        )
    except SwitchyardError:
        return None
