import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel
from syrupy.assertion import SnapshotAssertion

from switchyard.core.errors import AgentConfigError, InvalidInputError
from switchyard.core.offline import OFFLINE_MARKER, SimulatedProviderError
from switchyard.graphs.demos import PIPELINE_STAGES
from switchyard.graphs.pipeline import STAGE_FAILED, build_pipeline_graph
from switchyard.guardrails.budgets import BudgetExceededError
from switchyard.runtime.run import run
from switchyard.state import AgentSpec, Context
from tests.fakes import scripted

REQUEST = "Write a short note on heat pumps in cold climates"


class Notes(BaseModel):
    points: list[str]


class Draft(BaseModel):
    title: str
    body: str


def stage(name: str, schema: type[BaseModel] | None = None, **fields: Any) -> AgentSpec:
    return AgentSpec(
        name=name,
        description=f"The {name} stage.",
        system_prompt=f"You are the {name} stage.",
        output_schema=schema,
        **fields,
    )


STAGES = (stage("research", Notes), stage("draft", Draft), stage("edit"))


def structured(schema: type[BaseModel], **args: Any) -> AIMessage:
    """A scripted reply that answers a structured-output call with `args`."""
    return AIMessage(
        content="", tool_calls=[{"name": schema.__name__, "args": args, "id": "call_1"}]
    )


def compile_graph(stages: tuple[AgentSpec, ...] = STAGES) -> Any:
    return build_pipeline_graph(stages).compile(checkpointer=InMemorySaver(), name="pipeline")


def config(thread: str = "t") -> Any:
    return {"configurable": {"thread_id": thread}, "recursion_limit": 25}


def node_order(graph: Any, text: str, context: Context, thread: str = "t") -> list[str]:
    updates = graph.stream(
        {"messages": [HumanMessage(text)]}, config(thread), context=context, stream_mode="updates"
    )
    return [node for update in updates for node in update]


# --- topology -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stages",
    [PIPELINE_STAGES, STAGES[:2], STAGES[:1]],
    ids=["demo-three-stages", "two-stages", "one-stage"],
)
def test_topology(stages: tuple[AgentSpec, ...], snapshot: SnapshotAssertion) -> None:
    graph = build_pipeline_graph(stages).compile(name="pipeline")
    assert graph.get_graph().draw_mermaid(with_styles=False) == snapshot


# --- bad build input ------------------------------------------------------------------------


def test_empty_stage_list_is_refused() -> None:
    with pytest.raises(AgentConfigError, match="no agents given"):
        build_pipeline_graph([])


def test_duplicate_stage_names_are_refused() -> None:
    with pytest.raises(AgentConfigError, match="duplicate agent names: draft"):
        build_pipeline_graph([stage("draft"), stage("edit"), stage("draft")])


@pytest.mark.parametrize("name", ["intake", "finish"])
def test_reserved_stage_names_are_refused(name: str) -> None:
    with pytest.raises(AgentConfigError, match=f"'{name}' is reserved"):
        build_pipeline_graph([stage(name)])


# --- behaviour: the exact trace -------------------------------------------------------------


def test_each_stage_sees_only_the_request_and_the_previous_validated_output() -> None:
    notes = {"points": ["COP drops below -15 C", "cold-climate models exist"]}
    draft = {"title": "Heat pumps in the cold", "body": "They work, with caveats."}
    with scripted(
        "fake",
        structured(Notes, **notes),
        structured(Draft, **draft),
        "Final note: heat pumps work in the cold.",
    ) as fake:
        graph = compile_graph()
        assert node_order(graph, REQUEST, Context(model="fake")) == [
            "intake",
            "research",
            "draft",
            "edit",
            "finish",
        ]

    # a stage with an output schema and no tools answers in one structured call
    calls = fake.calls
    assert len(calls) == 3
    # research: its prompt and the request, nothing else
    assert [type(m) for m in calls[0].messages] == [SystemMessage, HumanMessage]
    assert calls[0].texts == ["You are the research stage.", REQUEST]
    # draft: the request plus research's validated output, as one JSON hand-off
    assert calls[1].texts[0] == "You are the draft stage."
    assert len(calls[1].messages) == 2
    assert json.loads(calls[1].texts[1]) == {
        "request": REQUEST,
        "previous_stage": "research",
        "previous_output": {"points": notes["points"]},
    }
    # edit: draft's output only, not research's
    assert len(calls[2].messages) == 2
    assert json.loads(calls[2].texts[1]) == {
        "request": REQUEST,
        "previous_stage": "draft",
        "previous_output": draft,
    }

    state = graph.get_state(config()).values
    assert [m.text for m in state["messages"]] == [
        REQUEST,
        "Final note: heat pumps work in the cold.",
    ]
    assert state["messages"][-1].name == "edit"
    assert {name: r["output"] for name, r in state["stages"].items()} == {
        "research": notes,
        "draft": draft,
        "edit": "Final note: heat pumps work in the cold.",
    }
    assert all(r["status"] == "ok" and r["error"] is None for r in state["stages"].values())
    assert all(r["duration_ms"] is not None for r in state["stages"].values())
    assert state["end_reason"] is None
    assert set(state["usage"]) == {"research/fake", "draft/fake", "edit/fake"}
    assert state["usage"]["research/fake"]["calls"] == 1


