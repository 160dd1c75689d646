"""Agents whose work a compiled LangGraph graph does (`AgentSpec(graph=...)`, a bare graph).

A graph agent gets `{"messages": view}` and answers with its last AI message. The run's
guardrails reach inside it:

- a Switchyard pattern graph (a sub-team) joins the run's scope through the config it is given:
  its own agents are guarded as any, and its ledger joins the run's;
- any other graph (`create_agent`, a user's own) is watched by a `GraphCallGuard` callback on
  each of its model calls: the run's deadline and budgets admit each call before it is sent (a
  refusal stops the graph), what it used is charged and recorded in the ledger, under the agent.

The agent's `timeout_s` and the run's deadline bound the whole graph call, sync or async.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config

from switchyard.core.errors import SwitchyardError
from switchyard.core.models import provider_label
from switchyard.core.pricing import cost_usd
from switchyard.core.tokens import expected_tokens
from switchyard.guardrails.limits import bounded, time_limit, within
from switchyard.guardrails.scope import current_meter
from switchyard.guardrails.spend import call_cost, used_tokens
from switchyard.nodes.record import AgentReply, CallRecord, recording
from switchyard.state.agents import AgentSpec
from switchyard.state.outcomes import SUCCESSFUL
from switchyard.state.usage import UsageLedger, usage_entry


class GraphAgentError(SwitchyardError):
    """A graph agent ended without an answer, or ended early for its own reason."""


def model_label(metadata: Mapping[str, Any] | None) -> str:
    """`provider:model` of a model call, from the LangSmith metadata LangChain attaches to it."""
    provider = (metadata or {}).get("ls_provider") or "unknown"
    return provider_label(str(provider), (metadata or {}).get("ls_model_name"))


class GraphCallGuard(BaseCallbackHandler):
    """Budgets, the deadline and the ledger for the model calls inside a graph agent.

    Callbacks are the one hook every LangChain model call offers from outside the graph that
    makes it. Errors raised here stop the call (`raise_error`), so a refused call is never sent.

    Args:
        spec: The graph agent.
        record: The agent call's record (its ledger).
    """

    raise_error = True
    run_inline = True

    def __init__(self, spec: AgentSpec, record: CallRecord) -> None:
        self.spec = spec
        self.record = record
        self.meter = current_meter()
        self.calls: dict[UUID, tuple[str, float, list[BaseMessage]]] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Admit the call on its estimate (raises to refuse it), and note when it starts."""
        model = model_label(metadata)
        prompt = messages[0] if messages else []
        time_limit(self.spec.name, "call its model", None)
        if self.meter is not None:
            tokens_in, tokens_out = expected_tokens(prompt, None)
            self.meter.admit(
                self.spec.name,
                model,
                tokens_in + tokens_out,
                cost_usd(model, tokens_in, tokens_out),
                self.spec.budget,
            )
        self.calls[run_id] = (model, time.perf_counter(), prompt)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Charge and record what the call used."""
        generations = response.generations[0] if response.generations else []
        message = getattr(generations[0], "message", None) if generations else None
        self._account(run_id, message if isinstance(message, BaseMessage) else None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the failed call (nothing was billed)."""
        self._account(run_id, None)

    def _account(self, run_id: UUID, message: BaseMessage | None) -> None:
        model, started, prompt = self.calls.pop(run_id, ("unknown", time.perf_counter(), []))
        tokens = used_tokens(message, prompt)  # the reply's own count, else an estimate
        cost = call_cost(model, tokens)  # None: the model has no known price
        if self.meter is not None and tokens.total:
            self.meter.charge(self.spec.name, tokens.total, cost, self.spec.budget)
        self.record.add_usage(
            usage_entry(
                self.spec.name,
                model,
                input_tokens=tokens.input,
                output_tokens=tokens.output,
                latency_ms=(time.perf_counter() - started) * 1000,
                cost_usd=cost,
                cache_hits=int(tokens.cache_hit),
            )
        )


PATTERN_MARK = "switchyard_pattern"
"""Class attribute set on compiled Switchyard pattern graphs (`GuardedGraph`)."""


def _config(spec: AgentSpec, record: CallRecord) -> tuple[RunnableConfig, bool]:
    # The run's recursion limit holds inside the graph too (create_agent binds its own, 10,000).
    config: RunnableConfig = {}
    limit = _run_config().get("recursion_limit")
    if isinstance(limit, int):
        config["recursion_limit"] = limit
    if getattr(spec.graph, PATTERN_MARK, False):  # its own agents are guarded
        return config, True
    return {**config, "callbacks": [GraphCallGuard(spec, record)]}, False


def _run_config() -> RunnableConfig:
    try:
        return get_config()
    except RuntimeError:  # outside a graph run
        return {}


def _reply(
    spec: AgentSpec,
    view: Sequence[BaseMessage],
    output: Any,
    record: CallRecord,
    pattern: bool,
    started: float,
) -> AgentReply:
    """The graph's output as the agent's reply.

    Raises:
        GraphAgentError: The graph ended early for its own reason, or gave no AI message.
    """
    if not isinstance(output, Mapping):
        raise GraphAgentError(f"agent {spec.name!r}: its graph returned {type(output).__name__}")
    reason = output.get("end_reason")
    if reason not in SUCCESSFUL:
        raise GraphAgentError(f"agent {spec.name!r} ended early: {reason}")
    messages: list[AnyMessage] = list(output.get("messages") or [])
    new = messages[len(view) :] if messages[: len(view)] == list(view) else messages
    answer = next((m for m in reversed(new) if isinstance(m, AIMessage)), None)
    if answer is None:
        raise GraphAgentError(f"agent {spec.name!r}: its graph returned no AI message")
    usage: UsageLedger = dict(output.get("usage") or {}) if pattern else record.usage
    structured = output.get("structured_response")
    named = answer.model_copy(update={"name": spec.name})  # the answer is the agent's
    return AgentReply(
        messages=[named if message is answer else message for message in new],
        output=structured if structured is not None else answer.text,
        usage=usage,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def call_graph_agent(spec: AgentSpec, view: Sequence[BaseMessage]) -> AgentReply:
    """Run a graph agent on its view, bounded by the agent's timeout and the run's deadline."""
    record, started = CallRecord(spec.name), time.perf_counter()
    limit, by_deadline = time_limit(spec.name, "start", spec.timeout_s)
    config, pattern = _config(spec, record)
    with recording(record):
        call = functools.partial(spec.graph.invoke, {"messages": list(view)}, config)
        output = within(call, spec.name, limit, by_deadline=by_deadline)
    return _reply(spec, view, output, record, pattern, started)


async def acall_graph_agent(spec: AgentSpec, view: Sequence[BaseMessage]) -> AgentReply:
    """Async form of `call_graph_agent`: bounded by the agent's timeout and the deadline."""
    record, started = CallRecord(spec.name), time.perf_counter()
    limit, by_deadline = time_limit(spec.name, "start", spec.timeout_s)
    config, pattern = _config(spec, record)
    with recording(record):
        call = spec.graph.ainvoke({"messages": list(view)}, config)
        output = await bounded(call, spec.name, limit, by_deadline=by_deadline)
    return _reply(spec, view, output, record, pattern, started)
