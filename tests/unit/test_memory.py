"""Summarised memory: "last N turns + key facts", and an oversized current turn cut to the window.

Long conversations with scripted models, over several turns of one session (`run()`) or one
thread (`graph.invoke`): the turns an agent's window drops are summarised once each by the
summariser (a scripted `fake:memo` here), into notes kept in `agent_state`; the agent sees its
system prompt, its notes, then its last N turns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel

from switchyard import (
    AgentSpec,
    Context,
    build_hierarchical_graph,
    build_router_graph,
    build_supervisor_graph,
    build_swarm_graph,
)
from switchyard.core.errors import AgentConfigError, ConfigError
from switchyard.core.offline import SimulatedProviderError
from switchyard.nodes.memory import extract, parse_summary, remembered_view
from switchyard.runtime.run import run
from switchyard.state.agents import check_agents
from switchyard.state.memory import EarlierTurns, MemoryNotes, MemoryPolicy, add_facts
from switchyard.state.views import cut_turn, split_turns
from tests.fakes import Call, scripted
from tests.patterns import PATTERNS, helper

pytestmark = pytest.mark.usefixtures("eager")

FACT = "My order number is 48213."
MEMO = MemoryPolicy(model="fake:memo")


def question(turn: int) -> str:
    """What the user says on `turn`: the key fact on the first, a question after."""
    return f"{FACT} Please keep it in mind." if turn == 1 else f"Question number {turn}, please?"


def summary(turn: int) -> str:
    """The scripted summariser's answer when turn `turn` drops out."""
    fact = f"- {FACT}" if turn == 1 else "- None"
    return f"## SUMMARY\nThe user asked things up to turn {turn}.\n\n## KEY FACTS\n{fact}"


def remembering(**changes: Any) -> AgentSpec:
    """The helper on a scripted model, a window of 3 turns, summarised by `fake:memo`."""
    return helper(**{"model": "fake:helper", "max_message_pairs": 3, "memory": MEMO, **changes})


def router(spec: AgentSpec) -> Pregel[Any, Any, Any, Any]:
    return build_router_graph([spec], default_agent=spec.name).compile(checkpointer=InMemorySaver())


def swarm(spec: AgentSpec) -> Pregel[Any, Any, Any, Any]:
    return build_swarm_graph([spec], default_agent=spec.name).compile(checkpointer=InMemorySaver())


CONVERSATIONS = {"router": router, "swarm": swarm}
"""Patterns whose agents answer in the conversation (the supervisor and the hierarchical manager
have tests of their own below)."""


def converse(
    graph: Pregel[Any, Any, Any, Any],
    turns: int,
    entry: str,
    *,
    say: Any = question,
    context: Context | None = None,
) -> dict[str, Any]:
    """`turns` turns of one session (`run`) or thread (`invoke`); the thread's last state."""
    session, thread = uuid4().hex, uuid4().hex
    for turn in range(1, turns + 1):
        if entry == "run":
            result = run(graph, say(turn), user_id="ada", session_id=session, context=context)
            assert result.ok, result.error
            config: Any = {"configurable": {"thread_id": result.thread_id}}
        else:
            config = {"configurable": {"thread_id": thread}}
            graph.invoke({"messages": [HumanMessage(say(turn))]}, config, context=context)
    return dict(graph.get_state(config).values)


def seen(call: Call) -> list[BaseMessage]:
    """What the agent saw on a call, without its own system prompt."""
    return call.messages[1:]


def notes_of(state: dict[str, Any], agent: str = "helper") -> MemoryNotes:
    return MemoryNotes.of(state["agent_state"][agent]["memory"])


# --- the key fact of turn 1 survives; one summary per dropped turn -------------------------


