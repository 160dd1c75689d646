"""Guardrails without HTTP: the offline model's failure schedule drives every path and pattern.

The per-pattern tests are parametrised over `switchyard.runtime.registry.PATTERNS`, so a pattern
is covered as soon as it is registered: its demo graph is recompiled with fast retries and an
in-memory checkpointer, and every model call of a run goes to an offline model registered under a
name that `Context(model=...)` selects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import httpx2
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from pydantic import BaseModel, ValidationError

from switchyard.core.errors import AgentConfigError, InvalidInputError
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OfflineChatModel, SimulatedProviderError
from switchyard.core.resilience import TransientRetry, configure_retries, is_transient
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.guardrails import budgets as budgets_module
from switchyard.guardrails.breaker import CircuitOpenError, breaker_for, configure_breakers
from switchyard.guardrails.budgets import Budget, BudgetExceededError, DeadlineExceededError
from switchyard.guardrails.limits import AgentTimeoutError
from switchyard.nodes.call import acall_agent, call_agent
from switchyard.nodes.record import OutputValidationError
from switchyard.runtime.registry import PATTERNS, load_graph
from switchyard.runtime.run import RunResult, arun, replay, resume, run
from switchyard.state import AgentSpec, Context, make_agent
from switchyard.storage.dlq import DeadLetterQueue
from tests.fakes import scripted

Compiled = CompiledStateGraph[Any, Any, Any, Any]
Register = Callable[..., OfflineChatModel]

TEXT = "I need a refund for my last payment"
FOLLOW_UP = "I was charged twice this month"
ALWAYS = tuple(range(1, 1000))
"""A failure schedule that outlasts any run."""


@pytest.fixture
def offline() -> Iterator[Register]:
    """Register offline models under names for the test: `offline(name, fail_on_calls=...)`."""
    names: list[str] = []

    def register(name: str, **settings: Any) -> OfflineChatModel:
        model = OfflineChatModel(**settings)
        register_chat_model(name, model)
        names.append(name)
        return model

    yield register
    for name in names:
        unregister_chat_model(name)


def compiled(pattern: str) -> Compiled:
    """A registered pattern's demo graph with fast retries and its own in-memory checkpointer."""
    demo = load_graph(pattern)
    return demo.builder.compile(checkpointer=InMemorySaver(), name=demo.name)


def thread_messages(graph: Compiled, result: RunResult) -> list[Any]:
    messages: list[Any] = graph.get_state(
        {"configurable": {"thread_id": result.thread_id}}
    ).values.get("messages", [])
    return messages


def assert_nothing_lost(
    graph: Compiled, result: RunResult, turns: Sequence[tuple[str, str | None]]
) -> None:
    """Every user message is in the thread, in order, each followed by its turn's answer."""
    messages = thread_messages(graph, result)
    assert [m.text for m in messages if isinstance(m, HumanMessage)] == [t for t, _ in turns]
    starts = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    for (_, answer), start, end in zip(turns, starts, [*starts[1:], len(messages)], strict=True):
        replies = [m.text for m in messages[start + 1 : end] if isinstance(m, AIMessage)]
        if answer is not None:
            assert answer in replies


def retries(result: RunResult) -> int:
    return sum(entry["retries"] for entry in result.usage.values())


# --- every registered pattern -------------------------------------------------------------------


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_transient_failure_is_retried_and_the_run_completes(
    pattern: str, offline: Register
) -> None:
    graph = compiled(pattern)
    healthy = offline("offline:healthy")
    baseline = run(graph, TEXT, context=Context(model="offline:healthy"))
    assert baseline.ok, baseline.error
    flaky = offline("offline:flaky", fail_on_calls=(1,), failure_status=503)
    result = run(graph, TEXT, user_id="ada", session_id="s", context=Context(model="offline:flaky"))
    assert result.ok, result.error
    assert flaky.calls == healthy.calls + 1  # one retry, not one per layer
    assert retries(result) == 1
    assert result.output == baseline.output
    assert DeadLetterQueue().list() == []
    assert_nothing_lost(graph, result, [(TEXT, result.output)])


