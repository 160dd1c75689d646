"""Guardrails under fire: the real `ChatOpenAI` client against a local server that fails on purpose.

Every agent here uses `openai:gpt-4o-mini` (or `openai:gpt-4o` as its fallback) loaded through
Switchyard's own `load_chat_model`, with `OPENAI_BASE_URL` pointing at `tests.faultserver`. The
server's request counts are the proof: of retries, of attempts that do not multiply, of a breaker
that stops calls from leaving the process, of a budget that stops a call before it is sent.
After every scenario the thread's checkpoint still holds every user message, in order, and the
answer of every turn that completed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel

from switchyard.core.models import load_chat_model
from switchyard.core.resilience import is_transient
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.guardrails import breaker as breaker_module
from switchyard.guardrails import limits as limits_module
from switchyard.guardrails.breaker import breaker_for, configure_breakers
from switchyard.guardrails.budgets import Budget, add_cost_alert, remove_cost_alert
from switchyard.guardrails.cache import disable_response_cache, enable_response_cache
from switchyard.runtime.run import RunResult, arun, replay, run
from switchyard.state import AgentSpec, Context
from switchyard.storage.dlq import DeadLetterQueue
from tests.faultserver import FaultServer, running

pytestmark = [pytest.mark.server, pytest.mark.enable_socket]

Compiled = CompiledStateGraph[Any, Any, Any, Any]

MINI, BIG = "openai:gpt-4o-mini", "openai:gpt-4o"
MINI_WIRE, BIG_WIRE = "gpt-4o-mini", "gpt-4o"  # what the server sees in `model`
REFUND = "I need a refund for my last payment"
FOLLOW_UP = "I was charged twice this month"
DOCS_QUESTION = "How do I authenticate with the API?"
TIMEOUT_S = 0.3


class Ticket(BaseModel):
    """A support ticket: the output schema of the structured agent."""

    summary: str
    priority: int


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order by its id and report its status."""
    return f"order {order_id}: refunded"


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultServer]:
    """A fault server that every `openai:*` model of the test talks to."""
    with running(slow_s=5.0) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv
        assert srv.unused() == {}, "the test scheduled faults that no request consumed"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The breakers' clock, advanced by the test (`clock[0] += seconds`)."""
    now = [1_000_000.0]

    class _Clock:
        @staticmethod
        def time() -> float:
            return now[0]

    monkeypatch.setattr(breaker_module, "time", _Clock)
    return now


def spec(base: AgentSpec, **changes: Any) -> AgentSpec:
    """A demo agent with changes, validated like any AgentSpec."""
    return AgentSpec(**{**base.model_dump(), **changes})


SUPPORT = spec(ROUTER_AGENTS[0], model=MINI, timeout_s=TIMEOUT_S)
DOCS = spec(ROUTER_AGENTS[1], model=MINI, timeout_s=TIMEOUT_S)


def router(*agents: AgentSpec, default_agent: str = "support") -> Compiled:
    """The router over `agents` (support and docs by default), fast retries, in-memory threads."""
    builder = build_router_graph(agents or (SUPPORT, DOCS), default_agent=default_agent)
    return builder.compile(checkpointer=InMemorySaver(), name="router")


def messages_of(graph: Compiled, result: RunResult) -> list[Any]:
    config: RunnableConfig = {"configurable": {"thread_id": result.thread_id}}
    messages: list[Any] = graph.get_state(config).values["messages"]
    return messages


def assert_nothing_lost(
    graph: Compiled, result: RunResult, turns: Sequence[tuple[str, str | None]]
) -> None:
    """The thread holds every user message in order, each followed by its turn's answer.

    `turns` pairs each message sent with the answer of its turn, or None for a turn that failed.
    """
    messages = messages_of(graph, result)
    assert [m.text for m in messages if isinstance(m, HumanMessage)] == [t for t, _ in turns]
    starts = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    for (_, answer), start, end in zip(turns, starts, [*starts[1:], len(messages)], strict=True):
        replies = [m.text for m in messages[start + 1 : end] if isinstance(m, AIMessage)]
        if answer is not None:
            assert answer in replies, f"answer {answer!r} missing from its turn: {replies}"