@pytest.mark.parametrize("entry", ["run", "invoke"])
@pytest.mark.parametrize("pattern", list(CONVERSATIONS))
def test_the_key_fact_of_turn_1_survives_nine_turns(pattern: str, entry: str) -> None:
    replies = [f"Answer {turn}." for turn in range(1, 10)]
    with (
        scripted("fake:helper", *replies) as agent,
        scripted("fake:memo", *(summary(turn) for turn in range(1, 6))) as memo,
    ):
        state = converse(CONVERSATIONS[pattern](remembering()), 9, entry)
    # turns 1..5 dropped out of a 3-turn window, one at a time: one summary each
    assert len(memo.calls) == 5
    assert FACT in memo.calls[0].texts[0]  # turn 1 was what the first summary was asked about
    notes = notes_of(state)
    assert notes.turns == 5
    assert FACT in notes.facts
    last = seen(agent.calls[-1])
    assert isinstance(last[0], SystemMessage)
    assert FACT in last[0].text
    assert "Summary of 5 earlier turn(s)" in last[0].text
    assert [m.text for m in last[1:]] == [
        "Question number 6, please?",
        "Answer 6.",
        "Question number 7, please?",
        "Answer 7.",
        "Question number 8, please?",
        "Answer 8.",
        "Question number 9, please?",
    ]
    # the summariser's calls are charged to the agent, in the ledger
    assert state["usage"]["helper/fake:memo"]["calls"] == 5


def test_the_async_path_summarises_once_per_dropped_turn_too() -> None:
    async def converse_async(graph: Pregel[Any, Any, Any, Any]) -> None:
        config: Any = {"configurable": {"thread_id": uuid4().hex}}
        for turn in range(1, 7):
            await graph.ainvoke({"messages": [HumanMessage(question(turn))]}, config)

    graph = router(remembering())
    with (
        scripted("fake:helper", *[f"Answer {turn}." for turn in range(1, 7)]) as agent,
        scripted("fake:memo", summary(1), summary(2)) as memo,
    ):
        asyncio.run(converse_async(graph))
    assert len(memo.calls) == 2
    assert FACT in seen(agent.calls[-1])[0].text


@tool
def lookup(query: str) -> str:
    """Look the query up in the order system."""
    return f"record for {query}"


def tool_round(turn: int) -> list[AIMessage | str]:
    call = {"name": "lookup", "args": {"query": f"q{turn}"}, "id": f"call-{turn}"}
    return [AIMessage("", tool_calls=[call]), f"Answer {turn}."]


@pytest.mark.parametrize("entry", ["run", "invoke"])
def test_the_summary_is_written_once_per_dropped_turn_not_per_model_call(entry: str) -> None:
    replies = [reply for turn in range(1, 10) for reply in tool_round(turn)]
    with (
        scripted("fake:helper", *replies) as agent,
        scripted("fake:memo", *(summary(turn) for turn in range(1, 6))) as memo,
    ):
        state = converse(router(remembering(tools=(lookup,))), 9, entry)
    assert len(agent.calls) == 18  # two model calls a turn ...
    assert len(memo.calls) == 5  # ... and one summary per dropped turn
    assert FACT in notes_of(state).facts
    # the second call of a turn sees the same notes, and each tool call with its result
    second = seen(agent.calls[-1])
    assert FACT in second[0].text
    calls = {c["id"] for m in second if isinstance(m, AIMessage) for c in m.tool_calls}
    results = {m.tool_call_id for m in second if isinstance(m, ToolMessage)}
    assert calls == results == {"call-6", "call-7", "call-8", "call-9"}
    # the dropped tool turn reached the summariser whole
    assert "record for q1" in memo.calls[0].texts[0]


def test_the_offline_model_keeps_the_key_fact_without_calling_a_model() -> None:
    spec = helper(max_message_pairs=3)  # the offline model, memory on by default
    state = converse(router(spec), 9, "run")
    notes = notes_of(state)
    assert notes.turns == 5
    assert any("48213" in fact for fact in notes.facts)
    assert "Question number 5" in notes.summary
    assert list(state["usage"]) == ["helper/offline"]  # no summariser call was made
    assert state["usage"]["helper/offline"]["calls"] == 9


def test_the_summary_prompt_is_langchains_with_the_facts_so_far() -> None:
    with (
        scripted("fake:helper", *[f"Answer {turn}." for turn in range(1, 7)]),
        scripted("fake:memo", summary(1), summary(2)) as memo,
    ):
        converse(router(remembering()), 6, "invoke")
    second = memo.calls[1].texts[0]
    assert "Context Extraction Assistant" in second  # SummarizationMiddleware's prompt
    assert f"Key facts already recorded (do not repeat them):\n- {FACT}" in second
    assert "Question number 2" in second
    assert FACT not in second.split("<messages>")[-1]  # turn 1 is not summarised again


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec_memory", "context"),
    [(False, None), (MEMO, Context(memory=False))],
    ids=["agent-off", "run-off"],
)
def test_memory_can_be_switched_off(spec_memory: Any, context: Context | None) -> None:
    spec = helper(model="fake:helper", max_message_pairs=3, memory=spec_memory)
    with scripted("fake:helper", *[f"Answer {turn}." for turn in range(1, 7)]) as agent:
        state = converse(router(spec), 6, "invoke", context=context)
    assert "memory" not in (state.get("agent_state") or {}).get("helper", {})
    assert seen(agent.calls[-1])[0].text == "Question number 3, please?"  # plain trimming


