"""Convergence detection: agents that repeat themselves end the run, in every pattern that cycles.

Scripted models repeat answers and handoffs; each test checks the end reason, the answer and
how many calls were made (the point is the calls that are not), through `run()` and through a
plain `graph.invoke`.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from pydantic import ValidationError

from switchyard.core.errors import ConfigError
from switchyard.graphs.events import build_events_graph
from switchyard.graphs.hierarchical import build_hierarchical_graph
from switchyard.graphs.supervisor import build_supervisor_graph
from switchyard.graphs.swarm import build_swarm_graph
from switchyard.guardrails.convergence import (
    Convergence,
    ConvergenceLog,
    Step,
    negations,
    ngram_similarity,
    normalise,
)
from switchyard.observability.report import render_html, report_from_history
from switchyard.runtime.run import run
from switchyard.state.agents import AgentSpec
from switchyard.state.context import Context
from tests.fakes import scripted
from tests.patterns import run_or_invoke

Graph = Pregel[Any, Any, Any, Any]


def spec(name: str, *handoffs: str, **changes: Any) -> AgentSpec:
    return AgentSpec(
        name=name,
        description=f"The {name} agent.",
        model=f"fake:{name}",
        handoffs=handoffs,
        max_attempts=1,
        **changes,
    )


def transfer(peer: str, call_id: str, **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": f"transfer_to_{peer}", "args": args, "id": call_id}])


def task_for(worker: str, call_id: str, text: str) -> AIMessage:
    return transfer(worker, call_id, task=text)


def task(call_id: str, text: str = "What is 2 + 2?") -> AIMessage:
    return task_for("math", call_id, text)


def ended(graph: Graph, message: str, how: str, context: Context | None = None) -> dict[str, Any]:
    """End reason, answer and (through the facade) success and dead letter of one run."""
    end = run_or_invoke(graph, how, message, context)
    out: dict[str, Any] = {"end_reason": end.end_reason, "answer": end.answer}
    if end.result is not None:
        out.update(ok=end.result.ok, dead_letter=end.result.dead_letter_id)
    return out


ENTRY = pytest.mark.parametrize("how", ["run", "invoke"])


# --- what counts as a repetition ----------------------------------------------------------------


def test_event_ids_and_times_do_not_make_the_same_payload_different() -> None:
    first = '{"event": {"type": "ping", "data": {"c": 1}, "id": "a1", "timestamp": "t1"}}'
    again = '{"event": {"id": "b2", "type": "ping", "timestamp": "t2", "data": {"c": 1}}}'
    other = '{"event": {"type": "ping", "data": {"c": 2}, "id": "a1", "timestamp": "t1"}}'
    assert normalise(first) == normalise(again)
    assert normalise(first) != normalise(other)
    assert normalise("  The Answer\n is 4 ") == "the answer is 4"


def test_near_duplicates_are_alike_and_different_answers_are_not() -> None:
    assert normalise("The answer is 4.") == normalise("the answer is  4")
    assert negations(normalise("I don't approve it")) == {"not"}
    assert negations(normalise("I approve it")) == set()
    assert normalise("It is 4.5") != normalise("It is 45")
    assert (
        ngram_similarity("paris is the capital of france", "the capital of france is paris") > 0.92
    )
    assert ngram_similarity("the answer is 4", "refunds take five days") < 0.5
    log = ConvergenceLog()
    # 3-grams rate these alike (0.91), but their numbers differ: never the same answer.
    log.repeated(Step("a", "answer", "q", "the total comes to 120 dollars"), threshold=0.9)
    assert (
        log.repeated(Step("a", "answer", "q", "the total comes to 150 dollars"), threshold=0.9) == 0
    )


def test_the_log_counts_repeats_per_agent_and_input() -> None:
    log = ConvergenceLog()
    assert log.repeated(Step("a", "answer", "q", "4"), threshold=None) == 0
    assert log.repeated(Step("b", "answer", "q", "4"), threshold=None) == 0  # another agent
    assert log.repeated(Step("a", "answer", "other q", "4"), threshold=None) == 0  # other input
    assert log.repeated(Step("a", "handoff", "q", "4"), threshold=None) == 0  # another kind
    assert log.repeated(Step("a", "answer", "q", "4"), threshold=None) == 1


def test_bad_settings_are_one_clear_error() -> None:
    with pytest.raises(ValidationError, match="repeats"):
        Convergence(repeats=1)
    with pytest.raises(ValidationError, match="similarity"):
        Convergence(similarity=1.5)
    with pytest.raises(ConfigError, match="convergence_repeats must be at least 2"):
        Context(convergence_repeats=1)


# --- supervisor -----------------------------------------------------------------------------------


def supervisor_graph(*workers: AgentSpec, **options: Any) -> Graph:
    workers = workers or (spec("math"),)
    return build_supervisor_graph(workers, supervisor=spec("supervisor"), **options).compile(
        checkpointer=InMemorySaver()
    )


@ENTRY
def test_a_worker_giving_the_same_answer_to_the_same_task_converges(how: str) -> None:
    with (
        scripted("fake:supervisor", task("s1"), task("s2")) as supervisor,
        scripted("fake:math", "4", "4") as math,
    ):
        out = ended(supervisor_graph(), "What is 2 + 2?", how)
    assert out["end_reason"] == "converged"
    assert out["answer"] == "4"
    assert out.get("ok", True) is True
    assert out.get("dead_letter") is None  # a stable answer is not a failure
    # Without the guard the supervisor would have delegated until max_rounds (8).
    assert (len(supervisor.calls), len(math.calls)) == (2, 2)


@ENTRY
def test_a_supervisor_repeating_the_same_handoff_makes_no_progress(how: str) -> None:
    quiet_math = spec("math", convergence=Convergence(enabled=False))  # per-agent setting
    with (
        scripted("fake:supervisor", task("s1"), task("s2"), task("s3")) as supervisor,
        scripted("fake:math", "4", "4"),
    ):
        out = ended(supervisor_graph(quiet_math), "What is 2 + 2?", how)
    assert out["end_reason"] == "no_progress"
    assert "same handoff" in out["answer"]
    assert out.get("ok", False) is False
    if how == "run":
        assert out["dead_letter"] is not None
    assert len(supervisor.calls) == 3


def test_no_progress_goes_to_a_person_when_escalation_is_on() -> None:
    quiet_math = spec("math", convergence=Convergence(enabled=False))
    graph = supervisor_graph(quiet_math)
    with (
        scripted("fake:supervisor", task("s1"), task("s2"), task("s3")),
        scripted("fake:math", "4", "4"),
    ):
        result = run(
            graph, "What is 2 + 2?", user_id="u", session_id="s",
            context=Context(escalate_to_human=True),
        )  # fmt: skip
    assert result.end_reason == "escalated"
    assert result.interrupt is not None
    assert "same handoff" in str(result.interrupt)


def test_near_duplicate_answers_converge_unless_only_exact_ones_count() -> None:
    answers = ("Paris is the capital of France.", "The capital of France is Paris")
    with scripted("fake:supervisor", task("s1"), task("s2")), scripted("fake:math", *answers):
        out = ended(supervisor_graph(), "What is 2 + 2?", "invoke")
    assert (out["end_reason"], out["answer"]) == ("converged", answers[1])

    exact = supervisor_graph(convergence=Convergence(similarity=None))
    with (
        scripted("fake:supervisor", task("s1"), task("s2"), "It is 4."),
        scripted("fake:math", *answers),
    ):
        out = ended(exact, "What is 2 + 2?", "invoke")
    assert (out["end_reason"], out["answer"]) == ("completed", "It is 4.")


def test_the_run_may_allow_more_repeats_and_a_graph_may_turn_it_off() -> None:
    with (
        scripted("fake:supervisor", task("s1"), task("s2"), task("s3")),
        scripted("fake:math", "4", "4", "4") as math,
    ):
        out = ended(supervisor_graph(), "Sum?", "run", Context(convergence_repeats=3))
    assert out["end_reason"] == "converged"
    assert len(math.calls) == 3

    with (
        scripted("fake:supervisor", task("s1"), task("s2"), "4, twice.") as supervisor,
        scripted("fake:math", "4", "4"),
    ):
        out = ended(supervisor_graph(convergence=None), "Sum?", "run")
    assert out["end_reason"] == "completed"
    assert len(supervisor.calls) == 3


# --- swarm ----------------------------------------------------------------------------------------


@ENTRY
def test_a_swarm_going_round_a_three_agent_cycle_makes_no_progress(how: str) -> None:
    # ping-pong detection sees pairs (A -> B -> A -> B); this cycle is a -> b -> c -> a -> b -> c.
    agents = [spec("a", "b"), spec("b", "c"), spec("c", "a")]
    graph = build_swarm_graph(agents, default_agent="a").compile(checkpointer=InMemorySaver())
    with (
        scripted("fake:a", transfer("b", "a1"), transfer("b", "a2")),
        scripted("fake:b", transfer("c", "b1"), transfer("c", "b2")) as b,
        scripted("fake:c", transfer("a", "c1")),
    ):
        out = ended(graph, "Who handles this?", how)
    assert out["end_reason"] == "no_progress"
    assert "agent 'b' made the same handoff 2 times" in out["answer"]
    assert len(b.calls) == 2  # stopped at its second handoff, not at max_handoffs (8)


# --- events ---------------------------------------------------------------------------------------


def publishing(reply: str, event: str) -> AIMessage:
    args = {"reply": reply, "publish": [{"type": event, "content": "again"}]}
    return AIMessage("", tool_calls=[{"name": "HandlerOutput", "args": args, "id": "h"}])


@ENTRY
def test_handlers_publishing_to_each_other_converge_instead_of_running_to_max_depth(
    how: str,
) -> None:
    graph = build_events_graph(
        [spec("ponger"), spec("pinger")],
        subscriptions={"ping": ["ponger"], "pong": ["pinger"]},
        publishes={"ponger": ["pong"], "pinger": ["ping"]},
        max_depth=40,
        max_events=100,
    ).compile(checkpointer=InMemorySaver())
    with (
        scripted("fake:ponger", publishing("pong", "pong"), publishing("pong", "pong")) as ponger,
        scripted("fake:pinger", publishing("ping", "ping"), publishing("ping", "ping")) as pinger,
    ):
        out = ended(graph, "ping", how, Context(recursion_limit=100))
    assert out["end_reason"] == "converged"
    assert out["answer"] == "ping"  # the repeated reply, not its JSON
    assert (len(ponger.calls), len(pinger.calls)) == (2, 2)


# --- hierarchical re-plans ------------------------------------------------------------------------


def cyclic_plan() -> AIMessage:
    steps = [
        {"id": "a", "worker": "coder", "task": "x", "depends_on": ["b"]},
        {"id": "b", "worker": "coder", "task": "y", "depends_on": ["a"]},
    ]
    return AIMessage("", tool_calls=[{"name": "Plan", "args": {"steps": steps}, "id": "p"}])


def team(**options: Any) -> Graph:
    return build_hierarchical_graph(
        [spec("coder")], manager=spec("manager"), max_plan_attempts=4, **options
    ).compile(checkpointer=InMemorySaver())


@ENTRY
def test_a_manager_re_planning_the_same_rejected_plan_is_not_asked_again(how: str) -> None:
    with scripted("fake:manager", cyclic_plan(), cyclic_plan()) as manager:
        out = ended(team(fallback_plan="never"), "Build it", how)
    assert out["end_reason"] == "no_progress"
    assert "same rejected answer came back 2 times" in out["answer"]
    assert len(manager.calls) == 2  # of the 4 attempts allowed


def test_the_default_plan_still_stands_in_for_a_manager_making_no_progress() -> None:
    with (
        scripted("fake:manager", cyclic_plan(), cyclic_plan(), "Done."),
        scripted("fake:coder", "code"),
    ):
        state = team(fallback_plan="always").invoke(
            {"messages": [HumanMessage("Build it")]}, {"configurable": {"thread_id": "t"}}
        )
    assert state["plan"]["source"] == "default"
    assert state["plan"]["errors"][-1].startswith("no progress")
    assert state["end_reason"] is None


# --- where it fired -------------------------------------------------------------------------------


def test_the_dead_letter_and_log_name_the_agent_that_made_no_progress(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quiet_math = spec("math", convergence=Convergence(enabled=False))
    with (
        scripted("fake:supervisor", task("s1"), task("s2"), task("s3")),
        scripted("fake:math", "4", "4"),
    ):
        result = run(supervisor_graph(quiet_math), "Sum?", user_id="u", session_id="s")
    assert result.agent_name == "supervisor"
    assert result.error is not None
    assert "agent 'supervisor' made the same handoff" in result.error
    assert any("supervisor is making no progress" in r.getMessage() for r in caplog.records)


def test_the_run_report_shows_where_the_run_converged() -> None:
    graph = supervisor_graph()
    with scripted("fake:supervisor", task("s1"), task("s2")), scripted("fake:math", "4", "4"):
        result = run(graph, "What is 2 + 2?", user_id="u", session_id="s")
    config = {"configurable": {"thread_id": result.thread_id}}
    report = report_from_history(result.thread_id, graph.get_state_history(config))
    (record,) = report.runs
    assert (record.end_reason, record.failed_node) == ("converged", "math")
    assert record.error is not None
    assert "the same answer 2 times" in record.error
    assert "converged at <b>math</b>" in render_html(report)


# --- what is not a repetition ---------------------------------------------------------------


@tool
def save_file(text: str) -> str:
    """Save a text."""
    return "ok"


def saving(call_id: str) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": "save_file", "args": {"text": "t"}, "id": call_id}])


@ENTRY
def test_a_tool_using_worker_with_the_same_tool_result_for_two_tasks_does_not_converge(
    how: str,
) -> None:
    writer = spec("writer", tools=(save_file,))
    with (
        scripted("fake:supervisor", task_for("writer", "s1", "A haiku"), task_for(
            "writer", "s2", "The sales report"), "Both are saved."),
        scripted("fake:writer", saving("w1"), "Saved.", saving("w2"), "Saved.") as calls,
    ):  # fmt: skip
        out = ended(supervisor_graph(writer), "Write both", how)
    assert (out["end_reason"], out["answer"]) == ("completed", "Both are saved.")
    assert len(calls.calls) == 4


def test_tasks_from_one_template_are_different_inputs() -> None:
    brief = "Write the chapter of the handbook on onboarding, in the house style, 800 words: "
    assert ngram_similarity(normalise(brief + "one"), normalise(brief + "two")) > 0.92
    with (
        scripted("fake:supervisor", task("s1", brief + "one"), task("s2", brief + "two"), "Done."),
        scripted("fake:math", "Saved.", "Saved."),
    ):
        out = ended(supervisor_graph(), "Write the handbook", "invoke")
    assert (out["end_reason"], out["answer"]) == ("completed", "Done.")


def test_an_answer_and_its_negation_are_not_the_same_answer() -> None:
    approved, refused = (
        "The refund for this order is approved.",
        "The refund for this order is not approved.",
    )
    assert ngram_similarity(normalise(approved), normalise(refused)) > 0.92
    with (
        scripted("fake:supervisor", task("s1"), task("s2"), "It is not approved."),
        scripted("fake:math", approved, refused),
    ):
        out = ended(supervisor_graph(), "Is my refund approved?", "invoke")
    assert (out["end_reason"], out["answer"]) == ("completed", "It is not approved.")


@ENTRY
def test_two_handlers_converging_in_one_round_end_the_run_once(how: str) -> None:
    # a and b answer every ping with a pong; c answers every pong with a ping. In the third round
    # a and b each get the same ping twice (one per pong c answered), and both converge.
    graph = build_events_graph(
        [spec("a"), spec("b"), spec("c")],
        subscriptions={"ping": ["a", "b"], "pong": ["c"]},
        publishes={"a": ["pong"], "b": ["pong"], "c": ["ping"]},
        max_depth=40,
        max_events=100,
    ).compile(checkpointer=InMemorySaver())
    with (
        scripted("fake:a", *[publishing("a pong", "pong")] * 3),
        scripted("fake:b", *[publishing("b pong", "pong")] * 3),
        scripted("fake:c", *[publishing("c ping", "ping")] * 2),
    ):
        out = ended(graph, "ping", how, Context(recursion_limit=100))
    assert out["end_reason"] == "converged"
    assert out["answer"] in ("a pong", "b pong")


def test_the_embedding_model_can_measure_near_duplicates() -> None:
    # 3-grams rate these 0.44 alike; the sentence embedding (0.82) sees the same statement.
    answers = ("Refunds take five business days.", "A refund needs five working days.")
    assert ngram_similarity(normalise(answers[0]), normalise(answers[1])) < 0.92
    graph = supervisor_graph(convergence=Convergence(method="embedding", similarity=0.75))
    with scripted("fake:supervisor", task("s1"), task("s2")), scripted("fake:math", *answers):
        out = ended(graph, "How long do refunds take?", "invoke")
    assert (out["end_reason"], out["answer"]) == ("converged", answers[1])
