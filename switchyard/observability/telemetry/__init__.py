"""OpenTelemetry tracing: a span per run, per agent (graph node) call, per model call and tool call.

`TelemetryCallbackHandler` is a LangChain callback handler; the run facade puts one in every run's
config, so it sees what LangGraph and LangChain report about the run without touching the agent
node: graph nodes arrive as chain runs carrying `langgraph_node` / `langgraph_checkpoint_ns`
metadata, model calls as chat-model runs whose `AIMessage.usage_metadata` holds the tokens. It
builds this tree (names and attributes follow the OpenTelemetry GenAI semantic conventions):

```
invoke_workflow router                 gen_ai.workflow.name, switchyard.pattern / correlation_id /
│                                      end_reason / route.* / retries / failed_node, token totals
├── classify                           switchyard.node, switchyard.route.agent / confidence
└── invoke_agent support               gen_ai.agent.name, switchyard.agent, switchyard.attempt,
    ├── chat gpt-4o-mini   (CLIENT)    gen_ai.request.model, gen_ai.usage.input_tokens / output_...,
    │                                  gen_ai.provider.name, switchyard.cost_usd
    └── execute_tool lookup            gen_ai.tool.name
```

A node span is an agent span when a model call runs in it. It is named after the agent the
call names in its metadata (`agent`, set by the agent node), else after the agents in the node's
usage-ledger update, else after the node: a node `plan` that runs the `manager` agent gives
`invoke_agent manager`. Nodes inside subgraphs nest under the node that runs the subgraph. Each
attempt of a model call retried by the agent's retry middleware is its own `chat` span under the
agent's span (`switchyard.attempt` counts them), failed attempts with status ERROR; a node run
again by a `RetryPolicy` of its own is a span per attempt likewise. Control flow that LangGraph
raises (an interrupt, a handoff to the parent graph) is recorded as `switchyard.control`, not as
an error. Every span carries
`switchyard.correlation_id`. Attribute values are redacted (`switchyard.core.redact`); prompts and
replies are recorded only when `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, and
redacted then too.

Tracing is off by default: with no tracer provider installed, OpenTelemetry's API is a no-op.
`configure_tracing` installs one from the standard `OTEL_*` variables (`OTEL_TRACES_EXPORTER`,
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_SDK_DISABLED`, ...) or, with
`console=True` (`switchyard run --trace`), prints spans to standard error. No collector is needed.

LangSmith: when `LANGSMITH_TRACING=true`, `langsmith_callbacks` adds a LangSmith tracer whose
client redacts inputs, outputs and metadata; the run's tags and metadata (pattern, correlation id,
user, session, LangGraph node, agent) go with every run it records. Otherwise nothing is sent and
no client is created.

Why not opentelemetry-instrumentation-langchain (traceloop/openllmetry 0.62.4, evaluated on the
router graph): it produced 8 spans for one run where 4 say what happened (each node twice, once
for the LangGraph task and once for the node's runnable, plus a span for the `route_to_agent`
edge function); `gen_ai.request.model` was "unknown" for the offline model; it has no cost, route
confidence, end reason, retry attempt or Switchyard agent attribute, and its spans cannot be
enriched once they end. It records full prompts and replies by default (a planted `sk-...` key in
the user's message appeared verbatim in `gen_ai.input.messages`), and it works by patching
`BaseCallbackManager.__init__` for the whole process. A handler of our own gives exactly the spans
above, from the same callbacks, and only for the runs it is passed to.

The package, by concern: `handler` (the callback handler, which only passes callbacks on),
`opening` and `closing` (which runs open spans, what spans record as they end, the log lines),
`spans` (the open spans of a handler), `attributes` (GenAI and `switchyard.*` attributes),
`conventions` (attribute names), `redaction`, `provider` (exporters and `OTEL_*` settings) and
`callbacks` (which handlers a run gets). Import from the package: the modules are its layout.
"""

from __future__ import annotations

from switchyard.observability.telemetry.callbacks import (
    langsmith_callbacks,
    redacting_langsmith_client,
    run_callbacks,
)
from switchyard.observability.telemetry.conventions import (
    AGENT,
    AGENTS,
    ATTEMPT,
    CAPTURE_CONTENT_ENV,
    CONTROL,
    CORRELATION_ID,
    COST_USD,
    END_REASON,
    ERROR_TYPE,
    FAILED_NODE,
    GEN_AI_AGENT_NAME,
    GEN_AI_CACHE_READ_TOKENS,
    GEN_AI_CONVERSATION_ID,
    GEN_AI_FINISH_REASONS,
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_INPUT_TOKENS,
    GEN_AI_MAX_TOKENS,
    GEN_AI_OPERATION,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_OUTPUT_TOKENS,
    GEN_AI_PROVIDER,
    GEN_AI_REASONING_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_ID,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_TEMPERATURE,
    GEN_AI_TOOL_CALL_ID,
    GEN_AI_TOOL_NAME,
    GEN_AI_WORKFLOW_NAME,
    GOTO,
    MODEL_CALLS,
    NODE,
    PATTERN,
    RETRIES,
    ROUTE_AGENT,
    ROUTE_CONFIDENCE,
    ROUTE_REASON,
    SESSION_ID,
    STEP,
    THREAD_ID,
    TRACER_NAME,
    USAGE_PREFIX,
    USER_ID,
    logger,
)
from switchyard.observability.telemetry.handler import (
    TelemetryCallbackHandler,
)
from switchyard.observability.telemetry.provider import (
    TelemetryConfigError,
    configure_tracing,
    exporter_names,
    run_tracer_provider,
    tracing_active,
    use_tracer_provider,
)
from switchyard.observability.telemetry.redaction import (
    RedactingSpanExporter,
)

__all__ = [
    "AGENT",
    "AGENTS",
    "ATTEMPT",
    "CAPTURE_CONTENT_ENV",
    "CONTROL",
    "CORRELATION_ID",
    "COST_USD",
    "END_REASON",
    "ERROR_TYPE",
    "FAILED_NODE",
    "GEN_AI_AGENT_NAME",
    "GEN_AI_CACHE_READ_TOKENS",
    "GEN_AI_CONVERSATION_ID",
    "GEN_AI_FINISH_REASONS",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_INPUT_TOKENS",
    "GEN_AI_MAX_TOKENS",
    "GEN_AI_OPERATION",
    "GEN_AI_OUTPUT_MESSAGES",
    "GEN_AI_OUTPUT_TOKENS",
    "GEN_AI_PROVIDER",
    "GEN_AI_REASONING_TOKENS",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_RESPONSE_ID",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_TEMPERATURE",
    "GEN_AI_TOOL_CALL_ID",
    "GEN_AI_TOOL_NAME",
    "GEN_AI_WORKFLOW_NAME",
    "GOTO",
    "MODEL_CALLS",
    "NODE",
    "PATTERN",
    "RETRIES",
    "ROUTE_AGENT",
    "ROUTE_CONFIDENCE",
    "ROUTE_REASON",
    "SESSION_ID",
    "STEP",
    "THREAD_ID",
    "TRACER_NAME",
    "USAGE_PREFIX",
    "USER_ID",
    "RedactingSpanExporter",
    "TelemetryCallbackHandler",
    "TelemetryConfigError",
    "configure_tracing",
    "exporter_names",
    "langsmith_callbacks",
    "logger",
    "redacting_langsmith_client",
    "run_callbacks",
    "run_tracer_provider",
    "tracing_active",
    "use_tracer_provider",
]
