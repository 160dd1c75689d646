"""Graphs the Temporal tests' worker processes serve (`switchyard worker --graph ...`).

`effects_fanout`: 50 agents in parallel, one Activity each (no shards). Each agent's model first
calls the `record_effect` tool, whose side effect (a row in PostgreSQL) goes through the
idempotency ledger (`once`), then answers after `EFFECT_AGENT_WAIT_S`: long enough for the test
to kill a worker while agents are in flight. The model is stateless (it decides from the
messages), so an agent retried on another worker behaves the same.

`escalating`: a router whose only agent fails; with `Context.escalate_to_human` the fallback
chain asks a person (`interrupt()`), and the Workflow waits for the answer.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, tool
from langgraph.runtime import get_runtime

from switchyard import AgentSpec
from switchyard.core.models import register_chat_model
from switchyard.graphs.fanout import build_fanout_graph
from switchyard.graphs.router import build_router_graph
from switchyard.guardrails.idempotency import idempotency_key, once

EFFECTS_DSN_ENV = "SWITCHYARD_TEST_EFFECTS_DSN"
EFFECT_AGENT_WAIT_S = float(os.environ.get("SWITCHYARD_TEST_EFFECT_WAIT_S", "4"))
AGENTS = 50


class EffectModel(BaseChatModel):
    """Calls `record_effect` once, then answers (after a wait, async)."""

    @property
    def _llm_type(self) -> str:
        return "effect-test"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        if not any(isinstance(m, ToolMessage) for m in messages):
            call = {"name": "record_effect", "args": {}, "id": "effect", "type": "tool_call"}
            return AIMessage(content="", tool_calls=[call])
        return AIMessage(content="effect recorded")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._result(self._reply(messages))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self._reply(messages)
        if not reply.tool_calls:
            await asyncio.sleep(EFFECT_AGENT_WAIT_S)
        return self._result(reply)

    @staticmethod
    def _result(message: AIMessage) -> ChatResult:
        message.usage_metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return ChatResult(generations=[ChatGeneration(message=message)])


def _insert(thread: str, agent: str) -> str:
    import psycopg

    with psycopg.connect(os.environ[EFFECTS_DSN_ENV], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO temporal_effects (thread, agent, pid) VALUES (%s, %s, %s)",
            (thread, agent, os.getpid()),
        )
    return f"recorded by {os.getpid()}"


def effect_tool(agent: str) -> BaseTool:
    """`agent`'s `record_effect` tool."""

    @tool
    def record_effect() -> str:
        """Record this agent's side effect (once per step, however often the step runs)."""
        info = get_runtime().execution_info
        assert info is not None
        return once(idempotency_key("effect"), lambda: _insert(info.thread_id or "", agent))

    return record_effect


register_chat_model("effect-test", EffectModel())

effects_fanout = build_fanout_graph(
    [
        AgentSpec(
            name=name,
            description="Records one side effect.",
            model="effect-test",
            tools=(effect_tool(name),),
        )
        for name in (f"agent_{i:02d}" for i in range(AGENTS))
    ],
    strategy="collect",
    shard_size=None,
).compile(name="effects_fanout")


class DownModel(BaseChatModel):
    """A provider that is down: every call fails."""

    @property
    def _llm_type(self) -> str:
        return "down-test"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise ConnectionError("desk's provider is down")


register_chat_model("down-test", DownModel())

escalating = build_router_graph(
    [AgentSpec(name="desk", description="Answers everything.", model="down-test", max_attempts=1)],
    default_agent="desk",
).compile(name="escalating")


class SlowModel(BaseChatModel):
    """A provider that answers after `SLOW_S` seconds."""

    @property
    def _llm_type(self) -> str:
        return "slow-test"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise NotImplementedError("async only")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await asyncio.sleep(SLOW_S)
        return EffectModel._result(AIMessage(content="late"))


SLOW_S = 30.0
register_chat_model("slow-test", SlowModel())

slow = build_router_graph(
    [AgentSpec(name="sloth", description="Answers slowly.", model="slow-test", max_attempts=1)],
    default_agent="sloth",
).compile(name="slow")


class CheapModel(BaseChatModel):
    """Answers at once, 15 tokens a call, and says how much output it allows (`max_tokens`)."""

    max_tokens: int = 20

    @property
    def _llm_type(self) -> str:
        return "cheap-test"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return EffectModel._result(AIMessage(content="done"))


register_chat_model("cheap-test", CheapModel())
CHEAP_AGENTS = 20

cheap_fanout = build_fanout_graph(
    [
        AgentSpec(name=f"cheap_{i:02d}", description="Answers cheaply.", model="cheap-test")
        for i in range(CHEAP_AGENTS)
    ],
    strategy="collect",
    shard_size=None,
).compile(name="cheap_fanout")


class FlakyModel(BaseChatModel):
    """A provider that always times out (a transient error: the agent retries it)."""

    @property
    def _llm_type(self) -> str:
        return "flaky-test"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise TimeoutError("provider timed out")


register_chat_model("flaky-test", FlakyModel())

flaky_fanout = build_fanout_graph(
    [
        AgentSpec(name=f"flaky_{i}", description="Times out.", model="flaky-test", max_attempts=4)
        for i in range(3)
    ],
    strategy="collect",
    shard_size=None,
).compile(name="flaky_fanout")
