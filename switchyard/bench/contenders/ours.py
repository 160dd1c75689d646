"""Switchyard: each pattern's public factory, compiled, run through `switchyard.runtime.run.arun`.

Every guardrail is on, as a user gets it by default: explicit recursion limit, run budget and
deadline metered on every model call (`RunMeter`), circuit breaker per model, retries and fallback
models in every agent's middleware chain and a fallback `error_handler` on every agent node,
per-agent context windows, usage and cost ledger,
handoff validation and limits (supervisor rounds, swarm max handoffs and ping-pong detection),
session ownership checks and thread ids derived from (user, session). Telemetry callbacks are
attached only when tracing or logging is switched on, which the benchmarks leave off (as the
peers run with their tracing off).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from langgraph.graph.state import CompiledStateGraph

from switchyard.bench.contenders import BenchError, Contender, Prepared, Setup
from switchyard.bench.llm import BenchChatModel
from switchyard.bench.topology import REQUEST, Topology, pick, system_prompt
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.graphs.fanout import build_fanout_graph
from switchyard.graphs.pipeline import build_pipeline_graph
from switchyard.graphs.router import build_router_graph
from switchyard.graphs.supervisor import build_supervisor_graph
from switchyard.graphs.swarm import build_swarm_graph
from switchyard.guardrails.budgets import Budget
from switchyard.nodes.classifiers import Decision
from switchyard.runtime.run import arun
from switchyard.state.agents import AgentSpec
from switchyard.state.context import Context

SUPERVISOR = "supervisor"


class StubClassifier:
    """Switchyard's `Classifier` interface over the shared classifier stub (`topology.pick`)."""

    name = "stub"

    def __init__(self, agents: Sequence[str]) -> None:
        """Route between `agents`."""
        self.agents = tuple(agents)

    def classify(self, text: str, *, model: str | None = None) -> Decision:
        """The agent named in the request, with full confidence."""
        return Decision(pick(text, self.agents), 1.0, "agent named in the request")

    async def aclassify(self, text: str, *, model: str | None = None) -> Decision:
        """Same as `classify`."""
        return self.classify(text, model=model)


def agent_spec(name: str, handoffs: Sequence[str] = ()) -> AgentSpec:
    """The `AgentSpec` of a benchmark agent (defaults for windows, retries and budgets)."""
    return AgentSpec(
        name=name,
        description=f"The {name.replace('_', ' ')} agent.",
        system_prompt=system_prompt(name),
        handoffs=tuple(handoffs),
    )


def build(topology: Topology) -> Any:
    """The uncompiled Switchyard graph of a topology."""
    names = topology.agents
    if topology.pattern == "pipeline":
        return build_pipeline_graph([agent_spec(n) for n in names])
    if topology.pattern == "fanout":
        return build_fanout_graph([agent_spec(n) for n in names], strategy="collect")
    if topology.pattern == "router":
        return build_router_graph(
            [agent_spec(n) for n in names], default_agent=names[0], classifier=StubClassifier(names)
        )
    if topology.pattern == "supervisor":
        return build_supervisor_graph(
            [agent_spec(n) for n in names], supervisor=agent_spec(SUPERVISOR)
        )
    if topology.pattern == "swarm":
        specs = [agent_spec(n, [peer for peer in names if peer != n]) for n in names]
        return build_swarm_graph(specs, default_agent=names[0])
    raise ValueError(f"Switchyard contender has no {topology.pattern!r} pattern")


def context_for(topology: Topology, model: str) -> Context:
    """The run's `Context`: defaults, except the model, and a run budget sized to the workload.

    The default run budget (200k tokens) would stop a 10,000-worker fan-out part way (about 50
    tokens per worker), so wide fan-outs get a budget of 1,000 tokens per agent: still metered
    and enforced on every call, as by default.
    """
    budget = Context().run_budget
    if topology.calls > 1_000:
        budget = Budget(max_tokens=1_000 * topology.calls)
    return Context(model=model, run_budget=budget)


class SwitchyardContender(Contender):
    """Switchyard's patterns with every guardrail on."""

    key: ClassVar[str] = "switchyard"
    label: ClassVar[str] = "Switchyard"
    distribution: ClassVar[str | None] = None
    patterns: ClassVar[frozenset[str]] = frozenset(
        {"pipeline", "fanout", "router", "supervisor", "swarm"}
    )
    backends: ClassVar[frozenset[str]] = frozenset({"none", "memory", "sqlite", "postgres"})

    async def prepare(self, topology: Topology, setup: Setup) -> Prepared:
        """Compile the pattern with the setup's checkpointer; register the simulated model."""
        model_name = f"offline:bench-{uuid.uuid4().hex[:12]}"
        model = BenchChatModel(latency_s=setup.latency_s, plan=topology.plan)
        register_chat_model(model_name, model)
        graph: CompiledStateGraph[Any, Any, Any, Any] = build(topology).compile(
            checkpointer=setup.checkpointer, name=topology.pattern
        )
        context = context_for(topology, model_name)

        async def run() -> str:
            result = await arun(
                graph,
                REQUEST,
                user_id="bench",
                session_id=uuid.uuid4().hex,
                context=context,
                dlq=None,
            )
            if not result.ok:
                raise BenchError(
                    f"Switchyard {topology.pattern}: {result.end_reason}: {result.error}"
                )
            return result.output

        async def close() -> None:
            unregister_chat_model(model_name)

        return Prepared(run=run, tally=model.tally, close=close)

    def per_hop(self, pattern: str) -> str:
        """What Switchyard does per hop."""
        common = (
            "agent node via `make_agent_node`: own view of the conversation (window), the "
            "middleware chain on the model call (re-ask, retry, budget admit + charge, breaker, "
            "timeout and deadline, tool authority, usage/cost ledger entry), error handler wired"
        )
        extra = {
            "pipeline": "; stage output validated and handed on as a typed `StageHandoff`",
            "fanout": "; `Send` per worker (one per shard of up to 64 workers above 64), "
            "per-worker retries and result record, quorum check at merge",
            "router": "; classify node (stub classifier) writes the route with confidence",
            "supervisor": "; typed task payload, round limit, worker report as tool result",
            "swarm": "; handoff validated against declared peers, max-handoffs and ping-pong "
            "checks, active agent recorded",
        }
        facade = "; run facade: input checks, session owner check, run meter, result with usage"
        return common + extra.get(pattern, "") + facade
