"""The agent node: one factory that turns an agent into a graph node, for every pattern.

`make_agent_node(agent, view=..., accept=..., handoffs=...)` is how every pattern builds its
agents' nodes. What differs between patterns is parametrised, and nothing else is:

- `view`: what the agent sees, from the node's input (the router shows an agent only the turns
  routed to it, a pipeline stage the previous stage's validated output, a worker its task);
- `accept`: what the node writes back, from the agent's reply (a state update or a `Command`:
  a handoff, a result record, the answer);
- `handoffs`: the handoff tools the agent is offered (its declared peers only);
- `validate`: the pattern's own check of the agent's structured output (re-asked on failure).

Every model and tool call of the node goes through the agent's middleware chain (guardrails and
LangChain middleware, `switchyard.nodes.chain`), built once when the node is.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AnyMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tools import BaseTool
from langgraph.types import Command
from pydantic import BaseModel

from switchyard.nodes.call import CallOptions, Validate, acall_agent, call_agent
from switchyard.nodes.chain import AgentChain
from switchyard.nodes.memory import memory_policy, remembered_view
from switchyard.nodes.record import AgentReply
from switchyard.state.agents import AgentSpec
from switchyard.state.context import Context, current_context

View = Callable[[Any, Context], Sequence[BaseMessage]]
"""What an agent sees: from the node's input (state, or a `Send` payload) and the run's context."""

Accept = Callable[[Any, AgentReply], Any]
"""What the node writes back: a state update or a `Command`, from the input and the reply."""


def own_view(
    spec: AgentSpec, messages: Sequence[AnyMessage], context: Context, *, shared: bool = False
) -> list[AnyMessage]:
    """The agent's window onto `messages` (see `switchyard.state.views.window`).

    Only the turns the agent answered, unless `shared` (every agent of a swarm sees the whole
    conversation), trimmed to the agent's window (or the run's override of it); a current turn
    larger than the window is cut, with a marker. When the agent has summarised memory
    (`AgentSpec.memory`, `Context.memory`), the view starts with a marker of the dropped turns,
    which its `SummarizedMemory` middleware replaces by its notes
    (`switchyard.nodes.memory.remembered_view`).
    """
    return remembered_view(
        messages,
        None if shared else spec.name,
        max_pairs=context.max_message_pairs or spec.max_message_pairs,
        max_tokens=context.max_context_tokens or spec.max_context_tokens,
        policy=memory_policy(spec, context),
    )


def transcript_view(spec: AgentSpec, *, shared: bool = False) -> View:
    """The view of an agent that answers in the conversation: `own_view` of `state["messages"]`."""

    def view(state: Any, context: Context) -> list[AnyMessage]:
        return own_view(spec, state["messages"], context, shared=shared)

    return view


def recorded(reply: AgentReply) -> dict[str, Any]:
    """The part of every agent node's update that accounts for the call: usage and memory."""
    update: dict[str, Any] = {"usage": reply.usage}
    if reply.refusals:
        update["refusals"] = list(reply.refusals)
    return update


def memory_update(agent: str, reply: AgentReply) -> dict[str, Any]:
    """The agent's session-scoped middleware state to checkpoint, if it changed."""
    return {"agent_state": {agent: reply.memory}} if reply.memory else {}


def with_memory(update: Any, agent: str, reply: AgentReply) -> Any:
    """A node's update (a dict or a `Command`) with the agent's `memory_update` added.

    A `Command` (a handoff, a supervisor's delegation) carries it in its own update, so agents
    that answer with one keep their session state (their summarised memory) too.
    """
    memory = memory_update(agent, reply)
    if not memory:
        return update
    if isinstance(update, dict):
        return {**update, **memory}
    if isinstance(update, Command) and isinstance(update.update, dict | None):
        return dataclasses.replace(update, update={**(update.update or {}), **memory})
    return update


def answer_update(state: Any, reply: AgentReply) -> dict[str, Any]:
    """The default `accept`: the agent's new messages and its usage."""
    return {"messages": reply.messages, "usage": reply.usage}


class NodeRunnable(Runnable[Any, Any]):
    """A graph node made of a sync and an async function, run as LangGraph runs its own.

    LangGraph wraps a function node in `RunnableCallable(..., trace=False)`: the node's run (its
    span, its LangSmith run) is the one LangGraph opens around it, and the node runs in a task
    whose current config is that run's child. A node given as a `Runnable` is called the same
    way, so this one opens no run of its own either (a second, nested run per hop would double
    every node's span and, with its own task, cost about 60 microseconds a hop). Called outside
    a graph with a config, it makes that config current for the call.

    `RunnableLambda` is not used: it inspects its function's signature on every call (four
    times per node call, about 150 microseconds per hop on a 2-core machine).
    """

    def __init__(
        self,
        func: Callable[[Any], Any],
        afunc: Callable[[Any], Awaitable[Any]],
        *,
        name: str,
        agent: AgentSpec | None = None,
    ) -> None:
        """Wrap `func` (used by `invoke`) and `afunc` (used by `ainvoke`) as node `name`.

        `agent` names the agent the node runs, if it runs one (the compiled graph reads its
        budget).
        """
        self.func = func
        self.afunc = afunc
        self.name = name
        self.agent = agent

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run `func` on the state, with `config` current."""
        token = _make_current(config)
        try:
            return self.func(input)
        finally:
            if token is not None:
                var_child_runnable_config.reset(token)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run `afunc` on the state, with `config` current."""
        token = _make_current(config)
        try:
            return await self.afunc(input)
        finally:
            if token is not None:
                var_child_runnable_config.reset(token)


