"""Handoff tools and the Commands that carry out, refuse or finish a handoff (nodes/handoff.py)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END
from pydantic import BaseModel

from switchyard.core.errors import AgentConfigError
from switchyard.graphs.demos import SUPERVISOR_WORKERS, SWARM_AGENTS
from switchyard.nodes.agent import AgentReply, call_agent
from switchyard.nodes.handoff import (
    TaskArgs,
    TransferArgs,
    close_open_calls,
    current_turn,
    finish,
    handoff_target,
    handoff_tool_name,
    make_handoff_tool,
    make_handoff_tools,
    stop,
    transfer,
)
from switchyard.state.agents import AgentSpec

BILLING = AgentSpec(name="billing", description="Invoices, charges and refunds.")


def call(name: str, call_id: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def reply_with(*calls: dict[str, Any], refusals: tuple[str, ...] = ()) -> AgentReply:
    ai = AIMessage("", name="triage", tool_calls=list(calls))
    return AgentReply(
        messages=[ai],
        output="",
        usage={},
        handoff=calls[0],
        refusals=list(refusals),
    )


def required_args(tool: BaseTool) -> list[str]:
    schema = tool.get_input_schema()
    assert issubclass(schema, BaseModel)
    required: list[str] = schema.model_json_schema().get("required", [])
    return required


def test_a_handoff_tool_is_named_after_its_peer_and_described_by_it() -> None:
    tool = make_handoff_tool(BILLING, args_schema=TaskArgs)

    assert tool.name == handoff_tool_name("billing") == "transfer_to_billing"
    assert tool.description == "Transfer to billing. Invoices, charges and refunds."
    assert required_args(tool) == ["task"]
    assert tool.invoke({"task": "refund"}) == "Transferred to billing."


def test_swarm_handoff_arguments_are_optional() -> None:
    tool = make_handoff_tool(BILLING, args_schema=TransferArgs)

    assert required_args(tool) == []
    assert TransferArgs.model_validate({}).reason == ""


def test_a_peer_name_too_long_for_providers_is_refused_at_build_time() -> None:
    long_name = "a" * 53
    with pytest.raises(AgentConfigError, match="at most 52 characters"):
        make_handoff_tool(AgentSpec(name=long_name, description="x"), args_schema=TransferArgs)
    assert make_handoff_tool(AgentSpec(name="a" * 52, description="x"), args_schema=TransferArgs)


def test_handoff_target_reads_the_peer_from_the_tool() -> None:
    tools = make_handoff_tools(SWARM_AGENTS[1:])

    assert handoff_target(call("transfer_to_tech_support", "c1"), tools) == "tech_support"
    with pytest.raises(KeyError, match="transfer_to_triage"):
        handoff_target(call("transfer_to_triage", "c1"), tools)


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ("Calculate the percentage growth from 120 to 150", "transfer_to_math"),
        ("Research the history of the transistor", "transfer_to_research"),
        ("Write a short email to my team", "transfer_to_writer"),
    ],
)
def test_the_offline_model_hands_off_to_the_peer_whose_description_fits(
    request_text: str, expected: str
) -> None:
    supervisor = AgentSpec(name="supervisor", description="Delegates work.")
    tools = make_handoff_tools(SUPERVISOR_WORKERS, args_schema=TaskArgs)

    reply = call_agent(supervisor, [HumanMessage(request_text)], handoff_tools=tools)

    assert reply.handoff is not None
    assert reply.handoff["name"] == expected
    assert request_text in TaskArgs.model_validate(reply.handoff["args"]).task


def test_the_offline_model_answers_when_no_peer_fits() -> None:
    tools = make_handoff_tools(SUPERVISOR_WORKERS, args_schema=TaskArgs)

    reply = call_agent(SWARM_AGENTS[0], [HumanMessage("hello there")], handoff_tools=tools)

    assert reply.handoff is None
    assert isinstance(reply.output, str)


def test_current_turn_counts_user_messages() -> None:
    assert current_turn([]) == 0
    assert current_turn([HumanMessage("a"), AIMessage("b"), HumanMessage("c")]) == 2


def test_close_open_calls_leaves_a_complete_transcript_alone() -> None:
    messages: list[AnyMessage] = [
        HumanMessage("hi"),
        AIMessage("", tool_calls=[call("t", "c1")]),
        ToolMessage("done", tool_call_id="c1"),
        AIMessage("answer"),
    ]

    assert close_open_calls(messages) == messages


def test_close_open_calls_answers_dangling_calls_where_their_results_belong() -> None:
    messages: list[AnyMessage] = [
        HumanMessage("hi"),
        AIMessage("", tool_calls=[call("a", "c1"), call("b", "c2")]),
        ToolMessage("done", tool_call_id="c2"),
        HumanMessage("again"),
        AIMessage("", tool_calls=[call("transfer_to_x", "c3")]),
    ]

    closed = close_open_calls(messages)

    assert [type(m).__name__ for m in closed] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "ToolMessage",
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
    ]
    placeholders = [m for m in closed if isinstance(m, ToolMessage) and m.status == "error"]
    assert [(m.tool_call_id, m.name) for m in placeholders] == [
        ("c1", "a"),
        ("c3", "transfer_to_x"),
    ]
    assert placeholders[0].text.startswith("no result")


def test_transfer_answers_the_handoff_and_every_other_call_of_the_message() -> None:
    reply = reply_with(call("transfer_to_billing", "c1"), call("lookup", "c2"))

    command = transfer(
        reply, agent="triage", goto="billing", result="Transferred to billing.", update={"k": 1}
    )

    assert command.goto == "billing"
    assert isinstance(command.update, dict)
    tool_messages = command.update["messages"][1:]
    assert [(m.tool_call_id, m.status, m.text) for m in tool_messages] == [
        ("c1", "success", "Transferred to billing."),
        (
            "c2",
            "error",
            "not run: triage handed off to billing in the same message; call it again after "
            "the handoff if it is still needed",
        ),
    ]
    assert command.update["k"] == 1
    assert command.update["refusals"] == []


def test_transfer_without_a_result_leaves_the_handoff_for_the_peer_to_answer() -> None:
    reply = reply_with(call("transfer_to_billing", "c1"), refusals=("refused: x",))

    command = transfer(reply, agent="triage", goto="billing", result=None, notes=("note",))

    assert isinstance(command.update, dict)
    assert command.update["messages"] == reply.messages
    assert command.update["refusals"] == ["refused: x", "note"]


def test_stop_refuses_the_handoff_and_explains_in_a_message_named_after_the_agent() -> None:
    reply = reply_with(call("transfer_to_billing", "c1"))

    command = stop(
        reply,
        agent="triage",
        end_reason="max_handoffs",
        refusal="refused: too many",
        explanation="Stopped.",
    )

    assert command.goto == END
    assert isinstance(command.update, dict)
    _, refused, explanation = command.update["messages"]
    assert (refused.tool_call_id, refused.status, refused.text) == (
        "c1",
        "error",
        "refused: too many",
    )
    assert (explanation.name, explanation.text) == ("triage", "Stopped.")
    assert command.update["end_reason"] == "max_handoffs"
    assert command.update["refusals"] == ["refused: too many"]


def test_finish_ends_the_run_with_the_answer() -> None:
    reply = AgentReply(messages=[AIMessage("done", name="triage")], output="done", usage={})

    command = finish(reply, update={"active_agent": "triage"})

    assert command.goto == END
    assert command.update == {
        "messages": reply.messages,
        "usage": {},
        "refusals": [],
        "end_reason": "completed",
        "active_agent": "triage",
    }
