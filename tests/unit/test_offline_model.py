"""The offline model: deterministic replies, tool choice, structured output, usage, failures."""

from __future__ import annotations

import datetime
import uuid
from enum import StrEnum
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from switchyard.core.offline import (
    OFFLINE_MARKER,
    OfflineChatModel,
    SimulatedProviderError,
    keywords,
    sample_from_schema,
)

SUPPORT_PROMPT = SystemMessage("You are the customer support agent. Be precise.")


@tool
def refund_payment(payment_id: str) -> str:
    """Refund a customer's payment."""
    return f"refunded {payment_id}"


@tool
def search_docs(query: str) -> str:
    """Search the API documentation."""
    return f"results for {query}"


TOOLS = [refund_payment, search_docs]


def test_same_input_gives_the_same_reply() -> None:
    messages = [SUPPORT_PROMPT, HumanMessage("I need a refund for my last payment")]
    first = OfflineChatModel().invoke(messages)
    second = OfflineChatModel().invoke(messages)
    assert first.content == second.content
    assert first.usage_metadata == second.usage_metadata


def test_reply_is_marked_and_reflects_role_and_request() -> None:
    reply = OfflineChatModel().invoke(
        [SUPPORT_PROMPT, HumanMessage("I need a refund for my last payment")]
    )
    assert isinstance(reply, AIMessage)
    assert reply.text.startswith(OFFLINE_MARKER)
    assert "Customer support agent:" in reply.text
    assert "'I need a refund for my last payment'" in reply.text
    assert "(key terms: need, refund, last, payment)" in reply.text


def test_reply_without_system_prompt_answers_as_assistant() -> None:
    reply = OfflineChatModel().invoke("hello there")
    assert reply.text.startswith(f"{OFFLINE_MARKER} Assistant: ")


def test_different_requests_give_different_replies() -> None:
    model = OfflineChatModel()
    assert model.invoke("refund please").content != model.invoke("api docs please").content


def test_usage_metadata_is_the_estimated_token_count() -> None:
    messages = [SUPPORT_PROMPT, HumanMessage("I was charged twice")]
    reply = OfflineChatModel().invoke(messages)
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == count_tokens_approximately(messages)
    assert reply.usage_metadata["output_tokens"] == count_tokens_approximately(
        [AIMessage(reply.content)]
    )
    assert (
        reply.usage_metadata["total_tokens"]
        == reply.usage_metadata["input_tokens"] + reply.usage_metadata["output_tokens"]
    )
    assert reply.response_metadata == {"model_name": "offline", "model_provider": "offline"}


def test_keywords_drop_stop_words_and_repeats() -> None:
    assert keywords("How do I get a refund, a REFUND for my payment?") == [
        "get",
        "refund",
        "payment",
    ]


@pytest.mark.parametrize(
    ("request_text", "expected_tool"),
    [
        ("please refund my payment", "refund_payment"),
        ("search the api documentation", "search_docs"),
    ],
)
def test_bind_tools_picks_the_matching_tool(request_text: str, expected_tool: str) -> None:
    reply = OfflineChatModel().bind_tools(TOOLS).invoke(request_text)
    assert reply.content == ""
    assert [call["name"] for call in reply.tool_calls] == [expected_tool]
    (call,) = reply.tool_calls
    assert call["id"] is not None
    assert call["id"].startswith("call_")
    assert list(call["args"]) == (
        ["payment_id"] if expected_tool == "refund_payment" else ["query"]
    )
    # the arguments carry the request, so traces show what the tool would have been asked
    assert request_text in next(iter(call["args"].values()))


def test_bind_tools_calls_no_tool_when_nothing_matches() -> None:
    reply = OfflineChatModel().bind_tools(TOOLS).invoke("hello there")
    assert reply.tool_calls == []
    assert reply.text.startswith(OFFLINE_MARKER)


@pytest.mark.parametrize("choice", ["any", "required", True])
def test_forced_tool_choice_always_calls_a_tool(choice: Any) -> None:
    reply = OfflineChatModel().bind_tools(TOOLS, tool_choice=choice).invoke("hello there")
    # nothing matches, so the first tool wins the tie
    assert [call["name"] for call in reply.tool_calls] == ["refund_payment"]


@pytest.mark.parametrize(
    "choice", ["search_docs", {"type": "function", "function": {"name": "search_docs"}}]
)
def test_named_tool_choice_calls_that_tool(choice: Any) -> None:
    reply = OfflineChatModel().bind_tools(TOOLS, tool_choice=choice).invoke("refund my payment")
    assert [call["name"] for call in reply.tool_calls] == ["search_docs"]


def test_tool_choice_none_answers_in_text() -> None:
    reply = OfflineChatModel().bind_tools(TOOLS, tool_choice="none").invoke("refund my payment")
    assert reply.tool_calls == []
    assert reply.text.startswith(OFFLINE_MARKER)


def test_tool_call_ids_are_deterministic() -> None:
    model = OfflineChatModel().bind_tools(TOOLS)
    assert (
        model.invoke("refund my payment").tool_calls == model.invoke("refund my payment").tool_calls
    )


def test_after_a_tool_result_the_model_answers_with_it() -> None:
    messages = [
        SUPPORT_PROMPT,
        HumanMessage("please refund my payment"),
        AIMessage("", tool_calls=[{"name": "refund_payment", "args": {}, "id": "c1"}]),
        ToolMessage("refunded p-42", tool_call_id="c1", name="refund_payment"),
    ]
    reply = OfflineChatModel().bind_tools(TOOLS).invoke(messages)
    assert reply.tool_calls == []
    assert reply.text == (
        f"{OFFLINE_MARKER} Customer support agent: the tool `refund_payment` returned "
        "'refunded p-42'; a real model would now use it to answer 'please refund my payment'."
    )