async def test_async_run_gives_the_same_trace() -> None:
    with scripted("fake", structured(Notes, points=["p"]), "done") as fake:
        graph = build_pipeline_graph([STAGES[0], stage("edit")]).compile(
            checkpointer=InMemorySaver()
        )
        out = await graph.ainvoke(
            {"messages": [HumanMessage(REQUEST)]}, config(), context=Context(model="fake")
        )
    assert out["messages"][-1].text == "done"
    assert json.loads(fake.calls[1].texts[1])["previous_output"] == {"points": ["p"]}
    assert out["end_reason"] is None


# --- failures stop the run with a reason and the partial results -----------------------------


def test_output_that_fails_its_schema_stops_the_run_and_keeps_earlier_stages() -> None:
    with scripted(
        "fake",
        structured(Notes, points=["p"]),
        structured(Draft, title="only a title"),  # body missing
        structured(Draft, title="still no body"),  # the re-ask fails too
    ):
        graph = compile_graph()
        result = run(graph, REQUEST, session_id="s", context=Context(model="fake"))

    state = graph.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert state["end_reason"] == STAGE_FAILED
    assert state["end_detail"].startswith("stage 'draft' failed: OutputValidationError: ")
    assert state["end_detail"].endswith("(stages completed before it: research)")
    assert list(state["stages"]) == ["research", "draft"]
    assert state["stages"]["research"]["output"] == {"points": ["p"]}
    failed = state["stages"]["draft"]
    assert failed["status"] == "failed"
    assert failed["output"] is None
    assert "does not match Draft" in failed["error"]
    # the transcript says why, in a message named after the failed stage; edit never ran
    explanation = state["messages"][-1]
    assert [type(m) for m in state["messages"]] == [HumanMessage, AIMessage]
    assert (explanation.name, explanation.text) == (
        "draft",
        f"The pipeline stopped: {state['end_detail']}",
    )
    assert not result.ok
    assert result.end_reason == STAGE_FAILED
    assert result.error == state["end_detail"]


def test_a_provider_error_that_is_not_transient_stops_the_run_at_once() -> None:
    with scripted("fake", ValueError("bad request: prompt rejected")) as fake:
        graph = compile_graph()
        assert node_order(graph, REQUEST, Context(model="fake")) == [
            "intake",
            "__error_handler__research",
            "finish",
        ]
    assert len(fake.calls) == 1  # not retried
    state = graph.get_state(config()).values
    assert state["end_detail"] == (
        "stage 'research' failed: ValueError: bad request: prompt rejected "
        "(stages completed before it: none)"
    )


def test_a_transient_error_is_retried_and_then_recorded() -> None:
    flaky = stage("research", max_attempts=2)
    outage = SimulatedProviderError("503 overloaded", status_code=503)
    with scripted("fake", outage, outage) as fake:
        graph = compile_graph((flaky, stage("edit")))
        out = graph.invoke(
            {"messages": [HumanMessage(REQUEST)]}, config(), context=Context(model="fake")
        )
    assert len(fake.calls) == 2  # the first attempt and one retry
    assert out["end_reason"] == STAGE_FAILED
    assert out["stages"]["research"]["error"] == "SimulatedProviderError: 503 overloaded"
    assert "edit" not in out["stages"]


def test_a_fallback_model_answers_for_a_failed_stage_and_the_pipeline_goes_on() -> None:
    research = stage("research", Notes, fallback_models=("fake:backup",))
    with (
        scripted("fake", ValueError("model retired"), "final") as primary,
        scripted("fake:backup", structured(Notes, points=["from backup"])),
    ):
        graph = compile_graph((research, stage("edit")))
        out = graph.invoke(
            {"messages": [HumanMessage(REQUEST)]}, config(), context=Context(model="fake")
        )

    assert out["end_reason"] is None
    assert out["stages"]["research"]["output"] == {"points": ["from backup"]}
    # edit ran on the fallback's output
    assert json.loads(primary.calls[1].texts[1])["previous_output"] == {"points": ["from backup"]}
    assert out["messages"][-1].text == "final"
    assert out["usage"]["research/fake:backup"]["fallbacks"] == 1


