"""The whole fallback chain, in every pattern and every agent's place, on every entry path.

The chain (`switchyard.nodes.fallback`): the agent's model -> its fallback models -> the pattern's
fallback agent -> a person (`interrupt`, when `Context.escalate_to_human` is on) -> the
dead-letter queue. A budget or the run's deadline skips it, ending the run with its own reason.

Each `Case` puts a failing agent (its model `fake:target`, its fallback model `fake:backup`) in
one place of one pattern; `fake:standby` is the fallback agent. Every other agent has a scripted
model whose replies must all be used, no more, so each scenario also pins down which agents ran.
Each scenario runs through the run facade (`run`, `resume`), its async twin and a plain
`graph.invoke`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import StateGraph
from langgraph.types import Command
from pydantic import BaseModel

from switchyard.core.errors import AgentConfigError
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.events import build_events_graph
from switchyard.graphs.fanout import build_fanout_graph
from switchyard.graphs.hierarchical import build_hierarchical_graph
from switchyard.graphs.pipeline import build_pipeline_graph
from switchyard.graphs.router import build_router_graph
from switchyard.graphs.supervisor import build_supervisor_graph
from switchyard.graphs.swarm import build_swarm_graph
from switchyard.guardrails.budgets import Budget, BudgetExceededError, DeadlineExceededError
from switchyard.runtime.run import RunResult, aresume, arun, resume, run
from switchyard.state import AgentSpec, Context
from switchyard.state.outcomes import end_reason_for
from switchyard.storage.dlq import DeadLetterQueue
from tests.fakes import Reply, ScriptedChatModel, scripted

QUESTION = "I need a refund for my last payment"
PERSON = "A person here: the refund is on its way."
TARGET, BACKUP, STANDBY = "fake:target", "fake:backup", "fake:standby"


def down(who: str) -> RuntimeError:
    return RuntimeError(f"{who} is down")


def agent(name: str, **fields: Any) -> AgentSpec:
    """An agent on its own scripted model `fake:<name>`."""
    fields.setdefault("model", f"fake:{name}")
    return AgentSpec(name=name, description=f"The {name} agent.", max_attempts=1, **fields)


def failing(name: str, *, budget: Budget | None = None) -> AgentSpec:
    """The agent under test: `fake:target`, falling back to the model `fake:backup`."""
    return agent(name, model=TARGET, fallback_models=(BACKUP,), budget=budget)


STANDBY_AGENT = agent("standby", model=STANDBY)


def plan_call(*steps: tuple[str, str, str, list[str]]) -> AIMessage:
    """A manager's structured reply: a `Plan` tool call."""
    args = {"steps": [{"id": i, "worker": w, "task": t, "depends_on": d} for i, w, t, d in steps]}
    return AIMessage("", tool_calls=[{"name": "Plan", "args": args, "id": "plan"}])


def handoff_call(worker: str, task: str) -> AIMessage:
    """A supervisor's handoff of `task` to `worker`."""
    call = {"name": f"transfer_to_{worker}", "args": {"task": task}, "id": f"to-{worker}"}
    return AIMessage("", tool_calls=[call])


WRITE_PLAN = plan_call(("write", "writer", "Write the reply", []))
TWO_STEP_PLAN = plan_call(
    ("research", "researcher", "Find the refund policy", []),
    ("write", "writer", "Write the reply", ["research"]),
)

Build = Callable[[AgentSpec, AgentSpec | None], StateGraph[Any, Any, Any, Any]]


@dataclass(frozen=True)
class Case:
    """A failing agent in one place of one pattern, and what the others do around it.

    Attributes:
        build: The graph, from the agent under test and the fallback agent (None: none).
        target: The name of the agent under test.
        done: The other agents' replies in a run that completes (whoever did the agent's job).
        stopped: The other agents' replies in a run whose chain is exhausted.
        end_reason: How that run ends.
        replies: What the agent's place answers in a completed run, given the answer's text (a
            manager answers twice: a plan, then the synthesis).
        before: The agent's own replies before the call that fails.
        after_person: The other agents' replies when a person answered (default: `done`).
        on_stop: The other agents' replies when a budget stops the agent (default: `stopped`).
    """

    build: Build
    target: str
    done: Mapping[str, Sequence[Reply]]
    stopped: Mapping[str, Sequence[Reply]]
    end_reason: str
    replies: Callable[[str], list[Reply]] = lambda text: [text]
    before: Sequence[Reply] = ()
    after_person: Mapping[str, Sequence[Reply]] | None = None
    on_stop: Mapping[str, Sequence[Reply]] | None = None

    def rounds(self) -> int:
        """How often the agent's place is asked in a completed run."""
        return len(self.replies(""))


