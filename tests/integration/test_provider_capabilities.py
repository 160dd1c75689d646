"""What local servers and small models do, met by the real `ChatOpenAI` client: refused features,
unbounded generation, cut-off answers, tool calls written as text.

Every agent here uses `openai:local-small` through `OPENAI_BASE_URL` pointing at
`tests.faultserver`, set up to behave as llama-cpp-python's and llama.cpp's servers and a
135M-parameter model did when a user tried them (issue 22). The server's request log is the
proof: what was sent, how often, in which field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel

from switchyard import declare_capabilities
from switchyard.core.capabilities import capability_summary
from switchyard.core.errors import CapabilityError, ModelConfigError
from switchyard.core.models import LOCAL_MAX_OUTPUT_TOKENS, load_chat_model
from switchyard.core.resilience import capability_error, is_transient
from switchyard.graphs.demos import PIPELINE_STAGES, SUPERVISOR_WORKERS, SWARM_AGENTS
from switchyard.graphs.pipeline import build_pipeline_graph
from switchyard.graphs.router import build_router_graph
from switchyard.graphs.supervisor import build_supervisor_graph
from switchyard.graphs.swarm import build_swarm_graph
from switchyard.nodes.call import call_agent
from switchyard.runtime.run import run
from switchyard.state import AgentSpec, Context
from tests.faultserver import FaultServer, running

pytestmark = [pytest.mark.server, pytest.mark.enable_socket]

MODEL = "openai:local-small"
WIRE = "local-small"
REFUSE_SCHEMA = (
    500,
    "1 validation error: response_format.type: Input should be 'text' or 'json_object'",
)


class Ticket(BaseModel):
    """A structured answer."""

    summary: str
    priority: int


ran: list[str] = []


@tool
def lookup(order_id: str) -> str:
    """Looks up an order by its id."""
    ran.append(order_id)
    return f"order {order_id}: shipped"


TICKETS = AgentSpec(
    name="tickets", description="Files support tickets.", output_schema=Ticket, model=MODEL
)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultServer]:
    """A fault server every `openai:*` model of the test talks to (a 'local' endpoint)."""
    with running() as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "local")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv


def context(**changes: Any) -> Context:
    return Context(model=MODEL, **changes)


def response_types(server: FaultServer) -> list[str | None]:
    return [(r.get("response_format") or {}).get("type") for r in server.requests()]


# --- 1. structured output by what the endpoint supports ----------------------------------------


def test_a_refused_json_schema_falls_back_once_and_is_remembered(server: FaultServer) -> None:
    server.refuse["json_schema"] = REFUSE_SCHEMA
    first = call_agent(TICKETS, [HumanMessage("printer on fire")], context())
    assert isinstance(first.output, Ticket)
    # json_schema refused (a 500, not retried), then forced function calling served
    assert response_types(server) == ["json_schema", None]
    assert isinstance(server.requests()[1]["tool_choice"], dict)
    second = call_agent(TICKETS, [HumanMessage("screen cracked")], context())
    assert isinstance(second.output, Ticket)
    assert server.count() == 3  # the refusal was probed once: straight to what works


def test_json_mode_carries_the_schema_when_nothing_better_is_served(server: FaultServer) -> None:
    server.refuse["json_schema"] = REFUSE_SCHEMA
    server.refuse["forced_tool"] = (400, "tool_choice of type object is not supported")
    result = run(build_pipeline_graph(PIPELINE_STAGES).compile(), "solar panels", context=context())
    assert (result.ok, result.end_reason) == (True, "completed"), result.error
    kinds = response_types(server)
    # research: json_schema, function calling, then JSON mode; draft goes straight to JSON mode
    assert kinds[:3] == ["json_schema", None, "json_object"]
    assert kinds[3:] == ["json_object", None]
    system = server.requests()[2]["messages"][0]
    assert system["role"] == "system"
    assert '"key_points"' in system["content"]
    assert len(result.usage) == 3


def test_declared_capabilities_are_used_without_probing(server: FaultServer) -> None:
    server.refuse["json_schema"] = REFUSE_SCHEMA
    declare_capabilities(MODEL, structured_output=["json_mode"])
    reply = call_agent(TICKETS, [HumanMessage("printer on fire")], context())
    assert isinstance(reply.output, Ticket)
    assert response_types(server) == ["json_object"]
    with pytest.raises(ModelConfigError, match="structured_output must name"):
        declare_capabilities(MODEL, structured_output=["xml"])  # type: ignore[list-item]


def test_an_endpoint_refusing_every_method_is_one_clear_error(server: FaultServer) -> None:
    server.refuse = {
        "json_schema": REFUSE_SCHEMA,
        "forced_tool": (400, "tool_choice is not supported"),
        "json_object": (400, "response_format json_object is not supported"),
    }
    result = run(
        build_router_graph([TICKETS], default_agent="tickets").compile(),
        "printer on fire",
        context=context(),
    )
    assert (result.ok, result.end_reason) == (False, "agent_failed")
    assert result.error is not None
    assert "accepts no way of asking for structured output (Ticket)" in result.error
    assert server.count() == 3  # each method once: nothing retried
    with pytest.raises(CapabilityError):
        call_agent(TICKETS, [HumanMessage("again")], context())
    assert server.count() == 3  # and not sent again: everything is known refused


@pytest.mark.parametrize(
    ("status", "message"),
    [
        REFUSE_SCHEMA,
        (400, "tools param requires --jinja flag"),
        (422, "Extra inputs are not permitted"),
        (400, "'tool_choice' is not supported with this model"),
    ],
)
def test_capability_errors_are_not_transient_whatever_the_status(
    server: FaultServer, status: int, message: str
) -> None:
    server.refuse["tools"] = (status, message)
    model = load_chat_model(MODEL).bind_tools([Ticket])
    with pytest.raises(openai.APIStatusError) as caught:
        model.invoke("hello")
    assert capability_error(caught.value)
    assert not is_transient(caught.value)


def test_a_plain_500_is_still_transient(server: FaultServer) -> None:
    server.plan("500")
    with pytest.raises(openai.InternalServerError) as caught:
        load_chat_model(MODEL).invoke("hello")
    assert is_transient(caught.value)
    assert not capability_error(caught.value)


# --- 2. every call is bounded ------------------------------------------------------------------


def test_every_call_carries_max_tokens_in_both_fields(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(build_pipeline_graph(PIPELINE_STAGES).compile(), "solar panels", context=context())
    assert result.ok, result.error
    limits = {(r.get("max_tokens"), r.get("max_completion_tokens")) for r in server.requests()}
    assert limits == {(LOCAL_MAX_OUTPUT_TOKENS, LOCAL_MAX_OUTPUT_TOKENS)}
    monkeypatch.setenv("SWITCHYARD_MAX_TOKENS", "64")
    own = AgentSpec(name="brief", description="Answers briefly.", model=MODEL, max_tokens=32)
    call_agent(own, [HumanMessage("hello")], context())
    call_agent(TICKETS, [HumanMessage("hello")], context())
    last = [(r.get("max_tokens"), r.get("max_completion_tokens")) for r in server.requests()[-2:]]
    assert last == [(32, 32), (64, 64)]  # the agent's own limit, else the setting


def test_a_bad_max_tokens_setting_is_one_clear_error_before_anything_runs(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_MAX_TOKENS", "lots")
    with pytest.raises(ModelConfigError, match="SWITCHYARD_MAX_TOKENS='lots' must be a positive"):
        run(
            build_router_graph([TICKETS], default_agent="tickets").compile(),
            "hi",
            context=context(),
        )
    assert server.count() == 0


def test_the_official_endpoint_gets_only_max_completion_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    model = load_chat_model(MODEL, max_tokens=100)
    payload = model._get_request_payload([HumanMessage("hi")])  # type: ignore[attr-defined]
    assert payload["max_completion_tokens"] == 100
    assert "max_tokens" not in payload


# --- 2b. an answer cut off at the limit is reported, not passed on ------------------------------


@pytest.mark.parametrize("entry", ["run", "invoke"])
def test_a_cut_off_stage_ends_the_pipeline_as_truncated(server: FaultServer, entry: str) -> None:
    edit = AgentSpec(name="edit", description="Edits.", model=MODEL, max_tokens=16)
    graph = build_pipeline_graph([*PIPELINE_STAGES[:2], edit]).compile(checkpointer=InMemorySaver())
    server.plan("ok", "ok", "length")
    if entry == "run":
        result = run(graph, "solar panels", context=context())
        assert (result.ok, result.end_reason) == (False, "output_truncated")
        assert result.error is not None
        assert "stopped at its limit of 16 output tokens" in (result.error)
    else:
        out = graph.invoke(
            {"messages": [HumanMessage("solar panels")]},
            {"configurable": {"thread_id": "t"}},
            context=context(),
        )
        assert out["end_reason"] == "output_truncated"
        last = out["messages"][-1]
        assert isinstance(last, AIMessage)
        assert "edit" in last.text
        assert "and so on and so" not in last.text  # the cut-off text is not the answer
    assert server.count() == 3  # not retried: the same limit would cut it again


def test_a_cut_off_structured_answer_is_truncated_and_charged(server: FaultServer) -> None:
    server.plan("length")  # json_schema: the SDK raises LengthFinishReasonError
    result = run(build_pipeline_graph(PIPELINE_STAGES).compile(), "solar", context=context())
    assert (result.ok, result.end_reason) == (False, "output_truncated")
    assert server.count() == 1
    entry = result.usage["research/openai:local-small"]
    assert (entry["calls"], entry["input_tokens"], entry["output_tokens"]) == (1, 20, 10)


def test_a_cut_off_answer_goes_to_the_fallback_model(server: FaultServer) -> None:
    agent = AgentSpec(
        name="support",
        description="Answers.",
        model=MODEL,
        fallback_models=("openai:local-bigger",),
    )
    server.plan("length", model=WIRE)
    result = run(build_router_graph([agent], default_agent="support").compile(), "hello")
    assert (result.ok, result.end_reason) == (True, "completed"), result.error
    assert [m for m, _ in server.served()] == [WIRE, "local-bigger"]


# --- 3. calls written as text -------------------------------------------------------------------


def supervisor_graph() -> Any:
    return build_supervisor_graph(SUPERVISOR_WORKERS).compile(checkpointer=InMemorySaver())


@pytest.mark.parametrize("entry", ["run", "invoke"])
def test_a_handoff_written_as_text_is_carried_out(server: FaultServer, entry: str) -> None:
    server.text_calls = True
    ask = "please transfer_to_math: what is 12% of 250?"
    if entry == "run":
        result = run(supervisor_graph(), ask, context=context())
        assert (result.ok, result.end_reason) == (True, "completed"), result.error
        assert any(key.startswith("math/") for key in result.usage)
    else:
        out = supervisor_graph().invoke(
            {"messages": [HumanMessage(ask)]},
            {"configurable": {"thread_id": "t"}},
            context=context(),
        )
        assert out["end_reason"] == "completed"
        assert any(key.startswith("math/") for key in out["usage"])
    first = server.requests()[0]
    assert first["tools"]  # offered natively; the model wrote the call as text
    worker = server.requests()[1]
    assert worker["messages"][-1]["role"] == "user"  # the math worker got its task


def test_a_text_call_to_a_peer_that_was_not_offered_is_refused(server: FaultServer) -> None:
    triage = SWARM_AGENTS[0].model_copy(update={"handoffs": ("billing",)})
    billing = SWARM_AGENTS[1].model_copy(update={"handoffs": ("triage",)})
    graph = build_swarm_graph([triage, billing], default_agent="triage").compile(
        checkpointer=InMemorySaver()
    )
    server.write_call = {"name": "transfer_to_tech_support", "arguments": {"reason": "x"}}
    result = run(graph, "my app crashes", context=context())
    assert (result.ok, result.end_reason, result.agent_name) == (True, "completed", "triage")
    state = graph.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert any("transfer_to_tech_support" in refusal for refusal in state["refusals"])
    assert not state["handoffs"]
    assert server.count() == 2  # refused with an error result; the model answered next


def test_an_endpoint_without_tools_gets_them_as_text(server: FaultServer) -> None:
    server.refuse["tools"] = (500, "tools param requires --jinja flag")
    ask = "please transfer_to_math: what is 12% of 250?"
    result = run(supervisor_graph(), ask, context=context())
    assert (result.ok, result.end_reason) == (True, "completed"), result.error
    assert any(key.startswith("math/") for key in result.usage)
    bodies = server.requests()
    assert bodies[0].get("tools")
    assert not any(b.get("tools") for b in bodies[1:])
    assert "You can call these tools:" in bodies[1]["messages"][0]["content"]
    # the supervisor's second look sees the worker's report as text, not as a tool message
    assert all(m["role"] != "tool" for b in bodies[1:] for m in b["messages"])


@pytest.mark.parametrize("entry", ["run", "invoke"])
def test_a_handoff_the_model_cannot_make_ends_with_that_reason(
    server: FaultServer, entry: str
) -> None:
    server.plan("broken_text_call")
    ask = "please transfer_to_math: what is 12% of 250?"
    if entry == "run":
        result = run(supervisor_graph(), ask, context=context())
        assert (result.ok, result.end_reason) == (False, "no_handoff_capability")
        assert result.output is not None
        assert "can neither call tools" in result.output
    else:
        out = supervisor_graph().invoke(
            {"messages": [HumanMessage(ask)]},
            {"configurable": {"thread_id": "t"}},
            context=context(),
        )
        assert out["end_reason"] == "no_handoff_capability"
    assert server.count() == 1


def test_a_swarm_agent_that_cannot_hand_off_says_so(server: FaultServer) -> None:
    server.plan("broken_text_call")
    graph = build_swarm_graph(SWARM_AGENTS, default_agent="triage").compile()
    result = run(graph, "please transfer_to_billing, I was charged twice", context=context())
    assert (result.ok, result.end_reason) == (False, "no_handoff_capability")


# --- what the review found ----------------------------------------------------------------------


class Quiet:
    """A progress display that shows nothing: `run` streams the model's tokens to it."""

    def __enter__(self) -> Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def handle(self, part: Any) -> None:
        return None


