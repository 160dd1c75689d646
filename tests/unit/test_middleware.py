"""LangChain middleware composes with Switchyard's guardrails in one chain per agent.

LangChain's own `ModelCallLimitMiddleware` (a run limit and a thread limit, kept in the agent's
state with LangChain's scopes) and a user-written middleware are given to a pattern, for every
agent (`build_*_graph(middleware=...)`) or for one (`AgentSpec.middleware`); both act, around
and beside the guardrails, on `invoke` and `ainvoke` alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents.middleware import (
    AgentMiddleware,
    ModelCallLimitMiddleware,
    ModelRequest,
    ModelResponse,
)
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from switchyard import AgentSpec, build_router_graph, build_supervisor_graph, run
from switchyard.guardrails.guard import Attempts, WrappingGuard
from switchyard.nodes.chain import AgentChain, default_middleware
from tests.fakes import scripted

SUPPORT = AgentSpec(
    name="support",
    description="Refunds and billing.",
    system_prompt="You are support.",
    model="scripted:support",
    examples=("I need a refund",),
)
DOCS = AgentSpec(name="docs", description="API documentation.", examples=("Which endpoint?",))


@tool
def look_up(order: str) -> str:
    """Look an order up."""
    return f"order {order}: paid twice"


def call_look_up(call_id: str) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": "look_up", "args": {"order": "7"}, "id": call_id}])


class Signed(AgentMiddleware[Any, Any, Any]):
    """A user's middleware: signs every system prompt and remembers what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.before: list[int] = []
        self.requests: list[ModelRequest[Any]] = []

    def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        self.before.append(len(state["messages"]))
        return None

    def _signed(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        self.requests.append(request)
        text = f"{request.system_prompt} (signed)"
        return request.override(system_message=SystemMessage(text))

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> Any:
        return handler(self._signed(request))

    async def awrap_model_call(self, request: ModelRequest[Any], handler: Any) -> Any:
        return await handler(self._signed(request))


def router(*middleware: AgentMiddleware[Any, Any, Any], support: AgentSpec = SUPPORT) -> Any:
    builder = build_router_graph(
        [support.model_copy(update={"tools": (look_up,)}), DOCS],
        default_agent="support",
        middleware=middleware,
    )
    return builder.compile(checkpointer=InMemorySaver(), name="router")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_run_limit_and_a_users_middleware_both_act(mode: str) -> None:
    limit, signed = ModelCallLimitMiddleware(run_limit=1), Signed()
    graph = router(limit, signed)
    # the agent would call its tool, then answer: two model calls; the run limit allows one
    with scripted("scripted:support", call_look_up("c1")) as model:
        if mode == "sync":
            out = graph.invoke({"messages": [HumanMessage("I need a refund")]}, thread("t"))
        else:
            out = await graph.ainvoke({"messages": [HumanMessage("I need a refund")]}, thread("t"))
    assert len(model.calls) == 1
    assert model.calls[0].texts[0] == "You are support. (signed)"  # the user's middleware acted
    # the limit's hook comes first in the chain: before the second call it jumped to the end,
    # so the user's hook ran once (on the request alone)
    assert signed.before == [1]
    answer = out["messages"][-1]
    assert (answer.name, answer.text) == ("support", "Model call limits exceeded: run limit (1/1)")
    # the tool round that ran is kept; the guardrails still recorded the call that was made
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai"]
    assert out["usage"]["support/scripted:support"]["calls"] == 1


def test_a_thread_limit_lasts_the_session_and_a_run_limit_one_run() -> None:
    graph = router(ModelCallLimitMiddleware(thread_limit=2, run_limit=1))
    with scripted("scripted:support", "First.", "Second.") as model:
        turns = [
            run(graph, text, user_id="ada", session_id="s", dlq=None)
            for text in ("I need a refund", "Another refund", "A third refund")
        ]
    assert [t.output for t in turns] == [
        "First.",
        "Second.",  # a new run: the run count started again
        "Model call limits exceeded: thread limit (2/2)",  # the session's count was kept
    ]
    assert len(model.calls) == 2
    state = graph.get_state({"configurable": {"thread_id": turns[-1].thread_id}}).values
    assert state["agent_state"]["support"]["thread_model_call_count"] == 2
    assert "run_model_call_count" not in state["agent_state"]["support"]  # not checkpointed


def test_an_agents_own_middleware_acts_on_that_agent_only() -> None:
    signed = Signed()
    supervisor = AgentSpec(
        name="supervisor",
        description="Delegates.",
        model="scripted:boss",
        middleware=(signed,),
    )
    worker = AgentSpec(name="math", description="Numbers.", model="scripted:math")
    graph = build_supervisor_graph([worker], supervisor=supervisor).compile()
    delegate = AIMessage(
        "", tool_calls=[{"name": "transfer_to_math", "args": {"task": "2+2"}, "id": "h"}]
    )
    with (
        scripted("scripted:boss", delegate, "It is 4.") as boss,
        scripted("scripted:math", "4") as math,
    ):
        out = graph.invoke({"messages": [HumanMessage("What is 2+2?")]})
    assert out["messages"][-1].text == "It is 4."
    assert len(signed.requests) == 2  # both of the supervisor's calls, none of the worker's
    assert all(call.texts[0].endswith("(signed)") for call in boss.calls)
    assert not math.calls[0].texts[0].endswith("(signed)")


def test_the_default_chain_is_visible_and_user_middleware_goes_outside_it() -> None:
    signed = Signed()
    chain = AgentChain.of(SUPPORT.model_copy(update={"middleware": (signed,)}))
    names = [type(m).__name__ for m in chain.middleware]
    assert names == [
        "Signed",
        "ConfidenceGate",
        "Tripwires",
        "SummarizedMemory",
        "SchemaReask",
        "DeadlineRetry",
        "SpendGuard",
        "BreakerGuard",
        "RateLimitGuard",
        "UsageRecorder",
        "CallLimits",
        "ToolAuthority",
    ]
    assert names[1:] == [type(m).__name__ for m in default_middleware(SUPPORT)]
    bare = AgentChain.of(SUPPORT.model_copy(update={"default_middleware": False}))
    assert bare.middleware == ()


def thread(name: str) -> Any:
    return {"configurable": {"thread_id": name}}


class Replaces(WrappingGuard):
    """A user's guard built on Switchyard's own base class, answering with a bare AIMessage."""

    def plan(self, request: ModelRequest[Any]) -> Attempts:
        (yield request).result()
        return AIMessage("Replaced by the user's guard.")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_users_guard_may_answer_with_a_bare_message(mode: str) -> None:
    # Our own layers are called without normalising their result; a subclass a user writes is
    # normalised like any middleware.
    graph = router(Replaces())
    state = {"messages": [HumanMessage("I need a refund")]}
    with scripted("scripted:support", "Original."):
        if mode == "sync":
            out = graph.invoke(state, thread("t"))
        else:
            out = await graph.ainvoke(state, thread("t"))
    assert out["messages"][-1].text == "Replaced by the user's guard."
