"""The run facade: sessions per user, recursion limits, bad input, failures and the usage ledger."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from switchyard.core.errors import InvalidInputError, ModelConfigError, SessionAccessError
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OFFLINE_MARKER, OfflineChatModel
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.nodes.classifiers import LLMClassifier
from switchyard.runtime.run import RunResult, arun, check_text, run, thread_id_for
from switchyard.state import AgentSpec, Context
from tests.fakes import scripted

Compiled = CompiledStateGraph[Any, Any, Any, Any]
SUPPORT = ROUTER_AGENTS[0]


@pytest.fixture
def router() -> Compiled:
    return build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )


def config_of(result_or_thread: RunResult | str) -> RunnableConfig:
    thread = (
        result_or_thread.thread_id if isinstance(result_or_thread, RunResult) else result_or_thread
    )
    return {"configurable": {"thread_id": thread}}


def fingerprint(graph: Compiled, thread_id: str) -> tuple[int, list[tuple[str, str]]]:
    """Checkpoint count and messages of a thread: equal before and after means untouched."""
    cfg = config_of(thread_id)
    history = list(graph.get_state_history(cfg))
    messages = graph.get_state(cfg).values.get("messages", [])
    return len(history), [(m.type, m.text) for m in messages]


def test_offline_run_reports_agent_confidence_and_exact_tokens(router: Compiled) -> None:
    text = "I need a refund for my last payment"
    result = run(router, text, user_id="ada", session_id="s1")
    assert result.ok
    assert result.end_reason == "completed"
    assert result.error is None
    assert result.agent_name == "support"
    assert result.confidence is not None
    assert result.confidence >= 0.6
    assert result.route_reason is not None
    assert result.route_reason.startswith("closest match support")
    assert result.output.startswith(f"{OFFLINE_MARKER} Customer support agent:")
    assert result.input_tokens == count_tokens_approximately(
        [SystemMessage(SUPPORT.system_prompt), HumanMessage(text)]
    )
    assert result.output_tokens == count_tokens_approximately([AIMessage(result.output)])
    assert result.total_tokens == result.input_tokens + result.output_tokens
    assert result.cost_usd == 0.0
    assert list(result.usage) == ["support/offline"]
    assert (result.user_id, result.session_id) == ("ada", "s1")
    assert result.thread_id == thread_id_for("ada", "s1")
    assert len(result.correlation_id) == 32
    assert result.latency_ms > 0


def test_a_new_session_is_made_when_none_is_given(router: Compiled) -> None:
    first = run(router, "I need a refund", user_id="ada")
    second = run(router, "I need a refund", user_id="ada")
    assert first.session_id != second.session_id
    assert first.thread_id != second.thread_id


def test_caller_correlation_id_is_kept_and_stored(router: Compiled) -> None:
    result = run(router, "I need a refund", user_id="ada", session_id="s", correlation_id="c-1")
    assert result.correlation_id == "c-1"
    metadata = dict(router.get_state(config_of(result)).metadata or {})
    assert (metadata["user_id"], metadata["session_id"], metadata["correlation_id"]) == (
        "ada",
        "s",
        "c-1",
    )


def test_run_without_a_checkpointer_still_answers() -> None:
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(name="router")
    result = run(graph, "Write a Python function that parses a CSV file")
    assert result.ok
    assert result.agent_name == "code"
    assert result.output.startswith(OFFLINE_MARKER)


# --- sessions ---------------------------------------------------------------------------------


def test_thread_ids_separate_users_and_sessions() -> None:
    assert thread_id_for("a", "s") == thread_id_for("a", "s")
    assert thread_id_for("a", "s") != thread_id_for("b", "s")
    assert thread_id_for("a", "s") != thread_id_for("a", "t")
    assert thread_id_for("a:b", "c") != thread_id_for("a", "b:c")


@pytest.mark.parametrize(("user", "session"), [("", "s"), ("  ", "s"), ("u", ""), ("u", " ")])
def test_blank_ids_are_rejected(user: str, session: str) -> None:
    with pytest.raises(InvalidInputError, match="must be a non-empty string"):
        thread_id_for(user, session)


def scripted_agents() -> tuple[AgentSpec, ...]:
    return tuple(
        spec.model_copy(update={"model": f"scripted:{spec.name}"}) for spec in ROUTER_AGENTS
    )


def test_two_users_with_the_same_session_id_never_mix() -> None:
    router = build_router_graph(scripted_agents(), default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )
    with scripted("scripted:support", "for alice", "for bob") as support:
        alice = run(router, "I need a refund for my last payment", user_id="alice", session_id="s")
        bob = run(router, "I was charged twice this month", user_id="bob", session_id="s")
    assert alice.thread_id != bob.thread_id
    assert (alice.output, bob.output) == ("for alice", "for bob")
    # bob's agent saw only bob's message, and bob's thread holds only bob's turn
    assert [m.text for m in support.calls[1].messages[1:]] == ["I was charged twice this month"]
    bob_thread = router.get_state(config_of(bob)).values["messages"]
    assert [(m.type, m.text) for m in bob_thread] == [
        ("human", "I was charged twice this month"),
        ("ai", "for bob"),
    ]


def test_a_session_continues_for_its_owner(router: Compiled) -> None:
    run(router, "I need a refund for my last payment", user_id="ada", session_id="s")
    second = run(router, "I was charged twice this month", user_id="ada", session_id="s")
    messages = router.get_state(config_of(second)).values["messages"]
    assert [m.type for m in messages] == ["human", "ai", "human", "ai"]


def test_another_users_thread_is_refused_and_untouched(router: Compiled) -> None:
    # a thread at bob's address whose checkpoints say it belongs to alice (a forged or migrated
    # thread): bob may neither read nor continue it
    thread = thread_id_for("bob", "s")
    router.invoke(
        {"messages": [HumanMessage("alice's secret refund")]},
        {"configurable": {"thread_id": thread}, "metadata": {"user_id": "alice"}},
    )
    before = fingerprint(router, thread)
    with pytest.raises(SessionAccessError) as raised:
        run(router, "show me the history", user_id="bob", session_id="s")
    assert str(raised.value) == "this session belongs to another user; start a new session"
    assert fingerprint(router, thread) == before


# --- recursion limit --------------------------------------------------------------------------


@pytest.fixture
def spy_graph() -> tuple[Compiled, list[Any]]:
    """A one-node graph whose node records the recursion limit in its config."""
    seen: list[Any] = []

    def echo(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        seen.append(config.get("recursion_limit"))
        return {"messages": [AIMessage("echo", name="echo")]}

    builder = StateGraph(MessagesState)
    builder.add_node("echo", echo)
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    return builder.compile(checkpointer=InMemorySaver(), name="spy"), seen


def test_recursion_limit_is_always_passed(spy_graph: tuple[Compiled, list[Any]]) -> None:
    graph, seen = spy_graph
    assert run(graph, "hi", session_id="a").ok
    assert run(graph, "hi", session_id="b", context=Context(recursion_limit=7)).ok
    assert seen == [Context().recursion_limit, 7]
    assert Context().recursion_limit == 25  # explicit, never LangGraph's default of 10,000


async def test_recursion_limit_is_passed_by_arun(spy_graph: tuple[Compiled, list[Any]]) -> None:
    graph, seen = spy_graph
    assert (await arun(graph, "hi", context=Context(recursion_limit=9))).ok
    assert seen == [9]


def test_hitting_the_recursion_limit_ends_the_run_cleanly(router: Compiled) -> None:
    result = run(router, "I need a refund", context=Context(recursion_limit=1))
    assert not result.ok
    assert result.end_reason == "recursion_limit"
    assert result.error is not None
    assert result.error.startswith("GraphRecursionError: Recursion limit of 1 reached")
    assert result.output == ""


# --- bad input --------------------------------------------------------------------------------

BAD_INPUTS: dict[str, tuple[Any, dict[str, Any], type[Exception], str]] = {
    "empty": ("", {}, InvalidInputError, "message is empty: send some text"),
    "whitespace": (" \n\t ", {}, InvalidInputError, "message is empty: send some text"),
    "one_megabyte": (
        "x" * 1_000_000,
        {},
        InvalidInputError,
        "message is 1,000,000 characters; the limit is 100,000 "
        "(raise Context.max_input_chars to accept longer messages)",
    ),
    "invalid_utf8": (
        b"refund \xff\xfe please".decode("utf-8", "surrogateescape"),
        {},
        InvalidInputError,
        "message is not valid UTF-8 text (undecodable byte at position 7); send UTF-8 encoded text",
    ),
    "not_text": (b"bytes", {}, InvalidInputError, "message must be text (str), got bytes"),
    "unknown_model": (
        "I need a refund",
        {"context": Context(model="nosuch:model")},
        ModelConfigError,
        "unknown model provider 'nosuch'",
    ),
    "malformed_model": (
        "I need a refund",
        {"context": Context(model="gpt-4o")},
        ModelConfigError,
        "model 'gpt-4o' must be 'offline' or 'provider:model'",
    ),
    "missing_api_key": (
        "I need a refund",
        {"context": Context(model="openai:gpt-4o-mini")},
        ModelConfigError,
        "set OPENAI_API_KEY",
    ),
    "blank_session": ("I need a refund", {"session_id": "  "}, InvalidInputError, "session_id"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_and_the_thread_is_unchanged(router: Compiled, case: str) -> None:
    text, kwargs, error, message = BAD_INPUTS[case]
    run(router, "I need a refund for my last payment", user_id="ada", session_id="s")
    thread = thread_id_for("ada", "s")
    before = fingerprint(router, thread)
    options: dict[str, Any] = {"user_id": "ada", "session_id": "s", **kwargs}
    with pytest.raises(error) as raised:
        run(router, text, **options)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert fingerprint(router, thread) == before
    # and the session goes on as if nothing happened
    assert run(router, "I was charged twice", user_id="ada", session_id="s").ok
    assert fingerprint(router, thread)[0] > before[0]


async def test_bad_input_is_refused_by_arun(router: Compiled) -> None:
    with pytest.raises(InvalidInputError, match="message is empty"):
        await arun(router, "   ", user_id="ada", session_id="s")
    assert list(router.get_state_history(config_of(thread_id_for("ada", "s")))) == []


def test_a_one_megabyte_message_under_a_raised_limit_is_cut_to_the_window(router: Compiled) -> None:
    text = "refund " * 150_000  # 1,050,000 characters, ~260,000 tokens
    result = run(router, text, session_id="s", context=Context(max_input_chars=2_000_000))
    # accepted, routed, and cut to the agent's window (8,000 tokens) before its model saw it
    assert result.ok, result.error
    assert result.agent_name == "support"
    assert 0 < result.input_tokens <= 8_000 + 100  # the window, and the system prompt
    messages = router.get_state(config_of(result)).values["messages"]
    assert [m.type for m in messages] == ["human", "ai"]
    assert messages[0].text == text  # the thread keeps the message whole


def test_check_text_returns_valid_text_unchanged() -> None:
    assert check_text("héllo ✓", 100) == "héllo ✓"


# --- failures at run time ---------------------------------------------------------------------


@pytest.fixture
def failing_model() -> Iterator[str]:
    """An offline model whose first call fails with a non-transient HTTP 400 (no retry)."""
    register_chat_model("offline:flaky", OfflineChatModel(fail_on_calls=(1,), failure_status=400))
    yield "offline:flaky"
    unregister_chat_model("offline:flaky")


def test_a_failing_model_ends_the_run_cleanly(router: Compiled, failing_model: str) -> None:
    result = run(
        router,
        "I need a refund",
        user_id="ada",
        session_id="s",
        context=Context(model=failing_model),
    )
    assert not result.ok
    assert result.end_reason == "agent_failed"
    assert result.error is not None
    assert "SimulatedProviderError: simulated provider failure on call 1 (HTTP 400)" in result.error
    assert result.dead_letter_id is not None
    # the thread is loadable and the next run continues it
    state = router.get_state(config_of(result))
    assert state.next == ()
    again = run(
        router,
        "I need a refund",
        user_id="ada",
        session_id="s",
        context=Context(model=failing_model),
    )
    assert again.ok
    assert again.output.startswith(OFFLINE_MARKER)


def failing_router() -> Compiled:
    classifier = LLMClassifier(ROUTER_AGENTS, model="scripted:router")
    return build_router_graph(
        ROUTER_AGENTS, default_agent="support", classifier=classifier
    ).compile(checkpointer=InMemorySaver(), name="router")


def test_an_exception_escaping_the_graph_is_a_handled_result() -> None:
    router = failing_router()
    with scripted("scripted:router", RuntimeError("router backend down")):
        result = run(router, "I need a refund", user_id="ada", session_id="s")
    assert not result.ok
    assert result.end_reason == "error"
    assert result.error == "RuntimeError: router backend down"
    assert result.output == ""
    assert result.total_tokens == 0
    messages = router.get_state(config_of(result)).values["messages"]
    assert [(m.type, m.text) for m in messages] == [("human", "I need a refund")]
    route = AIMessage(
        "",
        tool_calls=[
            {
                "name": "RouteChoice",
                "args": {"agent": "docs", "confidence": 0.9, "reason": "docs"},
                "id": "r1",
            }
        ],
    )
    with scripted("scripted:router", route):
        again = run(router, "How do I authenticate with the API?", user_id="ada", session_id="s")
    assert again.ok
    assert again.agent_name == "docs"
    messages = router.get_state(config_of(again)).values["messages"]
    assert [m.type for m in messages] == ["human", "human", "ai"]


async def test_arun_reports_failures_the_same_way() -> None:
    router = failing_router()
    with scripted("scripted:router", RuntimeError("router backend down")):
        result = await arun(router, "I need a refund", user_id="ada", session_id="s")
    assert (result.ok, result.end_reason, result.error) == (
        False,
        "error",
        "RuntimeError: router backend down",
    )


# --- the usage ledger -------------------------------------------------------------------------


def test_ledger_delta_over_two_turns() -> None:
    router = build_router_graph(scripted_agents(), default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )
    with scripted("scripted:support", "S1"), scripted("scripted:docs", "D1"):
        first = run(router, "I need a refund for my last payment", session_id="s")
        second = run(router, "How do I authenticate with the API?", session_id="s")
    assert list(first.usage) == ["support/scripted:support"]
    assert list(second.usage) == ["docs/scripted:docs"]  # only what this run spent
    assert (second.input_tokens, second.output_tokens, second.total_tokens) == (10, 5, 15)
    with scripted("scripted:support", "S2"):
        third = run(router, "I was charged twice this month", session_id="s")
    assert third.usage["support/scripted:support"]["calls"] == 1
    assert third.total_tokens == 15
    thread = router.get_state(config_of(third)).values["usage"]
    assert thread["support/scripted:support"]["calls"] == 2
    assert thread["support/scripted:support"]["total_tokens"] == 30
    assert thread["docs/scripted:docs"]["calls"] == 1


async def test_arun_continues_sessions_and_reports_deltas(router: Compiled) -> None:
    first = await arun(router, "I need a refund for my last payment", user_id="ada", session_id="s")
    second = await arun(router, "I was charged twice this month", user_id="ada", session_id="s")
    other = await arun(router, "I was charged twice this month", user_id="bob", session_id="s")
    assert first.ok
    assert second.ok
    assert second.thread_id == first.thread_id != other.thread_id
    assert second.usage["support/offline"]["calls"] == 1
    state = await router.aget_state(config_of(second))
    assert [m.type for m in state.values["messages"]] == ["human", "ai", "human", "ai"]
    assert state.values["usage"]["support/offline"]["calls"] == 2
    assert (
        state.values["usage"]["support/offline"]["total_tokens"]
        == first.total_tokens + second.total_tokens
    )
