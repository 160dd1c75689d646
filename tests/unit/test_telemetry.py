"""OpenTelemetry spans, correlation ids and LangSmith metadata, captured in memory.

Span tests go through the run facade (`switchyard.runtime.run.run`), which puts a
`TelemetryCallbackHandler` in every run's config; `use_tracer_provider` points it at an in-memory
exporter. Tests parametrised over `PATTERNS` cover every registered pattern.
"""

from __future__ import annotations

import io
import json
import logging
import operator
from collections.abc import Iterator, Sequence
from typing import Annotated, Any
from unittest import mock
from uuid import UUID

import pytest
import requests
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_core.tracers import LangChainTracer
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.pregel import Pregel
from langsmith.utils import get_env_var
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OfflineChatModel
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.nodes.agent import make_agent_node
from switchyard.observability import telemetry
from switchyard.observability.logs import configure_logging
from switchyard.observability.telemetry import (
    RedactingSpanExporter,
    TelemetryCallbackHandler,
    TelemetryConfigError,
    configure_tracing,
    exporter_names,
    use_tracer_provider,
)
from switchyard.runtime.registry import PATTERNS, load_graph
from switchyard.runtime.run import arun, run
from switchyard.state.agents import AgentSpec
from switchyard.state.reducers import merge_usage
from switchyard.state.usage import UsageLedger
from switchyard.storage.dlq import DeadLetterQueue

OPENAI_KEY = "sk-proj-Zt8qW3nV6yB1xK4mR7pL0sD2fG5hJ9cE"
AWS_KEY_ID = "AKIAZ7Q2M4N6P8R0T1V3"
ENV_SECRET = "acme-7f3a9c2e5b8d-4e1f"


@pytest.fixture(autouse=True)
def _runs_use_the_global_provider_again() -> Iterator[None]:
    """`configure_tracing` points runs at its provider; each test starts and ends without one."""
    use_tracer_provider(None)
    yield
    use_tracer_provider(None)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Spans of every run started through the run facade, kept in memory."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    use_tracer_provider(provider)
    yield memory
    use_tracer_provider(None)
    provider.shutdown()


def _router() -> Pregel[Any, Any, Any, Any]:
    return build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )


def _op(span: ReadableSpan) -> Any:
    return (span.attributes or {}).get("gen_ai.operation.name")


def _attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def _only(spans: Sequence[ReadableSpan], operation: str) -> list[ReadableSpan]:
    return [s for s in spans if _op(s) == operation]


