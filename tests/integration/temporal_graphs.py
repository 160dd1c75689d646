"""Graphs the Temporal tests' worker processes serve (`switchyard worker --graph ...`).

Each graph's agents run on a stub provider registered here (the worker imports this module, so
the stubs exist in every worker process). The stubs are stateless: an agent retried on another
worker behaves the same.

- `effects_fanout`: 50 agents in parallel, one Activity each (no shards). Each agent's model
  first calls the `record_effect` tool, whose side effect (a row in PostgreSQL) goes through the
  idempotency ledger (`once`), then answers after `EFFECT_AGENT_WAIT_S`: long enough for the
  test to kill a worker while agents are in flight.
- `escalating`: a router whose only agent's provider is down; with
  `Context.escalate_to_human` the fallback chain asks a person (`interrupt()`).
- `slow`: a router whose agent's provider answers after `SLOW_S` (the run deadline stops it).
- `cheap_fanout`: 20 agents at 15 tokens a call (budgets shared across Activities).
- `flaky_fanout`: 3 agents whose provider always times out (the run-wide retry budget).
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
SLOW_S = 30.0
CHEAP_AGENTS = 20


class StubModel(BaseChatModel):
    """A stub provider: `reply` answers a call (or raises), `areply` an async one; 15 tokens."""

    @property
    def _llm_type(self) -> str:
        return type(self).__name__

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def reply(self, messages: list[BaseMessage]) -> AIMessage:
        raise NotImplementedError

    async def areply(self, messages: list[BaseMessage]) -> AIMessage:
        return self.reply(messages)

    @staticmethod
    def _result(message: AIMessage) -> ChatResult:
        message.usage_metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._result(self.reply(messages))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._result(await self.areply(messages))


class EffectModel(StubModel):
    """Calls `record_effect` once, then answers (after `EFFECT_AGENT_WAIT_S`, async)."""

    def reply(self, messages: list[BaseMessage]) -> AIMessage:
        if not any(isinstance(m, ToolMessage) for m in messages):
            call = {"name": "record_effect", "args": {}, "id": "effect", "type": "tool_call"}
            return AIMessage(content="", tool_calls=[call])
        return AIMessage(content="effect recorded")

    async def areply(self, messages: list[BaseMessage]) -> AIMessage:
        reply = self.reply(messages)
        if not reply.tool_calls:
            await asyncio.sleep(EFFECT_AGENT_WAIT_S)
        return reply


class DownModel(StubModel):
    """A provider that is down: every call fails."""

    def reply(self, messages: list[BaseMessage]) -> AIMessage:
        raise ConnectionError("desk's provider is down")


class SlowModel(StubModel):
    """A provider that answers after `SLOW_S` seconds (async only)."""

    async def areply(self, messages: list[BaseMessage]) -> AIMessage:
        await asyncio.sleep(SLOW_S)
        return AIMessage(content="late")


class CheapModel(StubModel):
    """Answers at once, and says how much output it allows (`max_tokens`, for estimates)."""

    max_tokens: int = 20

    def reply(self, messages: list[BaseMessage]) -> AIMessage:
        return AIMessage(content="done")


class FlakyModel(StubModel):
    """A provider that always times out (a transient error: the agent retries it)."""

    def reply(self, messages: list[BaseMessage]) -> AIMessage:
        raise TimeoutError("provider timed out")


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


for _name, _model in {
    "effect-test": EffectModel(),
    "down-test": DownModel(),
    "slow-test": SlowModel(),
    "cheap-test": CheapModel(),
    "flaky-test": FlakyModel(),
}.items():
    register_chat_model(_name, _model)


def _agent(name: str, model: str, **fields: Any) -> AgentSpec:
    return AgentSpec(name=name, description=f"Stub agent {name}.", model=model, **fields)


effects_fanout = build_fanout_graph(
    [
        _agent(name, "effect-test", tools=(effect_tool(name),))
        for name in (f"agent_{i:02d}" for i in range(AGENTS))
    ],
    strategy="collect",
    shard_size=None,
).compile(name="effects_fanout")

escalating = build_router_graph(
    [_agent("desk", "down-test", max_attempts=1)], default_agent="desk"
).compile(name="escalating")

slow = build_router_graph(
    [_agent("sloth", "slow-test", max_attempts=1)], default_agent="sloth"
).compile(name="slow")

cheap_fanout = build_fanout_graph(
    [_agent(f"cheap_{i:02d}", "cheap-test") for i in range(CHEAP_AGENTS)],
    strategy="collect",
    shard_size=None,
).compile(name="cheap_fanout")

flaky_fanout = build_fanout_graph(
    [_agent(f"flaky_{i}", "flaky-test", max_attempts=4) for i in range(3)],
    strategy="collect",
    shard_size=None,
).compile(name="flaky_fanout")
