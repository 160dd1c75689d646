"""Bare LangGraph: the same topologies hand-built from `StateGraph`, `Send` and `Command`.

What a careful user writes without a framework on top: the same nodes and edges as Switchyard's
patterns, the same model (tools bound once, at build time), and nothing else: no budgets,
breakers, retry policies, error handlers, windows, ledgers or limits beyond LangGraph's own.
"""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, Any, ClassVar

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, Send
from typing_extensions import TypedDict

from switchyard.bench.contenders import BenchError, Contender, Prepared, Setup
from switchyard.bench.llm import HANDOFF_PREFIX, BenchChatModel
from switchyard.bench.topology import REQUEST, Topology, pick, system_prompt


class BareState(TypedDict, total=False):
    """One state for every hand-built topology."""

    messages: Annotated[list[AnyMessage], add_messages]
    last: str
    route: str
    results: Annotated[dict[str, str], operator.or_]
    task: str
    call_id: str
    active: str


def _handoff_tool(peer: str, arg: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": HANDOFF_PREFIX + peer,
            "description": f"Transfer to {peer}.",
            "parameters": {
                "type": "object",
                "properties": {arg: {"type": "string"}},
                "required": [arg],
            },
        },
    }


def _system(agent: str) -> SystemMessage:
    return SystemMessage(system_prompt(agent))


def build(topology: Topology, model: BenchChatModel) -> StateGraph[Any, Any, Any, Any]:
    """The hand-built graph of a topology."""
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(BareState)
    names = topology.agents
    if topology.pattern == "pipeline":
        previous = START
        for index, name in enumerate(names):
            builder.add_node(name, _stage(name, model, last=index == len(names) - 1))
            builder.add_edge(previous, name)
            previous = name
        builder.add_edge(previous, END)
    elif topology.pattern == "fanout":
        for name in names:
            builder.add_node(name, _worker(name, model))
            builder.add_edge(name, "merge")
        builder.add_node("merge", _merge)
        builder.add_conditional_edges(START, _dispatch(names), list(names))
        builder.add_edge("merge", END)
    elif topology.pattern == "router":
        builder.add_node("classify", _classify(names))
        for name in names:
            builder.add_node(name, _answer(name, model))
            builder.add_edge(name, END)
        builder.add_edge(START, "classify")
        builder.add_conditional_edges("classify", _route, list(names))
    elif topology.pattern == "supervisor":
        bound = model.bind_tools([_handoff_tool(n, "task") for n in names])
        builder.add_node("supervisor", _supervise(bound), destinations=(*names, END))
        for name in names:
            builder.add_node(name, _report(name, model))
            builder.add_edge(name, "supervisor")
        builder.add_edge(START, "supervisor")
    elif topology.pattern == "swarm":
        for name in names:
            peers = [p for p in names if p != name]
            bound = model.bind_tools([_handoff_tool(p, "reason") for p in peers])
            builder.add_node(name, _swarm_agent(name, bound), destinations=(*peers, END))
        builder.add_conditional_edges(START, _active(names[0]), list(names))
    else:
        raise ValueError(f"bare LangGraph contender has no {topology.pattern!r} pattern")
    return builder


def _stage(name: str, model: BenchChatModel, *, last: bool) -> Any:
    async def stage(state: BareState) -> dict[str, Any]:
        reply = await model.ainvoke([_system(name), HumanMessage(state["last"])])
        update: dict[str, Any] = {"last": reply.text}
        if last:
            update["messages"] = [reply]
        return update

    return stage


def _dispatch(names: tuple[str, ...]) -> Any:
    def dispatch(state: BareState) -> list[Send]:
        request = state["messages"][-1].text
        return [Send(name, {"task": request}) for name in names]

    return dispatch


def _worker(name: str, model: BenchChatModel) -> Any:
    async def worker(state: BareState) -> dict[str, Any]:
        reply = await model.ainvoke([_system(name), HumanMessage(state["task"])])
        return {"results": {name: reply.text}}

    return worker