@pytest.mark.parametrize("pattern", list(PATTERNS))
async def test_a_transient_failure_is_retried_under_arun(pattern: str, offline: Register) -> None:
    graph = compiled(pattern)
    offline("offline:flaky", fail_on_calls=(1,), failure_status=429)
    result = await arun(graph, TEXT, context=Context(model="offline:flaky"))
    assert result.ok, result.error
    assert retries(result) == 1


@pytest.mark.parametrize("status", [400, 503], ids=["permanent-400", "outage-503"])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_permanent_failure_ends_the_run_cleanly(
    pattern: str, status: int, offline: Register
) -> None:
    graph = compiled(pattern)
    offline("offline:down", fail_on_calls=ALWAYS, failure_status=status)
    offline("offline:healthy")
    failed = run(graph, TEXT, user_id="ada", session_id="s", context=Context(model="offline:down"))
    assert not failed.ok
    # "error" means an exception escaped the graph: a provider failure must be handled
    assert failed.end_reason not in ("completed", "error", "escalated"), failed.error
    assert failed.error
    letter = DeadLetterQueue().get(failed.dead_letter_id or "missing")
    assert (letter.thread_id, letter.correlation_id) == (failed.thread_id, failed.correlation_id)
    assert (letter.pattern, letter.end_reason, letter.input) == (
        graph.name,
        failed.end_reason,
        TEXT,
    )
    assert letter.checkpoint_id is not None
    assert_nothing_lost(graph, failed, [(TEXT, None)])
    # the thread is loadable, and the next run on it works
    after = run(
        graph, FOLLOW_UP, user_id="ada", session_id="s", context=Context(model="offline:healthy")
    )
    assert after.ok, after.error
    assert_nothing_lost(graph, after, [(TEXT, None), (FOLLOW_UP, after.output)])


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_dead_lettered_run_replays_once_the_model_recovers(
    pattern: str, offline: Register
) -> None:
    graph = compiled(pattern)
    down = offline("offline:down", fail_on_calls=ALWAYS, failure_status=400)
    healthy = offline("offline:healthy")
    failed = run(graph, TEXT, user_id="ada", session_id="s", context=Context(model="offline:down"))
    queue = DeadLetterQueue()
    letter = queue.get(failed.dead_letter_id or "missing")
    again = replay(graph, letter, context=Context(model="offline:down"), dlq=queue)
    assert not again.ok
    assert queue.get(letter.id).status == "open"
    calls_before = down.calls
    replayed = replay(graph, letter, context=Context(model="offline:healthy"), dlq=queue)
    assert replayed.ok, replayed.error
    assert down.calls == calls_before
    assert healthy.calls > 0
    assert (queue.get(letter.id).status, queue.get(letter.id).replays) == ("replayed", 2)
    assert_nothing_lost(graph, replayed, [(TEXT, replayed.output)])


# --- the router: retries, the fallback chain, the breaker ---------------------------------------

SUPPORT, DOCS, CODE = ROUTER_AGENTS


def spec(base: AgentSpec, **changes: Any) -> AgentSpec:
    return AgentSpec(**{**base.model_dump(), **changes})


def router(*agents: AgentSpec, default_agent: str = "support") -> Compiled:
    builder = build_router_graph(agents or ROUTER_AGENTS, default_agent=default_agent)
    return builder.compile(checkpointer=InMemorySaver(), name="router")


def test_fast_retries_keep_attempts_and_the_transient_filter() -> None:
    retry = TransientRetry(4)
    assert (retry.max_retries, retry.retry_on) == (3, is_transient)
    assert (retry.initial_delay, retry.max_delay, retry.jitter) == (0.001, 0.001, False)
    configure_retries(None)
    assert (retry.initial_delay, retry.max_delay, retry.jitter) == (0.5, 8.0, True)


def test_attempts_stop_at_max_attempts(offline: Register) -> None:
    down = offline("offline:down", fail_on_calls=ALWAYS, failure_status=503)
    graph = router(spec(SUPPORT, model="offline:down", max_attempts=4), DOCS, CODE)
    result = run(graph, TEXT)
    assert (result.ok, result.end_reason) == (False, "agent_failed")
    assert down.calls == 4


