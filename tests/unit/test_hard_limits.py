"""Hard time limits: the agent's timeout and the run's deadline hold while a call is in flight.

A model (or tool) here blocks until the test releases it, which it does only after the run has
returned: a run that returns at all, with the call still blocked, proves the limit cut it off
(no test reads a clock). Every pattern, through `run()`, `arun()` and a plain `graph.invoke`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import threading
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from langchain.agents.middleware import model_retry
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt.tool_node import ToolCallRequest
from pydantic import PrivateAttr

from switchyard import (
    Context,
    DeadLetterQueue,
    build_pipeline_graph,
    register_chat_model,
    unregister_chat_model,
)
from switchyard.core.offline import OfflineChatModel, SimulatedProviderError
from switchyard.core.resilience import Backoff, configure_retries
from switchyard.core.workers import CallAbandonedError, call_within
from switchyard.guardrails.limits import AgentTimeoutError, CallLimits
from switchyard.nodes.chain import default_middleware
from switchyard.runtime.effects import drive
from switchyard.runtime.run import arun, execution, prepare, run
from switchyard.state.agents import DEFAULT_TIMEOUT_S
from tests.fakes import scripted
from tests.patterns import PATTERNS, eager_supervisor, helper

HANG = "fake:hang"
WAIT_AT_MOST_S = 60.0
"""How long a blocked call waits for its release before giving up (never reached when it works)."""


class Hanging(BaseChatModel):
    """A provider that takes a request and answers it only after `release()` ("late")."""

    answers_from: int | None = None
    """The call from which on it answers at once ("on time"); None: every call hangs."""
    _release: threading.Event = PrivateAttr(default_factory=threading.Event)
    _calls: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "hanging"

    @property
    def calls(self) -> int:
        return self._calls

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        """Accept tools (a supervisor's, a manager's schema): it answers none of them anyway."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    @property
    def released(self) -> bool:
        return self._release.is_set()

    def release(self) -> None:
        self._release.set()

    def _hangs(self) -> bool:
        with self._lock:
            self._calls += 1
            return self.answers_from is None or self._calls < self.answers_from

    @staticmethod
    def _reply(late: bool) -> ChatResult:
        reply = AIMessage(content="late" if late else "on time")
        reply.usage_metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        hang = self._hangs()
        if hang:
            self._release.wait(WAIT_AT_MOST_S)
        return self._reply(hang)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        hang = self._hangs()
        if hang:  # an async client waits on its socket: cancellable, unlike a thread
            async with asyncio.timeout(WAIT_AT_MOST_S):
                while not self._release.is_set():
                    await asyncio.sleep(0.01)
        return self._reply(hang)


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    """The hanging model, registered as `fake:hang`; released when the test is over."""
    model = Hanging()
    register_chat_model(HANG, model)
    try:
        with eager_supervisor():
            yield model
    finally:
        model.release()
        unregister_chat_model(HANG)


HUNG = Context(model=HANG, deadline_s=1.0)
"""Every agent of the run on the hanging provider, and a short deadline."""


def assert_cut_off_at_the_deadline(model: Hanging, end_reason: Any) -> None:
    assert end_reason == "deadline"
    assert model.calls >= 1
    assert not model.released, "the run waited for the hung call instead of abandoning it"


# --- the run's deadline, in every pattern and on every entry path ------------------------------


def warmed(pattern: str) -> Any:
    """The pattern's graph, run once offline, so what loads on first use (the router's
    classifier) does not eat into the short deadline of the run under test."""
    graph = PATTERNS[pattern](helper())
    assert run(graph, "I need a refund", dlq=None).ok
    return graph


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_provider_that_never_answers_ends_the_run_at_its_deadline(
    pattern: str, hanging: Hanging
) -> None:
    result = run(warmed(pattern), "I need a refund", user_id="ada", context=HUNG)
    assert_cut_off_at_the_deadline(hanging, result.end_reason)
    assert not result.ok
    assert "deadline" in str(result.error)
    # the abandoned call is charged: the provider had the prompt
    assert result.input_tokens > 0
    assert result.usage, "the abandoned call is in the usage ledger"
    letters = DeadLetterQueue().list()
    assert [letter.id for letter in letters] == [result.dead_letter_id]
    assert letters[0].end_reason == "deadline"