def _merge(state: BareState) -> dict[str, Any]:
    text = "\n\n".join(f"## {k}\n\n{v}" for k, v in sorted(state["results"].items()))
    return {"messages": [AIMessage(text)]}


def _classify(names: tuple[str, ...]) -> Any:
    def classify(state: BareState) -> dict[str, Any]:
        return {"route": pick(state["messages"][-1].text, names)}

    return classify


def _route(state: BareState) -> str:
    return state["route"]


def _answer(name: str, model: BenchChatModel) -> Any:
    async def answer(state: BareState) -> dict[str, Any]:
        reply = await model.ainvoke([_system(name), *state["messages"]])
        return {"messages": [reply]}

    return answer


def _supervise(bound: Any) -> Any:
    async def supervise(state: BareState) -> Command[str]:
        reply = await bound.ainvoke([_system("supervisor"), *state["messages"]])
        if reply.tool_calls:
            call = reply.tool_calls[0]
            return Command(
                goto=call["name"].removeprefix(HANDOFF_PREFIX),
                update={"messages": [reply], "task": call["args"]["task"], "call_id": call["id"]},
            )
        return Command(goto=END, update={"messages": [reply]})

    return supervise


def _report(name: str, model: BenchChatModel) -> Any:
    async def report(state: BareState) -> dict[str, Any]:
        reply = await model.ainvoke([_system(name), HumanMessage(state["task"])])
        return {"messages": [ToolMessage(reply.text, tool_call_id=state["call_id"])]}

    return report


def _swarm_agent(name: str, bound: Any) -> Any:
    async def agent(state: BareState) -> Command[str]:
        reply = await bound.ainvoke([_system(name), *state["messages"]])
        if reply.tool_calls:
            call = reply.tool_calls[0]
            peer = call["name"].removeprefix(HANDOFF_PREFIX)
            done = ToolMessage(f"Transferred to {peer}.", tool_call_id=call["id"])
            return Command(goto=peer, update={"messages": [reply, done], "active": peer})
        return Command(goto=END, update={"messages": [reply], "active": name})

    return agent


def _active(default: str) -> Any:
    def active(state: BareState) -> str:
        return state.get("active") or default

    return active


class BareLangGraph(Contender):
    """Hand-built LangGraph graphs, no guardrails."""

    key: ClassVar[str] = "langgraph"
    label: ClassVar[str] = "bare LangGraph"
    distribution: ClassVar[str | None] = "langgraph"
    patterns: ClassVar[frozenset[str]] = frozenset(
        {"pipeline", "fanout", "router", "supervisor", "swarm"}
    )
    backends: ClassVar[frozenset[str]] = frozenset({"none", "memory", "sqlite", "postgres"})

    async def prepare(self, topology: Topology, setup: Setup) -> Prepared:
        """Compile the hand-built graph with the setup's checkpointer."""
        model = BenchChatModel(latency_s=setup.latency_s, plan=topology.plan)
        graph = build(topology, model).compile(checkpointer=setup.checkpointer)
        persistent = setup.checkpointer is not None

        async def run() -> str:
            config: RunnableConfig = {}
            if persistent:
                config = {"configurable": {"thread_id": uuid.uuid4().hex}}
            state = await graph.ainvoke(
                {"messages": [HumanMessage(REQUEST)], "last": REQUEST}, config
            )
            messages = state.get("messages") or []
            if not messages or not isinstance(messages[-1], AIMessage):
                raise BenchError(f"bare LangGraph {topology.pattern}: no answer")
            return str(messages[-1].text)

        return Prepared(run=run, tally=model.tally)

    def per_hop(self, pattern: str) -> str:
        """What bare LangGraph does per hop."""
        return {
            "pipeline": "one node per stage: model call on the previous output",
            "fanout": "`Send` per worker node, results merged by a dict reducer",
            "router": "classify node (stub), conditional edge, agent node calls the model",
            "supervisor": "supervisor node (tools bound once) returns `Command(goto=worker)`; "
            "worker answers the tool call",
            "swarm": "agent node (tools bound once) returns `Command(goto=peer)` with a "
            "tool result",
        }[pattern]
