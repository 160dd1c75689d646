"""The hierarchical pattern: topology, plan validation, exact traces, failures, nesting, limits."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel
from syrupy.assertion import SnapshotAssertion

from switchyard.core.errors import AgentConfigError
from switchyard.core.offline import OFFLINE_MARKER
from switchyard.graphs.demos import HIERARCHICAL_MANAGER, HIERARCHICAL_WORKERS
from switchyard.graphs.demos import hierarchical as graph
from switchyard.graphs.hierarchical import (
    build_hierarchical_graph,
    default_plan,
    route_wave,
    schedule,
)
from switchyard.graphs.router import build_router_graph
from switchyard.runtime.run import arun, run
from switchyard.state import AgentSpec, Context
from switchyard.state.hierarchical import (
    Plan,
    PlanRecord,
    PlanStep,
    PlanValidationError,
    StepResult,
    SubTeam,
    check_plan,
    merge_step_results,
)
from tests.fakes import ScriptedChatModel, scripted

Compiled = CompiledStateGraph[Any, Any, Any, Any]

WORKER_NAMES = ("researcher", "coder", "writer")


def spec(name: str, **fields: Any) -> AgentSpec:
    """An agent on its own scripted model `scripted:<name>`."""
    return AgentSpec(
        name=name,
        description=f"The {name} of the team.",
        system_prompt=f"You are the {name}.",
        model=f"scripted:{name}",
        **fields,
    )


MANAGER = spec("manager")
WORKERS = tuple(spec(name) for name in WORKER_NAMES)


@contextmanager
def fakes(**replies: Sequence[Any]) -> Iterator[dict[str, ScriptedChatModel]]:
    """One scripted model per named agent; every reply must be used, no more."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(scripted(f"scripted:{name}", *script))
            for name, script in replies.items()
        }


def plan_call(*steps: tuple[str, str, str, list[str]], call_id: str = "plan") -> AIMessage:
    """The manager's structured-output reply: a `Plan` tool call."""
    return AIMessage(
        content="",
        tool_calls=[
            {
                "name": "Plan",
                "args": {
                    "steps": [
                        {"id": i, "worker": w, "task": t, "depends_on": d} for i, w, t, d in steps
                    ]
                },
                "id": call_id,
            }
        ],
    )


RESEARCH = ("research", "researcher", "Find the facts about asyncio", [])
CODE = ("code", "coder", "Write an asyncio example", [])
WRITE = ("write", "writer", "Write the article", ["research", "code"])


def compile_team(
    workers: Sequence[AgentSpec | SubTeam] = WORKERS,
    manager: AgentSpec = MANAGER,
    **options: Any,
) -> Compiled:
    return build_hierarchical_graph(workers, manager=manager, **options).compile(
        checkpointer=InMemorySaver(), name="hierarchical"
    )


def config(name: str = "t", limit: int = 25) -> RunnableConfig:
    return {"configurable": {"thread_id": name}, "recursion_limit": limit}


def payload(message: Any) -> Any:
    assert isinstance(message, HumanMessage)
    return json.loads(message.text)


def node_order(team: Compiled, text: str, cfg: RunnableConfig) -> list[list[str]]:
    """Run one request; the nodes that ran, grouped by graph step (parallel ones sorted)."""
    steps: dict[int, list[str]] = {}
    for event in team.stream({"messages": [HumanMessage(text)]}, cfg, stream_mode="debug"):
        if event["type"] == "task":
            steps.setdefault(event["step"], []).append(event["payload"]["name"])
    return [sorted(names) for _, names in sorted(steps.items())]


# --- topology ---------------------------------------------------------------------------------


def tiny_sub_team() -> SubTeam:
    return SubTeam(
        name="coder",
        description="Writes code.",
        graph=build_router_graph([spec("python_dev")], default_agent="python_dev").compile(
            name="code_team"
        ),
    )


@pytest.mark.parametrize(
    ("workers", "options"),
    [
        pytest.param(WORKERS, {}, id="agents"),
        pytest.param((WORKERS[0], tiny_sub_team(), WORKERS[2]), {}, id="with-sub-team"),
        pytest.param(WORKERS[:1], {"max_steps": 2, "fallback_plan": "never"}, id="one-worker"),
    ],
)
def test_topology(
    workers: Sequence[AgentSpec | SubTeam], options: dict[str, Any], snapshot: SnapshotAssertion
) -> None:
    builder = build_hierarchical_graph(workers, manager=MANAGER, **options)
    assert builder.compile().get_graph().draw_mermaid(with_styles=False) == snapshot