def _parent_of(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next(s for s in spans if s.context.span_id == span.parent.span_id)


# --------------------------------------------------------------------------- the span tree


def test_router_run_has_a_span_per_run_node_agent_and_model_call(
    exporter: InMemorySpanExporter,
) -> None:
    result = run(_router(), "I need a refund for my last payment", user_id="ada", dlq=None)
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == [
        "chat offline",
        "classify",
        "invoke_agent support",
        "invoke_workflow router",
    ]
    (root,) = _only(spans, "invoke_workflow")
    (agent,) = _only(spans, "invoke_agent")
    (model,) = _only(spans, "chat")
    classify = next(s for s in spans if s.name == "classify")

    assert root.parent is None
    assert _parent_of(classify, spans) is root
    assert _parent_of(agent, spans) is root
    assert _parent_of(model, spans) is agent
    assert model.kind.name == "CLIENT"

    assert _attr(root, "switchyard.pattern") == "router"
    assert _attr(root, "switchyard.user_id") == "ada"
    assert _attr(root, "gen_ai.conversation.id") == result.thread_id
    assert _attr(root, "switchyard.end_reason") == result.end_reason == "completed"
    assert _attr(root, "switchyard.agent") == result.agent_name == "support"
    assert _attr(root, "switchyard.route.confidence") == result.confidence
    assert _attr(root, "gen_ai.usage.input_tokens") == result.input_tokens
    assert _attr(root, "gen_ai.usage.output_tokens") == result.output_tokens
    assert root.status.status_code is StatusCode.OK

    assert _attr(classify, "switchyard.route.agent") == "support"
    assert _attr(classify, "switchyard.route.confidence") == result.confidence
    assert _attr(agent, "gen_ai.agent.name") == "support"
    assert _attr(agent, "switchyard.agent") == "support"
    assert _attr(agent, "switchyard.attempt") == 1
    assert _attr(agent, "switchyard.usage.calls") == 1

    assert _attr(model, "gen_ai.request.model") == "offline"
    assert _attr(model, "gen_ai.provider.name") == "switchyard.offline"
    assert _attr(model, "switchyard.agent") == "support"
    assert _attr(model, "gen_ai.usage.input_tokens") == result.input_tokens > 0
    assert _attr(model, "gen_ai.usage.output_tokens") == result.output_tokens > 0
    assert _attr(model, "switchyard.cost_usd") == 0.0
    assert {_attr(s, "switchyard.correlation_id") for s in spans} == {result.correlation_id}
    assert len({s.context.trace_id for s in spans}) == 1


async def test_async_runs_produce_the_same_tree(exporter: InMemorySpanExporter) -> None:
    result = await arun(_router(), "How do I authenticate with the API?", dlq=None)
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == [
        "chat offline",
        "classify",
        "invoke_agent docs",
        "invoke_workflow router",
    ]
    (agent,) = _only(spans, "invoke_agent")
    (model,) = _only(spans, "chat")
    assert _parent_of(model, spans) is agent
    assert _attr(agent, "switchyard.agent") == result.agent_name == "docs"


class _ChainRuns(BaseCallbackHandler):
    """Counts the chain runs callbacks see, by name, and the parent of each model call."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ids: dict[UUID, str] = {}
        self.model_parents: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.names.append(str(kwargs.get("name")))
        self.ids[kwargs["run_id"]] = str(kwargs.get("name"))

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.model_parents.append(self.ids.get(kwargs["parent_run_id"], "?"))


@pytest.mark.parametrize("entry", ["invoke", "ainvoke"])
async def test_each_agent_node_is_one_run_and_its_model_calls_are_inside_it(entry: str) -> None:
    # LangGraph opens the node's run; an agent node opens no second, nested run of its own.
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile()
    runs = _ChainRuns()
    state = {"messages": [HumanMessage("I need a refund for my last payment")]}
    config: Any = {"callbacks": [runs]}
    if entry == "invoke":
        graph.invoke(state, config)
    else:
        await graph.ainvoke(state, config)
    assert runs.names.count("support") == 1
    assert runs.names.count("classify") == 1
    assert runs.model_parents == ["support"]


def _sum(spans: Sequence[ReadableSpan], key: str, agent: str | None = None) -> int:
    return sum(
        int(_attr(s, key) or 0)
        for s in _only(spans, "chat")
        if agent is None or _attr(s, "switchyard.agent") == agent
    )


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_ledger_totals_equal_the_sum_of_model_call_spans(
    pattern: str, exporter: InMemorySpanExporter
) -> None:
    graph = load_graph(pattern).builder.compile(checkpointer=InMemorySaver(), name=pattern)
    result = run(graph, "I was charged twice for my subscription, please refund me", dlq=None)
    spans = exporter.get_finished_spans()
    calls = _only(spans, "chat")
    assert len(calls) == sum(e["calls"] for e in result.usage.values())
    assert _sum(spans, "gen_ai.usage.input_tokens") == result.input_tokens
    assert _sum(spans, "gen_ai.usage.output_tokens") == result.output_tokens
    agents = {e["agent"] for e in result.usage.values()}
    for agent in agents:
        entries = [e for e in result.usage.values() if e["agent"] == agent]
        assert _sum(spans, "gen_ai.usage.input_tokens", agent) == sum(
            e["input_tokens"] for e in entries
        ), agent
        assert _sum(spans, "gen_ai.usage.output_tokens", agent) == sum(
            e["output_tokens"] for e in entries
        ), agent
    (root,) = _only(spans, "invoke_workflow")
    assert _attr(root, "switchyard.model_calls") == len(calls)
    assert _attr(root, "switchyard.end_reason") == result.end_reason
    assert _attr(root, "switchyard.pattern") == pattern
    assert {_attr(s, "switchyard.correlation_id") for s in spans} == {result.correlation_id}


# --------------------------------------------------------------------------- retries, failures


class _State(MessagesState):
    usage: Annotated[UsageLedger, merge_usage]
    visits: Annotated[int, operator.add]


@pytest.fixture
def flaky_model() -> Iterator[str]:
    """A model whose first call fails with a transient (503) error."""
    name = "offline:flaky"
    register_chat_model(name, OfflineChatModel(model_name="flaky", fail_on_calls=(1,)))
    yield name
    unregister_chat_model(name)


def test_a_retried_model_call_has_one_span_per_attempt_under_its_agent(
    exporter: InMemorySpanExporter, flaky_model: str
) -> None:
    spec = AgentSpec(name="alpha", description="answers alpha questions", model=flaky_model)
    builder = StateGraph(_State)
    builder.add_node("alpha", make_agent_node(spec))
    builder.add_edge(START, "alpha")
    result = run(builder.compile(name="retrying"), "hello alpha", dlq=None)
    assert result.ok
    spans = exporter.get_finished_spans()
    # the node ran once; its model call was retried inside it, not the whole node
    (agent,) = (s for s in spans if _attr(s, "switchyard.node") == "alpha")
    assert agent.name == "invoke_agent alpha"
    assert agent.status.status_code is StatusCode.OK
    failed_call, good_call = sorted(_only(spans, "chat"), key=lambda s: s.start_time or 0)
    assert [_attr(s, "switchyard.attempt") for s in (failed_call, good_call)] == [1, 2]
    assert failed_call.status.status_code is StatusCode.ERROR
    assert _attr(failed_call, "error.type") == "SimulatedProviderError"
    assert good_call.status.status_code is StatusCode.OK
    assert _parent_of(failed_call, spans) is agent
    assert _parent_of(good_call, spans) is agent
    (root,) = _only(spans, "invoke_workflow")
    assert _attr(root, "switchyard.retries") == 1
    assert _attr(root, "switchyard.end_reason") == "completed"
    assert _attr(root, "switchyard.failed_node") is None


def _broken(state: _State) -> dict[str, Any]:
    raise ValueError(f"cannot parse the reply (api_key={OPENAI_KEY})")


def test_a_failed_run_says_which_node_failed_and_why(exporter: InMemorySpanExporter) -> None:
    builder = StateGraph(_State)
    builder.add_node("parse", _broken)
    builder.add_edge(START, "parse")
    result = run(builder.compile(name="failing"), "hello", dlq=None)
    assert not result.ok
    spans = exporter.get_finished_spans()
    (root,) = _only(spans, "invoke_workflow")
    node = next(s for s in spans if s.name == "parse")
    assert _attr(root, "switchyard.end_reason") == result.end_reason == "error"
    assert _attr(root, "switchyard.failed_node") == "parse"
    assert root.status.status_code is StatusCode.ERROR
    assert node.status.status_code is StatusCode.ERROR
    assert node.status.description is not None
    assert node.status.description.startswith("ValueError: cannot parse the reply")
    (event,) = node.events
    assert event.name == "exception"
    assert OPENAI_KEY not in json.dumps(dict(event.attributes or {}))
    assert OPENAI_KEY not in node.status.description


def _visit(state: _State) -> dict[str, Any]:
    return {"visits": 1}


def test_subgraph_nodes_nest_under_the_node_that_runs_them(
    exporter: InMemorySpanExporter,
) -> None:
    inner = StateGraph(_State)
    inner.add_node("worker", _visit)
    inner.add_edge(START, "worker")
    outer = StateGraph(_State)
    outer.add_node("team", inner.compile())
    outer.add_edge(START, "team")
    run(outer.compile(name="nested"), "hello", dlq=None)
    spans = exporter.get_finished_spans()
    team = next(s for s in spans if s.name == "team")
    worker = next(s for s in spans if s.name == "worker")
    assert _parent_of(worker, spans) is team
    assert _op(_parent_of(team, spans) or team) == "invoke_workflow"


# --------------------------------------------------------------------------- correlation ids


def test_correlation_id_is_the_same_in_result_spans_logs_and_dead_letters(
    exporter: InMemorySpanExporter, tmp_path: Any
) -> None:
    logger = logging.getLogger("switchyard")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    stream = io.StringIO()
    configure_logging(json_lines=True, stream=stream)
    queue = DeadLetterQueue(str(tmp_path / "dlq.sqlite"))
    builder = StateGraph(_State)
    builder.add_node("parse", _broken)
    builder.add_edge(START, "parse")
    try:
        result = run(
            builder.compile(checkpointer=InMemorySaver(), name="failing"),
            "hello",
            correlation_id="corr-42",
            dlq=queue,
        )
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    assert result.correlation_id == "corr-42"
    assert result.dead_letter_id is not None
    assert queue.get(result.dead_letter_id).correlation_id == "corr-42"
    spans = exporter.get_finished_spans()
    assert spans
    assert {_attr(s, "switchyard.correlation_id") for s in spans} == {"corr-42"}
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert records
    assert {r["correlation_id"] for r in records} == {"corr-42"}
    assert any(r.get("failed_node") == "parse" for r in records)


# --------------------------------------------------------------------------- redaction


@tool
def lookup_invoice(number: str) -> str:
    """Look up an invoice by its number."""
    return f"invoice {number}: paid with key api_key={OPENAI_KEY} by {AWS_KEY_ID}"


def test_planted_secrets_never_reach_spans(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_API_KEY", ENV_SECRET)
    monkeypatch.setenv(telemetry.CAPTURE_CONTENT_ENV, "true")
    spec = AgentSpec(
        name="billing",
        description="Billing: invoices and payments.",
        tools=(lookup_invoice,),
    )
    builder = StateGraph(_State)
    builder.add_node("billing", make_agent_node(spec))
    builder.add_edge(START, "billing")
    text = f"Look up invoice 42; my key is {OPENAI_KEY} and the acme key {ENV_SECRET}"
    result = run(builder.compile(name="billing"), text, dlq=None)
    assert result.ok
    spans = exporter.get_finished_spans()
    assert any(_op(s) == "execute_tool" for s in spans), "the offline model used the tool"
    captured = [s for s in spans if _attr(s, "gen_ai.input.messages")]
    assert captured, "message content was captured (and redacted)"
    dump = "\n".join(s.to_json() for s in spans)
    for secret in (OPENAI_KEY, AWS_KEY_ID, ENV_SECRET):
        assert secret not in dump
    assert "[REDACTED:openai-key]" in dump


def test_the_exporter_wrapper_redacts_spans_from_other_instrumentations() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(memory)))
    tracer = provider.get_tracer("someone-else")
    with tracer.start_as_current_span(f"GET /v1?key={OPENAI_KEY}") as span:
        span.set_attribute("http.request.header.authorization", [f"Bearer {OPENAI_KEY}"])
        span.set_attribute("db.statement", f"select '{AWS_KEY_ID}'")
        span.add_event("log", {"message": f"using {OPENAI_KEY}"})
    (exported,) = memory.get_finished_spans()
    dump = exported.to_json()
    assert OPENAI_KEY not in dump
    assert AWS_KEY_ID not in dump
    assert _attr(exported, "db.statement") == "select '[REDACTED:aws-key-id]'"


def test_message_content_is_not_recorded_by_default(exporter: InMemorySpanExporter) -> None:
    run(_router(), "I need a refund for my last payment", dlq=None)
    for span in exporter.get_finished_spans():
        assert "gen_ai.input.messages" not in (span.attributes or {})
        assert "gen_ai.output.messages" not in (span.attributes or {})


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("environ", "console", "expected"),
    [
        ({}, False, []),
        ({}, True, ["console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False, ["otlp_proto_http"]),
        (
            {"OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            False,
            ["otlp_proto_grpc", "console"],
        ),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False, []),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, True, []),
    ],
)
def test_exporters_follow_the_standard_otel_variables(
    environ: dict[str, str], console: bool, expected: list[str]
) -> None:
    assert exporter_names(environ, console=console) == expected


def test_tracing_is_off_by_default() -> None:
    assert configure_tracing(environ={}, set_global=False) is None


def test_runs_get_the_handler_only_when_spans_or_log_lines_are_wanted() -> None:
    logger = logging.getLogger("switchyard")
    saved = logger.level
    try:
        logger.setLevel(logging.WARNING)
        assert telemetry.run_callbacks() == []
        logger.setLevel(logging.INFO)
        (handler,) = telemetry.run_callbacks()
        assert isinstance(handler, TelemetryCallbackHandler)
        logger.setLevel(logging.WARNING)
        use_tracer_provider(TracerProvider())
        (handler,) = telemetry.run_callbacks()
        assert isinstance(handler, TelemetryCallbackHandler)
    finally:
        logger.setLevel(saved)


def test_an_unknown_exporter_is_one_specific_error() -> None:
    with pytest.raises(TelemetryConfigError, match="'carrier_pigeon' is not installed"):
        configure_tracing(environ={"OTEL_TRACES_EXPORTER": "carrier_pigeon"}, set_global=False)
    with pytest.raises(TelemetryConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='smoke'"):
        exporter_names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "smoke"})


def test_the_console_exporter_prints_one_json_span_per_line_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    provider = configure_tracing(console=True, environ={}, set_global=False)
    assert provider is not None
    handler = TelemetryCallbackHandler(tracer_provider=provider)
    _router().invoke(
        {"messages": [HumanMessage(f"I need a refund, key {OPENAI_KEY}")]},
        {"configurable": {"thread_id": "t"}, "callbacks": [handler]},
    )
    provider.shutdown()
    captured = capsys.readouterr()
    assert captured.out == ""
    names = [json.loads(line)["name"] for line in captured.err.splitlines()]
    assert sorted(names) == [
        "chat offline",
        "classify",
        "invoke_agent support",
        "invoke_workflow router",
    ]
    assert OPENAI_KEY not in captured.err


def test_otlp_from_the_environment_needs_no_collector_to_start() -> None:
    provider = configure_tracing(
        environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, set_global=False
    )
    assert provider is not None
    provider.shutdown()  # nothing was sent: no spans were made


# --------------------------------------------------------------------------- LangSmith


def test_langsmith_is_not_used_unless_tracing_is_on(exporter: InMemorySpanExporter) -> None:
    get_env_var.cache_clear()
    created: list[Any] = []
    original = LangChainTracer.__init__

    def counting(self: LangChainTracer, *args: Any, **kwargs: Any) -> None:
        created.append(self)
        original(self, *args, **kwargs)

    with (
        mock.patch.object(LangChainTracer, "__init__", counting),
        mock.patch("langsmith.Client.__init__", side_effect=AssertionError("client created")),
    ):
        result = run(_router(), "I need a refund", dlq=None)
    assert result.ok
    assert created == []
    assert telemetry.langsmith_callbacks() == []


def _posted(session: mock.MagicMock) -> list[dict[str, Any]]:
    bodies = []
    for call in session.request.call_args_list:
        data = call.kwargs.get("data")
        if data:
            bodies.append(json.loads(data))
    return bodies


@pytest.fixture
def langsmith_tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`LANGSMITH_TRACING=true` for one test (langsmith caches the environment it read)."""
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    get_env_var.cache_clear()
    yield
    monkeypatch.delenv("LANGSMITH_TRACING")
    get_env_var.cache_clear()


def test_with_langsmith_tracing_runs_carry_tags_and_metadata_and_no_secrets(
    monkeypatch: pytest.MonkeyPatch, langsmith_tracing: None
) -> None:
    session = mock.MagicMock(spec=requests.Session)
    session.request.return_value.status_code = 200
    client = telemetry.redacting_langsmith_client(
        api_key="lsv2_pt_not_a_real_key",
        api_url="http://langsmith.invalid",
        session=session,
        auto_batch_tracing=False,
    )
    monkeypatch.setattr(telemetry.callbacks, "_langsmith_client", lambda: client)
    result = run(
        _router(),
        f"I need a refund, my key is {OPENAI_KEY}",
        user_id="ada",
        session_id="s1",
        correlation_id="corr-ls",
        dlq=None,
    )
    assert result.ok
    bodies = _posted(session)
    created = [b for b in bodies if "run_type" in b]
    root = next(b for b in created if b["name"] == "switchyard.router")
    assert {"pattern:router", "correlation:corr-ls"} <= set(root["tags"])
    metadata = root["extra"]["metadata"]
    assert metadata["pattern"] == "router"
    assert metadata["correlation_id"] == "corr-ls"
    assert (metadata["user_id"], metadata["session_id"]) == ("ada", "s1")
    llm = next(b for b in created if b["run_type"] == "llm")
    assert llm["extra"]["metadata"]["langgraph_node"] == "support"
    assert llm["extra"]["metadata"]["correlation_id"] == "corr-ls"
    sent = json.dumps(bodies)
    assert OPENAI_KEY not in sent
    assert "[REDACTED:openai-key]" in sent