def _router(target: AgentSpec, standby: AgentSpec | None) -> Any:
    support = ROUTER_AGENTS[0].model_copy(
        update={"model": TARGET, "fallback_models": (BACKUP,), "max_attempts": 1}
    )
    if target.budget is not None:
        support = support.model_copy(update={"budget": target.budget})
    others = [a.model_copy(update={"model": f"fake:{a.name}"}) for a in ROUTER_AGENTS[1:]]
    return build_router_graph([support, *others], default_agent="support", fallback_agent=standby)


def _swarm(target: AgentSpec, standby: AgentSpec | None) -> Any:
    return build_swarm_graph(
        [target, agent("bob")], default_agent=target.name, fallback_agent=standby
    )


CASES: dict[str, Case] = {
    "router": Case(build=_router, target="support", done={}, stopped={}, end_reason="agent_failed"),
    "pipeline-stage": Case(
        build=lambda t, s: build_pipeline_graph([t, agent("write")], fallback_agent=s),
        target="research",
        done={"write": ["The reply, written."]},
        stopped={"write": []},
        end_reason="stage_failed",
    ),
    "fanout-worker": Case(
        build=lambda t, s: build_fanout_graph([t, agent("beta")], quorum=2, fallback_agent=s),
        target="alpha",
        done={"beta": ["beta's view"]},
        stopped={"beta": ["beta's view"]},
        end_reason="quorum_failed",
    ),
    "fanout-merger": Case(
        build=lambda t, s: build_fanout_graph(
            [agent("alpha"), agent("beta")], merger=t, fallback_agent=s
        ),
        target="lead",
        done={"alpha": ["alpha's view"], "beta": ["beta's view"]},
        stopped={"alpha": ["alpha's view"], "beta": ["beta's view"]},
        end_reason="error",  # no merger, no answer: the run fails, and is dead-lettered
    ),
    "hierarchical-plan": Case(
        build=lambda t, s: build_hierarchical_graph(
            [agent("writer")], manager=t, fallback_plan="never", fallback_agent=s
        ),
        target="manager",
        replies=lambda text: [WRITE_PLAN, text],
        done={"writer": ["A draft."]},
        stopped={"writer": []},
        after_person={"writer": []},  # the person answered the request: the turn ends
        end_reason="agent_failed",
    ),
    "hierarchical-synthesis": Case(
        build=lambda t, s: build_hierarchical_graph(
            [agent("writer")], manager=t, fallback_plan="never", fallback_agent=s
        ),
        target="manager",
        before=[WRITE_PLAN],
        done={"writer": ["A draft."]},
        stopped={"writer": ["A draft."]},
        end_reason="agent_failed",
    ),
    "hierarchical-worker": Case(
        build=lambda t, s: build_hierarchical_graph(
            [t, agent("writer")], manager=agent("lead"), fallback_agent=s
        ),
        target="researcher",
        done={"lead": [TWO_STEP_PLAN, "The final reply."], "writer": ["A draft."]},
        stopped={"lead": [TWO_STEP_PLAN, "What I could do."], "writer": []},
        on_stop={"lead": [TWO_STEP_PLAN], "writer": []},  # the run stops: no synthesis
        end_reason="step_failed",
    ),
    "events-handler": Case(
        build=lambda t, s: build_events_graph(
            [t], subscriptions={"request.received": [t.name]}, fallback_agent=s
        ),
        target="reviewer",
        done={},
        stopped={},
        end_reason="handler_failed",
    ),
    "supervisor": Case(
        build=lambda t, s: build_supervisor_graph(
            [agent("researcher")], supervisor=t, fallback_agent=s
        ),
        target="supervisor",
        done={"researcher": []},
        stopped={"researcher": []},
        end_reason="agent_failed",
    ),
    "supervisor-worker": Case(
        build=lambda t, s: build_supervisor_graph([t], supervisor=agent("boss"), fallback_agent=s),
        target="researcher",
        done={"boss": [handoff_call("researcher", "Find the policy"), "The final reply."]},
        stopped={"boss": [handoff_call("researcher", "Find the policy")]},
        end_reason="agent_failed",
    ),
    "swarm": Case(build=_swarm, target="alice", done={}, stopped={}, end_reason="agent_failed"),
}