def test_a_validation_error_is_never_retried(offline: Register) -> None:
    down = offline("offline:down", fail_on_calls=(1,), failure_status=422)
    graph = router(spec(SUPPORT, model="offline:down", max_attempts=5), DOCS, CODE)
    result = run(graph, TEXT)
    assert result.end_reason == "agent_failed"
    assert down.calls == 1


def test_the_fallback_chain_tries_fallback_models_in_order(offline: Register) -> None:
    offline("offline:down", fail_on_calls=ALWAYS)
    offline("offline:also_down", fail_on_calls=ALWAYS, failure_status=400)
    backup = offline("offline:backup")
    support = spec(
        SUPPORT, model="offline:down", fallback_models=("offline:also_down", "offline:backup")
    )
    graph = router(support, DOCS, CODE)
    result = run(graph, TEXT, user_id="ada", session_id="s")
    assert result.ok, result.error
    assert result.agent_name == "support"
    # every call is in the ledger, failed ones too: (calls, retries, fallbacks, billed tokens)
    ledger = {
        key: (e["calls"], e["retries"], e["fallbacks"], e["total_tokens"] > 0)
        for key, e in result.usage.items()
    }
    assert ledger == {
        "support/offline:down": (3, 2, 0, False),  # 503s, retried up to max_attempts
        "support/offline:also_down": (1, 0, 1, False),  # a 400 is not retried
        "support/offline:backup": (1, 0, 1, True),
    }
    assert backup.calls == 1
    assert_nothing_lost(graph, result, [(TEXT, result.output)])


def test_an_exhausted_agent_hands_the_turn_to_the_default_agent(offline: Register) -> None:
    offline("offline:down", fail_on_calls=ALWAYS, failure_status=400)
    docs = spec(DOCS, model="offline:down", fallback_models=("offline:down",))
    graph = router(SUPPORT, docs, CODE)
    question = "How do I authenticate with the API?"
    result = run(graph, question, user_id="ada", session_id="s")
    assert result.ok, result.error
    assert result.agent_name == "support"
    assert list(result.usage) == ["docs/offline:down", "support/offline"]
    failed = result.usage["docs/offline:down"]
    assert (failed["calls"], failed["fallbacks"], failed["total_tokens"]) == (2, 1, 0)
    assert_nothing_lost(graph, result, [(question, result.output)])


def test_an_open_breaker_fails_fast_to_the_fallback(offline: Register) -> None:
    configure_breakers(failure_threshold=2, cooldown_s=3600)
    down = offline("offline:down", fail_on_calls=ALWAYS, failure_status=503)
    backup = offline("offline:backup")
    graph = router(
        spec(SUPPORT, model="offline:down", max_attempts=3, fallback_models=("offline:backup",)),
        DOCS,
        CODE,
    )
    first = run(graph, TEXT, user_id="ada", session_id="s")
    assert first.ok
    # the second failure opened the breaker, so the third attempt was refused without a call
    assert down.calls == 2
    assert breaker_for("offline:down").state() == "open"
    second = run(graph, FOLLOW_UP, user_id="ada", session_id="s")
    assert second.ok
    assert (down.calls, backup.calls) == (2, 2)
    assert_nothing_lost(graph, second, [(TEXT, first.output), (FOLLOW_UP, second.output)])


def test_a_retry_does_not_repeat_tool_calls_that_already_ran() -> None:
    """Retries are per model call: the tool that ran before a transient failure is not run again.

    (A node-level `RetryPolicy` would run the whole agent again: a refund issued twice.)
    """
    refunds: list[str] = []

    @tool
    def issue_refund(order_id: str) -> str:
        """Issue a refund for an order."""
        refunds.append(order_id)
        return "refunded"

    agent = spec(SUPPORT, model="scripted:support", tools=(issue_refund,))
    call = AIMessage(
        "", tool_calls=[{"name": "issue_refund", "args": {"order_id": "7"}, "id": "c"}]
    )
    overloaded = SimulatedProviderError("overloaded", status_code=503)
    with scripted("scripted:support", call, overloaded, "Refund issued.") as model:
        result = run(router(agent, DOCS, CODE), TEXT)
    assert result.ok
    assert result.output == "Refund issued."
    assert refunds == ["7"]
    # the retried call is the one that failed: it sent the tool's result, not the request again
    assert model.calls[2].messages == model.calls[1].messages
    assert [type(m).__name__ for m in model.calls[2].messages][-2:] == ["AIMessage", "ToolMessage"]
    assert result.usage["support/scripted:support"]["retries"] == 1