def test_the_run_picks_the_summariser() -> None:
    spec = helper(model="fake:helper", max_message_pairs=3)
    with (
        scripted("fake:helper", *[f"Answer {turn}." for turn in range(1, 6)]),
        scripted("fake:memo", summary(1)) as memo,
    ):
        state = converse(router(spec), 5, "invoke", context=Context(memory_model="fake:memo"))
    assert len(memo.calls) == 1
    assert FACT in notes_of(state).facts


def test_memory_settings_are_checked() -> None:
    assert helper(memory=False).memory == MemoryPolicy(enabled=False)
    with pytest.raises(ValueError, match="max_facts"):
        helper(memory={"max_facts": 0})
    with pytest.raises(ConfigError, match="memory must be true or false"):
        Context(memory="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="memory_model: model 'gpt' must be 'offline' or"):
        Context(memory_model="gpt")
    with pytest.raises(AgentConfigError, match="agent 'helper': model 'gpt' must be"):
        check_agents([helper(memory={"model": "gpt"})])


# --- the summariser failing ---------------------------------------------------------------


@pytest.mark.parametrize("entry", ["run", "invoke"])
def test_a_failing_summariser_falls_back_to_trimming(
    entry: str, caplog: pytest.LogCaptureFixture
) -> None:
    outage = SimulatedProviderError("503 summariser down", status_code=503)
    spec = remembering(max_message_pairs=1, max_attempts=1)
    with (
        scripted("fake:helper", *[f"Answer {turn}." for turn in range(1, 5)]) as agent,
        scripted("fake:memo", outage, summary(2)) as memo,
        caplog.at_level(logging.WARNING, logger="switchyard.nodes.memory"),
    ):
        state = converse(router(spec), 4, entry)
    # turn 3: the summary of turn 1 failed, the agent answered on its plain window
    assert [m.text for m in seen(agent.calls[2])] == [
        "Question number 2, please?",
        "Answer 2.",
        "Question number 3, please?",
    ]
    assert "its memory could not be updated" in caplog.text
    assert "503 summariser down" in caplog.text
    # turn 4: turns 1 and 2 were summarised together, once
    assert len(memo.calls) == 2
    assert FACT in memo.calls[1].texts[0]
    assert notes_of(state).turns == 2
    assert state["usage"]["helper/fake:memo"]["calls"] == 2  # the failed call is charged too


# --- an oversized current turn ------------------------------------------------------------

MARKER = "tokens cut by Switchyard: the turn exceeded max_context_tokens=1000"


@pytest.mark.parametrize("entry", ["run", "invoke"])
@pytest.mark.parametrize("pattern", list(CONVERSATIONS))
def test_an_oversized_turn_is_cut_to_the_window_with_a_marker(pattern: str, entry: str) -> None:
    huge = "start of the paste " + "lorem ipsum dolor " * 11_000 + " end of the paste"
    spec = remembering(max_context_tokens=1000)
    with scripted("fake:helper", "Answer 1.", "Answer 2.") as agent:
        converse(
            CONVERSATIONS[pattern](spec),
            2,
            entry,
            say=lambda turn: "Hello there" if turn == 1 else huge,
            context=Context(max_input_chars=500_000),
        )
    view = seen(agent.calls[-1])
    assert count_tokens_approximately([HumanMessage(huge)]) > 45_000
    assert count_tokens_approximately(view) <= 1000
    assert MARKER in view[-1].text
    assert view[-1].text.startswith("start of the paste")
    assert view[-1].text.endswith("end of the paste")


def test_a_cut_turn_keeps_each_tool_call_with_its_result() -> None:
    @tool
    def dump(query: str) -> str:
        """Dump the whole order database."""
        return "row " * 40_000

    calls = [
        AIMessage("", tool_calls=[{"name": "dump", "args": {"query": f"q{i}"}, "id": f"c{i}"}])
        for i in range(3)
    ]
    spec = remembering(max_context_tokens=1000, tools=(dump,))
    with scripted("fake:helper", *calls, "Done.") as agent:
        converse(router(spec), 1, "invoke", say=lambda turn: "Dump the orders, please.")
    for call in agent.calls:
        view = seen(call)
        assert count_tokens_approximately(view) <= 1000
        asked = {c["id"] for m in view if isinstance(m, AIMessage) for c in m.tool_calls}
        answered = {m.tool_call_id for m in view if isinstance(m, ToolMessage)}
        assert answered == asked
    assert MARKER in " ".join(m.text for m in seen(agent.calls[-1]))


# --- every pattern where agents see the conversation --------------------------------------


def supervisor_graph(supervisor: AgentSpec) -> Pregel[Any, Any, Any, Any]:
    worker = AgentSpec(name="worker", description="Does any task.")
    return build_supervisor_graph([worker], supervisor=supervisor).compile(
        checkpointer=InMemorySaver()
    )


@pytest.mark.parametrize("entry", ["run", "invoke"])
def test_the_supervisor_remembers_its_own_turns(entry: str) -> None:
    supervisor = AgentSpec(
        name="supervisor",
        description="Answers or delegates.",
        model="fake:boss",
        max_message_pairs=3,
        memory=MEMO,
    )
    with (
        scripted("fake:boss", *[f"Answer {turn}." for turn in range(1, 10)]) as boss,
        scripted("fake:memo", *(summary(turn) for turn in range(1, 6))) as memo,
    ):
        state = converse(supervisor_graph(supervisor), 9, entry)
    assert len(memo.calls) == 5
    assert FACT in notes_of(state, "supervisor").facts
    assert FACT in seen(boss.calls[-1])[0].text


@pytest.mark.parametrize("entry", ["run", "invoke"])
def test_the_hierarchical_manager_remembers_its_turns_once_per_turn(entry: str) -> None:
    manager = AgentSpec(
        name="manager", description="Plans and combines.", max_message_pairs=1, memory=MEMO
    )
    team = [AgentSpec(name="writer", description="Writes.")]
    graph = build_hierarchical_graph(team, manager=manager).compile(checkpointer=InMemorySaver())
    with scripted("fake:memo", *(summary(turn) for turn in range(1, 4))) as memo:
        state = converse(graph, 5, entry)
    # the manager plans and answers each turn (two calls), but each dropped turn is summarised
    # once: turns 1 to 3 dropped out of its one-turn window
    assert len(memo.calls) == 3
    assert FACT in notes_of(state, "manager").facts


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_memory_applies_only_where_the_agent_sees_the_conversation(pattern: str) -> None:
    """In a worker's place (a task, a stage, an event) the helper has no turns to drop."""
    applies = pattern in ("router", "swarm")
    spec = helper(max_message_pairs=1, memory=MEMO)
    memos = [summary(turn) for turn in range(1, 3)] if applies else []
    with scripted("fake:memo", *memos) as memo:
        graph = PATTERNS[pattern](spec)
        thread: Any = {"configurable": {"thread_id": uuid4().hex}}
        for _ in range(4):
            graph.invoke({"messages": [HumanMessage("I need a refund")]}, thread)
    assert len(memo.calls) == (2 if applies else 0)


# --- pure parts: the view, the cut, the notes, the summarisers -----------------------------


@st.composite
def threads(draw: st.DrawFn) -> list[AnyMessage]:
    """Turns of one agent, some with tool rounds and long texts, the last one being answered."""
    messages: list[AnyMessage] = []
    for index in range(draw(st.integers(min_value=1, max_value=6))):
        messages.append(HumanMessage(f"q{index} " + "x " * draw(st.integers(0, 3000))))
        for round_ in range(draw(st.integers(min_value=0, max_value=3))):
            call_id = f"c{index}-{round_}"
            messages.append(
                AIMessage("", name="a", tool_calls=[{"name": "t", "args": {}, "id": call_id}])
            )
            text = "y " * draw(st.integers(0, 3000))
            messages.append(ToolMessage(text, tool_call_id=call_id, name="t"))
        if draw(st.booleans()):
            messages.append(
                AIMessage(f"answer {index} " + "z " * draw(st.integers(0, 500)), name="a")
            )
    return messages


def pairs_intact(view: Sequence[BaseMessage]) -> bool:
    asked = {c["id"] for m in view if isinstance(m, AIMessage) for c in m.tool_calls}
    answered = [m.tool_call_id for m in view if isinstance(m, ToolMessage)]
    return set(answered) <= asked and len(answered) == len(set(answered))


@settings(max_examples=100, deadline=None)
@given(
    messages=threads(),
    max_pairs=st.integers(min_value=1, max_value=4),
    max_tokens=st.integers(min_value=400, max_value=4000),
    memory=st.booleans(),
)
def test_views_fit_the_window_and_keep_tool_pairs(
    messages: list[AnyMessage], max_pairs: int, max_tokens: int, memory: bool
) -> None:
    policy = MemoryPolicy() if memory else None
    view = remembered_view(messages, "a", max_pairs=max_pairs, max_tokens=max_tokens, policy=policy)
    assert pairs_intact(view)
    markers = [m for m in view if isinstance(m, EarlierTurns)]
    assert markers == view[:1] or not markers
    if markers:
        marker = markers[0]
        rendered = MemoryNotes(summary="s " * 5000, facts=["f " * 50] * 20, turns=1)
        shown = [rendered.as_message(marker.budget), *view[1:]]
        assert count_tokens_approximately(shown) <= max_tokens
        assert len(split_turns(view)) - 1 <= max_pairs + 1  # the marker's "turn", kept, current
    else:
        assert count_tokens_approximately(view) <= max_tokens


def test_cut_turn_drops_whole_steps_when_cutting_texts_is_not_enough() -> None:
    turn: list[AnyMessage] = [HumanMessage("do it")]
    for i in range(40):
        turn.append(AIMessage("", tool_calls=[{"name": "t", "args": {"n": i}, "id": f"c{i}"}]))
        turn.append(ToolMessage(f"ok {i}", tool_call_id=f"c{i}", name="t"))
    cut = cut_turn(turn, 200, limit=1000)
    assert count_tokens_approximately(cut) <= 200
    assert pairs_intact(cut)
    assert cut[0].text.startswith("do it")
    assert MARKER in cut[0].text
    assert cut[-1].text == "ok 39"


def test_facts_are_merged_without_repeats_and_capped_newest_first() -> None:
    assert add_facts(["A is 1.", "B is 2"], ["a is 1", "C is 3"], 2) == ["a is 1", "C is 3"]
    assert add_facts([], ["", "  "], 5) == []


def test_parse_summary_splits_the_facts_section() -> None:
    text = "## SUMMARY\nDid things.\n\n## Key Facts:\n- one\n* two\n1. three\nNone\n"
    assert parse_summary(text) == ("## SUMMARY\nDid things.", ["one", "two", "three"])
    assert parse_summary("just text") == ("just text", [])


def test_the_extractive_summary_keeps_stated_facts_not_questions() -> None:
    text = extract(
        [HumanMessage(f"{FACT} What is the weather?"), AIMessage("It is sunny.", name="helper")],
        MemoryPolicy(),
    )
    summary_text, facts = parse_summary(text)
    assert facts == [FACT]
    assert "helper answered: It is sunny." in summary_text


def test_the_notes_message_fits_its_budget_facts_first() -> None:
    notes = MemoryNotes(summary="long " * 2000, facts=[FACT], turns=4)
    message = notes.as_message(100)
    assert count_tokens_approximately([message]) <= 100
    assert FACT in message.text


def test_a_grown_window_summarises_nothing_new() -> None:
    turns: list[list[AnyMessage]] = [
        [HumanMessage(f"q{i}", id=f"h{i}"), AIMessage(f"a{i}", name="a")] for i in range(3)
    ]
    marker = EarlierTurns.of(turns[:1], 100)
    assert marker.unseen(MemoryNotes(turns=2, through="h1")) == []
    assert [key for key, _ in marker.unseen(MemoryNotes())] == ["h0"]
    assert [key for key, _ in EarlierTurns.of(turns, 100).unseen(MemoryNotes(through="h0"))] == [
        "h1",
        "h2",
    ]
