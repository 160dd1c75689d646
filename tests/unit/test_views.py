"""Per-agent views: own turns only, windows by pairs and tokens, tool calls kept with results."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately

from switchyard.state.views import agent_view, answered_by, split_turns


def turn(index: int, agent: str, *, tool: bool = False, words: int = 3) -> list[AnyMessage]:
    """A user message and its answer; with `tool`, a tool call and its result in between."""
    messages: list[AnyMessage] = [HumanMessage(" ".join([f"q{index}"] * words))]
    if tool:
        call_id = f"call-{index}"
        messages.append(
            AIMessage("", name=agent, tool_calls=[{"name": "lookup", "args": {}, "id": call_id}])
        )
        messages.append(ToolMessage(f"result {index}", tool_call_id=call_id, name="lookup"))
    messages.append(AIMessage(f"a{index}", name=agent))
    return messages


def texts(messages: Sequence[AnyMessage]) -> list[str]:
    return [m.text for m in messages]


def test_split_turns_drops_messages_before_the_first_user_message() -> None:
    messages = [SystemMessage("sys"), *turn(1, "a", tool=True), *turn(2, "b")]
    turns = split_turns(messages)
    assert [texts(t) for t in turns] == [["q1 q1 q1", "", "result 1", "a1"], ["q2 q2 q2", "a2"]]
    assert [answered_by(t) for t in turns] == [{"a"}, {"b"}]


def test_empty_conversation_gives_an_empty_view() -> None:
    assert agent_view([], "a", max_pairs=5, max_tokens=1000) == []
    assert agent_view([SystemMessage("sys")], "a", max_pairs=5, max_tokens=1000) == []


def test_agent_sees_only_its_own_earlier_turns_and_the_current_one() -> None:
    messages = [*turn(1, "support"), *turn(2, "docs"), *turn(3, "support"), HumanMessage("now")]
    view = agent_view(messages, "support", max_pairs=10, max_tokens=10_000)
    assert texts(view) == ["q1 q1 q1", "a1", "q3 q3 q3", "a3", "now"]
    other = agent_view(messages, "docs", max_pairs=10, max_tokens=10_000)
    assert texts(other) == ["q2 q2 q2", "a2", "now"]


def test_shared_view_keeps_every_turn() -> None:
    messages = [*turn(1, "support"), *turn(2, "docs"), HumanMessage("now")]
    view = agent_view(messages, None, max_pairs=10, max_tokens=10_000)
    assert view == messages


def test_max_pairs_keeps_the_newest_turns() -> None:
    messages = [*(m for i in range(1, 6) for m in turn(i, "a")), HumanMessage("now")]
    view = agent_view(messages, "a", max_pairs=2, max_tokens=10_000)
    assert texts(view) == ["q4 q4 q4", "a4", "q5 q5 q5", "a5", "now"]


def test_max_tokens_drops_the_oldest_turns_first() -> None:
    history = [turn(i, "a", words=20) for i in range(1, 5)]
    current = [HumanMessage("now")]
    per_turn = count_tokens_approximately(history[0])
    budget = count_tokens_approximately(current) + 2 * per_turn
    view = agent_view(
        [*(m for t in history for m in t), *current], "a", max_pairs=10, max_tokens=budget
    )
    assert view == [*history[2], *history[3], *current]
    assert count_tokens_approximately(view) <= budget


def test_current_turn_is_kept_whatever_its_size() -> None:
    messages = [*turn(1, "a"), HumanMessage("word " * 5_000)]
    view = agent_view(messages, "a", max_pairs=10, max_tokens=10)
    assert view == messages[-1:]


def test_a_tool_call_and_its_result_stay_together() -> None:
    messages = [*turn(1, "a", tool=True), *turn(2, "a", tool=True), HumanMessage("now")]
    # room for the last turn, the current one and part (not all) of the first turn
    budget = count_tokens_approximately(messages[4:]) + count_tokens_approximately(messages[2:4])
    assert budget < count_tokens_approximately(messages)
    view = agent_view(messages, "a", max_pairs=10, max_tokens=budget)
    assert texts(view) == ["q2 q2 q2", "", "result 2", "a2", "now"]


# --- property: windows are cut at turn boundaries only -------------------------------------

AGENTS = ("support", "docs", "code")


@st.composite
def conversations(draw: st.DrawFn) -> list[AnyMessage]:
    """Threads of turns: each a user message, then replies by one agent, some with tool calls."""
    messages: list[AnyMessage] = []
    call_index = 0
    for index in range(draw(st.integers(min_value=1, max_value=8))):
        messages.append(HumanMessage(f"question {index} " + "x " * draw(st.integers(0, 40))))
        agent = draw(st.sampled_from(AGENTS))
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            calls = []
            for _ in range(draw(st.integers(min_value=1, max_value=2))):
                call_index += 1
                calls.append({"name": "lookup", "args": {}, "id": f"call-{call_index}"})
            messages.append(AIMessage("", name=agent, tool_calls=calls))
            messages.extend(
                ToolMessage("y " * draw(st.integers(0, 30)), tool_call_id=c["id"], name="lookup")
                for c in calls
            )
        if draw(st.booleans()):  # else the turn ends on a tool result (still in progress)
            messages.append(AIMessage(f"answer {index}", name=agent))
    if draw(st.booleans()):  # a fresh question being answered now
        messages.append(HumanMessage("the current question"))
    return messages


def current_turn(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    last_user = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    return list(messages[last_user:])


@settings(max_examples=150, deadline=None)
@given(
    messages=conversations(),
    agent=st.sampled_from((*AGENTS, None)),
    max_pairs=st.integers(min_value=0, max_value=6),
    max_tokens=st.integers(min_value=0, max_value=600),
)
def test_trimming_never_splits_a_tool_call_from_its_result(
    messages: list[AnyMessage], agent: str | None, max_pairs: int, max_tokens: int
) -> None:
    view = agent_view(messages, agent, max_pairs=max_pairs, max_tokens=max_tokens)
    ids = [id(m) for m in view]

    # a subsequence of the thread, in order, ending with the whole current turn
    positions = [next(i for i, m in enumerate(messages) if m is v) for v in view]
    assert positions == sorted(positions)
    current = current_turn(messages)
    assert [id(m) for m in view[-len(current) :]] == [id(m) for m in current]

    calls_in_view = {call["id"] for m in view if isinstance(m, AIMessage) for call in m.tool_calls}
    results_in_view = {m.tool_call_id for m in view if isinstance(m, ToolMessage)}
    all_results = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    # every result has its call, and every call whose result exists has it
    assert results_in_view <= calls_in_view
    assert {c for c in calls_in_view if c in all_results} == results_in_view

    history = view[: len(view) - len(current)]
    kept_turns = split_turns(history)
    assert len(kept_turns) <= max_pairs
    if agent is not None:
        assert all(agent in answered_by(t) for t in kept_turns)
    if history:
        assert count_tokens_approximately(view) <= max_tokens
    assert len(set(ids)) == len(ids)