@pytest.mark.parametrize("pattern", list(PATTERNS))
async def test_an_async_run_is_cut_off_at_its_deadline_too(pattern: str, hanging: Hanging) -> None:
    result = await arun(warmed(pattern), "I need a refund", context=HUNG, dlq=None)
    assert_cut_off_at_the_deadline(hanging, result.end_reason)
    assert result.input_tokens > 0


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_plain_invoke_is_cut_off_at_its_deadline_too(pattern: str, hanging: Hanging) -> None:
    state = warmed(pattern).invoke(
        {"messages": [HumanMessage("I need a refund")]},
        {"configurable": {"thread_id": f"plain-{pattern}"}},
        context=HUNG,
    )
    assert_cut_off_at_the_deadline(hanging, state["end_reason"])
    assert sum(entry["input_tokens"] for entry in state["usage"].values()) > 0


# --- the agent's timeout ------------------------------------------------------------------------


def one_stage(**changes: Any) -> Any:
    return build_pipeline_graph([helper(**changes)]).compile(checkpointer=InMemorySaver())


@pytest.fixture
def slow() -> Iterator[Hanging]:
    """A second hanging provider, `fake:slow`, that answers its second call at once."""
    model = Hanging(answers_from=2)
    register_chat_model("fake:slow", model)
    try:
        yield model
    finally:
        model.release()
        unregister_chat_model("fake:slow")


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_call_past_the_timeout_is_abandoned_and_retried(
    asynchronous: bool, slow: Hanging
) -> None:
    graph = one_stage(model="fake:slow", timeout_s=0.2, max_attempts=2)
    sent = "I need a refund"
    result = await arun(graph, sent, dlq=None) if asynchronous else run(graph, sent, dlq=None)
    assert not slow.released
    assert result.ok, result.error
    assert result.output == "on time"
    entry = result.usage["helper/fake:slow"]
    assert (entry["calls"], entry["retries"]) == (2, 1)
    # the abandoned call is charged its prompt's estimate, the answered one what it reported
    assert entry["input_tokens"] > 10


def test_a_call_past_the_timeout_on_every_attempt_fails_the_agent(hanging: Hanging) -> None:
    result = run(one_stage(model=HANG, timeout_s=0.2, max_attempts=2), "I need a refund", dlq=None)
    assert hanging.calls == 2
    assert not result.ok
    assert "timed out after 0.2s" in str(result.error)
    entry = result.usage["helper/fake:hang"]
    assert (entry["calls"], entry["retries"]) == (2, 1)
    assert entry["input_tokens"] > 0


def test_the_runs_timeout_overrides_every_agents(hanging: Hanging) -> None:
    graph = one_stage(model=HANG, timeout_s=600)
    result = run(graph, "I need a refund", dlq=None, context=Context(timeout_s=0.2))
    assert not result.ok
    assert "timed out after 0.2s" in str(result.error)
    assert not hanging.released


# --- tools ----------------------------------------------------------------------------------------

tool_release = threading.Event()


def _lookup(order_id: str) -> str:
    tool_release.wait(WAIT_AT_MOST_S)
    return f"order {order_id}: found"


async def _alookup(order_id: str) -> str:
    async with asyncio.timeout(WAIT_AT_MOST_S):
        while not tool_release.is_set():
            await asyncio.sleep(0.01)
    return f"order {order_id}: found"


slow_lookup = StructuredTool.from_function(
    func=_lookup,
    coroutine=_alookup,
    name="slow_lookup",
    description="Look up an order; this one never comes back until released.",
)


@pytest.fixture
def stuck_tool() -> Iterator[threading.Event]:
    tool_release.clear()
    yield tool_release
    tool_release.set()


def calls_the_tool() -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"name": "slow_lookup", "args": {"order_id": "7"}, "id": "c1"}]
    )


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_tool_past_the_timeout_is_abandoned_and_the_model_is_told(
    asynchronous: bool, stuck_tool: threading.Event
) -> None:
    with scripted("fake:tooluser", calls_the_tool(), "Sorry, the lookup is down.") as model:
        graph = one_stage(model="fake:tooluser", tools=(slow_lookup,), timeout_s=0.2)
        sent = "Where is order 7?"
        result = await arun(graph, sent, dlq=None) if asynchronous else run(graph, sent, dlq=None)
    assert result.ok, result.error
    assert result.output == "Sorry, the lookup is down."
    told = [m for m in model.calls[1].messages if isinstance(m, ToolMessage)]
    assert len(told) == 1
    assert "did not finish within 0.2s" in told[0].text
    assert not stuck_tool.is_set()