# --- entry paths ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """How a run ended, whichever way it was started."""

    end_reason: str
    output: str
    interrupt: Any = None
    dead_letter_id: str | None = None
    result: RunResult | None = None


def _outcome(result: RunResult) -> Outcome:
    return Outcome(
        result.end_reason, result.output, result.interrupt, result.dead_letter_id, result
    )


def _from_state(output: dict[str, Any]) -> Outcome:
    interrupts = output.get("__interrupt__") or ()
    if interrupts:
        return Outcome("escalated", "", interrupts[0].value)
    answers = [m for m in output.get("messages", []) if isinstance(m, AIMessage)]
    return Outcome(
        str(output.get("end_reason") or "completed"), answers[-1].text if answers else ""
    )


class Entry:
    """One way of starting and resuming a run."""

    name = "run"

    def start(self, graph: Any, context: Context) -> Outcome:
        """Start a run on `QUESTION`."""
        return _outcome(run(graph, QUESTION, user_id="ada", session_id="s", context=context))

    def resume(self, graph: Any, answer: str, context: Context) -> Outcome:
        """Answer a paused run."""
        return _outcome(resume(graph, answer, user_id="ada", session_id="s", context=context))


class AsyncEntry(Entry):
    """`arun` and `aresume`."""

    name = "arun"

    def start(self, graph: Any, context: Context) -> Outcome:
        """Start a run on `QUESTION`, asynchronously."""
        import asyncio

        return _outcome(
            asyncio.run(arun(graph, QUESTION, user_id="ada", session_id="s", context=context))
        )

    def resume(self, graph: Any, answer: str, context: Context) -> Outcome:
        """Answer a paused run, asynchronously."""
        import asyncio

        return _outcome(
            asyncio.run(aresume(graph, answer, user_id="ada", session_id="s", context=context))
        )


class InvokeEntry(Entry):
    """A plain `graph.invoke`, and `Command(resume=...)`: no facade, no dead-letter queue."""

    name = "invoke"
    config: ClassVar[dict[str, Any]] = {"configurable": {"thread_id": "t"}}

    def start(self, graph: Any, context: Context) -> Outcome:
        """Invoke the graph on `QUESTION`."""
        try:
            output = graph.invoke(
                {"messages": [HumanMessage(QUESTION)]}, self.config, context=context
            )
        except Exception as exc:  # a run that fails (the fan-out merger) raises from invoke
            return Outcome(end_reason_for(exc, default="error"), "")
        return _from_state(output)

    def resume(self, graph: Any, answer: str, context: Context) -> Outcome:
        """Resume the graph with the answer."""
        return _from_state(graph.invoke(Command(resume=answer), self.config, context=context))


ENTRIES = {entry.name: entry for entry in (Entry(), AsyncEntry(), InvokeEntry())}