def _make_current(config: RunnableConfig | None) -> Token[RunnableConfig | None] | None:
    """Make `config` the current config, unless it already is (as when LangGraph calls a node)."""
    if config is None or var_child_runnable_config.get() is config:
        return None
    return var_child_runnable_config.set(config)


@dataclass(frozen=True)
class AgentNode:
    """What one agent node does, for `invoke` (`run`) and `ainvoke` (`arun`); see `make_agent_node`.

    Attributes:
        agent: The agent.
        chain: Its middleware, built once.
        view: What it sees.
        accept: What the node returns.
        handoffs: The handoff tools it is offered.
        validate: The pattern's check of its structured output.
        reasks: How often, in a run, a rejected structured answer is asked for again.
    """

    agent: AgentSpec
    chain: AgentChain
    view: View
    accept: Accept
    handoffs: Sequence[BaseTool] = ()
    validate: Validate | None = None
    reasks: Callable[[Context], int] | None = None

    @classmethod
    def of(
        cls,
        agent: AgentSpec,
        *,
        view: View | None = None,
        accept: Accept = answer_update,
        handoffs: Sequence[BaseTool] = (),
        validate: Validate | None = None,
        reasks: Callable[[Context], int] | None = None,
        middleware: Sequence[AgentMiddleware[Any, Any, Any]] = (),
    ) -> AgentNode:
        """The node of `agent`, its chain built once (arguments as for `make_agent_node`).

        Its view is the agent's own turns unless another is given.
        """
        return cls(
            agent=agent,
            chain=AgentChain.of(agent, middleware),
            view=view or transcript_view(agent),
            accept=accept,
            handoffs=handoffs,
            validate=validate,
            reasks=reasks,
        )

    def _options(self, state: Any, context: Context) -> CallOptions:
        return CallOptions(
            chain=self.chain,
            handoff_tools=self.handoffs,
            state=dict(state) if isinstance(state, dict) else {},
            validate=self.validate,
            reasks=self.reasks(context) if self.reasks is not None else None,
        )

    def _finish(self, state: Any, reply: AgentReply) -> Any:
        return with_memory(self.accept(state, reply), self.agent.name, reply)

    def run(self, state: Any) -> Any:
        """Call the agent on its view of `state`; the update `accept` makes of the reply."""
        context = current_context()
        messages = self.view(state, context)
        return self._finish(
            state, call_agent(self.agent, messages, context, **self._options(state, context))
        )

    async def arun(self, state: Any) -> Any:
        """Async form of `run`."""
        context = current_context()
        messages = self.view(state, context)
        reply = await acall_agent(self.agent, messages, context, **self._options(state, context))
        return self._finish(state, reply)


def make_agent_node(
    agent: AgentSpec,
    *,
    view: View | None = None,
    accept: Accept = answer_update,
    handoffs: Sequence[BaseTool] = (),
    validate: Validate | None = None,
    reasks: Callable[[Context], int] | None = None,
    middleware: Sequence[AgentMiddleware[Any, Any, Any]] = (),
    name: str | None = None,
) -> NodeRunnable:
    """The graph node of one agent, in any pattern.

    Args:
        agent: The agent.
        view: What it sees (default: its own turns of `state["messages"]`, in its window).
        accept: What the node returns from the reply (default: the new messages and the usage).
        handoffs: Handoff tools offered to the agent (the call stops at the first one it calls).
        validate: The pattern's check of the agent's structured output (re-asked on failure).
        reasks: How often, in this run, a rejected structured answer is asked for again
            (default: once).
        middleware: Middleware for this node on top of the agent's own (`AgentSpec.middleware`),
            outside it; usually the graph-wide list given to `build_*_graph(middleware=...)`.
        name: The node's name (default: the agent's).

    Returns:
        A node for `StateGraph.add_node`, for `invoke` and `ainvoke` alike. The node's memory of
        its middleware state is written to `agent_state` when the update is a dict.

    Example:
        ```python
        builder.add_node(spec.name, make_agent_node(spec))
        ```
    """
    node = AgentNode.of(
        agent,
        view=view,
        accept=accept,
        handoffs=handoffs,
        validate=validate,
        reasks=reasks,
        middleware=middleware,
    )
    return NodeRunnable(node.run, node.arun, name=name or agent.name, agent=agent)


def render_output(output: str | BaseModel) -> str:
    """An agent's output as text (structured output as indented JSON)."""
    if isinstance(output, BaseModel):
        return json.dumps(output.model_dump(mode="json"), indent=2)
    return output
