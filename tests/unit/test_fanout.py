import json
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel
from syrupy.assertion import SnapshotAssertion

from switchyard.core.errors import AgentConfigError, InvalidInputError
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OFFLINE_MARKER, OfflineChatModel
from switchyard.graphs.demos import FANOUT_ANALYSTS, FANOUT_MERGER
from switchyard.graphs.fanout import NO_MAJORITY, QUORUM_FAILED, ballot, build_fanout_graph
from switchyard.runtime.run import run
from switchyard.state import AgentSpec
from tests.unit.conftest import Script

QUESTION = "Should we move billing to PostgreSQL?"


class Verdict(BaseModel):
    verdict: Literal["yes", "no"]
    why: str


def agent(name: str, model: str | None = None, **fields: Any) -> AgentSpec:
    return AgentSpec(
        name=name,
        description=f"The {name} agent.",
        system_prompt=f"You are {name}.",
        model=model if model is not None else f"fake:{name}",
        **fields,
    )


WORKERS = (agent("alpha"), agent("beta"), agent("gamma"))
MERGER = agent("lead")


def config(thread: str = "t") -> Any:
    return {"configurable": {"thread_id": thread}, "recursion_limit": 25}


def ask(graph: Any, text: str = QUESTION, thread: str = "t", **extra: Any) -> Any:
    return graph.invoke({"messages": [HumanMessage(text)], **extra}, config(thread))


# --- topology -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "options"),
    [
        (FANOUT_ANALYSTS, {"merger": FANOUT_MERGER}),
        (WORKERS, {"strategy": "collect"}),
        (WORKERS, {"strategy": "vote", "quorum": 3}),
        (WORKERS[:2], {"merger": MERGER, "quorum": 1}),
    ],
    ids=["demo-synthesize", "collect", "vote", "two-workers-synthesize"],
)
def test_topology(
    workers: tuple[AgentSpec, ...], options: dict[str, Any], snapshot: SnapshotAssertion
) -> None:
    graph = build_fanout_graph(workers, **options).compile(name="fanout")
    assert graph.get_graph().draw_mermaid(with_styles=False) == snapshot


