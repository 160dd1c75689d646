"""Names the telemetry records under: span attributes, the tracer, the logger, the variables.

Attribute names follow the OpenTelemetry GenAI semantic conventions first; what they do not cover
is Switchyard's own, under `switchyard.`.
"""

from __future__ import annotations

from switchyard.core.redact import masked_logger

TRACER_NAME = "switchyard"
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# The name the package's log lines carried when it was one module; log filters and the JSON
# lines' `logger` field depend on it, so every module of the package logs under it.
logger = masked_logger("switchyard.observability.telemetry")

GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"
AGENT = "switchyard.agent"
AGENTS = "switchyard.agents"
NODE = "switchyard.node"
STEP = "switchyard.step"
ATTEMPT = "switchyard.attempt"
PATTERN = "switchyard.pattern"
CORRELATION_ID = "switchyard.correlation_id"
USER_ID = "switchyard.user_id"
SESSION_ID = "switchyard.session_id"
THREAD_ID = "switchyard.thread_id"
END_REASON = "switchyard.end_reason"
FAILED_NODE = "switchyard.failed_node"
RETRIES = "switchyard.retries"
COST_USD = "switchyard.cost_usd"  # left unset, never 0, when a call had no known price
MODEL_CALLS = "switchyard.model_calls"
ROUTE_AGENT = "switchyard.route.agent"
ROUTE_CONFIDENCE = "switchyard.route.confidence"
ROUTE_REASON = "switchyard.route.reason"
GOTO = "switchyard.goto"
CONTROL = "switchyard.control"
USAGE_PREFIX = "switchyard.usage."


def truthy(value: str | None) -> bool:
    """Whether a boolean environment variable (`OTEL_SDK_DISABLED`, ...) is set to true.

    Args:
        value: The variable's value, None when it is unset.

    Returns:
        True for `1`, `true`, `yes` and `on`, in any case and with blanks around them.
    """
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}