def test_a_tool_still_running_at_the_deadline_ends_the_run(stuck_tool: threading.Event) -> None:
    with scripted("fake:tooluser", calls_the_tool()):
        graph = one_stage(model="fake:tooluser", tools=(slow_lookup,), timeout_s=None)
        result = run(graph, "Where is order 7?", dlq=None, context=Context(deadline_s=0.3))
    assert result.end_reason == "deadline"
    assert not stuck_tool.is_set()


# --- defaults -----------------------------------------------------------------------------------


def test_every_agent_has_a_timeout_unless_it_opts_out() -> None:
    assert helper().timeout_s == DEFAULT_TIMEOUT_S
    assert helper(timeout_s=None).timeout_s is None
    limits = [m for m in default_middleware(helper()) if isinstance(m, CallLimits)]
    assert [m.timeout_s for m in limits] == [DEFAULT_TIMEOUT_S]
    assert Context().deadline_s is not None


# --- what the review found ------------------------------------------------------------------------


def test_retry_back_off_never_sleeps_past_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(model_retry, "time", SimpleNamespace(sleep=slept.append))
    configure_retries(Backoff(initial_s=5.0, max_s=8.0, jitter=False))
    outage = SimulatedProviderError("503 overloaded", status_code=503)
    with scripted("fake:down", *[outage] * 4):
        graph = one_stage(model="fake:down", max_attempts=4)
        result = run(graph, "I need a refund", dlq=None, context=Context(deadline_s=2.0))
    assert not result.ok
    assert len(slept) == 3
    # 5 s, 8 s, 8 s without the deadline; each at most three quarters of what was left of 2 s
    assert all(0 < wait <= 1.5 for wait in slept), slept


def test_the_offline_model_with_simulated_latency_is_bounded_too() -> None:
    register_chat_model("offline:slow", OfflineChatModel(latency_s=5.0))
    try:
        graph = one_stage(model="offline:slow", timeout_s=0.2, max_attempts=1)
        result = run(graph, "I need a refund", dlq=None)
    finally:
        unregister_chat_model("offline:slow")
    assert not result.ok
    assert "timed out after 0.2s" in str(result.error)


def test_a_tools_own_timeout_error_is_not_taken_for_the_agents() -> None:
    # an inner layer (a user's tool middleware under the limits) raising a timeout of its own:
    # it is not answered as "abandoned at the agent's timeout", it goes on as raised
    def inner_agent_timed_out(request: Any) -> Any:
        raise AgentTimeoutError("the inner agent timed out")

    call = {"name": "slow_lookup", "args": {}, "id": "c1", "type": "tool_call"}
    request = ToolCallRequest(tool_call=call, tool=None, state={}, runtime=None)  # type: ignore[arg-type]
    with pytest.raises(AgentTimeoutError, match="the inner agent timed out"):
        CallLimits("helper", timeout_s=30).wrap_tool_call(request, inner_agent_timed_out)


def test_time_waiting_for_the_session_counts_against_the_deadline() -> None:
    graph = one_stage()
    prepared = prepare(graph, "I need a refund", "ada", "s", Context(deadline_s=5.0), None)
    # as if this turn had waited 10 s behind another turn of its session
    waited = dataclasses.replace(prepared, started=prepared.started - 10.0)
    payload = {"messages": [HumanMessage(waited.text)]}
    result = drive(graph, execution(graph, payload, waited, None))
    assert result.end_reason == "deadline"
    assert result.total_tokens == 0


def _bounded_call_in_child(results: Any) -> None:
    try:
        results.put(call_within(lambda: 42, 5.0))
    except CallAbandonedError:
        results.put("abandoned: the job went to a worker thread the fork did not copy")


def test_a_forked_process_runs_its_bounded_calls() -> None:
    assert call_within(lambda: 1, 5.0) == 1  # leaves an idle worker thread in this process
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    child = fork.Process(target=_bounded_call_in_child, args=(results,))
    child.start()
    try:
        assert results.get(timeout=60) == 42
    finally:
        child.join(timeout=10)