# --- bad build input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "options", "error", "message"),
    [
        ((), {}, AgentConfigError, "no agents given"),
        ((agent("alpha"), agent("alpha")), {}, AgentConfigError, "duplicate agent names: alpha"),
        (WORKERS, {"merger": agent("beta")}, AgentConfigError, "duplicate agent names: beta"),
        ((agent("merge"),), {}, AgentConfigError, "'merge' is reserved"),
        (WORKERS, {"strategy": "synthesize"}, AgentConfigError, "needs a merger agent"),
        (WORKERS, {"strategy": "vote", "merger": MERGER}, ValueError, "only used by strategy"),
        (WORKERS, {"strategy": "best"}, ValueError, "unknown merge strategy 'best'"),
        (WORKERS, {"quorum": 0}, ValueError, r"quorum must be .* from 1 to .* \(3\), got 0"),
        (WORKERS, {"quorum": 4}, ValueError, "got 4"),
        (WORKERS, {"quorum": True}, ValueError, "got True"),
    ],
    ids=[
        "empty",
        "duplicate-workers",
        "merger-named-like-a-worker",
        "reserved-name",
        "synthesize-without-merger",
        "merger-with-vote",
        "unknown-strategy",
        "quorum-zero",
        "quorum-above-n",
        "quorum-bool",
    ],
)
def test_bad_options_are_refused(
    workers: tuple[AgentSpec, ...], options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        build_fanout_graph(workers, **options)


# --- behaviour: the exact trace -------------------------------------------------------------


def test_workers_see_only_the_request_and_the_merger_sees_their_typed_results(
    models: Script,
) -> None:
    fakes = models(
        alpha=["alpha says yes"],
        beta=["beta says no"],
        gamma=["gamma says maybe"],
        lead=["On balance: yes."],
    )
    graph = build_fanout_graph(WORKERS, merger=MERGER).compile(checkpointer=InMemorySaver())
    steps = list(
        graph.stream({"messages": [HumanMessage(QUESTION)]}, config(), stream_mode="updates")
    )

    # intake, the three workers in one step (any order), merge, the merger
    assert list(steps[0]) == ["intake"]
    assert sorted(node for step in steps[1:4] for node in step) == ["alpha", "beta", "gamma"]
    assert [list(step) for step in steps[4:]] == [["merge"], ["lead"]]
    for name in ("alpha", "beta", "gamma"):
        (call,) = fakes[name].calls
        assert [type(m) for m in call.messages] == [SystemMessage, HumanMessage]
        assert call.texts == [f"You are {name}.", QUESTION]
    (merger_call,) = fakes["lead"].calls
    assert len(merger_call.messages) == 2
    assert json.loads(merger_call.texts[1]) == {
        "request": QUESTION,
        "results": [
            {"worker": "alpha", "output": "alpha says yes"},
            {"worker": "beta", "output": "beta says no"},
            {"worker": "gamma", "output": "gamma says maybe"},
        ],
        "failed_workers": [],
    }
    state = graph.get_state(config()).values
    assert [(type(m), m.name, m.text) for m in state["messages"]] == [
        (HumanMessage, None, QUESTION),
        (AIMessage, "lead", "On balance: yes."),
    ]
    assert state["dispatched"] == ["alpha", "beta", "gamma"]
    assert {name: r["status"] for name, r in state["results"].items()} == {
        "alpha": "ok",
        "beta": "ok",
        "gamma": "ok",
    }
    assert state["end_reason"] is None
    assert set(state["usage"]) == {
        "alpha/fake:alpha",
        "beta/fake:beta",
        "gamma/fake:gamma",
        "lead/fake:lead",
    }


# --- partial failure and the quorum ---------------------------------------------------------


def test_a_failed_worker_is_recorded_and_the_merge_goes_ahead_with_the_quorum(
    models: Script,
) -> None:
    fakes = models(
        alpha=["alpha view"],
        beta=[ValueError("content filter")],
        gamma=["gamma view"],
        lead=["merged"],
    )
    graph = build_fanout_graph(WORKERS, merger=MERGER).compile(checkpointer=InMemorySaver())
    out = ask(graph)

    assert out["end_reason"] is None
    assert out["messages"][-1].text == "merged"
    assert out["results"]["beta"] == {
        "worker": "beta",
        "status": "failed",
        "output": None,
        "duration_ms": None,
        "error": "ValueError: content filter",
    }
    payload = json.loads(fakes["lead"].calls[0].texts[1])
    assert [r["worker"] for r in payload["results"]] == ["alpha", "gamma"]
    assert payload["failed_workers"] == ["beta"]


def test_too_many_failures_end_the_run_quorum_failed_with_the_partial_results(
    models: Script,
) -> None:
    models(
        alpha=["alpha view"],
        beta=[ValueError("content filter")],
        gamma=[ValueError("context too long")],
        lead=[],  # the merger must not be called
    )
    graph = build_fanout_graph(WORKERS, merger=MERGER).compile(checkpointer=InMemorySaver())
    result = run(graph, QUESTION, session_id="s")

    state = graph.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert state["end_detail"] == (
        "1 of 3 workers succeeded but the quorum is 2 (failed: beta: ValueError: content "
        "filter; gamma: ValueError: context too long)"
    )
    assert state["results"]["alpha"]["output"] == "alpha view"
    assert [(m.type, m.name) for m in state["messages"]] == [("human", None), ("ai", "merge")]
    assert state["messages"][-1].text == f"No answer: {state['end_detail']}"
    assert not result.ok
    assert result.end_reason == QUORUM_FAILED
    assert result.error == state["end_detail"]


def test_a_fallback_model_answers_for_a_failed_worker(models: Script) -> None:
    workers = (agent("alpha", fallback_models=("fake:backup",)), *WORKERS[1:])
    fakes = models(
        alpha=[ValueError("model retired")], backup=["backup view"], beta=["b"], gamma=["c"]
    )
    out = ask(build_fanout_graph(workers).compile())

    assert out["results"]["alpha"]["status"] == "ok"
    assert out["results"]["alpha"]["output"] == "backup view"
    assert fakes["backup"].calls[0].texts == ["You are alpha.", QUESTION]
    assert out["usage"]["alpha/fake:backup"]["fallbacks"] == 1


def test_a_quorum_of_one_accepts_a_single_survivor(models: Script) -> None:
    models(alpha=[ValueError("down")], beta=[ValueError("down")], gamma=["only gamma"])
    out = ask(build_fanout_graph(WORKERS, strategy="collect", quorum=1).compile())
    assert out["end_reason"] is None
    assert out["messages"][-1].text == (
        "## gamma\n\nonly gamma\n\nFailed: alpha (ValueError: down); beta (ValueError: down)"
    )


def verdict(**args: Any) -> AIMessage:
    """A scripted reply to a structured-output call for `Verdict`."""
    return AIMessage(content="", tool_calls=[{"name": "Verdict", "args": args, "id": "c"}])


def test_output_that_fails_the_schema_is_a_recorded_failure(models: Script) -> None:
    typed = tuple(agent(name, output_schema=Verdict) for name in ("alpha", "beta", "gamma"))
    invalid = verdict(verdict="perhaps", why="unsure")
    models(
        alpha=[invalid, invalid],  # fails, and fails again when re-asked
        beta=[verdict(verdict="yes", why="fast")],
        gamma=[verdict(verdict="yes", why="cheap")],
    )
    out = ask(build_fanout_graph(typed, strategy="vote").compile())

    assert out["results"]["alpha"]["status"] == "failed"
    assert out["results"]["alpha"]["error"].startswith(
        "OutputValidationError: agent 'alpha' returned output that does not match Verdict"
    )
    assert out["vote"] == {"winner": "yes", "ballots": {"yes": ["beta", "gamma"]}}
    assert json.loads(out["messages"][-1].text) == {"verdict": "yes", "why": "fast"}


def test_an_empty_answer_is_a_recorded_failure(models: Script) -> None:
    models(alpha=["  "], beta=["b"], gamma=["c"])
    out = ask(build_fanout_graph(WORKERS).compile())
    assert out["results"]["alpha"]["error"] == (
        "OutputValidationError: agent 'alpha' returned an empty answer"
    )


# --- merge strategies -----------------------------------------------------------------------


def test_vote_compares_normalised_answers_and_keeps_the_first_winner_verbatim(
    models: Script,
) -> None:
    models(alpha=["No."], beta=["  Yes, "], gamma=["yes"])
    out = ask(build_fanout_graph(WORKERS, strategy="vote").compile())
    assert out["vote"] == {"winner": "yes", "ballots": {"no": ["alpha"], "yes": ["beta", "gamma"]}}
    assert (out["messages"][-1].name, out["messages"][-1].text) == ("merge", "  Yes, ")
    assert out["end_reason"] is None


def test_a_tied_vote_ends_the_run_without_an_answer(models: Script) -> None:
    models(alpha=["yes"], beta=["no"])
    out = ask(build_fanout_graph(WORKERS[:2], strategy="vote").compile())
    assert out["end_reason"] == NO_MAJORITY
    assert out["end_detail"] == "the vote is tied ('yes': alpha; 'no': beta)"
    assert out["vote"] == {"winner": None, "ballots": {"yes": ["alpha"], "no": ["beta"]}}
    assert out["messages"][-1].text == "No answer: the vote is tied ('yes': alpha; 'no': beta)"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("  Yes!  ", "yes"),
        ("Go\nahead.", "go ahead"),
        ({"verdict": "No_Go", "why": "x"}, "no_go"),
        ({"b": 1, "a": [2]}, '{"a": [2], "b": 1}'),
    ],
)
def test_ballot_normalises(output: Any, expected: str) -> None:
    assert ballot(output) == expected