def test_exported_demo_graph_has_no_checkpointer_and_the_demo_team() -> None:
    assert graph.checkpointer is None
    assert graph.name == "hierarchical"
    nodes = set(graph.get_graph().nodes)
    assert {"plan", "schedule", "researcher", "coder", "writer", "synthesise"} <= nodes


# --- plan validation --------------------------------------------------------------------------


def plan(*steps: tuple[str, str, str, list[str]]) -> Plan:
    return Plan(steps=[PlanStep(id=i, worker=w, task=t, depends_on=d) for i, w, t, d in steps])


def test_check_plan_orders_steps_into_waves() -> None:
    steps, waves = check_plan(plan(WRITE, RESEARCH, CODE), WORKER_NAMES, max_steps=8)
    assert waves == [["research", "code"], ["write"]]
    assert [s["id"] for s in steps] == ["write", "research", "code"]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        pytest.param(
            [("a", "painter", "paint", [])],
            "step 1 ('a') is assigned to unknown worker 'painter'; workers: coder, researcher, "
            "writer",
            id="unknown-worker",
        ),
        pytest.param(
            [("a", "coder", "x", []), ("a", "writer", "y", [])],
            "steps 1, 2 share the id 'a'; step ids must be unique",
            id="duplicate-ids",
        ),
        pytest.param(
            [("a", "coder", "x", ["b"])],
            "step 1 ('a') depends on unknown step 'b'",
            id="unknown-dependency",
        ),
        pytest.param(
            [("a", "coder", "  ", [])],
            "step 1 ('a') has an empty task",
            id="empty-task",
        ),
        pytest.param(
            [("a", "coder", "x", []), ("b", "coder", "y", []), ("c", "coder", "z", [])],
            "the plan has 3 steps; at most 2 are allowed",
            id="too-many-steps",
        ),
    ],
)
def test_check_plan_names_the_faulty_step(
    steps: list[tuple[str, str, str, list[str]]], message: str
) -> None:
    with pytest.raises(PlanValidationError) as caught:
        check_plan(plan(*steps), WORKER_NAMES, max_steps=2)
    assert str(caught.value) == message


def test_check_plan_reports_a_cycle_with_its_steps() -> None:
    cyclic = plan(
        ("a", "coder", "x", ["c"]), ("b", "coder", "y", ["a"]), ("c", "coder", "z", ["b"])
    )
    with pytest.raises(PlanValidationError, match=r"dependency cycle: ") as caught:
        check_plan(cyclic, WORKER_NAMES, max_steps=8)
    cycle = str(caught.value).split(": ", 1)[1].split(" -> ")
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}


def test_check_plan_reports_a_self_dependency_as_a_cycle() -> None:
    with pytest.raises(PlanValidationError, match=r"dependency cycle: a -> a"):
        check_plan(plan(("a", "coder", "x", ["a"])), WORKER_NAMES, max_steps=8)


def test_default_plan_runs_all_but_the_last_worker_in_parallel_then_the_last() -> None:
    workers = {w.name: w for w in WORKERS}
    steps, waves = check_plan(default_plan("Explain asyncio", workers), workers, max_steps=8)
    assert waves == [["researcher", "coder"], ["writer"]]
    assert steps[2]["depends_on"] == ["researcher", "coder"]
    assert all("Explain asyncio" in step["task"] for step in steps)
    single = default_plan("Explain asyncio", {"writer": WORKERS[2]})
    assert [(s.id, s.task, s.depends_on) for s in single.steps] == [
        ("writer", "Explain asyncio", [])
    ]


def test_step_results_merge_by_step_id() -> None:
    def result(step: str, output: str) -> StepResult:
        return StepResult(step=step, worker="w", task="t", status="ok", output=output, error=None)

    merged = merge_step_results({"a": result("a", "1")}, {"b": result("b", "2")})
    assert list(merged) == ["a", "b"]
    assert merge_step_results(merged, {"a": result("a", "3")})["a"]["output"] == "3"
    assert merge_step_results(None, None) == {}