def reply_to(text: str) -> str:
    """What the fault server answers to a plain text request."""
    return f"fault-server reply: {text}"


def last_user(request: dict[str, Any]) -> str:
    return str([m for m in request["messages"] if m["role"] == "user"][-1]["content"])


# --- the client is configured so attempts do not multiply ---------------------------------------


def test_the_sdk_does_not_retry_so_the_graph_is_the_only_retry_layer(server: FaultServer) -> None:
    model = load_chat_model(MINI, timeout=TIMEOUT_S)
    assert getattr(model, "max_retries", None) == 0
    assert getattr(model, "request_timeout", None) == TIMEOUT_S
    server.plan("503")
    with pytest.raises(openai.InternalServerError) as caught:
        model.invoke("hello")
    assert is_transient(caught.value)
    assert server.count() == 1  # the SDK's default would have sent 3


def test_a_persistent_503_is_sent_exactly_max_attempts_times(server: FaultServer) -> None:
    graph = router(spec(SUPPORT, max_attempts=4), DOCS)
    server.fail_always("503", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s")
    assert (result.ok, result.end_reason) == (False, "agent_failed")
    assert result.error is not None
    assert "support: OpenAIAPIError: Error code: 503 - injected 503" in result.error
    assert server.count(MINI_WIRE) == 4
    assert_nothing_lost(graph, result, [(REFUND, None)])


# --- transient faults are retried ---------------------------------------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        ("429",),
        ("500",),
        ("503",),
        ("drop",),
        ("slow",),
        ("malformed",),
        ("empty_choices",),
        ("429", "503"),
    ],
    ids=lambda faults: "+".join(faults),
)
def test_transient_faults_are_retried_and_the_run_succeeds(
    server: FaultServer, faults: tuple[str, ...]
) -> None:
    graph = router()
    server.plan(*faults, "ok", "ok", model=MINI_WIRE)
    first = run(graph, REFUND, user_id="ada", session_id="s")
    assert first.ok, first.error
    assert first.output == reply_to(REFUND)
    assert server.count(MINI_WIRE) == len(faults) + 1
    entry = first.usage["support/openai:gpt-4o-mini"]
    # every request sent is a call in the ledger; the retried ones are counted as retries
    assert (entry["calls"], entry["retries"], entry["fallbacks"]) == (
        len(faults) + 1,
        len(faults),
        0,
    )
    assert DeadLetterQueue().list() == []
    second = run(graph, FOLLOW_UP, user_id="ada", session_id="s")
    assert second.ok
    assert server.count(MINI_WIRE) == len(faults) + 2
    # the retried turn left exactly one answer behind it, and the follow-up saw it
    assert [m.type for m in messages_of(graph, second)] == ["human", "ai", "human", "ai"]
    assert [m["role"] for m in server.requests(MINI_WIRE)[-1]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    assert_nothing_lost(graph, second, [(REFUND, first.output), (FOLLOW_UP, second.output)])


@pytest.mark.parametrize("fault", ["slow", "503", "drop", "malformed", "empty_choices"])
async def test_async_runs_retry_the_same_faults(server: FaultServer, fault: str) -> None:
    graph = router()
    server.plan(fault, "ok", model=MINI_WIRE)
    result = await arun(graph, REFUND, user_id="ada", session_id="s")
    assert result.ok, result.error
    assert server.count(MINI_WIRE) == 2
    assert result.usage["support/openai:gpt-4o-mini"]["retries"] == 1
    assert_nothing_lost(graph, result, [(REFUND, result.output)])


def test_a_429_carries_retry_after_and_is_retried(server: FaultServer) -> None:
    graph = router()
    server.plan("429", "ok", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s")
    assert result.ok
    assert server.served() == [(MINI_WIRE, "429"), (MINI_WIRE, "ok")]


def test_timeouts_are_retried_then_fall_back(server: FaultServer) -> None:
    graph = router(spec(SUPPORT, max_attempts=2, fallback_models=(BIG,)), DOCS)
    server.plan("slow", "slow", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s")
    assert result.ok, result.error
    assert server.count(MINI_WIRE) == 2
    assert server.count(BIG_WIRE) == 1
    assert result.usage["support/openai:gpt-4o"]["fallbacks"] == 1
    assert result.agent_name == "support"
    assert_nothing_lost(graph, result, [(REFUND, reply_to(REFUND))])


async def test_async_timeouts_are_retried_then_fall_back(server: FaultServer) -> None:
    graph = router(spec(SUPPORT, max_attempts=2, fallback_models=(BIG,)), DOCS)
    server.plan("slow", "slow", model=MINI_WIRE)
    result = await arun(graph, REFUND, user_id="ada", session_id="s")
    assert result.ok, result.error
    assert (server.count(MINI_WIRE), server.count(BIG_WIRE)) == (2, 1)


def test_an_exhausted_agent_hands_the_turn_to_the_default_agent(server: FaultServer) -> None:
    docs = spec(DOCS, model=BIG, max_attempts=2)
    graph = router(SUPPORT, docs)
    server.fail_always("503", model=BIG_WIRE)
    result = run(graph, DOCS_QUESTION, user_id="ada", session_id="s")
    assert result.ok, result.error
    assert result.agent_name == "support"
    assert server.count(BIG_WIRE) == 2
    assert last_user(server.requests(MINI_WIRE)[0]) == DOCS_QUESTION
    assert_nothing_lost(graph, result, [(DOCS_QUESTION, reply_to(DOCS_QUESTION))])


# --- the circuit breaker ------------------------------------------------------------------------


def test_a_burst_of_failures_opens_the_breaker_and_later_calls_skip_the_server(
    server: FaultServer, clock: list[float]
) -> None:
    configure_breakers(failure_threshold=3, cooldown_s=30.0)
    graph = router(spec(SUPPORT, max_attempts=3, fallback_models=(BIG,)), DOCS)
    server.fail_always("503", model=MINI_WIRE)
    sent: list[tuple[str, str | None]] = []

    def turn(text: str) -> RunResult:
        result = run(graph, text, user_id="ada", session_id="s")
        assert result.ok, result.error
        sent.append((text, result.output))
        return result

    first = turn(REFUND)  # three failures: the breaker opens; the fallback model answers
    assert (server.count(MINI_WIRE), server.count(BIG_WIRE)) == (3, 1)
    assert breaker_for(MINI).state() == "open"
    assert first.usage["support/openai:gpt-4o"]["fallbacks"] == 1

    for n in range(2, 5):  # open: the primary model is not called at all, and not retried
        turn(f"{FOLLOW_UP} (again, {n})")
        assert (server.count(MINI_WIRE), server.count(BIG_WIRE)) == (3, n)

    clock[0] += 30.0  # cool-down over: one trial call; it fails, so the breaker opens again
    assert breaker_for(MINI).state() == "half_open"
    turn("Update the credit card on my invoice")
    assert (server.count(MINI_WIRE), server.count(BIG_WIRE)) == (4, 5)
    assert breaker_for(MINI).state() == "open"

    clock[0] += 30.0  # the provider is back: the trial succeeds and closes the breaker
    server.recover(model=MINI_WIRE)
    last = turn("How do I cancel my subscription?")
    assert (server.count(MINI_WIRE), server.count(BIG_WIRE)) == (5, 5)
    assert breaker_for(MINI).state() == "closed"
    assert list(last.usage) == ["support/openai:gpt-4o-mini"]
    assert_nothing_lost(graph, last, sent)


def test_an_open_breaker_with_no_fallback_ends_the_run_without_calling(
    server: FaultServer, clock: list[float]
) -> None:
    configure_breakers(failure_threshold=2, cooldown_s=30.0)
    graph = router(spec(SUPPORT, max_attempts=2), DOCS)
    server.fail_always("500", model=MINI_WIRE)
    first = run(graph, REFUND, user_id="ada", session_id="s")
    assert (first.ok, server.count(MINI_WIRE)) == (False, 2)
    second = run(graph, FOLLOW_UP, user_id="ada", session_id="s")
    assert (second.ok, second.end_reason) == (False, "agent_failed")
    assert second.error is not None
    assert "CircuitOpenError" in second.error
    assert server.count(MINI_WIRE) == 2
    assert {letter.correlation_id for letter in DeadLetterQueue().list()} == {
        first.correlation_id,
        second.correlation_id,
    }
    assert_nothing_lost(graph, second, [(REFUND, None), (FOLLOW_UP, None)])


# --- bad output: re-asked, then the fallback ----------------------------------------------------


def test_a_body_that_stays_malformed_is_retried_then_falls_back(server: FaultServer) -> None:
    graph = router(spec(SUPPORT, fallback_models=(BIG,)), DOCS)
    server.plan("malformed", "malformed", "malformed", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s")
    assert result.ok, result.error
    # a body that does not parse is a provider fault, like a 5xx: retried, then the fallback
    assert (server.count(MINI_WIRE), server.count(BIG_WIRE)) == (3, 1)
    assert result.usage["support/openai:gpt-4o"]["fallbacks"] == 1
    assert_nothing_lost(graph, result, [(REFUND, reply_to(REFUND))])


def test_a_malformed_body_of_a_structured_call_is_retried_not_re_asked(
    server: FaultServer,
) -> None:
    graph = router(spec(SUPPORT, output_schema=Ticket, fallback_models=(BIG,)), DOCS)
    server.plan("malformed", "malformed", "malformed", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s")
    assert result.ok, result.error
    schema_calls = [r for r in server.requests(MINI_WIRE) if "response_format" in r]
    assert len(schema_calls) == 3
    # the same request each time: a broken body says nothing about the answer to correct
    assert all(last_user(call) == REFUND for call in schema_calls)
    assert server.count(BIG_WIRE) == 1  # the fallback answers in one structured call
    ticket = Ticket.model_validate_json(result.output)
    assert ticket.priority == 1
    assert_nothing_lost(graph, result, [(REFUND, result.output)])


def test_output_that_fails_the_schema_is_re_asked_with_the_error(server: FaultServer) -> None:
    graph = router(spec(SUPPORT, output_schema=Ticket, fallback_models=(BIG,)), DOCS)
    server.plan("bad_tool_args", "ok", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s")
    assert result.ok, result.error
    reask = last_user(server.requests(MINI_WIRE)[-1])
    assert "did not match the required schema" in reask
    assert "summary" in reask  # the validation error names the missing field
    assert server.count(BIG_WIRE) == 0
    assert Ticket.model_validate_json(result.output).summary
    entry = result.usage["support/openai:gpt-4o-mini"]
    assert (entry["calls"], entry["fallbacks"]) == (2, 0)
    assert_nothing_lost(graph, result, [(REFUND, result.output)])


def test_output_that_fails_twice_falls_back(server: FaultServer) -> None:
    graph = router(spec(SUPPORT, output_schema=Ticket, fallback_models=(BIG,)), DOCS)
    server.plan("bad_tool_args", "bad_tool_args", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s")
    assert result.ok, result.error
    assert (server.count(MINI_WIRE), server.count(BIG_WIRE)) == (2, 1)
    assert result.usage["support/openai:gpt-4o"]["fallbacks"] == 1
    assert Ticket.model_validate_json(result.output).priority == 1


def test_output_that_fails_everywhere_ends_the_run_as_failed(server: FaultServer) -> None:
    graph = router(spec(SUPPORT, output_schema=Ticket), DOCS)
    server.plan("bad_tool_args", "bad_tool_args", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s")
    assert (result.ok, result.end_reason) == (False, "agent_failed")
    assert result.error is not None
    assert "OutputValidationError" in result.error
    assert server.count(MINI_WIRE) == 2  # asked once more with the error, never retried
    assert DeadLetterQueue().get(result.dead_letter_id or "").end_reason == "agent_failed"


def test_invalid_tool_call_arguments_are_answered_with_the_error(server: FaultServer) -> None:
    graph = router(spec(SUPPORT, tools=(lookup_order,)), DOCS)
    text = f"{REFUND}: please lookup_order 42"
    server.plan("bad_tool_args", "ok", "ok", model=MINI_WIRE)
    result = run(graph, text, user_id="ada", session_id="s")
    assert result.ok, result.error
    _, second, third = server.requests(MINI_WIRE)
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 1
    assert "not valid JSON" in tool_messages[0]["content"]
    # the model called again with valid arguments; the tool ran; then it answered
    assert [m["role"] for m in third["messages"]][-2:] == ["assistant", "tool"]
    assert "refunded" in third["messages"][-1]["content"]
    stored = messages_of(graph, result)
    assert [type(m).__name__ for m in stored] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert_nothing_lost(graph, result, [(text, reply_to(text))])


# --- hard limits: a provider that never answers, Retry-After ------------------------------------

PATIENT = spec(SUPPORT, timeout_s=None)
"""Support with no per-call timeout: only the run's deadline bounds its calls."""


@pytest.mark.parametrize("asynchronous", [False, True], ids=["run", "arun"])
async def test_a_provider_that_never_answers_ends_the_run_at_its_deadline(
    server: FaultServer, asynchronous: bool
) -> None:
    graph = router(PATIENT, DOCS)
    server.fail_always("hang", model=MINI_WIRE)
    context = Context(deadline_s=1.0)
    call = arun if asynchronous else run
    result = call(graph, REFUND, user_id="ada", session_id="s", context=context)
    result = await result if asynchronous else result  # type: ignore[misc]
    # the server still holds the request: only the deadline can have ended the run
    assert (result.ok, result.end_reason) == (False, "deadline")
    assert "waiting to call its model" in str(result.error)
    assert server.count(MINI_WIRE) == 1
    assert result.input_tokens > 0  # the abandoned call is charged its prompt
    assert [letter.end_reason for letter in DeadLetterQueue().list()] == ["deadline"]
    assert_nothing_lost(graph, result, [(REFUND, None)])


def test_a_reply_slower_than_the_deadline_is_not_waited_for(server: FaultServer) -> None:
    server.slow_s = 30.0
    graph = router(PATIENT, DOCS)
    server.plan("slow", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s", context=Context(deadline_s=1.0))
    assert result.end_reason == "deadline"
    assert server.count(MINI_WIRE) == 1


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits a `Retry-After` asks of the next attempt, recorded instead of taken."""
    taken: list[float] = []

    async def asleep(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(limits_module, "_sleep", taken.append)
    monkeypatch.setattr(limits_module, "_asleep", asleep)
    return taken


@pytest.mark.parametrize("asynchronous", [False, True], ids=["run", "arun"])
async def test_retry_after_is_waited_for_when_it_ends_before_the_deadline(
    server: FaultServer, waits: list[float], asynchronous: bool
) -> None:
    server.retry_after = "20"
    graph = router(PATIENT, DOCS)
    server.plan("429", "ok", model=MINI_WIRE)
    call = arun if asynchronous else run
    result = call(graph, REFUND, user_id="ada", session_id="s", context=Context(deadline_s=60))
    result = await result if asynchronous else result  # type: ignore[misc]
    assert result.ok, result.error
    assert server.served() == [(MINI_WIRE, "429"), (MINI_WIRE, "ok")]
    assert len(waits) == 1
    assert 10.0 < waits[0] <= 20.0  # what is left of the 20 s after the (1 ms) back-off


def test_retry_after_past_the_deadline_is_not_retried(
    server: FaultServer, waits: list[float]
) -> None:
    server.retry_after = "120"
    graph = router(PATIENT, DOCS)
    server.fail_always("429", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s", context=Context(deadline_s=30))
    assert (result.ok, result.end_reason) == (False, "rate_limited")
    assert "RateLimitedError" in str(result.error)
    assert "asked to wait 120s before calling again (Retry-After)" in str(result.error)
    assert server.count(MINI_WIRE) == 1
    assert waits == []


def test_retry_after_past_the_deadline_goes_to_the_fallback_model(
    server: FaultServer, waits: list[float]
) -> None:
    server.retry_after = "120"
    graph = router(spec(PATIENT, fallback_models=(BIG,)), DOCS)
    server.fail_always("429", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s", context=Context(deadline_s=30))
    assert result.ok, result.error
    assert (server.count(MINI_WIRE), server.count(BIG_WIRE)) == (1, 1)
    assert result.usage["support/openai:gpt-4o"]["fallbacks"] == 1
    assert waits == []


@pytest.mark.parametrize("fault", ["empty_choices", "malformed", "hang"])
def test_the_final_error_names_the_provider_fault_in_one_line(
    server: FaultServer, fault: str
) -> None:
    graph = router(spec(SUPPORT, max_attempts=2), DOCS)
    server.fail_always(fault, model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s")
    assert result.end_reason == "agent_failed"
    assert result.error is not None
    assert "\n" not in result.error
    named = {
        "empty_choices": "ProviderResponseError: provider sent a reply with no choices in it",
        "malformed": "ProviderResponseError: provider sent a malformed response body",
        "hang": "AgentTimeoutError: agent 'support' timed out after 0.3s",
    }
    assert named[fault] in result.error
    assert server.count(MINI_WIRE) == 2


# --- budgets ------------------------------------------------------------------------------------


@pytest.fixture
def big_usage(server: FaultServer) -> FaultServer:
    """Every successful answer reports 1,000 tokens in and 500 out."""
    server.usage = (1000, 500)
    return server


def test_a_run_budget_stops_the_run_before_the_call_that_would_exceed_it(
    big_usage: FaultServer,
) -> None:
    server = big_usage
    graph = router(spec(SUPPORT, tools=(lookup_order,)), DOCS)
    warm_up = run(graph, REFUND, user_id="ada", session_id="s")
    assert warm_up.ok
    text = f"{FOLLOW_UP}: lookup_order 7"
    # the tool round costs 1,500 tokens; the answer would need ~600 more: over 1,520
    budget = Context(run_budget=Budget(max_tokens=1520))
    result = run(graph, text, user_id="ada", session_id="s", context=budget)
    assert (result.ok, result.end_reason) == (False, "budget_exceeded")
    assert result.error is not None
    assert "run budget exceeded" in result.error
    assert server.count(MINI_WIRE) == 2  # warm-up + the tool round; the refused call never left
    letter = DeadLetterQueue().get(result.dead_letter_id or "")
    assert (letter.end_reason, letter.thread_id) == ("budget_exceeded", result.thread_id)
    # the session goes on: the next run (a normal budget) answers
    after = run(graph, "How do I cancel my subscription?", user_id="ada", session_id="s")
    assert after.ok
    assert_nothing_lost(
        graph,
        after,
        [
            (REFUND, warm_up.output),
            (text, None),
            ("How do I cancel my subscription?", after.output),
        ],
    )


def test_a_session_budget_stops_the_turn_that_would_exceed_it(big_usage: FaultServer) -> None:
    graph = router()
    context = Context(session_budget=Budget(max_tokens=1520))
    first = run(graph, REFUND, user_id="ada", session_id="s", context=context)
    assert first.ok
    assert first.total_tokens == 1500
    second = run(graph, FOLLOW_UP, user_id="ada", session_id="s", context=context)
    assert (second.ok, second.end_reason) == (False, "budget_exceeded")
    assert "session budget exceeded" in (second.error or "")
    assert big_usage.count(MINI_WIRE) == 1
    assert_nothing_lost(graph, second, [(REFUND, first.output), (FOLLOW_UP, None)])


def test_an_agent_budget_downgrades_the_model_instead_of_stopping(
    big_usage: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    support = spec(SUPPORT, model=BIG, budget=Budget(max_tokens=1520, downgrade_model=MINI))
    graph = router(support, DOCS)
    first = run(graph, REFUND, user_id="ada", session_id="s")
    with caplog.at_level(logging.WARNING, logger="switchyard.guardrails.budgets"):
        second = run(graph, FOLLOW_UP, user_id="ada", session_id="s")
    assert first.ok
    assert second.ok
    assert list(first.usage) == ["support/openai:gpt-4o"]
    assert list(second.usage) == ["support/openai:gpt-4o-mini"]
    assert [r["model"] for r in big_usage.requests()] == [BIG_WIRE, MINI_WIRE]
    assert "downgrading openai:gpt-4o to openai:gpt-4o-mini" in caplog.text
    assert_nothing_lost(graph, second, [(REFUND, first.output), (FOLLOW_UP, second.output)])


def test_a_cost_alert_fires_once_per_run(big_usage: FaultServer) -> None:
    alerts: list[tuple[str, float, float]] = []

    def hook(scope: str, spent: float, alert: float) -> None:
        alerts.append((scope, spent, alert))

    graph = router(spec(SUPPORT, tools=(lookup_order,)), DOCS)
    context = Context(run_budget=Budget(max_usd=1.0, alert_usd=0.0001))
    add_cost_alert(hook)
    try:
        result = run(graph, f"{REFUND}: lookup_order 9", user_id="ada", context=context)
    finally:
        remove_cost_alert(hook)
    assert result.ok
    assert big_usage.count() == 2  # two priced calls, each over the alert on its own
    assert len(alerts) == 1
    scope, spent, alert = alerts[0]
    assert (scope, alert) == ("run", 0.0001)
    assert spent == pytest.approx(result.cost_usd / 2)
    assert result.cost_usd > 0


# --- the dead-letter queue ----------------------------------------------------------------------


def test_a_failed_run_is_dead_lettered_and_replays_once_the_server_recovers(
    server: FaultServer,
) -> None:
    graph = router(spec(SUPPORT, max_attempts=2), DOCS)
    warm_up = run(graph, "I can't log in to my account", user_id="ada", session_id="s")
    server.fail_always("503", model=MINI_WIRE)
    failed = run(graph, REFUND, user_id="ada", session_id="s")
    assert (failed.ok, failed.end_reason) == (False, "agent_failed")
    queue = DeadLetterQueue()
    letter = queue.get(failed.dead_letter_id or "")
    assert (letter.thread_id, letter.correlation_id, letter.input) == (
        failed.thread_id,
        failed.correlation_id,
        REFUND,
    )
    assert (letter.user_id, letter.session_id, letter.status) == ("ada", "s", "open")
    assert letter.checkpoint_id is not None
    assert letter.pattern == "router"

    still_down = replay(graph, letter, dlq=queue)
    assert not still_down.ok
    assert (queue.get(letter.id).status, queue.get(letter.id).replays) == ("open", 1)
    assert server.count(MINI_WIRE) == 1 + 2 + 2

    server.recover(model=MINI_WIRE)
    replayed = replay(graph, letter, dlq=queue)
    assert replayed.ok, replayed.error
    assert replayed.output == reply_to(REFUND)
    assert replayed.correlation_id == failed.correlation_id
    assert (queue.get(letter.id).status, queue.get(letter.id).replays) == ("replayed", 2)
    assert server.count(MINI_WIRE) == 1 + 2 + 2 + 1  # classify was not run again, one call
    assert queue.list(status="open") == []
    assert_nothing_lost(
        graph,
        replayed,
        [("I can't log in to my account", warm_up.output), (REFUND, replayed.output)],
    )
    # and the session continues after the replay
    after = run(graph, FOLLOW_UP, user_id="ada", session_id="s")
    assert after.ok
    assert_nothing_lost(
        graph,
        after,
        [
            ("I can't log in to my account", warm_up.output),
            (REFUND, replayed.output),
            (FOLLOW_UP, after.output),
        ],
    )


def test_every_failure_kind_is_dead_lettered(big_usage: FaultServer) -> None:
    server = big_usage
    graph = router(spec(SUPPORT, max_attempts=2), DOCS)
    server.plan("503", "503", "malformed", "empty_choices", model=MINI_WIRE)
    outage = run(graph, REFUND, user_id="ada", session_id="a")
    broken = run(graph, REFUND, user_id="ada", session_id="b")
    over = run(
        graph,
        REFUND,
        user_id="ada",
        session_id="c",
        context=Context(run_budget=Budget(max_tokens=10)),
    )
    results = [outage, broken, over]
    assert [r.end_reason for r in results] == ["agent_failed", "agent_failed", "budget_exceeded"]
    letters = {letter.correlation_id: letter for letter in DeadLetterQueue().list()}
    assert set(letters) == {r.correlation_id for r in results}
    for r in results:
        assert letters[r.correlation_id].thread_id == r.thread_id
        assert letters[r.correlation_id].checkpoint_id is not None
        assert_nothing_lost(graph, r, [(REFUND, None)])
    assert server.count(MINI_WIRE) == 4


# --- streaming and the response cache -----------------------------------------------------------


def test_streamed_tokens_come_through_the_graph_after_a_retry(server: FaultServer) -> None:
    graph = router()
    server.plan("503", "ok", model=MINI_WIRE)
    config: RunnableConfig = {"configurable": {"thread_id": "stream-1"}}
    chunks: list[str] = []
    for part in graph.stream({"messages": [HumanMessage(REFUND)]}, config, stream_mode="messages"):
        message, metadata = cast(tuple[Any, dict[str, Any]], part)
        if isinstance(message, AIMessageChunk) and metadata["langgraph_node"] == "support":
            chunks.append(message.text)
    assert server.requests(MINI_WIRE)[-1]["stream"] is True
    assert len(chunks) > 2
    assert "".join(chunks) == reply_to(REFUND)
    stored = graph.get_state(config).values["messages"]
    assert [m.text for m in stored] == [REFUND, reply_to(REFUND)]


def test_an_identical_call_is_answered_from_the_cache(server: FaultServer, tmp_path: Path) -> None:
    graph = router()
    enable_response_cache(tmp_path / "cache.sqlite")
    try:
        first = run(graph, REFUND, user_id="ada", session_id="one")
        second = run(graph, REFUND, user_id="ada", session_id="two")
    finally:
        disable_response_cache()
    assert server.count() == 1
    assert second.output == first.output
    entry = second.usage["support/openai:gpt-4o-mini"]
    assert (entry["cache_hits"], entry["total_tokens"], entry["cost_usd"]) == (1, 0, 0.0)
    assert first.usage["support/openai:gpt-4o-mini"]["cost_usd"] > 0


def test_a_tool_message_refusal_reaches_the_provider_as_a_tool_result(server: FaultServer) -> None:
    """An undeclared tool call (here: with unparsable arguments) is refused, answered, recorded."""
    graph = router()  # support declares no tools
    server.plan("bad_tool_args", "ok", model=MINI_WIRE)
    result = run(graph, REFUND, user_id="ada", session_id="s")
    assert result.ok, result.error
    refusal = next(m for m in messages_of(graph, result) if isinstance(m, ToolMessage))
    assert refusal.status == "error"
    assert refusal.text.startswith("refused: agent 'support' has no tool 'undeclared_tool'")
    tool_results = [m for m in server.requests(MINI_WIRE)[1]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_results] == [refusal.text]


def test_a_streamed_tool_call_and_its_usage_arrive_whole(server: FaultServer) -> None:
    model = load_chat_model(MINI, stream_usage=True).bind_tools([lookup_order])
    chunks = list(model.stream("please lookup_order 12"))
    assert len(chunks) > 2
    merged = AIMessageChunk(content="")
    for chunk in chunks:
        assert isinstance(chunk, AIMessageChunk)
        merged = merged + chunk
    assert [call["name"] for call in merged.tool_calls] == ["lookup_order"]
    assert set(merged.tool_calls[0]["args"]) == {"order_id"}
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["total_tokens"] == 30
    request = server.requests()[0]
    assert (request["stream"], request["stream_options"]) == (True, {"include_usage": True})


def test_the_fault_server_refuses_an_unknown_fault(server: FaultServer) -> None:
    with pytest.raises(ValueError, match="unknown fault '502'"):
        server.plan("502")
    with pytest.raises(ValueError, match="unknown fault 'down'"):
        server.fail_always("down")