@contextmanager
def models(**scripts: Sequence[Reply]) -> Iterator[dict[str, ScriptedChatModel]]:
    """Scripted models by name (`target` -> `fake:target`); each must use its script up."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(scripted(f"fake:{name}", *replies))
            for name, replies in scripts.items()
        }


def compiled(case: Case, standby: AgentSpec | None, **target: Any) -> Any:
    builder = case.build(failing(case.target, **target), standby)
    return builder.compile(checkpointer=InMemorySaver(), name="chain")


def saw(answer: str, outcome: Outcome, fakes: Mapping[str, ScriptedChatModel]) -> bool:
    """Whether `answer` went on in the run: the final answer, or what another agent was given."""
    if answer in outcome.output:
        return True
    others = [fake for name, fake in fakes.items() if name not in ("target", "backup", "standby")]
    return any(answer in text for fake in others for call in fake.calls for text in call.texts)


def params() -> list[Any]:
    return [
        pytest.param(case, entry, id=f"{name}-{entry.name}")
        for name, case in CASES.items()
        for entry in ENTRIES.values()
    ]


# --- the chain, step by step --------------------------------------------------------------------


@pytest.mark.parametrize(("case", "entry"), params())
def test_the_fallback_model_answers_for_the_agent(case: Case, entry: Entry) -> None:
    n = case.rounds()
    with models(
        target=[*case.before, *[down("target")] * n],
        backup=case.replies("BACKUP ANSWER"),
        **case.done,
    ) as fakes:
        outcome = entry.start(compiled(case, None), Context())
    assert outcome.end_reason == "completed", outcome
    assert len(fakes["backup"].calls) == n  # the fallback model was called, once per failure
    assert saw("BACKUP ANSWER", outcome, fakes)
    if outcome.result is not None:
        ledger = outcome.result.usage[f"{case.target}/{BACKUP}"]
        assert (ledger["calls"], ledger["fallbacks"]) == (n, n)


@pytest.mark.parametrize(("case", "entry"), params())
def test_the_fallback_agent_answers_when_the_model_and_its_fallbacks_fail(
    case: Case, entry: Entry
) -> None:
    n = case.rounds()
    failures = [*case.before, *[down("target")] * n]
    with models(
        target=failures,
        backup=[down("backup")] * n,
        standby=case.replies("STANDBY ANSWER"),
        **case.done,
    ) as fakes:
        outcome = entry.start(compiled(case, STANDBY_AGENT), Context(escalate_to_human=True))
    assert outcome.end_reason == "completed", outcome
    assert (len(fakes["backup"].calls), len(fakes["standby"].calls)) == (n, n)
    assert saw("STANDBY ANSWER", outcome, fakes)
    # the fallback agent did the agent's job: what it was asked, with the tools it was offered
    failed, stood_in = fakes["target"].calls[len(case.before)], fakes["standby"].calls[0]
    assert stood_in.texts[-1] == failed.texts[-1]
    assert stood_in.tools == failed.tools
    if outcome.result is not None:
        usage = outcome.result.usage
        assert usage[f"{case.target}/{BACKUP}"]["calls"] == n  # the failed calls are charged
        assert usage[f"standby/{STANDBY}"]["calls"] == n


@pytest.mark.parametrize(("case", "entry"), params())
def test_an_exhausted_chain_pauses_for_a_person_and_resume_continues(
    case: Case, entry: Entry
) -> None:
    context = Context(escalate_to_human=True)
    graph = compiled(case, STANDBY_AGENT)
    others = case.after_person if case.after_person is not None else case.done
    with models(
        target=[*case.before, down("target")],
        backup=[down("backup")],
        standby=[down("standby")],
        **others,
    ) as fakes:
        paused = entry.start(graph, context)
        assert paused.end_reason == "escalated", paused
        assert paused.dead_letter_id is None
        question = paused.interrupt
        assert question["reason"] == "agent_failed"
        assert question["request"] == QUESTION or QUESTION in question["task"]
        failures = "; ".join(question["failures"])
        assert "standby is down" in failures
        # every failed call is in the ledger before the run waits for the person
        thread = paused.result.thread_id if paused.result is not None else "t"
        ledger = graph.get_state({"configurable": {"thread_id": thread}}).values["usage"]
        calls_made = {key: entry["calls"] for key, entry in ledger.items()}
        assert calls_made[f"{case.target}/{TARGET}"] == len(case.before) + 1
        assert calls_made[f"{case.target}/{BACKUP}"] == calls_made[f"standby/{STANDBY}"] == 1
        calls = {name: len(fake.calls) for name, fake in fakes.items()}
        done = entry.resume(graph, PERSON, context)
        # resuming runs on from the person's answer: no failed agent is asked again
        for name in ("target", "backup", "standby"):
            assert len(fakes[name].calls) == calls[name]
    assert done.end_reason not in ("escalated", "agent_failed", "stage_failed"), done
    assert saw(PERSON, done, fakes), (done, {n: f.calls for n, f in fakes.items()})
    thread = done.result.thread_id if done.result is not None else "t"
    assert not graph.get_state({"configurable": {"thread_id": thread}}).values.get("asking")
    if done.result is not None:
        assert done.result.ok, done.result.error
        assert DeadLetterQueue().list() == []


@pytest.mark.parametrize(("case", "entry"), params())
def test_with_nothing_configured_the_run_ends_with_a_dead_letter(case: Case, entry: Entry) -> None:
    with models(
        target=[*case.before, down("target")], backup=[down("backup")], **case.stopped
    ) as fakes:
        outcome = entry.start(compiled(case, None), Context())
    assert outcome.end_reason == case.end_reason, outcome
    assert len(fakes["backup"].calls) == 1
    if outcome.result is not None:
        assert outcome.dead_letter_id is not None
        letter = DeadLetterQueue().get(outcome.dead_letter_id)
        assert letter.end_reason == case.end_reason


# --- budgets and the deadline skip the chain ----------------------------------------------------


@pytest.mark.parametrize(
    "stop",
    [BudgetExceededError("run", "run: 40 of 40 tokens spent"), DeadlineExceededError("run late")],
    ids=["budget", "deadline"],
)
@pytest.mark.parametrize(("case", "entry"), params())
def test_a_budget_or_deadline_stop_skips_the_chain_with_its_own_reason(
    case: Case, entry: Entry, stop: Exception
) -> None:
    others = case.on_stop if case.on_stop is not None else case.stopped
    with models(target=[*case.before, stop], backup=[], standby=[], **others):
        outcome = entry.start(compiled(case, STANDBY_AGENT), Context(escalate_to_human=True))
    assert outcome.end_reason == end_reason_for(stop), outcome
    if outcome.result is not None:
        assert outcome.dead_letter_id is not None
        assert DeadLetterQueue().get(outcome.dead_letter_id).end_reason == outcome.end_reason


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (Context(escalate_to_human=True, deadline_s=1e-6), "deadline"),
        (Context(escalate_to_human=True, run_budget=Budget(max_tokens=5)), "budget_exceeded"),
    ],
    ids=["run-deadline", "run-budget"],
)
@pytest.mark.parametrize(("case", "entry"), params())
def test_a_real_budget_or_deadline_stops_the_run_before_any_call(
    case: Case, entry: Entry, context: Context, expected: str
) -> None:
    idle = {name: [] for name in case.done}
    with models(target=[], backup=[], standby=[], **idle):
        outcome = entry.start(compiled(case, STANDBY_AGENT), context)
    assert outcome.end_reason == expected, outcome


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_an_unknown_fallback_agent_is_refused_at_build_time(name: str) -> None:
    with pytest.raises(AgentConfigError, match="fallback agent 'nobody' is not one of the agents"):
        CASES[name].build(failing(CASES[name].target), "nobody")  # type: ignore[arg-type]


def test_a_fallback_agent_of_its_own_may_not_take_an_agents_name() -> None:
    impostor = agent("write", model=STANDBY)
    with pytest.raises(AgentConfigError, match="has the name of another agent"):
        build_pipeline_graph([agent("research"), agent("write")], fallback_agent=impostor)


def test_a_fallback_agent_named_among_the_agents_stands_in_for_the_others() -> None:
    graph = build_pipeline_graph(
        [failing("research"), agent("write")], fallback_agent="write"
    ).compile(checkpointer=InMemorySaver())
    with models(
        target=[down("target")],
        backup=[down("backup")],
        write=["research notes, by the writer", "The reply, written."],
    ) as fakes:
        result = run(graph, QUESTION)
    assert result.ok, result.error
    # the writer did the research stage's job (with its input), then its own
    first, second = fakes["write"].calls
    assert QUESTION in first.texts[-1]
    handoff = json.loads(second.texts[-1])
    assert handoff["previous_output"] == "research notes, by the writer"


# --- parallel branches: one question at a time ----------------------------------------------------

PARALLEL: dict[str, Callable[[Sequence[AgentSpec]], Any]] = {
    "fanout": lambda pair: build_fanout_graph(pair, quorum=2),
    "fanout-sharded": lambda pair: build_fanout_graph(pair, quorum=2, shard_size=1),
    "hierarchical": lambda pair: build_hierarchical_graph(
        pair, manager=agent("lead"), fallback_plan="never"
    ),
    "events": lambda pair: build_events_graph(
        pair, subscriptions={"request.received": [a.name for a in pair]}
    ),
}
"""Patterns whose agents fail side by side in one step: the join asks about each in turn."""

PARALLEL_OTHERS: dict[str, dict[str, list[Reply]]] = {
    "hierarchical": {
        "lead": [
            plan_call(
                ("first", "alpha", "Find the policy", []), ("second", "beta", "Find the form", [])
            ),
            "The final reply.",
        ]
    },
}


@pytest.mark.parametrize("entry", list(ENTRIES.values()), ids=list(ENTRIES))
@pytest.mark.parametrize("pattern", list(PARALLEL))
def test_agents_failing_side_by_side_are_asked_about_one_at_a_time(
    pattern: str, entry: Entry
) -> None:
    context = Context(escalate_to_human=True)
    graph = PARALLEL[pattern]([agent("alpha"), agent("beta")]).compile(
        checkpointer=InMemorySaver(), name="parallel"
    )
    with models(
        alpha=[down("alpha")], beta=[down("beta")], **PARALLEL_OTHERS.get(pattern, {})
    ) as fakes:
        first = entry.start(graph, context)
        assert first.end_reason == "escalated", first
        second = entry.resume(graph, f"{PERSON} ({first.interrupt['agent']})", context)
        assert second.end_reason == "escalated", second
        assert {first.interrupt["agent"], second.interrupt["agent"]} == {"alpha", "beta"}
        done = entry.resume(graph, f"{PERSON} ({second.interrupt['agent']})", context)
    assert done.end_reason == "completed", done
    assert len(fakes["alpha"].calls) == len(fakes["beta"].calls) == 1  # never asked again
    # each answer is its agent's result in the checkpointed state
    thread = done.result.thread_id if done.result is not None else "t"
    values = str(graph.get_state({"configurable": {"thread_id": thread}}).values)
    for name in ("alpha", "beta"):
        assert f"{PERSON} ({name})" in values


def test_a_sharded_fan_out_has_the_fallback_agent_too() -> None:
    graph = build_fanout_graph(
        [failing("alpha"), agent("beta")], quorum=2, shard_size=1, fallback_agent=STANDBY_AGENT
    ).compile(checkpointer=InMemorySaver())
    with models(
        target=[down("target")], backup=[down("backup")], standby=["STANDBY"], beta=["BETA"]
    ):
        result = run(graph, QUESTION)
    assert result.ok, result.error
    assert "## alpha\n\nSTANDBY" in result.output


# --- structured output on the way ---------------------------------------------------------------


class Notes(BaseModel):
    """A research stage's structured output."""

    facts: list[str]