# --- bad configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "manager", "options", "message"),
    [
        pytest.param((), MANAGER, {}, r"no workers given", id="no-workers"),
        pytest.param(
            (WORKERS[0], WORKERS[0]), MANAGER, {}, r"duplicate agent names: researcher", id="dup"
        ),
        pytest.param(
            WORKERS, spec("writer"), {}, r"duplicate agent names: writer", id="manager-is-worker"
        ),
        pytest.param(
            (WORKERS[0], tiny_sub_team(), spec("coder")),
            MANAGER,
            {},
            r"duplicate agent names: coder",
            id="sub-team-duplicate",
        ),
        pytest.param((spec("plan"),), MANAGER, {}, r"reserved", id="reserved-name"),
        pytest.param(("researcher",), MANAGER, {}, r"got str", id="not-a-spec"),
        pytest.param(WORKERS, MANAGER, {"max_steps": 0}, r"max_steps must be", id="max-steps"),
        pytest.param(
            WORKERS, MANAGER, {"max_plan_attempts": 0}, r"max_plan_attempts", id="attempts"
        ),
        pytest.param(
            WORKERS, MANAGER, {"fallback_plan": "sometimes"}, r"fallback_plan must be", id="mode"
        ),
    ],
)
def test_bad_team_is_refused_with_a_specific_error(
    workers: Sequence[Any], manager: AgentSpec, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_hierarchical_graph(workers, manager=manager, **options)


def test_sub_team_checks_its_name_description_and_graph() -> None:
    compiled = tiny_sub_team().graph
    with pytest.raises(AgentConfigError, match=r"must be snake_case"):
        SubTeam(name="Code Team", description="x", graph=compiled)
    with pytest.raises(AgentConfigError, match=r"description must not be empty"):
        SubTeam(name="code", description=" ", graph=compiled)
    with pytest.raises(AgentConfigError, match=r"must be a compiled LangGraph graph"):
        SubTeam(name="code", description="x", graph=StateGraph(dict))  # type: ignore[arg-type]

    class Numbers(BaseModel):
        n: int

    builder = StateGraph(Numbers)
    builder.add_node("noop", lambda state: {})
    builder.add_edge(START, "noop")
    with pytest.raises(AgentConfigError, match=r"must accept \{'messages': \[...\]\}.*: n"):
        SubTeam(name="code", description="x", graph=builder.compile())


# --- behaviour: exact traces with scripted models ---------------------------------------------


def test_trace_plan_waves_and_synthesis() -> None:
    team = compile_team()
    with fakes(
        manager=[plan_call(RESEARCH, CODE, WRITE), "Final article."],
        researcher=["asyncio facts"],
        coder=["async def main(): ..."],
        writer=["draft article"],
    ) as models:
        steps = node_order(team, "Write about asyncio", config())
    assert steps == [
        ["plan"],
        ["schedule"],
        ["coder", "researcher"],
        ["schedule"],
        ["writer"],
        ["schedule"],
        ["synthesise"],
    ]
    planner = models["manager"].calls
    assert [type(m) for m in planner[0].messages] == [SystemMessage, HumanMessage]
    request = payload(planner[0].messages[1])
    assert request["request"] == "Write about asyncio"
    assert [w["name"] for w in request["workers"]] == list(WORKER_NAMES)
    assert planner[0].tools == ["Plan"]  # one structured-output call plans

    seen = {name: payload(models[name].calls[0].messages[-1]) for name in WORKER_NAMES}
    assert seen["researcher"] == {
        "task": "Find the facts about asyncio",
        "goal": "Write about asyncio",
        "step": "research",
        "inputs": [],
    }
    assert seen["writer"]["inputs"] == [
        {"step": "research", "worker": "researcher", "output": "asyncio facts"},
        {"step": "code", "worker": "coder", "output": "async def main(): ..."},
    ]
    for name in WORKER_NAMES:  # a worker sees its system prompt and its payload, nothing else
        assert [type(m) for m in models[name].calls[0].messages] == [SystemMessage, HumanMessage]

    synthesis = payload(planner[1].messages[-1])
    assert [(r["step"], r["status"], r["output"]) for r in synthesis["results"]] == [
        ("research", "ok", "asyncio facts"),
        ("code", "ok", "async def main(): ..."),
        ("write", "ok", "draft article"),
    ]
    state = team.get_state(config()).values
    assert state["plan"]["source"] == "manager"
    assert state["plan"]["waves"] == [["research", "code"], ["write"]]
    assert state["end_reason"] is None
    answer = state["messages"][-1]
    assert (answer.name, answer.text) == ("manager", "Final article.")
    assert [type(m) for m in state["messages"]] == [HumanMessage, AIMessage]
    assert set(state["usage"]) == {f"{n}/scripted:{n}" for n in ("manager", *WORKER_NAMES)}
    assert state["usage"]["manager/scripted:manager"]["calls"] == 2


async def test_trace_is_the_same_under_ainvoke() -> None:
    team = compile_team()
    with fakes(
        manager=[plan_call(RESEARCH, CODE, WRITE), "Final."],
        researcher=["facts"],
        coder=["code"],
        writer=["draft"],
    ) as models:
        out = await team.ainvoke({"messages": [HumanMessage("Write about asyncio")]}, config())
    assert out["messages"][-1].text == "Final."
    assert out["results"]["write"]["status"] == "ok"
    assert payload(models["writer"].calls[0].messages[-1])["inputs"][1]["output"] == "code"


def test_invalid_plan_is_re_asked_with_the_error_for_a_real_model() -> None:
    team = compile_team()
    bad = ("research", "librarian", "Find facts", [])
    with fakes(
        manager=[plan_call(bad), plan_call(RESEARCH), "Done."],
        researcher=["facts"],
    ) as models:
        out = team.invoke({"messages": [HumanMessage("Research asyncio")]}, config())
    second = models["manager"].calls[1].messages
    assert isinstance(second[-2], AIMessage)
    assert json.loads(second[-2].text)["steps"][0]["worker"] == "librarian"
    assert second[-1].text.startswith(
        "That plan cannot run: step 1 ('research') is assigned to unknown worker 'librarian'"
    )
    record: PlanRecord = out["plan"]
    assert (record["source"], record["attempts"], record["valid"]) == ("manager", 2, True)
    assert "unknown worker 'librarian'" in record["errors"][0]
    assert out["end_reason"] is None


def test_a_plan_that_stays_invalid_ends_the_run_with_plan_invalid() -> None:
    team = compile_team(fallback_plan="offline")  # a scripted model is not the offline model
    cycle = [("a", "coder", "x", ["b"]), ("b", "coder", "y", ["a"])]
    with fakes(manager=[plan_call(*cycle), plan_call(*cycle)]):
        result = run(team, "Build it", user_id="u", session_id="s", context=Context())
    assert not result.ok
    assert result.end_reason == "plan_invalid"
    assert result.agent_name == "manager"
    assert "dependency cycle" in result.output
    state = team.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert state["results"] == {}
    assert state["plan"]["attempts"] == 2
    assert state["end_detail"].startswith("the steps form a dependency cycle")


def test_fallback_plan_always_replaces_a_plan_that_stays_invalid() -> None:
    team = compile_team(fallback_plan="always", max_plan_attempts=1)
    with fakes(
        manager=[plan_call(("a", "ghost", "x", [])), "Final."],
        researcher=["facts"],
        coder=["code"],
        writer=["draft"],
    ):
        out = team.invoke({"messages": [HumanMessage("Explain asyncio")]}, config())
    assert out["plan"]["source"] == "default"
    assert out["plan"]["waves"] == [["researcher", "coder"], ["writer"]]
    assert out["end_reason"] is None


def test_a_worker_whose_output_fails_its_schema_is_a_failed_step_and_its_dependents_skip() -> None:
    class Snippet(BaseModel):
        language: str
        code: str

    coder = spec("coder", output_schema=Snippet)
    bad = AIMessage(content="", tool_calls=[{"name": "Snippet", "args": {"code": 1}, "id": "x"}])
    team = compile_team((WORKERS[0], coder, WORKERS[2]))
    with fakes(
        manager=[plan_call(RESEARCH, CODE, WRITE), "Partial answer."],
        researcher=["facts"],
        coder=[bad, bad],  # the answer fails its schema, and so does the re-ask
    ) as models:
        result = run(team, "Write about asyncio", user_id="u", session_id="s")
    assert result.end_reason == "step_failed"
    assert not result.ok
    state = team.get_state({"configurable": {"thread_id": result.thread_id}}).values
    results = state["results"]
    assert results["research"]["status"] == "ok"
    assert results["code"]["status"] == "failed"
    assert results["code"]["error"].startswith("OutputValidationError: agent 'coder' returned")
    assert results["write"]["status"] == "skipped"
    assert results["write"]["error"] == "skipped: step(s) code did not complete"
    synthesis = payload(models["manager"].calls[1].messages[-1])
    assert [r["status"] for r in synthesis["results"]] == ["ok", "failed", "skipped"]
    assert state["messages"][-1].text == "Partial answer."
    assert "step 'code' failed" in state["end_detail"]


def test_a_structured_worker_output_reaches_its_dependents_as_data() -> None:
    class Snippet(BaseModel):
        language: str
        code: str

    coder = spec("coder", output_schema=Snippet)
    good = AIMessage(
        content="",
        tool_calls=[{"name": "Snippet", "args": {"language": "py", "code": "pass"}, "id": "x"}],
    )
    team = compile_team((coder, WORKERS[2]))
    with fakes(
        manager=[plan_call(CODE, ("write", "writer", "Explain", ["code"])), "Final."],
        coder=["text", good],
        writer=["draft"],
    ) as models:
        team.invoke({"messages": [HumanMessage("Explain pass")]}, config())
    inputs = payload(models["writer"].calls[0].messages[-1])["inputs"]
    assert inputs == [
        {"step": "code", "worker": "coder", "output": {"language": "py", "code": "pass"}}
    ]


def test_a_failing_worker_falls_back_to_its_fallback_model() -> None:
    researcher = spec("researcher", fallback_models=("scripted:backup",))
    team = compile_team((researcher, WORKERS[2]))
    with fakes(
        manager=[plan_call(RESEARCH), "Final."],
        researcher=[ValueError("provider refused the request")],
        backup=["facts from the backup model"],
    ) as models:
        out = team.invoke({"messages": [HumanMessage("Research asyncio")]}, config())
    assert out["results"]["research"]["status"] == "ok"
    assert out["results"]["research"]["output"] == "facts from the backup model"
    assert payload(models["backup"].calls[0].messages[-1])["task"] == RESEARCH[2]
    assert out["usage"]["researcher/scripted:backup"]["fallbacks"] == 1


def test_results_are_per_run_and_the_manager_sees_its_own_earlier_turns() -> None:
    team = compile_team()
    with fakes(
        manager=[plan_call(RESEARCH), "First answer.", plan_call(CODE), "Second."],
        researcher=["facts"],
        coder=["code"],
    ) as models:
        team.invoke({"messages": [HumanMessage("Research asyncio")]}, config())
        out = team.invoke({"messages": [HumanMessage("Now code it")]}, config())
    assert list(out["results"]) == ["code"]
    second_plan = models["manager"].calls[2].messages
    assert [type(m) for m in second_plan] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert second_plan[2].text == "First answer."
    assert payload(second_plan[3])["request"] == "Now code it"


# --- nesting ----------------------------------------------------------------------------------


def test_a_sub_team_worker_receives_the_step_payload_and_its_usage_joins_the_ledger() -> None:
    team = compile_team((WORKERS[0], tiny_sub_team(), WORKERS[2]))
    with fakes(
        manager=[plan_call(RESEARCH, CODE, WRITE), "Final."],
        researcher=["facts"],
        python_dev=["def main(): pass"],
        writer=["draft"],
    ) as models:
        out = team.invoke({"messages": [HumanMessage("Write about asyncio")]}, config())
    sub_seen = models["python_dev"].calls[0].messages
    assert [type(m) for m in sub_seen] == [SystemMessage, HumanMessage]
    assert payload(sub_seen[-1])["task"] == CODE[2]
    assert out["results"]["code"] == StepResult(
        step="code",
        worker="coder",
        task=CODE[2],
        status="ok",
        output="def main(): pass",
        error=None,
    )
    assert out["usage"]["python_dev/scripted:python_dev"]["calls"] == 1


async def test_a_sub_team_runs_under_ainvoke_too() -> None:
    team = compile_team((tiny_sub_team(),))
    with fakes(manager=[plan_call(CODE), "Final."], python_dev=["code"]):
        out = await team.ainvoke({"messages": [HumanMessage("Code it")]}, config())
    assert out["results"]["code"]["output"] == "code"


def test_a_sub_team_that_ends_early_is_a_failed_step() -> None:
    inner = build_hierarchical_graph(
        [spec("junior")], manager=spec("lead"), fallback_plan="never", max_plan_attempts=1
    ).compile(name="inner")
    team = compile_team((SubTeam(name="squad", description="A nested team.", graph=inner),))
    with fakes(
        manager=[plan_call(("s", "squad", "do it", [])), "Final."],
        lead=[plan_call(("x", "nobody", "y", []))],
    ):
        out = team.invoke({"messages": [HumanMessage("Do it")]}, config())
    assert out["results"]["s"]["status"] == "failed"
    assert (
        out["results"]["s"]["error"] == "GraphAgentError: agent 'squad' ended early: plan_invalid"
    )
    assert out["end_reason"] == "step_failed"


# --- limits -----------------------------------------------------------------------------------


def chain(n: int) -> list[tuple[str, str, str, list[str]]]:
    return [(f"s{i}", "writer", f"part {i}", [f"s{i - 1}"] if i else []) for i in range(n)]


def test_a_plan_that_fits_the_recursion_limit_exactly_runs() -> None:
    team = compile_team(fallback_plan="never", max_plan_attempts=1)
    with fakes(manager=[plan_call(*chain(3)), "Final."], writer=["a", "b", "c"]):
        out = team.invoke({"messages": [HumanMessage("Go")]}, config(limit=2 * 3 + 4))
    assert out["end_reason"] is None
    assert [r["status"] for r in out["results"].values()] == ["ok", "ok", "ok"]


def test_a_plan_too_long_for_the_recursion_limit_is_invalid_not_a_crash() -> None:
    team = compile_team(fallback_plan="never", max_plan_attempts=1)
    with fakes(manager=[plan_call(*chain(3))]):
        out = team.invoke({"messages": [HumanMessage("Go")]}, config(limit=2 * 3 + 3))
    assert out["end_reason"] == "plan_invalid"
    assert "3 sequential waves, which needs 8 graph steps; this run allows 7" in out["end_detail"]


def test_schedule_skips_whole_waves_whose_dependencies_failed() -> None:
    steps, waves = check_plan(plan(*chain(3)), WORKER_NAMES, max_steps=8)
    record = PlanRecord(
        valid=True, steps=steps, waves=waves, source="manager", attempts=1, errors=[]
    )
    failed = StepResult(
        step="s0", worker="writer", task="part 0", status="failed", output="", error="x"
    )
    state: Any = {"messages": [], "plan": record, "results": {"s0": failed}, "request": "Go"}
    update = schedule(state)
    assert {k: v["status"] for k, v in update["results"].items()} == {
        "s1": "skipped",
        "s2": "skipped",
    }
    assert update["results"]["s2"]["error"] == "skipped: step(s) s1 did not complete"
    assert route_wave({**state, "results": {**state["results"], **update["results"]}}) == (
        "synthesise"
    )


def test_the_exported_graph_runs_offline_without_a_checkpointer() -> None:
    out = graph.invoke({"messages": [HumanMessage("Explain asyncio")]}, {"recursion_limit": 25})
    assert out["messages"][-1].name == "manager"
    assert out["messages"][-1].text.startswith(OFFLINE_MARKER)


async def test_a_failed_step_is_recorded_under_ainvoke_too() -> None:
    team = compile_team((WORKERS[0], WORKERS[2]))
    with fakes(
        manager=[plan_call(RESEARCH, ("write", "writer", "Write", ["research"])), "Sorry."],
        researcher=[ValueError("search is down")],
    ):
        out = await team.ainvoke({"messages": [HumanMessage("Go")]}, config())
    assert out["results"]["research"]["error"] == "ValueError: search is down"
    assert out["results"]["write"]["status"] == "skipped"
    assert out["end_reason"] == "step_failed"


# --- the demo, offline, through the run facade ------------------------------------------------


def test_demo_runs_offline_through_the_run_facade() -> None:
    demo = build_hierarchical_graph(HIERARCHICAL_WORKERS, manager=HIERARCHICAL_MANAGER).compile(
        checkpointer=InMemorySaver(), name="hierarchical"
    )
    result = run(demo, "Write a short article about Python asyncio with an example", session_id="s")
    assert result.ok, result.error
    assert result.agent_name == "manager"
    assert result.output.startswith(OFFLINE_MARKER)
    state = demo.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert state["plan"]["source"] == "default"  # the offline model cannot plan; see the docs
    assert "unknown worker" in state["plan"]["errors"][0]
    assert state["plan"]["waves"] == [["researcher", "coder"], ["writer"]]
    assert [r["status"] for r in state["results"].values()] == ["ok", "ok", "ok"]
    assert {entry["agent"] for entry in result.usage.values()} == {
        "manager",
        "researcher",
        "python_dev",  # the coder sub-team routed the step to its Python developer
        "writer",
    }


async def test_demo_runs_offline_through_arun_and_continues_the_session() -> None:
    demo = graph.builder.compile(checkpointer=InMemorySaver(), name="hierarchical")
    first = await arun(demo, "Explain Python asyncio", session_id="s")
    second = await arun(demo, "Now make it shorter", session_id="s")
    assert first.ok
    assert second.ok
    assert second.output.startswith(OFFLINE_MARKER)
    # one plan (one structured call), never re-asked offline, and the synthesis
    assert second.usage["manager/offline"]["calls"] == 2
