"""LangChain's prebuilt multi-agent libraries: `langgraph-supervisor` and `langgraph-swarm`.

Workers and swarm agents are `langchain.agents.create_agent` agents (the libraries' documented
way), all on the same simulated model; handoff tools are the libraries' own.
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any, ClassVar

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.warnings import LangGraphDeprecatedSinceV10
from langgraph_supervisor import create_supervisor
from langgraph_swarm import create_handoff_tool, create_swarm

from switchyard.bench.contenders import BenchError, Contender, Prepared, Setup
from switchyard.bench.llm import BenchChatModel
from switchyard.bench.topology import REQUEST, Topology, system_prompt


def _runner(graph: Any, pattern: str, persistent: bool) -> Any:
    async def run() -> str:
        config: RunnableConfig = {}
        if persistent:
            config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        state = await graph.ainvoke({"messages": [HumanMessage(REQUEST)]}, config)
        answers = [m for m in state.get("messages") or [] if isinstance(m, AIMessage) and m.text]
        if not answers:
            raise BenchError(f"{pattern}: no answer")
        return str(answers[-1].text)

    return run


class LangGraphSupervisor(Contender):
    """`langgraph_supervisor.create_supervisor` over `create_agent` workers."""

    key: ClassVar[str] = "langgraph-supervisor"
    label: ClassVar[str] = "langgraph-supervisor"
    distribution: ClassVar[str | None] = "langgraph-supervisor"
    patterns: ClassVar[frozenset[str]] = frozenset({"supervisor"})
    backends: ClassVar[frozenset[str]] = frozenset({"none", "memory", "sqlite", "postgres"})

    async def prepare(self, topology: Topology, setup: Setup) -> Prepared:
        """Build the prebuilt supervisor on the simulated model."""
        model = BenchChatModel(latency_s=setup.latency_s, plan=topology.plan)
        workers: list[Any] = [
            create_agent(model, tools=[], system_prompt=system_prompt(name), name=name)
            for name in topology.agents
        ]
        with warnings.catch_warnings():
            # langgraph-supervisor builds its supervisor with LangGraph's deprecated
            # `create_react_agent`; the warning is about the library, not this benchmark.
            warnings.simplefilter("ignore", LangGraphDeprecatedSinceV10)
            builder = create_supervisor(workers, model=model, prompt=system_prompt("supervisor"))
        graph = builder.compile(checkpointer=setup.checkpointer)
        run = _runner(graph, "langgraph-supervisor", setup.checkpointer is not None)
        return Prepared(run=run, tally=model.tally)

    def per_hop(self, pattern: str) -> str:
        """What langgraph-supervisor does per hop."""
        return (
            "supervisor is a ReAct agent subgraph (model node + tool node running the handoff "
            "tool, which returns `Command(graph=PARENT)`); each worker is a `create_agent` "
            "subgraph that sees the whole conversation; a handoff-back message pair is added "
            "after each worker"
        )


class LangGraphSwarm(Contender):
    """`langgraph_swarm.create_swarm` over `create_agent` agents with handoff tools."""

    key: ClassVar[str] = "langgraph-swarm"
    label: ClassVar[str] = "langgraph-swarm"
    distribution: ClassVar[str | None] = "langgraph-swarm"
    patterns: ClassVar[frozenset[str]] = frozenset({"swarm"})
    backends: ClassVar[frozenset[str]] = frozenset({"none", "memory", "sqlite", "postgres"})

    async def prepare(self, topology: Topology, setup: Setup) -> Prepared:
        """Build the prebuilt swarm on the simulated model."""
        model = BenchChatModel(latency_s=setup.latency_s, plan=topology.plan)
        agents: list[Any] = [
            create_agent(
                model,
                tools=[
                    create_handoff_tool(agent_name=peer) for peer in topology.agents if peer != name
                ],
                system_prompt=system_prompt(name),
                name=name,
            )
            for name in topology.agents
        ]
        graph = create_swarm(agents, default_active_agent=topology.agents[0]).compile(
            checkpointer=setup.checkpointer
        )
        run = _runner(graph, "langgraph-swarm", setup.checkpointer is not None)
        return Prepared(run=run, tally=model.tally)

    def per_hop(self, pattern: str) -> str:
        """What langgraph-swarm does per hop."""
        return (
            "each agent is a `create_agent` subgraph (model node + tool node); the handoff "
            "tool returns `Command(goto=peer, graph=PARENT)` and sets `active_agent`"
        )