def test_when_the_fallbacks_fail_too_the_stage_fails_naming_every_failure() -> None:
    research = stage("research", fallback_models=("fake:backup",))
    with (
        scripted("fake", ValueError("model retired")),
        scripted("fake:backup", ValueError("also retired")),
    ):
        out = compile_graph((research, stage("edit"))).invoke(
            {"messages": [HumanMessage(REQUEST)]}, config(), context=Context(model="fake")
        )
    assert out["stages"]["research"]["error"] == (
        "ValueError: model retired; fake:backup: ValueError: also retired"
    )
    assert out["end_reason"] == STAGE_FAILED


def test_a_budget_stop_gets_no_fallback() -> None:
    research = stage("research", fallback_models=("fake:backup",))
    with (
        scripted("fake", BudgetExceededError("run", "200000 tokens")),
        scripted("fake:backup") as backup,
    ):
        out = compile_graph((research,)).invoke(
            {"messages": [HumanMessage(REQUEST)]}, config(), context=Context(model="fake")
        )
    assert backup.calls == []
    assert out["stages"]["research"]["error"] == (
        "BudgetExceededError: run budget exceeded: 200000 tokens"
    )


def test_an_empty_answer_fails_the_stage() -> None:
    with scripted("fake", "   "):
        out = compile_graph((stage("edit"),)).invoke(
            {"messages": [HumanMessage(REQUEST)]}, config(), context=Context(model="fake")
        )
    assert out["end_reason"] == STAGE_FAILED
    assert out["stages"]["edit"]["error"] == (
        "OutputValidationError: agent 'edit' returned an empty answer"
    )


def test_the_recursion_limit_ends_the_run_and_keeps_the_finished_stages() -> None:
    with scripted("fake", structured(Notes, points=["p"])):
        graph = compile_graph()
        # intake and research fit in two steps; draft would be the third
        result = run(graph, REQUEST, context=Context(model="fake", recursion_limit=2))
    assert result.end_reason == "recursion_limit"
    state = graph.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert list(state["stages"]) == ["research"]


def test_a_new_turn_starts_from_a_clean_slate() -> None:
    with scripted(
        "fake",
        ValueError("rejected"),
        structured(Notes, points=["p"]),
        structured(Draft, title="t", body="b"),
        "final",
    ):
        graph = compile_graph()
        first = run(graph, REQUEST, session_id="s", context=Context(model="fake"))
        second = run(graph, "Try again", session_id="s", context=Context(model="fake"))

    assert (first.end_reason, second.end_reason) == (STAGE_FAILED, "completed")
    state = graph.get_state({"configurable": {"thread_id": second.thread_id}}).values
    assert [r["status"] for r in state["stages"].values()] == ["ok", "ok", "ok"]
    assert state["end_reason"] is None
    assert state["end_detail"] is None
    assert second.output == "final"


def test_input_without_a_user_message_is_refused() -> None:
    graph = compile_graph()
    with pytest.raises(InvalidInputError, match="needs a user message"):
        graph.invoke({"messages": [AIMessage("hello")]}, config())


# --- the demo, offline, through the run facade -----------------------------------------------


def test_demo_runs_offline_through_the_run_facade() -> None:
    graph = build_pipeline_graph(PIPELINE_STAGES).compile(
        checkpointer=InMemorySaver(), name="pipeline"
    )
    result = run(graph, REQUEST, user_id="ada", session_id="s1")

    assert result.ok
    assert result.end_reason == "completed"
    assert result.agent_name == "edit"
    assert result.output.startswith(OFFLINE_MARKER)
    assert {entry["agent"] for entry in result.usage.values()} == {"research", "draft", "edit"}
    assert result.total_tokens == result.input_tokens + result.output_tokens > 0
    state = graph.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert list(state["stages"]) == ["research", "draft", "edit"]
    assert set(state["stages"]["research"]["output"]) == {"topic", "key_points", "open_questions"}
    assert set(state["stages"]["draft"]["output"]) == {"title", "body"}


async def test_demo_gives_the_same_answer_under_invoke_and_ainvoke() -> None:
    graph = build_pipeline_graph(PIPELINE_STAGES).compile(checkpointer=InMemorySaver())
    inputs: Any = {"messages": [HumanMessage(REQUEST)]}
    sync = graph.invoke(inputs, config("sync"))
    asynchronous = await graph.ainvoke(inputs, config("async"))
    assert sync["messages"][-1].text == asynchronous["messages"][-1].text
    assert {k: r["output"] for k, r in sync["stages"].items()} == {
        k: r["output"] for k, r in asynchronous["stages"].items()
    }