def test_collect_lists_every_output_under_its_worker(models: Script) -> None:
    models(alpha=["a view"], beta=["b view"], gamma=["c view"])
    out = ask(build_fanout_graph(WORKERS).compile())
    assert out["messages"][-1].name == "merge"
    assert (
        out["messages"][-1].text == "## alpha\n\na view\n\n## beta\n\nb view\n\n## gamma\n\nc view"
    )


# --- the worker list from the input ---------------------------------------------------------


def test_the_input_can_dispatch_a_subset_for_one_turn(models: Script) -> None:
    fakes = models(alpha=["a1", "a2"], beta=["b2"], gamma=["c1", "c2"])
    graph = build_fanout_graph(WORKERS).compile(checkpointer=InMemorySaver())

    first = ask(graph, workers=["gamma", "alpha"])
    assert first["dispatched"] == ["alpha", "gamma"]
    assert set(first["results"]) == {"alpha", "gamma"}
    assert fakes["beta"].calls == []

    second = ask(graph, "And now?")  # the selection does not carry over
    assert second["dispatched"] == ["alpha", "beta", "gamma"]
    assert {name: r["output"] for name, r in second["results"].items()} == {
        "alpha": "a2",
        "beta": "b2",
        "gamma": "c2",
    }


@pytest.mark.parametrize(
    ("workers", "message"),
    [
        ([], "workers is empty"),
        (["alpha", "delta"], "unknown workers: delta; choose from alpha, beta, gamma"),
        (["alpha", "alpha"], "selected more than once: alpha"),
        (["alpha"], "1 workers selected but the quorum is 2"),
    ],
)
def test_a_bad_selection_is_refused_before_any_worker_runs(
    workers: list[str], message: str
) -> None:
    graph = build_fanout_graph(WORKERS, quorum=2).compile()
    with pytest.raises(InvalidInputError, match=message):
        ask(graph, workers=workers)