async def test_a_slow_model_times_out_under_arun_and_falls_back(offline: Register) -> None:
    slow = offline("offline:slow", latency_s=5.0)
    offline("offline:fast")
    support = spec(
        SUPPORT,
        model="offline:slow",
        timeout_s=0.05,
        max_attempts=2,
        fallback_models=("offline:fast",),
    )
    graph = router(support, DOCS, CODE)
    result = await arun(graph, TEXT)
    assert result.ok, result.error
    assert slow.calls == 2
    assert result.usage["support/offline:fast"]["fallbacks"] == 1


async def test_acall_agent_raises_a_transient_timeout(offline: Register) -> None:
    offline("offline:slow", latency_s=5.0)
    agent = spec(SUPPORT, model="offline:slow", timeout_s=0.01)
    with pytest.raises(AgentTimeoutError) as raised:
        await acall_agent(agent, [HumanMessage(TEXT)])
    assert is_transient(raised.value)
    assert "timed out after 0.01s" in str(raised.value)


# --- escalation to a person ---------------------------------------------------------------------


def test_low_confidence_pauses_for_a_person_and_resumes_with_their_choice() -> None:
    graph = router()
    context = Context(confidence_threshold=0.35, escalation_threshold=0.2)
    text = "hello there"
    paused = run(graph, text, user_id="ada", session_id="s", context=context)
    assert (paused.ok, paused.end_reason, paused.dead_letter_id) == (False, "escalated", None)
    assert paused.interrupt["reason"] == "low_confidence"
    assert paused.interrupt["agents"] == ["support", "docs", "code"]
    assert paused.interrupt["request"] == text
    assert DeadLetterQueue().list() == []
    done = resume(graph, "docs", user_id="ada", session_id="s", context=context)
    assert done.ok, done.error
    assert done.agent_name == "docs"
    assert done.route_reason is not None
    assert done.route_reason.startswith("chosen by a person")
    assert_nothing_lost(graph, done, [(text, done.output)])


def test_a_person_answering_with_no_agent_name_sends_the_turn_to_the_default() -> None:
    graph = router()
    context = Context(escalation_threshold=0.2)
    run(graph, "hello there", user_id="ada", session_id="s", context=context)
    done = resume(graph, "no idea", user_id="ada", session_id="s", context=context)
    assert done.ok
    assert done.agent_name == "support"


def test_resume_without_a_paused_run_is_refused() -> None:
    graph = router()
    run(graph, TEXT, user_id="ada", session_id="s")
    with pytest.raises(InvalidInputError, match="no run waiting for a person"):
        resume(graph, "docs", user_id="ada", session_id="s")


def escalating_router(offline: Register) -> tuple[Compiled, OfflineChatModel, Context]:
    down = offline("offline:down", fail_on_calls=ALWAYS, failure_status=400)
    return (
        router(spec(SUPPORT, model="offline:down"), DOCS, CODE),
        down,
        Context(escalate_to_human=True),
    )


def test_an_exhausted_chain_escalates_to_a_person(offline: Register) -> None:
    graph, down, context = escalating_router(offline)
    paused = run(graph, TEXT, user_id="ada", session_id="s", context=context)
    assert (paused.ok, paused.end_reason, paused.dead_letter_id) == (False, "escalated", None)
    assert paused.output == ""
    assert paused.interrupt["reason"] == "agent_failed"
    assert paused.interrupt["agent"] == "support"
    assert paused.interrupt["request"] == TEXT
    assert "SimulatedProviderError" in paused.interrupt["failures"][0]
    assert DeadLetterQueue().list() == []
    # the graph resumes the handler with the person's answer, without calling the model again
    calls = down.calls
    answer = "A person here: your refund is on its way."
    config: RunnableConfig = {"configurable": {"thread_id": paused.thread_id}}
    graph.invoke(Command(resume=answer), config, context=context)
    assert down.calls == calls
    last = thread_messages(graph, paused)[-1]
    assert (last.name, last.text) == ("human", answer)
    assert_nothing_lost(graph, paused, [(TEXT, answer)])


