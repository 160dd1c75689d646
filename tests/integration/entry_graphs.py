"""The seven patterns as the entry-path tests run them: in this process, and under `langgraph dev`.

Loaded both by the tests (`run()`, `graph.invoke`) and by the `langgraph dev` server they start
(as `./tests/integration/entry_graphs.py:<pattern>`), so every entry path runs the same graphs.
The agents are the demo agents, plus loops: a supervisor on `offline:eager` (the offline model,
calling a tool whenever one fits at all), two swarm agents on `handoff:always` (a model that
always calls the first tool it is offered) that hand the conversation to each other, and an
events bus that bounces `ping` and `pong` into its `max_events`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

from switchyard import (
    AgentSpec,
    OfflineChatModel,
    build_events_graph,
    build_fanout_graph,
    build_hierarchical_graph,
    build_pipeline_graph,
    build_router_graph,
    build_supervisor_graph,
    build_swarm_graph,
    demos,
    register_chat_model,
)


class AlwaysHandOff(BaseChatModel):
    """Calls the first tool it is offered, every time: an agent that never answers itself."""

    @property
    def _llm_type(self) -> str:
        return "always-hand-off"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, BaseMessage]:
        """Bind tools in OpenAI format (only the first one is ever called)."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        tools: list[dict[str, Any]] = kwargs.get("tools") or []
        calls = (
            [{"name": tools[0]["function"]["name"], "args": {}, "id": f"call-{next(_ids)}"}]
            if tools
            else []
        )
        reply = AIMessage(content="" if calls else "no tool to call", tool_calls=calls)
        reply.usage_metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return ChatResult(generations=[ChatGeneration(message=reply)])


_ids = itertools.count()
EAGER = "offline:eager"
HANDOFF = "handoff:always"
register_chat_model(EAGER, OfflineChatModel(model_name="eager", tool_threshold=0.0))
register_chat_model(HANDOFF, AlwaysHandOff())

router = build_router_graph(demos.ROUTER_AGENTS, default_agent="support").compile(name="router")
pipeline = build_pipeline_graph(demos.PIPELINE_STAGES).compile(name="pipeline")
fanout = build_fanout_graph(demos.FANOUT_ANALYSTS, merger=demos.FANOUT_MERGER).compile(
    name="fanout"
)
hierarchical = build_hierarchical_graph(
    demos.HIERARCHICAL_WORKERS, manager=demos.HIERARCHICAL_MANAGER
).compile(name="hierarchical")
events = build_events_graph(
    [
        AgentSpec(name="pinger", description="Answers every pong with a ping."),
        AgentSpec(name="ponger", description="Answers every ping with a pong."),
    ],
    subscriptions={"ping": ["ponger"], "pong": ["pinger"]},
    publishes={"pinger": ["ping"], "ponger": ["pong"]},
    max_events=4,
).compile(name="events")
supervisor = build_supervisor_graph(
    demos.SUPERVISOR_WORKERS,
    supervisor=AgentSpec(
        name="supervisor",
        description="Delegates every request.",
        system_prompt="You are the supervisor: delegate each request to a worker.",
        model=EAGER,
    ),
).compile(name="supervisor")
swarm = build_swarm_graph(
    [
        AgentSpec(
            name="ping", description="Hands over to pong.", model=HANDOFF, handoffs=("pong",)
        ),
        AgentSpec(
            name="pong", description="Hands over to ping.", model=HANDOFF, handoffs=("ping",)
        ),
    ],
    default_agent="ping",
).compile(name="swarm")
