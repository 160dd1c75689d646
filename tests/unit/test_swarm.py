"""The swarm pattern: topology, exact traces with the scripted fake, limits, sessions, bad input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from syrupy.assertion import SnapshotAssertion

from switchyard.core.errors import AgentConfigError
from switchyard.core.offline import OFFLINE_MARKER
from switchyard.graphs.demos import SWARM_AGENTS
from switchyard.graphs.demos import swarm as graph
from switchyard.graphs.swarm import (
    agent_path,
    build_swarm_graph,
    last_text,
    limit_reached,
    ping_pong,
    route_to_active_agent,
    stop_explanation,
)
from switchyard.runtime.run import arun, run
from switchyard.state.agents import AgentSpec
from switchyard.state.context import Context
from switchyard.state.swarm import Handoff, last_value
from tests.fakes import scripted


def agent(name: str, *handoffs: str) -> AgentSpec:
    return AgentSpec(
        name=name,
        description=f"The {name} agent.",
        system_prompt=f"You are {name}.",
        model=f"fake:{name}",
        handoffs=handoffs,
    )


ALICE, BOB, CAROL = agent("alice", "bob", "carol"), agent("bob", "alice"), agent("carol", "alice")


def handoff(peer: str, call_id: str, reason: str = "") -> AIMessage:
    args = {"reason": reason} if reason else {}
    return AIMessage("", tool_calls=[{"name": f"transfer_to_{peer}", "args": args, "id": call_id}])


def compiled(
    agents: Sequence[AgentSpec] = (ALICE, BOB, CAROL), **options: Any
) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = build_swarm_graph(agents, default_agent=agents[0].name, **options)
    return builder.compile(checkpointer=InMemorySaver(), name="swarm")


def trace(
    app: CompiledStateGraph[Any, Any, Any, Any],
    text: str,
    *,
    context: Context | None = None,
    recursion_limit: int = 25,
) -> tuple[list[str], dict[str, Any]]:
    """The nodes that ran, in order, and the checkpointed state after the run."""
    config: Any = {"configurable": {"thread_id": "t"}, "recursion_limit": recursion_limit}
    nodes: list[str] = []
    for update in app.stream(
        {"messages": [HumanMessage(text)]},
        config,
        context=context or Context(),
        stream_mode="updates",
    ):
        nodes.extend(update)
    return nodes, app.get_state(config).values


def seen(messages: Sequence[BaseMessage]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            out.append((f"ai:{m.name}", ",".join(c["name"] for c in m.tool_calls)))
        elif isinstance(m, AIMessage):
            out.append((f"ai:{m.name}", m.text))
        elif isinstance(m, ToolMessage):
            out.append((f"tool:{m.status}", m.text))
        else:
            out.append((m.type, m.text))
    return out


def assert_valid_transcript(messages: Sequence[AnyMessage]) -> None:
    pending: list[str] = []
    for m in messages:
        if isinstance(m, ToolMessage):
            assert m.tool_call_id in pending
            pending.remove(m.tool_call_id)
            continue
        assert not pending
        if isinstance(m, AIMessage):
            pending = [c["id"] or "" for c in m.tool_calls]
    assert not pending


# --- topology ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agents", "options"),
    [
        pytest.param(SWARM_AGENTS, {"default_agent": "triage"}, id="demo"),
        pytest.param(
            SWARM_AGENTS, {"default_agent": "billing", "max_handoffs": 3}, id="demo-billing"
        ),
        pytest.param(
            (agent("alice", "bob"), agent("bob")),
            {"default_agent": "alice", "ping_pong_repeats": 3},
            id="one-way",
        ),
    ],
)
def test_topology(
    agents: Sequence[AgentSpec], options: dict[str, Any], snapshot: SnapshotAssertion
) -> None:
    drawn = build_swarm_graph(agents, **options).compile().get_graph()
    assert drawn.draw_mermaid(with_styles=False) == snapshot


def test_the_exported_graph_is_compiled_without_a_checkpointer() -> None:
    assert graph.name == "swarm"
    assert graph.checkpointer is None
    agents = {"triage", "billing", "tech_support"}
    # every agent node is guarded by its fallback chain
    assert set(graph.nodes) == {"__start__", *agents, *(f"__error_handler__{a}" for a in agents)}


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agents", "options", "error", "message"),
    [
        pytest.param([], {}, AgentConfigError, "no agents given", id="empty"),
        pytest.param([ALICE, ALICE], {}, AgentConfigError, "duplicate agent names: alice"),
        pytest.param(
            [ALICE, BOB, CAROL],
            {"default_agent": "dave"},
            AgentConfigError,
            "default agent 'dave' is not one of the agents",
            id="unknown-default",
        ),
        pytest.param(
            [ALICE, BOB],
            {},
            AgentConfigError,
            "agent 'alice' hands off to unknown agents: carol",
            id="unknown-handoff",
        ),
        pytest.param(
            [agent("alice", "alice")], {}, AgentConfigError, "cannot hand off to itself", id="self"
        ),
        pytest.param([ALICE, BOB, CAROL], {"max_handoffs": 0}, ValueError, "max_handoffs"),
        pytest.param([ALICE, BOB, CAROL], {"ping_pong_repeats": 1}, ValueError, "at least 2"),
    ],
)
def test_bad_configuration_is_refused_with_a_specific_error(
    agents: list[AgentSpec], options: dict[str, Any], error: type[Exception], message: str
) -> None:
    options.setdefault("default_agent", "alice")
    with pytest.raises(error, match=message):
        build_swarm_graph(agents, **options)


# --- behaviour ----------------------------------------------------------------------------------


def test_a_handoff_passes_the_shared_conversation_and_the_next_turn_stays_with_the_peer() -> None:
    app = compiled()
    with (
        scripted("fake:alice", handoff("bob", "c1", reason="bob knows")) as alice,
        scripted("fake:bob", "Bob here: done.", "Bob again.") as bob,
        scripted("fake:carol"),
    ):
        first, state = trace(app, "Please help")
        assert (first, state["active_agent"], state["end_reason"]) == (
            ["alice", "bob"],
            "bob",
            "completed",
        )
        assert state["handoffs"] == [
            Handoff(source="alice", target="bob", reason="bob knows", turn=1)
        ]
        second, state = trace(app, "Thanks, one more thing")

    assert second == ["bob"]
    assert alice.calls[0].tools == ["transfer_to_bob", "transfer_to_carol"]
    assert bob.calls[0].tools == ["transfer_to_alice"]
    assert seen(bob.calls[0].messages) == [
        ("system", "You are bob."),
        ("human", "Please help"),
        ("ai:alice", "transfer_to_bob"),
        ("tool:success", "Transferred to bob."),
    ]
    assert seen(bob.calls[1].messages)[1:] == [
        ("human", "Please help"),
        ("ai:alice", "transfer_to_bob"),
        ("tool:success", "Transferred to bob."),
        ("ai:bob", "Bob here: done."),
        ("human", "Thanks, one more thing"),
    ]
    assert state["active_agent"] == "bob"
    assert state["messages"][-1].name == "bob"
    assert_valid_transcript(state["messages"])


@pytest.mark.parametrize(("repeats", "handoffs_before_stop"), [(2, 2), (3, 4)])
def test_ping_pong_between_two_agents_is_detected_and_stopped(
    repeats: int, handoffs_before_stop: int
) -> None:
    app = compiled(ping_pong_repeats=repeats)
    # alice -> bob -> alice -> bob ...: the handoff that completes `repeats` round trips is refused
    alice_turns = [handoff("bob", f"a{i}") for i in range(repeats)]
    bob_turns = [handoff("alice", f"b{i}") for i in range(repeats - 1)]
    with (
        scripted("fake:alice", *alice_turns),
        scripted("fake:bob", *bob_turns),
        scripted("fake:carol"),
    ):
        nodes, state = trace(app, "Who handles this?")

    assert nodes == ["alice", "bob"] * (repeats - 1) + ["alice"]
    assert len(state["handoffs"]) == handoffs_before_stop
    assert state["end_reason"] == "ping_pong"
    assert state["active_agent"] == "alice"
    final = state["messages"][-1]
    assert final.name == "alice"
    route = " -> ".join(["alice", "bob"] * repeats)
    assert final.text == (
        f"Stopped (ping_pong): the agents kept handing the conversation back and forth "
        f"({route}) without answering. No agent had answered yet."
    )
    assert state["refusals"] == ["refused: handoff alice -> bob (ping_pong)"]
    assert_valid_transcript(state["messages"])


def test_the_run_facade_reports_ping_pong_as_not_ok_and_the_next_turn_recovers() -> None:
    app = compiled()
    with (
        scripted("fake:alice", handoff("bob", "a0"), handoff("bob", "a1"), "Alice answers."),
        scripted("fake:bob", handoff("alice", "b0")),
        scripted("fake:carol"),
    ):
        stopped = run(app, "Who handles this?", session_id="s")
        recovered = run(app, "Alice, just answer please", session_id="s")

    assert (stopped.ok, stopped.end_reason, stopped.agent_name) == (False, "ping_pong", "alice")
    assert stopped.output.startswith("Stopped (ping_pong)")
    assert (recovered.ok, recovered.end_reason, recovered.output) == (
        True,
        "completed",
        "Alice answers.",
    )


@pytest.mark.parametrize(
    ("build_limit", "context"),
    [
        pytest.param(2, Context(), id="build-argument"),
        pytest.param(None, Context(max_handoffs=2), id="context-max-handoffs"),
    ],
)
def test_max_handoffs_ends_the_turn_with_the_partial_result(
    build_limit: int | None, context: Context
) -> None:
    # a -> b -> c -> a is no ping-pong; the third handoff breaks max_handoffs=2
    ring = (agent("alice", "bob"), agent("bob", "carol"), agent("carol", "alice"))
    app = compiled(ring, max_handoffs=build_limit)
    with (
        scripted("fake:alice", handoff("bob", "a0")),
        scripted(
            "fake:bob",
            AIMessage(
                "Half done: the invoice is 120.",
                tool_calls=[{"name": "transfer_to_carol", "args": {}, "id": "b0"}],
            ),
        ),
        scripted("fake:carol", handoff("alice", "c0")),
    ):
        nodes, state = trace(app, "Pass it around", context=context)

    assert nodes == ["alice", "bob", "carol"]
    assert state["end_reason"] == "max_handoffs"
    assert state["active_agent"] == "carol"
    assert [(h["source"], h["target"]) for h in state["handoffs"]] == [
        ("alice", "bob"),
        ("bob", "carol"),
    ]
    assert state["messages"][-1].text == (
        "Stopped (max_handoffs): the handoff limit (max_handoffs=2) was reached: "
        "alice -> bob -> carol -> alice. Partial result: Half done: the invoice is 120."
    )
    assert_valid_transcript(state["messages"])


def test_the_recursion_limit_ends_the_turn_cleanly_before_langgraph_would_raise() -> None:
    app = compiled()
    with (
        scripted("fake:alice", handoff("carol", "a0")),
        scripted("fake:bob"),
        scripted("fake:carol", handoff("alice", "c0")),
    ):
        nodes, state = trace(app, "Go", recursion_limit=3)

    assert nodes == ["alice", "carol"]
    assert state["end_reason"] == "recursion_limit"
    assert "raise Context.recursion_limit" in state["messages"][-1].text


def test_a_handoff_to_an_undeclared_peer_is_refused_and_the_agent_carries_on() -> None:
    app = compiled()
    with (
        scripted("fake:alice"),
        scripted("fake:bob", handoff("carol", "b0"), "Bob answers himself.") as bob,
        scripted("fake:carol"),  # bob may not reach carol: she never runs
    ):
        app.update_state(
            {"configurable": {"thread_id": "t"}}, {"active_agent": "bob"}, as_node="bob"
        )
        nodes, state = trace(app, "Ask carol")

    assert nodes == ["bob"]
    assert state["end_reason"] == "completed"
    refused = bob.calls[1].messages[-1]
    assert isinstance(refused, ToolMessage)
    assert refused.status == "error"
    assert "has no tool 'transfer_to_carol'" in refused.text
    assert state["refusals"] == [refused.text]
    assert state["handoffs"] == []
    assert_valid_transcript(state["messages"])


def test_an_active_agent_unknown_to_the_graph_falls_back_to_the_default() -> None:
    app = compiled()
    with scripted("fake:alice", "Alice here."), scripted("fake:bob"), scripted("fake:carol"):
        app.update_state(
            {"configurable": {"thread_id": "t"}}, {"active_agent": "retired"}, as_node="bob"
        )
        nodes, _ = trace(app, "Hello")

    assert nodes == ["alice"]


async def test_the_async_path_gives_the_same_trace() -> None:
    app = compiled()
    with (
        scripted("fake:alice", handoff("carol", "a0")),
        scripted("fake:bob"),
        scripted("fake:carol", "Carol answers.") as carol,
    ):
        result = await arun(app, "For carol", session_id="s")

    assert (result.ok, result.agent_name, result.output) == (True, "carol", "Carol answers.")
    assert seen(carol.calls[0].messages)[-1] == ("tool:success", "Transferred to carol.")


# --- the offline demo ---------------------------------------------------------------------------


def test_the_offline_demo_hands_off_and_keeps_the_active_agent_across_turns() -> None:
    app = build_swarm_graph(SWARM_AGENTS, default_agent="triage").compile(
        checkpointer=InMemorySaver(), name="swarm"
    )

    first = run(app, "I was charged twice on my invoice, please refund one charge", session_id="s")
    second = run(app, "When will the refund arrive?", session_id="s")
    third = run(app, "The app crashes with an error when I log in", session_id="s")

    assert [r.ok for r in (first, second, third)] == [True, True, True]
    assert [r.agent_name for r in (first, second, third)] == ["billing", "billing", "tech_support"]
    assert all(r.output.startswith(OFFLINE_MARKER) for r in (first, second, third))
    assert {e["agent"] for e in first.usage.values()} == {"triage", "billing"}
    assert {e["agent"] for e in second.usage.values()} == {"billing"}
    assert {e["agent"] for e in third.usage.values()} == {"billing", "tech_support"}
    state = app.get_state({"configurable": {"thread_id": third.thread_id}}).values
    assert state["active_agent"] == "tech_support"
    assert [(h["source"], h["target"], h["turn"]) for h in state["handoffs"]] == [
        ("billing", "tech_support", 3)
    ]
    assert_valid_transcript(state["messages"])


def test_the_exported_graph_runs_offline_without_a_checkpointer() -> None:
    result = run(graph, "I was charged twice on my invoice, please refund one charge")

    assert (result.ok, result.agent_name) == (True, "billing")


# --- detection rules and reducers (pure) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "repeats", "expected"),
    [
        (["a", "b", "a", "b"], 2, ("a", "b")),
        (["c", "a", "b", "a", "b"], 2, ("a", "b")),
        (["a", "b", "a"], 2, None),
        (["a", "b", "c", "b"], 2, None),
        (["a", "b", "a", "b"], 3, None),
        (["a", "b", "a", "b", "a", "b"], 3, ("a", "b")),
        (["b", "a", "b", "a"], 2, ("b", "a")),
        (["a", "a", "a", "a"], 2, None),
        (["a"], 2, None),
    ],
)
def test_ping_pong_rule(path: list[str], repeats: int, expected: tuple[str, str] | None) -> None:
    assert ping_pong(path, repeats) == expected


@pytest.mark.parametrize(
    ("path", "so_far", "remaining", "expected"),
    [
        (["a", "b"], 0, 10, None),
        (["a", "b", "a", "b"], 3, 1, "ping_pong"),
        (["a", "b", "c", "a"], 3, 1, "max_handoffs"),
        (["a", "b", "c", "a"], 2, 1, "recursion_limit"),
        (["a", "b", "c", "a"], 2, 2, None),
    ],
)
def test_limit_rules_in_order(
    path: list[str], so_far: int, remaining: int, expected: str | None
) -> None:
    assert (
        limit_reached(path, so_far, max_handoffs=3, repeats=2, remaining_steps=remaining)
        == expected
    )


def test_agent_path_follows_the_current_turns_handoffs() -> None:
    handoffs = [
        Handoff(source="a", target="b", reason="", turn=1),
        Handoff(source="b", target="c", reason="", turn=2),
        Handoff(source="c", target="a", reason="", turn=2),
    ]
    assert agent_path(handoffs, 2, "a") == ["b", "c", "a"]
    assert agent_path(handoffs, 3, "a") == ["a"]


def test_route_to_active_agent() -> None:
    agents = {"a", "b"}
    state: Any = {"messages": [], "active_agent": None}
    assert route_to_active_agent(state, agents=agents, default_agent="a") == "a"
    state["active_agent"] = "b"
    assert route_to_active_agent(state, agents=agents, default_agent="a") == "b"
    state["active_agent"] = "gone"
    assert route_to_active_agent(state, agents=agents, default_agent="a") == "a"


def test_last_text_looks_only_at_the_current_turn() -> None:
    messages: list[AnyMessage] = [HumanMessage("q1"), AIMessage("old"), HumanMessage("q2")]
    assert last_text(messages) is None
    assert last_text([*messages, AIMessage("new"), AIMessage("")]) == "new"


def test_stop_explanation_names_the_route_and_the_partial_result() -> None:
    text = stop_explanation("max_handoffs", ["a", "b"], max_handoffs=1, partial="half")
    assert text == (
        "Stopped (max_handoffs): the handoff limit (max_handoffs=1) was reached: "
        "a -> b. Partial result: half"
    )


def test_last_value_keeps_the_newest_write() -> None:
    assert last_value("a", "b") == "b"
    assert last_value("a", None) is None