# --- concurrency: completion order does not change the result -------------------------------


@pytest.fixture
def timed_models() -> Iterator[None]:
    names = [f"offline_{i}" for i in range(3)]
    yield
    for name in names:
        unregister_chat_model(name)


async def run_with_latencies(latencies: list[float]) -> dict[str, Any]:
    for index, latency in enumerate(latencies):
        register_chat_model(f"offline_{index}", OfflineChatModel(latency_s=latency))
    workers = [
        agent(name, model=f"offline_{i}") for i, name in enumerate(("alpha", "beta", "gamma"))
    ]
    graph = build_fanout_graph(workers, merger=agent("lead", model="offline")).compile()
    out: dict[str, Any] = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, config())
    return out


@pytest.mark.usefixtures("timed_models")
async def test_the_merge_is_the_same_whatever_order_the_workers_finish_in() -> None:
    forward = await run_with_latencies([0.0, 0.04, 0.08])  # alpha finishes first
    backward = await run_with_latencies([0.08, 0.04, 0.0])  # gamma finishes first

    def outcome(out: dict[str, Any]) -> Any:
        return (
            {name: (r["status"], r["output"]) for name, r in out["results"].items()},
            out["messages"][-1].text,
            out["end_reason"],
        )

    assert outcome(forward) == outcome(backward)
    assert forward["messages"][-1].name == "lead"
    assert all(r["status"] == "ok" for r in forward["results"].values())


# --- the demo, offline, through the run facade -----------------------------------------------


def test_demo_runs_offline_through_the_run_facade() -> None:
    graph = build_fanout_graph(FANOUT_ANALYSTS, merger=FANOUT_MERGER).compile(
        checkpointer=InMemorySaver(), name="fanout"
    )
    result = run(graph, QUESTION, user_id="ada", session_id="s1")

    assert result.ok
    assert result.agent_name == "synthesizer"
    assert result.output.startswith(OFFLINE_MARKER)
    assert {entry["agent"] for entry in result.usage.values()} == {
        "product_analyst",
        "risk_analyst",
        "cost_analyst",
        "synthesizer",
    }
    state = graph.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert [r["output"]["verdict"] for r in state["results"].values()] == ["go", "go", "go"]


def test_a_fallback_model_answers_for_a_failed_merger(models: Script) -> None:
    merger = agent("lead", fallback_models=("fake:backup",))
    fakes = models(
        alpha=["a"], beta=["b"], gamma=["c"], lead=[ValueError("gone")], backup=["merged"]
    )
    out = ask(build_fanout_graph(WORKERS, merger=merger).compile())
    assert (out["messages"][-1].name, out["messages"][-1].text) == ("lead", "merged")
    assert json.loads(fakes["backup"].calls[0].texts[1])["results"][0] == {
        "worker": "alpha",
        "output": "a",
    }


def test_a_merger_that_cannot_answer_fails_the_run_and_keeps_the_results(models: Script) -> None:
    models(alpha=["a"], beta=["b"], gamma=["c"], lead=[ValueError("gone")])
    graph = build_fanout_graph(WORKERS, merger=MERGER).compile(checkpointer=InMemorySaver())
    result = run(graph, QUESTION, session_id="s")
    assert (result.ok, result.end_reason, result.error) == (False, "error", "ValueError: gone")
    state = graph.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert {name: r["output"] for name, r in state["results"].items()} == {
        "alpha": "a",
        "beta": "b",
        "gamma": "c",
    }