def test_an_unrelated_refusal_does_not_cost_the_endpoint_its_features(server: FaultServer) -> None:
    server.refuse["temperature"] = (
        400,
        "Unsupported parameter: 'temperature' is not supported with this model.",
    )
    hot = AgentSpec(name="hot", description="d", model=MODEL, temperature=0.2, tools=[lookup])
    with pytest.raises(openai.BadRequestError):
        call_agent(hot, [HumanMessage("lookup 42")], context())
    server.refuse.clear()
    cool = AgentSpec(name="cool", description="d", model=MODEL, tools=[lookup])
    call_agent(cool, [HumanMessage("lookup 42")], context())
    assert server.requests()[-1].get("tools")  # still offered natively
    reply = call_agent(TICKETS, [HumanMessage("printer")], context())
    assert isinstance(reply.output, Ticket)
    assert response_types(server)[-1] == "json_schema"


@pytest.mark.parametrize(
    "answer",
    [
        'Here is how:\n```python\nhits = lookup(order_id="42")\n```',
        'My tools, as JSON: [{"name": "lookup", "description": "Looks up orders."}]',
        '{"name": "lookup", "arguments": {"order_id": "42"}} is what a call looks like.',
    ],
)
def test_an_answer_showing_code_or_json_is_an_answer(server: FaultServer, answer: str) -> None:
    agent = AgentSpec(name="support", description="d", model=MODEL, tools=[lookup])
    server.reply_prefix = answer
    reply = call_agent(agent, [HumanMessage("how do I call it?")], context())
    assert reply.output.startswith(answer[:20])
    assert server.count() == 1  # no tool ran, nobody was asked again