def test_a_persons_answer_in_the_stages_schema_is_its_structured_output() -> None:
    research = failing("research").model_copy(update={"output_schema": Notes})
    graph = build_pipeline_graph([research, agent("write")]).compile(checkpointer=InMemorySaver())
    context = Context(escalate_to_human=True)
    with models(target=[down("target")], backup=[down("backup")], write=["Written."]) as fakes:
        paused = run(graph, QUESTION, context=context)
        assert paused.end_reason == "escalated"
        done = resume(
            graph,
            {"facts": ["refunds take 5 days"]},
            user_id=paused.user_id,
            session_id=paused.session_id,
            context=context,
        )
    assert done.ok, done.error
    handoff = json.loads(fakes["write"].calls[0].texts[-1])
    assert handoff["previous_output"] == {"facts": ["refunds take 5 days"]}


def test_the_fallback_agent_of_a_publisher_publishes_in_its_place() -> None:
    graph = build_events_graph(
        [failing("reviewer"), agent("editor")],
        subscriptions={"request.received": ["reviewer"], "review.done": ["editor"]},
        publishes={"reviewer": ["review.done"]},
        fallback_agent=STANDBY_AGENT,
    ).compile(checkpointer=InMemorySaver())
    publication = {"reply": "Reviewed.", "publish": [{"type": "review.done", "content": "ok"}]}
    call = {"name": "HandlerOutput", "args": publication, "id": "out"}
    with models(
        target=[down("target")],
        backup=[down("backup")],
        standby=[AIMessage("", tool_calls=[call])],
        editor=["Edited."],
    ) as fakes:
        result = run(graph, QUESTION)
    assert (result.ok, result.output) == (True, "Edited."), result.error
    assert fakes["standby"].calls[0].tools == ["HandlerOutput"]  # offered the reviewer's schema
    assert json.loads(fakes["editor"].calls[0].texts[-1])["event"]["type"] == "review.done"


def test_a_new_message_instead_of_an_answer_drops_the_question() -> None:
    graph = build_pipeline_graph([failing("research"), agent("write")]).compile(
        checkpointer=InMemorySaver()
    )
    context = Context(escalate_to_human=True)
    with models(
        target=[down("target"), "Fresh research notes."],
        backup=[down("backup")],
        write=["Written from fresh notes."],
    ) as fakes:
        paused = run(graph, QUESTION, user_id="ada", session_id="s", context=context)
        assert paused.end_reason == "escalated"
        again = run(graph, "Try again please", user_id="ada", session_id="s", context=context)
    assert (again.ok, again.output) == (True, "Written from fresh notes."), again.error
    assert len(fakes["target"].calls) == 2  # the stage worked on the new turn, nobody was asked
    state = graph.get_state({"configurable": {"thread_id": again.thread_id}}).values
    assert not state.get("asking")
