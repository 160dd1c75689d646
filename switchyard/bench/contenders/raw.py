"""Hand-written asyncio: the floor every framework is measured against.

A loop that awaits each agent in turn; an `asyncio.TaskGroup` for the fan-out; a dict lookup for
the router; a transcript list for the supervisor and the swarm. No persistence, no guardrails, no
framework: only the model calls and the control flow between them.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from switchyard.bench.contenders import BenchError, Contender, Prepared, Setup
from switchyard.bench.llm import HANDOFF_PREFIX, BenchChatModel, RawLLM, RawReply
from switchyard.bench.topology import REQUEST, Topology, pick, system_prompt

MAX_ROUNDS = 8
"""Rounds a hand-written supervisor or swarm loop allows (the same default as Switchyard's)."""

Message = dict[str, Any]


class LangChainLLM:
    """The LangChain chat model behind `RawLLM`'s interface.

    Hand-written asyncio that calls a LangChain model: the floor of every LangChain-based
    framework, since they all pay for LangChain's `ainvoke` on every model call.
    """

    def __init__(self, latency_s: float, plan: tuple[str, ...]) -> None:
        """Create the model."""
        self.model = BenchChatModel(latency_s=latency_s, plan=plan)
        self.tally = self.model.tally
        self._bound: dict[tuple[str, ...], Any] = {}

    async def complete(
        self, messages: list[Message], offered: list[str] | tuple[str, ...] = ()
    ) -> RawReply:
        """One model call (tools bound once per set of handoffs)."""
        key = tuple(offered)
        runnable = self._bound.get(key)
        if runnable is None:
            runnable = self.model.bind_tools([_tool(name) for name in key]) if key else self.model
            self._bound[key] = runnable
        reply = await runnable.ainvoke([_message(m) for m in messages])
        if reply.tool_calls:
            call = reply.tool_calls[0]
            return RawReply("", call["name"], call["id"] or "")
        return RawReply(reply.text, None, "")


def _tool(name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": name, "parameters": {"type": "object"}},
    }


def _message(message: Message) -> BaseMessage:
    role = message["role"]
    if role == "system":
        return SystemMessage(message["content"])
    if role == "user":
        return HumanMessage(message["content"])
    if role == "tool":
        return ToolMessage(message["content"], tool_call_id=message.get("call_id", "call"))
    calls = []
    if message.get("handoff"):
        calls = [{"name": message["handoff"], "args": {}, "id": message.get("call_id", "call")}]
    return AIMessage(message["content"], tool_calls=calls)


def _system(agent: str) -> Message:
    return {"role": "system", "content": system_prompt(agent)}


def _user(text: str) -> Message:
    return {"role": "user", "content": text}


LLM = RawLLM | LangChainLLM


async def pipeline(llm: LLM, agents: tuple[str, ...], text: str) -> str:
    """Each agent in turn, on the previous one's output."""
    for agent in agents:
        text = (await llm.complete([_system(agent), _user(text)])).text
    return text


async def fanout(llm: LLM, agents: tuple[str, ...], text: str) -> str:
    """Every agent at once (`TaskGroup`), outputs collected in agent order."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(llm.complete([_system(a), _user(text)])) for a in agents]
    return "\n\n".join(f"## {a}\n\n{t.result().text}" for a, t in zip(agents, tasks, strict=True))


async def router(llm: LLM, agents: tuple[str, ...], text: str) -> str:
    """The classifier stub picks the agent; it answers."""
    agent = pick(text, agents)
    return (await llm.complete([_system(agent), _user(text)])).text


async def supervisor(llm: LLM, workers: tuple[str, ...], text: str) -> str:
    """The supervisor delegates until it answers; each worker sees only its task."""
    transcript: list[Message] = [_user(text)]
    offered = [HANDOFF_PREFIX + w for w in workers]
    for _ in range(MAX_ROUNDS + 1):
        reply = await llm.complete([_system("supervisor"), *transcript], offered)
        if reply.handoff is None:
            return reply.text
        worker = reply.handoff.removeprefix(HANDOFF_PREFIX)
        transcript.append(
            {"role": "assistant", "content": "", "handoff": reply.handoff, "call_id": reply.call_id}
        )
        report = await llm.complete([_system(worker), _user("Handle your part of the request.")])
        transcript.append({"role": "tool", "content": report.text, "call_id": reply.call_id})
    raise BenchError("raw asyncio supervisor: no answer within the round limit")


async def swarm(llm: LLM, agents: tuple[str, ...], text: str) -> str:
    """The active agent answers or hands the shared transcript to a peer."""
    transcript: list[Message] = [_user(text)]
    active = agents[0]
    for _ in range(MAX_ROUNDS + 1):
        offered = [HANDOFF_PREFIX + a for a in agents if a != active]
        reply = await llm.complete([_system(active), *transcript], offered)
        if reply.handoff is None:
            return reply.text
        active = reply.handoff.removeprefix(HANDOFF_PREFIX)
        transcript.append(
            {"role": "assistant", "content": "", "handoff": reply.handoff, "call_id": reply.call_id}
        )
        transcript.append(
            {"role": "tool", "content": f"Transferred to {active}.", "call_id": reply.call_id}
        )
    raise BenchError("raw asyncio swarm: no answer within the handoff limit")


_FLOWS = {
    "pipeline": pipeline,
    "fanout": fanout,
    "router": router,
    "supervisor": supervisor,
    "swarm": swarm,
}


class RawAsyncio(Contender):
    """Plain coroutines and `asyncio.TaskGroup`."""

    key: ClassVar[str] = "asyncio"
    label: ClassVar[str] = "raw asyncio"
    distribution: ClassVar[str | None] = None
    patterns: ClassVar[frozenset[str]] = frozenset(_FLOWS)

    async def prepare(self, topology: Topology, setup: Setup) -> Prepared:
        """Bind the hand-written flow to a fresh simulated model."""
        llm = RawLLM(setup.latency_s, topology.plan)
        flow = _FLOWS[topology.pattern]
        agents = topology.agents

        async def run() -> str:
            return await flow(llm, agents, REQUEST)

        return Prepared(run=run, tally=llm.tally)

    def per_hop(self, pattern: str) -> str:
        """What raw asyncio does per hop."""
        return {
            "pipeline": "`await` the model call, pass the text on",
            "fanout": "`TaskGroup.create_task` per worker, join",
            "router": "dict lookup (stub), `await` the model call",
            "supervisor": "`await` the supervisor, then the worker; append to a list",
            "swarm": "`await` the active agent; switch on its handoff",
        }[pattern]


class RawAsyncioLangChain(RawAsyncio):
    """The same hand-written flows, calling the LangChain chat model (`BenchChatModel`)."""

    key: ClassVar[str] = "asyncio-langchain"
    label: ClassVar[str] = "asyncio + LangChain model"

    async def prepare(self, topology: Topology, setup: Setup) -> Prepared:
        """Bind the hand-written flow to the LangChain model."""
        llm = LangChainLLM(setup.latency_s, topology.plan)
        flow = _FLOWS[topology.pattern]
        agents = topology.agents

        async def run() -> str:
            return await flow(llm, agents, REQUEST)

        return Prepared(run=run, tally=llm.tally)

    def per_hop(self, pattern: str) -> str:
        """What it does per hop: raw asyncio's flow, with a LangChain model call."""
        return super().per_hop(pattern) + "; the model is called through LangChain's `ainvoke`"
