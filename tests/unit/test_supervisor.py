"""The supervisor pattern: topology, exact traces with the scripted fake, limits and bad input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel
from syrupy.assertion import SnapshotAssertion

from switchyard.core.errors import AgentConfigError
from switchyard.core.offline import OFFLINE_MARKER
from switchyard.graphs.demos import SUPERVISOR_WORKERS
from switchyard.graphs.demos import supervisor as graph
from switchyard.graphs.supervisor import (
    assigned_task,
    build_supervisor_graph,
    partial_results,
    report,
    rounds_used,
)
from switchyard.nodes.agent import AgentReply
from switchyard.runtime.run import arun, run
from switchyard.state.agents import AgentSpec
from switchyard.state.context import Context
from switchyard.state.supervisor import TaskPayload, WorkerResult, keep_current_turn
from tests.fakes import scripted

SUPERVISOR = AgentSpec(
    name="supervisor",
    description="Delegates and answers.",
    system_prompt="You supervise.",
    model="fake:supervisor",
)
RESEARCH = AgentSpec(
    name="research",
    description="Looks up facts.",
    system_prompt="You research.",
    model="fake:research",
)
MATH = AgentSpec(
    name="math", description="Computes numbers.", system_prompt="You compute.", model="fake:math"
)


def handoff(worker: str, call_id: str, **args: Any) -> AIMessage:
    args = args if args else {"task": f"task for {worker}"}
    return AIMessage(
        "", tool_calls=[{"name": f"transfer_to_{worker}", "args": args, "id": call_id}]
    )


def compiled(**options: Any) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = build_supervisor_graph([RESEARCH, MATH], supervisor=SUPERVISOR, **options)
    return builder.compile(checkpointer=InMemorySaver(), name="supervisor")


def config(thread: str = "t", recursion_limit: int = 25) -> Any:
    return {"configurable": {"thread_id": thread}, "recursion_limit": recursion_limit}


def trace(
    app: CompiledStateGraph[Any, Any, Any, Any],
    text: str,
    *,
    thread: str = "t",
    context: Context | None = None,
    recursion_limit: int = 25,
) -> tuple[list[str], dict[str, Any]]:
    """The nodes that ran, in order, and the checkpointed state after the run."""
    nodes: list[str] = []
    for update in app.stream(
        {"messages": [HumanMessage(text)]},
        config(thread, recursion_limit),
        context=context or Context(),
        stream_mode="updates",
    ):
        nodes.extend(update)
    return nodes, app.get_state(config(thread)).values


def seen(messages: Sequence[BaseMessage]) -> list[tuple[str, str]]:
    """What a model call received, as (kind, text or tool call names / tool call id)."""
    out: list[tuple[str, str]] = []
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            out.append(("ai", ",".join(f"{c['name']}#{c['id']}" for c in m.tool_calls)))
        elif isinstance(m, ToolMessage):
            out.append((f"tool#{m.tool_call_id}", m.text))
        else:
            out.append((m.type, m.text))
    return out


def assert_valid_transcript(messages: Sequence[AnyMessage]) -> None:
    """Every tool call is answered exactly once, right after the message that made it."""
    pending: list[str] = []
    for m in messages:
        if isinstance(m, ToolMessage):
            assert m.tool_call_id in pending, f"unexpected result {m.tool_call_id}"
            pending.remove(m.tool_call_id)
            continue
        assert not pending, f"calls {pending} unanswered before {m.type}"
        if isinstance(m, AIMessage):
            pending = [c["id"] or "" for c in m.tool_calls]
    assert not pending, f"calls {pending} unanswered at the end"


# --- topology ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"agents": SUPERVISOR_WORKERS}, id="demo"),
        pytest.param(
            {
                "agents": (RESEARCH, MATH),
                "supervisor": SUPERVISOR.model_copy(update={"name": "lead"}),
            },
            id="custom-supervisor",
        ),
        pytest.param({"agents": (RESEARCH,), "max_rounds": 2}, id="one-worker-max-rounds"),
    ],
)
def test_topology(options: dict[str, Any], snapshot: SnapshotAssertion) -> None:
    agents = options.pop("agents")
    drawn = build_supervisor_graph(agents, **options).compile().get_graph()
    assert drawn.draw_mermaid(with_styles=False) == snapshot


def test_the_exported_graph_is_compiled_without_a_checkpointer() -> None:
    assert graph.name == "supervisor"
    assert graph.checkpointer is None
    agents = {"supervisor", "research", "math", "writer"}
    # every agent node is guarded by an error handler that ends the run cleanly
    assert set(graph.nodes) == {"__start__", *agents, *(f"__error_handler__{a}" for a in agents)}


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agents", "options", "error", "message"),
    [
        pytest.param([], {}, AgentConfigError, "no workers given", id="empty"),
        pytest.param(
            [RESEARCH, RESEARCH], {}, AgentConfigError, "duplicate agent names: research", id="dup"
        ),
        pytest.param(
            [RESEARCH.model_copy(update={"name": "supervisor"})],
            {},
            AgentConfigError,
            "duplicate agent names: supervisor",
            id="worker-named-like-the-supervisor",
        ),
        pytest.param(
            [RESEARCH, MATH.model_copy(update={"handoffs": ("research",)})],
            {},
            AgentConfigError,
            "agent 'math' declares handoffs",
            id="worker-handoffs",
        ),
        pytest.param(
            [RESEARCH, MATH.model_copy(update={"handoffs": ("ghost",)})],
            {},
            AgentConfigError,
            "hands off to unknown agents: ghost",
            id="unknown-handoff",
        ),
        pytest.param(
            [RESEARCH],
            {"supervisor": SUPERVISOR.model_copy(update={"handoffs": ("research",)})},
            AgentConfigError,
            "agent 'supervisor' declares handoffs",
            id="supervisor-handoffs",
        ),
        pytest.param([RESEARCH], {"max_rounds": 0}, ValueError, "max_rounds must be positive"),
    ],
)
def test_bad_configuration_is_refused_with_a_specific_error(
    agents: list[AgentSpec], options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        build_supervisor_graph(agents, **options)


# --- behaviour ----------------------------------------------------------------------------------


def test_workers_see_only_their_task_and_report_back_until_the_supervisor_answers() -> None:
    app = compiled()
    with (
        scripted(
            "fake:supervisor",
            handoff("research", "c1", task="Find the 2023 revenue"),
            handoff("math", "c2", task="Add 10% to 120"),
            "Revenue was 120; with 10% growth it is 132.",
        ) as supervisor,
        scripted("fake:research", "Revenue in 2023 was 120.") as research,
        scripted("fake:math", "132") as math,
    ):
        nodes, state = trace(app, "What is the revenue plus 10%?")

    assert nodes == ["supervisor", "research", "supervisor", "math", "supervisor"]
    assert seen(research.calls[0].messages) == [
        ("system", "You research."),
        ("human", "Find the 2023 revenue"),
    ]
    assert seen(math.calls[0].messages) == [("system", "You compute."), ("human", "Add 10% to 120")]
    assert research.calls[0].tools == math.calls[0].tools == []
    assert [call.tools for call in supervisor.calls] == [
        ["transfer_to_research", "transfer_to_math"]
    ] * 3
    assert seen(supervisor.calls[2].messages) == [
        ("system", "You supervise."),
        ("human", "What is the revenue plus 10%?"),
        ("ai", "transfer_to_research#c1"),
        ("tool#c1", "Revenue in 2023 was 120."),
        ("ai", "transfer_to_math#c2"),
        ("tool#c2", "132"),
    ]
    assert state["results"] == [
        WorkerResult(
            worker="research",
            task="Find the 2023 revenue",
            output="Revenue in 2023 was 120.",
            data=None,
            call_id="c1",
            turn=1,
            round=1,
        ),
        WorkerResult(
            worker="math",
            task="Add 10% to 120",
            output="132",
            data=None,
            call_id="c2",
            turn=1,
            round=2,
        ),
    ]
    final = state["messages"][-1]
    assert isinstance(final, AIMessage)
    assert (final.name, final.text) == ("supervisor", "Revenue was 120; with 10% growth it is 132.")
    assert state["end_reason"] == "completed"
    assert state["refusals"] == []
    assert {entry["agent"]: entry["calls"] for entry in state["usage"].values()} == {
        "supervisor": 3,
        "research": 1,
        "math": 1,
    }
    assert_valid_transcript(state["messages"])


@pytest.mark.parametrize(
    ("build_limit", "context"),
    [
        pytest.param(1, Context(), id="build-argument"),
        pytest.param(None, Context(max_handoffs=1), id="context-max-handoffs"),
    ],
)
def test_max_rounds_ends_the_run_with_the_partial_results(
    build_limit: int | None, context: Context
) -> None:
    app = compiled(max_rounds=build_limit)
    with (
        scripted("fake:supervisor", handoff("research", "c1"), handoff("math", "c2")) as supervisor,
        scripted("fake:research", "Revenue in 2023 was 120."),
        scripted("fake:math"),  # never called: the second handoff is refused
    ):
        nodes, state = trace(app, "What is the revenue plus 10%?", context=context)

    assert nodes == ["supervisor", "research", "supervisor"]
    assert len(supervisor.calls) == 2
    assert state["end_reason"] == "max_rounds"
    assert [r["worker"] for r in state["results"]] == ["research"]
    *_, refused, final = state["messages"]
    assert isinstance(refused, ToolMessage)
    assert (refused.tool_call_id, refused.status) == ("c2", "error")
    assert "max_rounds" in refused.text
    assert isinstance(final, AIMessage)
    assert final.name == "supervisor"
    assert final.text == (
        "Stopped: the worker-round limit (max_rounds=1) was reached before the supervisor gave a "
        "final answer. Partial results:\n"
        "- research (task: task for research): Revenue in 2023 was 120."
    )
    assert state["refusals"] == [
        "refused: handoff to math: the worker-round limit (max_rounds=1) is reached"
    ]
    assert_valid_transcript(state["messages"])


def test_the_run_facade_reports_max_rounds_as_not_ok_with_the_explanation() -> None:
    app = compiled(max_rounds=1)
    with (
        scripted("fake:supervisor", handoff("research", "c1"), handoff("research", "c2")),
        scripted("fake:research", "partial finding"),
    ):
        result = run(app, "Dig deeper and deeper", session_id="s")

    assert not result.ok
    assert result.end_reason == "max_rounds"
    assert result.agent_name == "supervisor"
    assert "partial finding" in result.output
    assert result.output.startswith("Stopped: the worker-round limit (max_rounds=1)")


def test_the_recursion_limit_ends_the_run_cleanly_before_langgraph_would_raise() -> None:
    app = compiled(max_rounds=10)
    with (
        scripted("fake:supervisor", handoff("research", "c1"), handoff("math", "c2")),
        scripted("fake:research", "finding"),
        scripted("fake:math"),
    ):
        nodes, state = trace(app, "Go", recursion_limit=4)

    assert nodes == ["supervisor", "research", "supervisor"]
    assert state["end_reason"] == "recursion_limit"
    assert "raise Context.recursion_limit" in state["messages"][-1].text
    assert "finding" in state["messages"][-1].text


def test_rounds_are_counted_per_turn_and_results_keep_only_the_current_turn() -> None:
    app = compiled(max_rounds=1)
    with (
        scripted(
            "fake:supervisor",
            handoff("research", "c1"),
            "first answer",
            handoff("math", "c2"),
            "second answer",
        ) as supervisor,
        scripted("fake:research", "r"),
        scripted("fake:math", "m"),
    ):
        first, _ = trace(app, "one")
        second, state = trace(app, "two")

    assert first == ["supervisor", "research", "supervisor"]
    assert second == ["supervisor", "math", "supervisor"]
    assert state["end_reason"] == "completed"
    assert [(r["worker"], r["turn"], r["round"]) for r in state["results"]] == [("math", 2, 1)]
    # the second turn's supervisor sees the first turn's exchange (its own view)
    assert seen(supervisor.calls[2].messages)[1:] == [
        ("human", "one"),
        ("ai", "transfer_to_research#c1"),
        ("tool#c1", "r"),
        ("ai", "first answer"),
        ("human", "two"),
    ]


def test_a_handoff_to_an_unknown_worker_is_refused_and_the_supervisor_carries_on() -> None:
    app = compiled()
    with (
        scripted("fake:supervisor", handoff("ghost", "c1"), "I will answer myself.") as sup,
        scripted("fake:research"),
        scripted("fake:math"),
    ):
        nodes, state = trace(app, "Anything")

    assert nodes == ["supervisor"]
    assert state["end_reason"] == "completed"
    assert state["messages"][-1].text == "I will answer myself."
    refused = sup.calls[1].messages[-1]
    assert isinstance(refused, ToolMessage)
    assert refused.status == "error"
    assert state["refusals"] == [refused.text]
    assert "has no tool 'transfer_to_ghost'" in refused.text
    assert_valid_transcript(state["messages"])


def test_a_second_handoff_in_the_same_message_is_answered_as_not_run() -> None:
    app = compiled()
    double = AIMessage(
        "",
        tool_calls=[
            {"name": "transfer_to_research", "args": {"task": "a"}, "id": "c1"},
            {"name": "transfer_to_math", "args": {"task": "b"}, "id": "c2"},
        ],
    )
    with (
        scripted("fake:supervisor", double, "done"),
        scripted("fake:research", "r"),
        scripted("fake:math"),
    ):
        nodes, state = trace(app, "Both")

    assert nodes == ["supervisor", "research", "supervisor"]
    not_run = [m for m in state["messages"] if isinstance(m, ToolMessage) and m.status == "error"]
    assert [m.tool_call_id for m in not_run] == ["c2"]
    assert_valid_transcript(state["messages"])


def test_a_handoff_without_a_usable_task_sends_the_request_and_records_it() -> None:
    app = compiled()
    with (
        scripted("fake:supervisor", handoff("research", "c1", topic="x"), "done"),
        scripted("fake:research", "r") as research,
        scripted("fake:math"),
    ):
        _, state = trace(app, "Look this up")

    assert seen(research.calls[0].messages)[1] == ("human", "Look this up")
    assert len(state["refusals"]) == 1
    assert "invalid arguments" in state["refusals"][0]


def test_a_worker_failure_leaves_no_unanswered_call_for_the_next_turn() -> None:
    app = compiled()
    with (
        scripted(
            "fake:supervisor", handoff("research", "c1"), "answer without research"
        ) as supervisor,
        scripted("fake:research", ValueError("search index unavailable")),
        scripted("fake:math"),
    ):
        failed = run(app, "first", session_id="s")
        second = run(app, "second", session_id="s")

    assert (failed.ok, failed.end_reason) == (False, "agent_failed")
    assert failed.error is not None
    assert "search index unavailable" in failed.error
    assert (second.ok, second.output) == (True, "answer without research")
    view = supervisor.calls[1].messages
    assert seen(view)[2:6] == [
        ("ai", "transfer_to_research#c1"),
        ("tool#c1", "no result: the run stopped before this call was answered"),
        (
            "ai",
            "The research agent could not answer (agent_failed): research: ValueError: "
            "search index unavailable",
        ),
        ("human", "second"),
    ]


async def test_the_async_path_gives_the_same_trace() -> None:
    app = compiled()
    with (
        scripted("fake:supervisor", handoff("math", "c1", task="2+2"), "4") as supervisor,
        scripted("fake:research"),
        scripted("fake:math", "4") as math,
    ):
        result = await arun(app, "What is 2+2?", session_id="s")

    assert (result.ok, result.agent_name, result.output) == (True, "supervisor", "4")
    assert seen(math.calls[0].messages)[1] == ("human", "2+2")
    assert len(supervisor.calls) == 2


# --- the offline demo ---------------------------------------------------------------------------


def test_the_offline_demo_delegates_then_answers_through_the_run_facade() -> None:
    app = build_supervisor_graph(SUPERVISOR_WORKERS).compile(
        checkpointer=InMemorySaver(), name="supervisor"
    )

    result = run(app, "Calculate the percentage growth from 120 to 150", session_id="s")

    assert result.ok
    assert (result.end_reason, result.agent_name) == ("completed", "supervisor")
    assert result.output.startswith(OFFLINE_MARKER)
    assert "transfer_to_math" in result.output
    assert {e["agent"] for e in result.usage.values()} == {"supervisor", "math"}
    state = app.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert [r["worker"] for r in state["results"]] == ["math"]
    assert_valid_transcript(state["messages"])


def test_the_exported_graph_runs_offline_without_a_checkpointer() -> None:
    result = run(graph, "Research the history of the transistor")

    assert result.ok
    assert result.agent_name == "supervisor"
    assert "transfer_to_research" in result.output


# --- pure helpers -------------------------------------------------------------------------------


def test_rounds_used_counts_only_the_current_turn() -> None:
    task = TaskPayload(worker="math", task="t", call_id="c", turn=2, round=3)
    assert rounds_used(task, 2) == 3
    assert rounds_used(task, 3) == 0
    assert rounds_used(None, 1) == 0


def test_partial_results_lists_the_current_turn_only() -> None:
    old = WorkerResult(
        worker="math", task="t0", output="o0", data=None, call_id="c0", turn=1, round=1
    )
    new = WorkerResult(
        worker="research", task="t1", output="o1", data=None, call_id="c1", turn=2, round=1
    )
    assert partial_results([old, new], 2) == "Partial results:\n- research (task: t1): o1"
    assert partial_results([old], 2) == "No worker had reported yet."


def test_keep_current_turn_drops_records_of_earlier_turns() -> None:
    a, b, c = {"turn": 1, "n": "a"}, {"turn": 1, "n": "b"}, {"turn": 2, "n": "c"}
    assert keep_current_turn([a], [b]) == [a, b]
    assert keep_current_turn([a, b], [c]) == [c]
    assert keep_current_turn([a], []) == [a]
    assert keep_current_turn(None, None) == []


def test_a_structured_worker_result_keeps_its_data() -> None:
    class Figure(BaseModel):
        value: int

    task = TaskPayload(worker="math", task="t", call_id="c9", turn=1, round=1)
    reply = AgentReply(messages=[], output=Figure(value=7), usage={})

    update = report(MATH, task, reply)

    assert update["results"][0]["data"] == {"value": 7}
    message = update["messages"][0]
    assert (message.tool_call_id, message.name) == ("c9", "transfer_to_math")
    assert '"value": 7' in message.text


def test_a_worker_run_without_a_task_says_how_to_run_it() -> None:
    state: Any = {"messages": [SystemMessage("x")], "task": None}
    with pytest.raises(RuntimeError, match="start the run from START"):
        assigned_task(state, "math")
