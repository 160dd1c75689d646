"""One agent call through Switchyard's inline middleware chain vs through a `create_agent` graph.

Both run the same model (the benchmarks' simulated model, zero latency) with the same default
middleware (`default_middleware(spec)`), inside a run scope with a budget, as in a graph:

- inline: `acall_agent(spec, ...)`, the agent loop and chain Switchyard's agent nodes run;
- create_agent: `create_agent(model, middleware=default_middleware(spec))`, compiled once,
  `ainvoke`d per call (and, for scale, `create_agent` with no middleware at all).

The bare model call is given for scale. Usage: `python bench/agent_runner.py` (prints medians in
microseconds per call; a benchmark, not a test).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables.config import set_config_context

from switchyard.bench.contenders.ours import agent_spec
from switchyard.bench.llm import BenchChatModel
from switchyard.core.models import register_chat_model
from switchyard.guardrails.budgets import Budget, RunMeter
from switchyard.guardrails.scope import RunScope, with_scope
from switchyard.nodes.call import acall_agent
from switchyard.nodes.chain import AgentChain, default_middleware
from switchyard.state.context import Context

CALLS = 2000
ROUNDS = 7


async def per_call_us(call: Callable[[], Awaitable[Any]]) -> float:
    """Mean microseconds per call over `CALLS` calls."""
    started = time.perf_counter()
    for _ in range(CALLS):
        await call()
    return (time.perf_counter() - started) / CALLS * 1e6


async def main() -> None:
    spec = agent_spec("agent")
    model = BenchChatModel(latency_s=0.0)
    register_chat_model("offline:agent-runner", model)
    context = Context(model="offline:agent-runner")
    messages = [HumanMessage("Please handle this request.")]
    system = SystemMessage(spec.system_prompt)
    chain = AgentChain.of(spec)
    graph = create_agent(
        model, system_prompt=spec.system_prompt, middleware=default_middleware(spec)
    )

    async def bare() -> Any:
        return await model.ainvoke([system, *messages])

    async def inline() -> Any:
        return await acall_agent(spec, messages, context, chain=chain)

    plain = create_agent(model, system_prompt=spec.system_prompt)

    async def via_create_agent() -> Any:
        return await graph.ainvoke({"messages": list(messages)})

    async def via_plain_create_agent() -> Any:
        return await plain.ainvoke({"messages": list(messages)})

    cases = {
        "bare model call": bare,
        "inline chain": inline,
        "create_agent": via_create_agent,
        "create_agent, no middleware": via_plain_create_agent,
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, call in cases.items():
            samples[name].append(await per_call_us(call))
    for name, values in samples.items():
        print(f"{name:28s} {statistics.median(values):8.1f} us per call")


if __name__ == "__main__":
    scope = RunScope(meter=RunMeter(run_budget=Budget(max_tokens=10**15)))
    with set_config_context(with_scope(None, scope)):
        asyncio.run(main())