class Priority(StrEnum):
    LOW = "low"
    HIGH = "high"
    URGENT = "urgent"


class LineItem(BaseModel):
    sku: str = Field(min_length=3, max_length=10)
    quantity: int = Field(ge=1, le=9)


class Ticket(BaseModel):
    """A support ticket."""

    priority: Priority
    channel: Literal["email", "phone", "chat"]
    items: list[LineItem] = Field(min_length=2)
    tags: list[str]
    note: str | None = None
    owner: LineItem | None
    score: float = Field(gt=0, lt=1)
    rank: int = Field(gt=0, le=1)
    step: int = Field(multiple_of=5, ge=1, le=12)
    due: datetime.date
    created: datetime.datetime
    ticket_id: uuid.UUID
    pair: tuple[int, str]
    counts: dict[str, int]
    escalate: bool


def test_structured_output_returns_a_valid_nested_instance() -> None:
    ticket = OfflineChatModel().with_structured_output(Ticket).invoke("urgent: call me by phone")
    assert isinstance(ticket, Ticket)
    # enum and Literal members are chosen to match the request
    assert ticket.priority is Priority.URGENT
    assert ticket.channel == "phone"
    assert len(ticket.items) == 2
    assert all(isinstance(item, LineItem) for item in ticket.items)
    assert isinstance(ticket.owner, LineItem)
    assert ticket.note is None
    assert 0 < ticket.score < 1
    assert ticket.rank == 1
    assert ticket.step == 5
    assert ticket.pair[0] == 1


def test_structured_output_is_deterministic() -> None:
    model = OfflineChatModel().with_structured_output(Ticket)
    assert model.invoke("urgent: call me by phone") == model.invoke("urgent: call me by phone")


def test_structured_output_with_raw_reports_usage() -> None:
    output = (
        OfflineChatModel()
        .with_structured_output(LineItem, include_raw=True)
        .invoke([SUPPORT_PROMPT, HumanMessage("two boxes")])
    )
    assert isinstance(output, dict)
    assert output["parsing_error"] is None
    assert isinstance(output["parsed"], LineItem)
    raw = output["raw"]
    assert [call["name"] for call in raw.tool_calls] == ["LineItem"]
    assert raw.usage_metadata["input_tokens"] > 0
    assert raw.usage_metadata["output_tokens"] > 0


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"const": "x"}, "x"),
        ({"type": "integer", "exclusiveMinimum": 2, "maximum": 3}, 3),
        ({"type": "integer", "minimum": 0, "exclusiveMaximum": 1}, 0),
        ({"type": "number", "minimum": 2}, 3.0),
        ({"type": "number", "maximum": 2}, 1.0),
        ({"type": "number"}, 1.0),
        ({"type": "integer", "multipleOf": 4}, 0),
        ({"type": "boolean"}, False),
        ({"type": "null"}, None),
        ({"type": ["null", "integer"], "minimum": 7, "maximum": 7}, 7),
        ({"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 4, "maximum": 4}]}, 4),
        ({"allOf": [{"type": "integer", "minimum": 6, "maximum": 6}]}, 6),
        ({"type": "string", "default": "d"}, "d"),
        ({"type": "string", "maxLength": 4}, "(sim"),
        ({"type": "string", "format": "email"}, "user@example.com"),
        ({"type": "array", "items": {"type": "boolean"}, "minItems": 3}, [False] * 3),
        ({"type": "array", "items": {"type": "boolean"}, "maxItems": 0}, []),
    ],
)
def test_sample_from_schema_meets_each_keyword(schema: dict[str, Any], expected: Any) -> None:
    assert sample_from_schema(schema, "hello") == expected


def test_sample_from_schema_resolves_refs_and_stops_deep_recursion() -> None:
    class Node(BaseModel):
        label: str
        child: Node

    value = sample_from_schema(Node.model_json_schema(), "tree")
    depth = 0
    while value:
        assert value["label"].startswith("(simulated label) tree")
        value = value["child"]
        depth += 1
    assert depth == 7  # objects deeper than 6 levels are left empty


def test_fail_on_calls_raises_on_schedule_with_status() -> None:
    model = OfflineChatModel(fail_on_calls=(1, 3), failure_status=429)
    with pytest.raises(SimulatedProviderError, match=r"call 1 \(HTTP 429\)") as raised:
        model.invoke("hi")
    assert raised.value.status_code == 429
    assert model.invoke("hi").text.startswith(OFFLINE_MARKER)
    with pytest.raises(SimulatedProviderError, match="call 3"):
        model.invoke("hi")
    assert model.invoke("hi").text.startswith(OFFLINE_MARKER)
    assert model.calls == 4


def test_simulated_failures_default_to_http_503() -> None:
    with pytest.raises(SimulatedProviderError) as raised:
        OfflineChatModel(fail_on_calls=(1,)).invoke("hi")
    assert raised.value.status_code == 503


async def test_async_path_matches_sync_and_counts_calls() -> None:
    messages = [SUPPORT_PROMPT, HumanMessage("I was charged twice")]
    model = OfflineChatModel(fail_on_calls=(1,), failure_status=500)
    with pytest.raises(SimulatedProviderError) as raised:
        await model.ainvoke(messages)
    assert raised.value.status_code == 500
    reply = await model.ainvoke(messages)
    assert reply.content == OfflineChatModel().invoke(messages).content
    assert model.calls == 2
    tool_reply = await OfflineChatModel().bind_tools(TOOLS).ainvoke("refund my payment")
    assert [call["name"] for call in tool_reply.tool_calls] == ["refund_payment"]
    parsed = await OfflineChatModel().with_structured_output(LineItem).ainvoke("two boxes")
    assert isinstance(parsed, LineItem)