@pytest.mark.parametrize(
    "answer", ["I did not need transfer_to_math (the math worker).", "Ask me."]
)
def test_an_answer_that_mentions_a_handoff_is_an_answer(server: FaultServer, answer: str) -> None:
    server.reply_prefix = answer
    result = run(supervisor_graph(), "what is 2+2?", context=context())
    assert (result.ok, result.end_reason) == (True, "completed"), result.error


@pytest.mark.parametrize("streamed", [False, True], ids=["invoked", "streamed"])
def test_a_tool_call_cut_off_at_the_limit_is_not_run(server: FaultServer, streamed: bool) -> None:
    ran.clear()
    agent = AgentSpec(name="support", description="d", model=MODEL, tools=[lookup], max_tokens=12)
    graph = build_router_graph([agent], default_agent="support").compile()
    server.plan("length")
    progress = Quiet() if streamed else None
    result = run(graph, "lookup order 42", context=context(), progress=progress)  # type: ignore[arg-type]
    assert (result.ok, result.end_reason) == (False, "output_truncated")
    assert ran == []


def test_a_streamed_structured_answer_cut_off_is_estimated_not_free(server: FaultServer) -> None:
    server.plan("length")
    graph = build_pipeline_graph(PIPELINE_STAGES).compile()
    result = run(graph, "solar", context=context(), progress=Quiet())  # type: ignore[arg-type]
    assert result.end_reason == "output_truncated"
    entry = result.usage["research/openai:local-small"]
    assert entry["input_tokens"] > 0
    assert (entry["cost_usd"], entry["unpriced_calls"]) == (None, 1)


def test_vllms_refusal_of_tools_falls_back_to_the_text_protocol(server: FaultServer) -> None:
    server.refuse["tools"] = (
        400,
        '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
    )
    ran.clear()
    agent = AgentSpec(name="support", description="d", model=MODEL, tools=[lookup])
    reply = call_agent(agent, [HumanMessage("please lookup order 42")], context())
    assert ran  # the call written as text under the protocol was run
    assert "Result of lookup" in str(reply.output)
    assert not server.requests()[-1].get("tools")


def test_a_new_server_address_gets_a_new_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    with running() as first, running() as second:
        for srv in (first, second):
            monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
            call_agent(
                AgentSpec(name="a", description="d", model=MODEL), [HumanMessage("hi")], context()
            )
        assert (first.count(), second.count()) == (1, 1)


def test_declarations_add_up() -> None:
    declare_capabilities(MODEL, tool_calls=False)
    declare_capabilities(MODEL, structured_output=["json_mode"])
    model = load_chat_model(MODEL, api_key="local", base_url="http://127.0.0.1:9/v1")
    summary = capability_summary(model)
    assert (summary["tool_calls"], summary["structured_output"]) == (False, ["json_mode"])