def test_resume_continues_a_run_escalated_by_the_fallback_chain(offline: Register) -> None:
    graph, _, context = escalating_router(offline)
    run(graph, TEXT, user_id="ada", session_id="s", context=context)
    answer = "A person here: your refund is on its way."
    done = resume(graph, answer, user_id="ada", session_id="s", context=context)
    assert done.ok, done.error
    assert (done.output, done.agent_name) == (answer, "human")


# --- authority: only declared tools -------------------------------------------------------------


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order by its id."""
    return f"order {order_id}: refunded"


def test_an_undeclared_tool_call_is_refused_recorded_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = spec(SUPPORT, model="scripted:support", tools=(lookup_order,))
    rogue = AIMessage(
        "", tool_calls=[{"name": "issue_refund", "args": {"amount": 10_000}, "id": "c1"}]
    )
    with (
        scripted("scripted:support", rogue, "I cannot issue refunds myself.") as model,
        caplog.at_level(logging.WARNING, logger="switchyard.nodes.agent"),
    ):
        reply = call_agent(agent, [HumanMessage(TEXT)])
    note = "refused: agent 'support' has no tool 'issue_refund' (its tools: lookup_order)"
    assert reply.refusals == [note]
    assert note in caplog.text
    refusal = reply.messages[1]
    assert isinstance(refusal, ToolMessage)
    assert (refusal.text, refusal.status, refusal.tool_call_id) == (note, "error", "c1")
    assert reply.output == "I cannot issue refunds myself."
    assert model.calls[1].messages[-1].text == note  # the model was told, and carried on


def test_a_refused_call_in_a_graph_run_leaves_the_run_going() -> None:
    agent = spec(SUPPORT, model="scripted:support")
    rogue = AIMessage("", tool_calls=[{"name": "transfer_to_docs", "args": {}, "id": "c1"}])
    graph = router(agent, DOCS, CODE)
    with scripted("scripted:support", rogue, "Here is your answer."):
        result = run(graph, TEXT)
    assert result.ok
    assert result.output == "Here is your answer."
    refusal = thread_messages(graph, result)[2]
    assert isinstance(refusal, ToolMessage)
    assert refusal.text.startswith("refused: agent 'support' has no tool 'transfer_to_docs'")


def test_unparseable_tool_arguments_are_answered_with_the_error() -> None:
    agent = spec(SUPPORT, model="scripted:support", tools=(lookup_order,))
    broken = AIMessage(
        "",
        invalid_tool_calls=[
            {"name": "lookup_order", "args": '{"order_id": ', "id": "c1", "error": "bad JSON"}
        ],
    )
    fixed = AIMessage(
        "", tool_calls=[{"name": "lookup_order", "args": {"order_id": "7"}, "id": "c2"}]
    )
    with scripted("scripted:support", broken, fixed, "Order 7 was refunded.") as model:
        reply = call_agent(agent, [HumanMessage(TEXT)])
    error = model.calls[1].messages[-1]
    assert isinstance(error, ToolMessage)
    assert error.status == "error"
    assert "not valid JSON" in error.text
    assert model.calls[2].messages[-1].text == "order 7: refunded"
    assert reply.output == "Order 7 was refunded."
    assert reply.refusals == []


# --- bad output: re-ask, then fallback ----------------------------------------------------------


class Ticket(BaseModel):
    summary: str
    priority: int


def ticket_call(args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": "Ticket", "args": args, "id": call_id}])


def test_output_failing_the_schema_is_re_asked_with_the_error() -> None:
    agent = spec(SUPPORT, model="scripted:support", output_schema=Ticket)
    with scripted(
        "scripted:support",
        ticket_call({"summary": "refund"}, "t1"),
        ticket_call({"summary": "refund", "priority": 2}, "t2"),
    ) as model:
        reply = call_agent(agent, [HumanMessage(TEXT)])
    assert reply.output == Ticket(summary="refund", priority=2)
    reask = model.calls[1].messages[-1]
    assert isinstance(reask, HumanMessage)
    assert "did not match the required schema" in reask.text
    assert "priority" in reask.text
    assert reply.usage["support/scripted:support"]["calls"] == 2
    assert reply.rejections == ["priority: Field required"]
    assert json.loads(reply.messages[-1].text) == {"summary": "refund", "priority": 2}


def test_output_failing_twice_raises_output_validation_error() -> None:
    agent = spec(SUPPORT, model="scripted:support", output_schema=Ticket)
    with (
        scripted(
            "scripted:support",
            ticket_call({"summary": "refund"}, "t1"),
            ticket_call({"priority": "high"}, "t2"),
        ),
        pytest.raises(OutputValidationError, match=r"does not match Ticket: .*\(asked 2 times\)"),
    ):
        call_agent(agent, [HumanMessage(TEXT)])


def test_output_failing_twice_in_a_graph_falls_back(offline: Register) -> None:
    offline("offline:backup")
    agent = spec(
        SUPPORT, model="scripted:support", output_schema=Ticket, fallback_models=("offline:backup",)
    )
    graph = router(agent, DOCS, CODE)
    with scripted(
        "scripted:support",
        ticket_call({"summary": "refund"}, "t1"),
        ticket_call({"summary": "refund"}, "t2"),
    ):
        result = run(graph, TEXT)
    assert result.ok, result.error
    assert Ticket.model_validate_json(result.output)
    assert result.usage["support/offline:backup"]["fallbacks"] == 1


# --- budgets and the deadline through a run -----------------------------------------------------


def test_a_run_budget_stops_the_run_before_the_model_is_called(offline: Register) -> None:
    model = offline("offline:metered")
    graph = router()
    result = run(
        graph,
        TEXT,
        user_id="ada",
        session_id="s",
        context=Context(model="offline:metered", run_budget=Budget(max_tokens=20)),
    )
    assert (result.ok, result.end_reason) == (False, "budget_exceeded")
    assert result.error is not None
    assert "run budget exceeded" in result.error
    assert model.calls == 0
    assert DeadLetterQueue().get(result.dead_letter_id or "").end_reason == "budget_exceeded"
    assert_nothing_lost(graph, result, [(TEXT, None)])


def test_a_session_budget_counts_earlier_turns(offline: Register) -> None:
    model = offline("offline:metered")
    graph = router()
    # a first call is estimated at ~555 tokens and spends ~122; the next one would need ~650 more
    limit = Context(model="offline:metered", session_budget=Budget(max_tokens=700))
    first = run(graph, TEXT, user_id="ada", session_id="s", context=limit)
    assert first.ok
    second = run(graph, FOLLOW_UP, user_id="ada", session_id="s", context=limit)
    assert (second.ok, second.end_reason) == (False, "budget_exceeded")
    assert f"session: {first.total_tokens} tokens spent" in (second.error or "")
    assert model.calls == 1
    other = run(graph, FOLLOW_UP, user_id="ada", session_id="t", context=limit)
    assert other.ok  # another session starts from zero
    assert_nothing_lost(graph, second, [(TEXT, first.output), (FOLLOW_UP, None)])


def test_an_agent_budget_downgrades_to_a_cheaper_model(
    offline: Register, caplog: pytest.LogCaptureFixture
) -> None:
    offline("offline:premium")
    cheap = offline("offline:cheap")
    budget = Budget(max_tokens=700, downgrade_model="offline:cheap")
    graph = router(spec(SUPPORT, model="offline:premium", budget=budget), DOCS, CODE)
    first = run(graph, TEXT, user_id="ada", session_id="s")
    with caplog.at_level(logging.WARNING, logger="switchyard.guardrails.budgets"):
        second = run(graph, FOLLOW_UP, user_id="ada", session_id="s")
    assert first.ok
    assert second.ok
    assert list(first.usage) == ["support/offline:premium"]
    assert list(second.usage) == ["support/offline:cheap"]
    assert cheap.calls == 1
    assert "agent support budget" in caplog.text
    assert "downgrading offline:premium to offline:cheap" in caplog.text


def test_the_spend_of_an_agent_stopped_part_way_is_in_the_ledger() -> None:
    agent = spec(SUPPORT, model="scripted:support", tools=(lookup_order,))
    graph = router(agent, DOCS, CODE)
    call = AIMessage(
        "", tool_calls=[{"name": "lookup_order", "args": {"order_id": "7"}, "id": "c"}]
    )
    # round one (~557 tokens estimated, 15 spent) fits; round two (~600 more) does not
    with scripted("scripted:support", call):
        result = run(graph, TEXT, context=Context(run_budget=Budget(max_tokens=600)))
    assert result.end_reason == "budget_exceeded"
    assert result.total_tokens == 15


def test_a_passed_deadline_stops_the_run(
    offline: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = offline("offline:timed")

    class _Later:
        @staticmethod
        def monotonic() -> float:
            return float("inf")  # every deadline has passed

    monkeypatch.setattr(budgets_module, "time", _Later)
    graph = router()
    result = run(graph, TEXT, context=Context(model="offline:timed", deadline_s=60))
    assert (result.ok, result.end_reason) == (False, "deadline")
    assert "deadline passed" in (result.error or "")
    assert model.calls == 0
    assert DeadLetterQueue().get(result.dead_letter_id or "").end_reason == "deadline"


def test_budget_and_deadline_errors_skip_the_fallback_models(offline: Register) -> None:
    backup = offline("offline:backup")
    agent = spec(SUPPORT, fallback_models=("offline:backup",))
    graph = router(agent, DOCS, CODE)
    result = run(graph, TEXT, context=Context(run_budget=Budget(max_tokens=20)))
    assert result.end_reason == "budget_exceeded"
    assert backup.calls == 0


# --- is_transient -------------------------------------------------------------------------------

# openai's client is built on httpx2; other providers' clients use httpx: both are classified.
REQUEST = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")


def status_error(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    return cls("injected", response=httpx2.Response(status, request=REQUEST), body=None)


def pydantic_error() -> ValidationError:
    try:
        Ticket.model_validate({})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("make", "transient"),
    [
        (lambda: status_error(openai.RateLimitError, 429), True),
        (lambda: status_error(openai.InternalServerError, 500), True),
        (lambda: status_error(openai.InternalServerError, 503), True),
        (lambda: status_error(openai.APIStatusError, 529), True),
        (lambda: openai.APITimeoutError(request=REQUEST), True),
        (lambda: openai.APIConnectionError(request=REQUEST), True),
        (lambda: httpx.ConnectError("refused"), True),
        (lambda: httpx.ReadTimeout("slow"), True),
        (lambda: httpx.RemoteProtocolError("dropped"), True),
        (lambda: httpx2.ConnectError("refused"), True),
        (lambda: httpx2.ConnectTimeout("slow"), True),
        (lambda: httpx2.RemoteProtocolError("dropped"), True),
        (lambda: TimeoutError(), True),
        (lambda: ConnectionResetError(), True),
        (lambda: AgentTimeoutError("slow agent"), True),
        (lambda: SimulatedProviderError("x", status_code=503), True),
        (lambda: status_error(openai.BadRequestError, 400), False),
        (lambda: status_error(openai.AuthenticationError, 401), False),
        (lambda: status_error(openai.PermissionDeniedError, 403), False),
        (lambda: status_error(openai.NotFoundError, 404), False),
        (lambda: status_error(openai.UnprocessableEntityError, 422), False),
        (lambda: SimulatedProviderError("x", status_code=400), False),
        (lambda: CircuitOpenError("openai:gpt-4o-mini", 3.0), False),
        (lambda: BudgetExceededError("run", "over"), False),
        (lambda: DeadlineExceededError("late"), False),
        (lambda: OutputValidationError("bad"), False),
        (pydantic_error, False),
        (lambda: json.JSONDecodeError("bad", "{", 0), False),
        (lambda: ValueError("bad"), False),
        (lambda: KeyError("x"), False),
    ],
)
def test_is_transient(make: Callable[[], BaseException], transient: bool) -> None:
    assert is_transient(make()) is transient


def test_an_http_status_error_is_classified_by_its_response() -> None:
    request = httpx.Request("GET", "http://127.0.0.1/")
    for status, transient in ((503, True), (429, True), (404, False)):
        response = httpx.Response(status, request=request)
        error = httpx.HTTPStatusError("x", request=request, response=response)
        assert is_transient(error) is transient


# --- bad input: clear errors at build time ------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"max_tokens": 0},
        {"max_tokens": -5},
        {"max_usd": 0},
        {"max_usd": -1.0},
        {"alert_usd": 0},
        {"alert_usd": 2.0, "max_usd": 1.0},
        {"max_eur": 5},  # an unknown currency
    ],
)
def test_bad_budgets_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as raised:
        Budget(**fields)
    assert next(iter(fields)) in str(raised.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"deadline_s": 0}, "deadline_s must be positive when set, got 0"),
        ({"deadline_s": -1.0}, "deadline_s must be positive when set, got -1.0"),
        ({"recursion_limit": 0}, "recursion_limit must be positive, got 0"),
        ({"max_handoffs": -1}, "max_handoffs must be positive, got -1"),
        ({"escalation_threshold": 0.5}, "escalation_threshold must be at least 0 and below"),
        ({"escalation_threshold": -0.1}, "escalation_threshold must be at least 0 and below"),
        ({"max_message_pairs": 0}, "max_message_pairs must be positive when set, got 0"),
    ],
)
def test_bad_context_limits_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Context(**fields)


def test_a_context_budget_must_be_a_valid_budget() -> None:
    with pytest.raises(ValidationError, match="max_tokens"):
        Context(run_budget=Budget(max_tokens=-1))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": -2}, "timeout_s"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"budget": {"max_tokens": 0}}, "budget.max_tokens"),
    ],
)
def test_bad_agent_limits_are_refused(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(AgentConfigError) as raised:
        make_agent(name="support", description="Support.", **fields)
    assert str(raised.value).startswith(f"agent 'support': {field}:")


@pytest.mark.parametrize("bad", ["gpt-4o-mini", "openai:", ":gpt-4o", " "])
def test_a_malformed_fallback_model_is_refused_at_build_time(bad: str) -> None:
    agent = spec(SUPPORT, fallback_models=(bad,))
    with pytest.raises(AgentConfigError) as raised:
        build_router_graph([agent, DOCS], default_agent="support")
    assert str(raised.value).startswith("agent 'support': ")
    assert "'provider:model'" in str(raised.value) or "empty model string" in str(raised.value)


def test_a_malformed_downgrade_model_is_refused_at_build_time() -> None:
    agent = spec(SUPPORT, budget=Budget(max_tokens=100, downgrade_model="cheap"))
    with pytest.raises(AgentConfigError, match="agent 'support': model 'cheap' must be"):
        build_router_graph([agent, DOCS], default_agent="support")


def test_a_fallback_agent_that_does_not_exist_is_refused_at_build_time() -> None:
    with pytest.raises(AgentConfigError, match="default agent 'billing' is not one of the agents"):
        build_router_graph([SUPPORT, DOCS], default_agent="billing")


@pytest.mark.parametrize(
    ("fields", "unpriced"),
    [
        ({"model": "openai:no-such-model-xyz"}, "openai:no-such-model-xyz"),
        ({"model": "offline", "fallback_models": ("openai:no-such-model-xyz",)}, "no-such"),
        ({"model": "scripted:support"}, "scripted:support"),
    ],
)
def test_a_dollar_budget_on_a_model_without_a_price_is_refused(
    fields: dict[str, Any], unpriced: str
) -> None:
    agent = spec(SUPPORT, budget=Budget(max_usd=1.0), **fields)
    with pytest.raises(AgentConfigError) as raised:
        build_router_graph([agent, DOCS], default_agent="support")
    message = str(raised.value)
    assert message.startswith("agent 'support' has a dollar budget but no price is known for")
    assert unpriced in message
    assert "set_price" in message


def test_a_dollar_budget_on_priced_models_is_accepted() -> None:
    agent = spec(SUPPORT, model="openai:gpt-4o", budget=Budget(max_usd=1.0))
    assert build_router_graph([agent, DOCS], default_agent="support") is not None


def test_bad_breaker_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold must be at least 1, got 0"):
        configure_breakers(failure_threshold=0)
    with pytest.raises(ValueError, match="cooldown_s must be positive, got -1"):
        configure_breakers(cooldown_s=-1)
