"""Tool calls written as text are read as calls; everything else stays an answer."""

from __future__ import annotations

import pickle

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.messages.utils import convert_to_openai_messages
from langchain_core.tools import tool

from switchyard.core.errors import OutputTruncatedError
from switchyard.core.tokens import truncated
from switchyard.nodes.textcalls import (
    as_calls,
    as_text_transcript,
    names_a_call,
    protocol_prompt,
    text_calls,
)
from switchyard.state.outcomes import end_reason_for

NAMES = {"transfer_to_math", "get_weather"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"name": "transfer_to_math", "arguments": {"task": "2+3"}}',
            [("transfer_to_math", {"task": "2+3"})],
        ),
        (
            'Sure.\n```json\n{"name":"get_weather","parameters":{"city":"Oslo"}}\n```',
            [("get_weather", {"city": "Oslo"})],
        ),
        (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
            [("get_weather", {"city": "Paris"})],
        ),
        (
            '{"tool_call": {"name": "transfer_to_math", "arguments": "{\\"task\\": \\"a\\"}"}}',
            [("transfer_to_math", {"task": "a"})],
        ),
        (
            '{"type": "function", "function": {"name": "get_weather", "arguments": {}}}',
            [("get_weather", {})],
        ),
        (
            '[{"name": "get_weather", "arguments": {"city": "A"}}, '
            '{"name": "get_weather", "arguments": {"city": "B"}}]',
            [("get_weather", {"city": "A"}), ("get_weather", {"city": "B"})],
        ),
        (
            'transfer_to_math(task="add (2) and 3")',
            [("transfer_to_math", {"task": "add (2) and 3"})],
        ),
        # a handoff to a peer that was not offered is read, so it is refused like a native one
        ('{"name": "transfer_to_hr", "arguments": {}}', [("transfer_to_hr", {})]),
    ],
)
def test_calls_written_as_text_are_read(
    text: str, expected: list[tuple[str, dict[str, object]]]
) -> None:
    calls = text_calls(text, NAMES)
    assert [(c["name"], c["args"]) for c in calls] == expected
    assert all(c["id"] and c["id"].startswith("call_") for c in calls)


@pytest.mark.parametrize(
    "text",
    [
        "The answer is 5.",
        '{"summary": "a JSON answer", "priority": 2}',
        '{"name": "delete_everything", "arguments": {}}',  # not offered, not a handoff
        '{"name": "get_weather", "arguments": "not json"}',
        "get_weather(city=__import__('os').system('true'))",  # never evaluated
        "Results so far: transfer_to_math reported 30.",
        'Here is how:\n```python\nhits = get_weather(city="Oslo")\n```',
        'Call it as get_weather(city="Oslo") and you get the weather.',
        '{"name": "get_weather", "arguments": {"city": "Oslo"}} is what a call looks like.',
        "A long answer. " * 20 + '\n```json\n{"name": "get_weather", "arguments": {}}\n```',
    ],
)
def test_other_text_is_an_answer(text: str) -> None:
    assert text_calls(text, NAMES) == []
    assert as_calls(AIMessage(text), NAMES).content == text


def test_a_reply_with_a_text_call_becomes_a_native_call() -> None:
    reply = AIMessage('{"name": "get_weather", "arguments": {"city": "Oslo"}}', name="a")
    native = as_calls(reply, NAMES)
    assert native.content == ""
    assert native.name == "a"
    assert [(c["name"], c["args"]) for c in native.tool_calls] == [
        ("get_weather", {"city": "Oslo"})
    ]
    assert native.additional_kwargs["switchyard_text_calls"] is True
    assert reply.content != ""  # the original is left as it was
    already = AIMessage("", tool_calls=[{"name": "get_weather", "args": {}, "id": "1"}])
    assert as_calls(already, NAMES) is already


def test_an_attempted_handoff_that_cannot_be_read_is_named() -> None:
    assert names_a_call('{"name": "transfer_to_math", "arguments": {"task": ', NAMES) == (
        "transfer_to_math"
    )
    assert names_a_call("transfer_to_math(task=", NAMES) == "transfer_to_math"
    assert names_a_call("<tool_call>transfer_to_math", NAMES) == "transfer_to_math"
    assert names_a_call("math reported via transfer_to_math: 30", NAMES) is None
    assert names_a_call('{"name": "get_weather", ', NAMES) is None  # tools are not handoffs


def test_the_text_protocol_describes_tools_and_writes_history_as_text() -> None:
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    prompt = protocol_prompt([get_weather])
    assert '"name": "get_weather"' in prompt
    assert '"city"' in prompt
    history = [
        HumanMessage("weather in Oslo?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "c1"}]),
        ToolMessage("sunny", tool_call_id="c1", name="get_weather"),
    ]
    written = as_text_transcript(history)
    roles = [m["role"] for m in convert_to_openai_messages(written)]
    assert roles == ["user", "assistant", "user"]
    assert text_calls(written[1].text, NAMES)[0]["args"] == {"city": "Oslo"}
    assert written[2].text == "Result of get_weather: sunny"


@pytest.mark.parametrize(
    ("metadata", "cut"),
    [
        ({"finish_reason": "length"}, True),
        ({"stop_reason": "max_tokens"}, True),
        ({"stopReason": "max_tokens"}, True),
        ({"done_reason": "length"}, True),
        ({"finish_reason": "MAX_TOKENS"}, True),
        ({"incomplete_details": {"reason": "max_output_tokens"}}, True),
        ({"finish_reason": "stop"}, False),
        ({"finish_reason": "tool_calls"}, False),
        ({}, False),
    ],
)
def test_a_reply_cut_off_at_its_limit_is_recognised(metadata: dict[str, object], cut: bool) -> None:
    assert truncated(AIMessage("x", response_metadata=metadata)) is cut


def test_a_truncation_error_survives_pickling_with_its_reply() -> None:
    reply = AIMessage(
        "cut", usage_metadata={"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}
    )
    error = OutputTruncatedError("cut off", agent="a", max_tokens=5, partial="cut", reply=reply)
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.agent, again.max_tokens, again.partial) == ("cut off", "a", 5, "cut")
    assert again.reply.usage_metadata["output_tokens"] == 5
    assert end_reason_for(again) == "output_truncated"


def test_under_the_text_protocol_a_call_anywhere_in_the_text_counts() -> None:
    text = 'I will check. get_weather(city="Oslo") Then I answer.'
    assert text_calls(text, NAMES) == []
    assert [c["args"] for c in text_calls(text, NAMES, anywhere=True)] == [{"city": "Oslo"}]
    json_inside = 'Checking: {"name": "get_weather", "arguments": {"city": "Rome"}} now.'
    assert [c["args"] for c in text_calls(json_inside, NAMES, anywhere=True)] == [{"city": "Rome"}]
    native = as_calls(AIMessage(text), NAMES, anywhere=True)
    assert native.tool_calls[0]["name"] == "get_weather"


@pytest.mark.parametrize(
    "text",
    [
        "I did not need transfer_to_math (the math worker).",
        "You could use transfer_to_math() later.",
        "transfer_to_math: done",
    ],
)
def test_mentioning_a_handoff_is_not_an_attempt(text: str) -> None:
    assert names_a_call(text, NAMES) is None
