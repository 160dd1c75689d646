"""The fallback chain, the same in every pattern, and how each pattern's nodes are wired into it.

When an agent cannot answer, the chain is tried in this order:

1. the agent's fallback models (`AgentSpec.fallback_models`), tried inside the agent call by the
   `FallbackModels` middleware, for each model call;
2. the pattern's fallback agent (`build_*_graph(fallback_agent=...)`; in the router, its
   `default_agent` unless another is given), which does the failed agent's job: the same input
   (its view), the same tools and handoffs, and its answer lands in the failed agent's place;
3. a person, through `interrupt()`, when `Context.escalate_to_human` is on: their answer stands
   in for the agent's and the run goes on from there (`switchyard.runtime.run.resume`, or
   `Command(resume=...)`);
4. the dead-letter queue: the pattern ends the run cleanly with its end reason and the run
   facade records the failed run.

A budget or the run's deadline (which no fallback can get round) skips straight to a clean stop
with its own end reason (`budget_exceeded`, `deadline`). Every call is charged, failed ones
included: the spend of a failed agent travels with its error (`partial_usage`).

How step 2 is wired: in the router and the swarm, whose agents answer the conversation as
themselves, the failed node's `error_handler` sends the turn to the fallback agent's node
(`make_fallback_handler`). In every other pattern an agent has a place in a flow (a stage, a
worker's task, a handler's event, the supervisor's or the manager's role), often one of several
parallel branches that a fan-in waits for: there the fallback agent stands in inside the agent's
own node (`make_chain_node`), so the fan-in sees one result per branch in the same step.

Step 3: a node that runs alone is asked about by its own `error_handler` (`escalating`): it
records the failed calls' spend and the question (state key `asking`) and sends the run back to
the node, which asks the person (`interrupt`) instead of calling its agent. So the spend is
checkpointed before the run pauses, nothing that failed runs again on resume, and the person's
answer goes through the node's own `accept` and edges, as the agent's reply would have. Parallel
branches (fan-out workers, a wave of hierarchical steps, the handlers of one round of events) only
record their failure; the node that joins them (`merge`, `schedule`, `bus`) asks about each failed
branch, one question at a time (`ask_person`), so several failures in one step never leave several
interrupts that one `resume` could not answer. Step 4, without a person: the node's handler stops
the run cleanly (or the pattern goes on without the branch) and the run facade dead-letters it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp, NodeError
from langgraph.graph import END
from langgraph.pregel import Pregel
from langgraph.types import Command, interrupt
from pydantic import BaseModel, ValidationError

from switchyard.core.errors import AgentConfigError, describe_error
from switchyard.core.redact import masked_logger
from switchyard.guardrails.confidence import LowConfidenceError
from switchyard.guardrails.convergence import ConvergedError
from switchyard.guardrails.tripwires import masked_user_message
from switchyard.nodes.agent import (
    Accept,
    AgentNode,
    NodeRunnable,
    View,
    answer_update,
)
from switchyard.nodes.call import Validate
from switchyard.nodes.chain import AgentChain
from switchyard.nodes.record import AgentReply, partial_usage
from switchyard.state.agents import AgentSpec, as_agent, check_agents
from switchyard.state.context import Context, current_context
from switchyard.state.outcomes import EndReason, Question, end_reason_for, guardrail_stop
from switchyard.state.reducers import merge_usage
from switchyard.state.usage import UsageLedger

logger = masked_logger(__name__)

HUMAN = "human"
"""Name carried by answers a person gives through escalation."""

FallbackAgent = str | AgentSpec | Pregel[Any, Any, Any, Any] | None
"""What `build_*_graph(fallback_agent=...)` takes: the name of one of the pattern's agents, an
agent of its own (an `AgentSpec` or a compiled graph), or None (no fallback agent)."""

ASKING: Final = "asking"
"""The state key where a failed node's error handler leaves the question for a person."""

Handler = Callable[..., Any]
"""A LangGraph node `error_handler`: called with the failed node's input and its `NodeError`
(typed loosely, as LangGraph's stubs type handlers as nodes of one argument)."""


# --- configuration -------------------------------------------------------------------------------


def resolve_fallback_agent(
    fallback_agent: FallbackAgent, agents: Mapping[str, AgentSpec]
) -> AgentSpec | None:
    """The fallback agent a `build_*_graph(fallback_agent=...)` names, checked, or None.

    Args:
        fallback_agent: A name of one of `agents`, an agent of its own, or None.
        agents: The pattern's agents by name.

    Raises:
        AgentConfigError: An unknown name, an agent of its own that takes the name of one of the
            pattern's agents (pass the name instead), or an invalid agent.
    """
    if fallback_agent is None:
        return None
    if isinstance(fallback_agent, str):
        if fallback_agent not in agents:
            raise AgentConfigError(
                f"fallback agent {fallback_agent!r} is not one of the agents: "
                f"{', '.join(agents)}; pass its name, or an AgentSpec of its own"
            )
        return agents[fallback_agent]
    spec = as_agent(fallback_agent)
    if spec.name in agents and agents[spec.name] != spec:
        raise AgentConfigError(
            f"fallback agent {spec.name!r} has the name of another agent of the graph; pass the "
            "name to use that agent, or give the fallback agent a name of its own"
        )
    check_agents([spec])
    return spec


def standing_in(
    fallback_agent: AgentSpec | None, output_schema: type[BaseModel] | None
) -> AgentSpec | None:
    """`fallback_agent` as it stands in for an agent whose node expects `output_schema`.

    A node that reads structured output (a stage's schema, a plan, an event handler's
    publications) gets it from the fallback agent too. A graph agent answers as it does.
    """
    if fallback_agent is None or output_schema is None or fallback_agent.graph is not None:
        return fallback_agent
    return fallback_agent.model_copy(update={"output_schema": output_schema})


def can_fall_back(error: BaseException) -> bool:
    """Whether another agent or a person may stand in after `error`.

    Not after a budget or the run's deadline (no one can get round them), nor after LangGraph's
    own control flow (an interrupt raised by a tool, a `Command` for the parent graph).
    """
    return not isinstance(error, GraphBubbleUp) and guardrail_stop(error) is None


# --- step 2: the fallback agent stands in, inside the failed agent's node ----------------------


def _charged(accept: Accept, spent: UsageLedger) -> Accept:
    """`accept`, with the failed agent's spend added to the fallback agent's reply."""

    def charge(state: Any, reply: AgentReply) -> Any:
        return accept(state, dataclasses.replace(reply, usage=merge_usage(spent, reply.usage)))

    return charge


def failures_of(agent: str, error: BaseException) -> list[str]:
    """Each failure of `agent`'s chain behind `error`, one line each, named after its agent."""
    chain: list[str] | None = getattr(error, "switchyard_chain", None)
    return list(chain) if chain else [f"{agent}: {describe_error(error)}"]


def _both_failed(agent: str, first: Exception, stand_in: str, second: Exception) -> Exception:
    """The fallback agent's error, naming both failures and carrying both agents' spend."""
    failures = [*failures_of(agent, first), *failures_of(f"{stand_in} (fallback agent)", second)]
    second.switchyard_failures = failures  # type: ignore[attr-defined]
    second.switchyard_chain = failures  # type: ignore[attr-defined]
    second.switchyard_usage = merge_usage(  # type: ignore[attr-defined]
        partial_usage(first), partial_usage(second)
    )
    return second


@dataclass(frozen=True)
class StandIn:
    """An agent node whose fallback agent takes over when the agent's call fails.

    The fallback agent gets what the agent would have seen (its view), the agent's handoff tools
    and output checks, and its reply goes through the agent's `accept`, charged with the failed
    agent's spend too. When it fails as well, its error names both failures and carries both
    spends, for the node's error handler (a person, then a clean stop).

    Attributes:
        primary: The agent's node.
        fallback: The fallback agent, doing the agent's job.
    """

    primary: AgentNode
    fallback: AgentNode

    def _stand_in(self, failure: Exception) -> AgentNode:
        logger.warning(
            "agent %s failed (%s); fallback agent %s stands in",
            self.primary.agent.name,
            describe_error(failure),
            self.fallback.agent.name,
        )
        accept = _charged(self.fallback.accept, partial_usage(failure))
        return dataclasses.replace(self.fallback, accept=accept)

    def run(self, state: Any) -> Any:
        """The agent's update; the fallback agent's when the agent's call fails."""
        try:
            return self.primary.run(state)
        except Exception as failure:
            if not can_fall_back(failure):
                raise
            stand_in = self._stand_in(failure)
            try:
                return stand_in.run(state)
            except Exception as second:
                raise self._failed(failure, second) from failure

    async def arun(self, state: Any) -> Any:
        """Async form of `run`."""
        try:
            return await self.primary.arun(state)
        except Exception as failure:
            if not can_fall_back(failure):
                raise
            stand_in = self._stand_in(failure)
            try:
                return await stand_in.arun(state)
            except Exception as second:
                raise self._failed(failure, second) from failure

    def _failed(self, first: Exception, second: Exception) -> Exception:
        if isinstance(second, GraphBubbleUp):
            return second
        return _both_failed(self.primary.agent.name, first, self.fallback.agent.name, second)


def make_chain_node(
    agent: AgentSpec,
    *,
    fallback_agent: AgentSpec | None,
    view: View | None = None,
    accept: Accept = answer_update,
    handoffs: Sequence[BaseTool] = (),
    validate: Validate | None = None,
    reasks: Callable[[Context], int] | None = None,
    middleware: Sequence[AgentMiddleware[Any, Any, Any]] = (),
    name: str | None = None,
    answered: Accept | None = None,
) -> NodeRunnable:
    """`make_agent_node`, with the rest of the fallback chain: a fallback agent and a person.

    Args:
        agent: The agent.
        fallback_agent: The agent that does this agent's job when its call failed (its model
            and fallback models tried); None, or the agent itself, adds nothing. Give it the
            output schema the node needs (`standing_in`) when the agent's was changed for this
            node.
        view: What either agent sees (default: the agent's own turns of `state["messages"]`).
        accept: What the node returns from the reply, whichever agent gave it.
        handoffs: Handoff tools offered to either agent.
        validate: The pattern's check of the structured output, for either agent.
        reasks: How often a rejected structured answer is asked for again.
        middleware: Graph-wide middleware, outside each agent's own.
        name: The node's name (default: the agent's).
        answered: What the node returns from a person's answer (default: `accept`, so the
            answer goes wherever the agent's would have).

    Returns:
        A node for `StateGraph.add_node`. Pair it with an `escalating` error handler: when the
        handler leaves a question for this node (`asking`), the node asks it instead of calling
        its agent.

    Example:
        ```python
        node = make_chain_node(stage, fallback_agent=generalist, view=view, accept=accept)
        builder.add_node(stage.name, node, error_handler=escalating(record, agent=stage))
        ```
    """
    node_name = name or agent.name
    primary = AgentNode.of(
        agent,
        view=view,
        accept=accept,
        handoffs=handoffs,
        validate=validate,
        reasks=reasks,
        middleware=middleware,
    )
    work: Callable[[Any], Any] = primary.run
    awork: Callable[[Any], Awaitable[Any]] = primary.arun
    if fallback_agent is not None and fallback_agent.name != agent.name:
        fallback = dataclasses.replace(
            primary, agent=fallback_agent, chain=AgentChain.of(fallback_agent, middleware)
        )
        stand_in = StandIn(primary=primary, fallback=fallback)
        work, awork = stand_in.run, stand_in.arun
    asking = Asking(
        name=node_name,
        work=work,
        awork=awork,
        answered=answered or accept,
        output_schema=agent.output_schema,
    )
    return NodeRunnable(asking.run, asking.arun, name=node_name, agent=agent)


# --- step 3: a person; step 4: a clean stop (and the dead-letter queue) -----------------------


@dataclass(frozen=True)
class Asking:
    """A node that asks a person the question its error handler left for it, when there is one.

    The error handler of a failed node writes the question and the failed calls' spend to
    `asking` and sends the run back to the node (so the spend is checkpointed before the run
    pauses). The node then asks (`interrupt`) instead of calling its agent; on resume the
    person's answer goes through the node's `answered`, as the agent's reply would have, and
    the question is cleared. Nothing else runs again.

    Attributes:
        name: The node's name (its key in `asking`).
        work: The node's work, sync (the agent call and its fallback agent).
        awork: The node's work, async.
        answered: What the node returns from the person's answer.
        output_schema: The structured output the node expects, parsed from the answer if it can.
    """

    name: str
    work: Callable[[Any], Any]
    awork: Callable[[Any], Awaitable[Any]]
    answered: Accept
    output_schema: type[BaseModel] | None = None

    def _question(self, state: Any) -> Question | None:
        if not isinstance(state, Mapping):
            return None
        question: Question | None = (state.get(ASKING) or {}).get(self.name)
        return question

    def _answer(self, state: Any, question: Question) -> Any:
        given = interrupt(question)
        update = self.answered(state, human_reply(given, {}, self.output_schema))
        return with_update(update, {ASKING: {self.name: None}})

    def run(self, state: Any) -> Any:
        """The person's answer when a question of this turn waits for this node, else its work.

        A question left by an earlier turn (the user sent a new message instead of answering)
        is dropped, and the node does its work.
        """
        question = self._question(state)
        if question is not None and question.get("turn") == turn_of(state):
            return self._answer(state, question)
        update = self.work(state)
        return update if question is None else with_update(update, {ASKING: {self.name: None}})

    async def arun(self, state: Any) -> Any:
        """Async form of `run`."""
        question = self._question(state)
        if question is not None and question.get("turn") == turn_of(state):
            return self._answer(state, question)
        update = await self.awork(state)
        return update if question is None else with_update(update, {ASKING: {self.name: None}})


def turn_of(state: Any) -> int:
    """The turn a node's input belongs to: how many user messages its state holds."""
    if not isinstance(state, Mapping):
        return 0
    return sum(1 for message in state.get("messages") or () if isinstance(message, HumanMessage))


def with_update(update: Any, extra: Mapping[str, Any]) -> Any:
    """A node's return value (a dict or a `Command`) with `extra` state updates added."""
    if isinstance(update, Command):
        merged = {**dict(update.update or {}), **extra}
        return dataclasses.replace(update, update=merged)
    return {**(update or {}), **extra}


def human_reply(
    answer: Any, spent: UsageLedger | None = None, output_schema: type[BaseModel] | None = None
) -> AgentReply:
    """A person's answer as the failed agent's reply (named `human`).

    With an `output_schema`, an answer that is (or parses as) an instance of it is the reply's
    structured output; otherwise the answer's text is.
    """
    text = answer_text(answer)
    output: str | BaseModel = text
    if output_schema is not None:
        try:
            output = (
                output_schema.model_validate(answer)
                if isinstance(answer, Mapping)
                else output_schema.model_validate_json(text)
            )
        except ValidationError:
            output = text
    message = AIMessage(content=text, name=HUMAN)
    return AgentReply(messages=[message], output=output, usage=dict(spent or {}))


def task_of(view: View, state: Any) -> str:
    """What the failed agent was asked: the last message of its view (for the person)."""
    try:
        messages = view(state, current_context())
    except Exception:  # a view that needs what the failure left out: ask without it
        return ""
    return messages[-1].text if messages else ""


def request_of(state: Any) -> str:
    """The user's latest request, from the node's input (a state, or a `Send` payload)."""
    if isinstance(state, Mapping):
        for message in reversed(state.get("messages") or []):
            if isinstance(message, HumanMessage):
                return message.text
        for key in ("request", "goal"):
            if isinstance(state.get(key), str):
                return str(state[key])
    return ""


def question_for(*, agent: str, failures: Sequence[str], request: str, task: str) -> Question:
    """What a person is asked: the agent, every failure of its chain, the request, its task."""
    return {
        "reason": "agent_failed",
        "agent": agent,
        "failures": list(failures),
        "request": request,
        "task": task,
    }


def ask_person(*, agent: str, failures: Sequence[str], request: str, task: str) -> Any:
    """Pause for a person (`interrupt`) with `question_for(...)`; their answer on resume.

    `resume(graph, answer, ...)` (or `Command(resume=answer)`) answers it. A node that asks
    several questions asks them one at a time: each resume answers the next.
    """
    logger.warning("agent %s failed; asking a person: %s", agent, "; ".join(failures))
    return interrupt(question_for(agent=agent, failures=failures, request=request, task=task))


def answer_text(answer: Any) -> str:
    """A person's answer as text (anything but text as JSON)."""
    return answer if isinstance(answer, str) else json.dumps(answer, default=str)


def escalating(
    on_failure: Handler,
    *,
    agent: AgentSpec,
    node: str | None = None,
    view: View | None = None,
) -> Handler:
    """A node's `error_handler`: a person when `Context.escalate_to_human` is on, else `on_failure`.

    The handler does not ask itself: it records the failed calls' spend and the question in
    `asking` and sends the run back to the node (built with `make_chain_node`), which asks.
    So the spend is checkpointed before the run pauses, and the person's answer goes through
    the node's own `accept` and edges, as the agent's reply would have.

    Args:
        on_failure: The pattern's own handler: records the failure and stops (or goes on without
            the agent), with the end reason of a budget or the deadline when one stopped it.
        agent: The agent whose node it guards.
        node: The node's name (default: the agent's).
        view: The agent's view, to show the person what it was asked.

    Returns:
        A handler for `StateGraph.add_node(..., error_handler=...)`. A budget or the deadline
        never reaches a person: no answer can get round them.
    """
    target = node or agent.name

    def handle_failure(state: Any, error: NodeError) -> Any:
        if not (can_fall_back(error.error) and current_context().escalate_to_human):
            return on_failure(state, error)
        failures = failures_of(agent.name, error.error)
        logger.warning("agent %s failed; asking a person: %s", agent.name, "; ".join(failures))
        question = question_for(
            agent=agent.name,
            failures=failures,
            request=request_of(state),
            task=task_of(view, state) if view is not None else request_of(state),
        )
        question["turn"] = turn_of(state)
        question["reason"] = end_reason_for(error.error)  # low_confidence, no_progress, ...
        if isinstance(error.error, LowConfidenceError):
            question["answer"] = error.error.answer  # what the agent was unsure of
        update = {"usage": partial_usage(error.error), ASKING: {target: question}}
        return Command(update=update, goto=target)

    return handle_failure


def stop_command(
    agent: str, error: BaseException, *, state: Any = None, **update: Any
) -> Command[Any]:
    """End the run cleanly after `agent` failed: its end reason, why, and what it spent.

    An agent that converged did not fail: its repeated answer is the run's answer. After an
    input tripwire, the user's message in `state` (the node's input) is overwritten, masked.
    """
    if isinstance(error, ConvergedError):
        answer = AIMessage(content=error.answer, name=agent)
        logger.info("run ends: %s", error)
        return Command(
            goto=END,
            update={
                "messages": [answer],
                "end_reason": "converged",
                "usage": partial_usage(error),
                **update,
            },
        )
    reason: EndReason = end_reason_for(error)
    failures = "; ".join(failures_of(agent, error))
    message = AIMessage(
        content=f"The {agent} agent could not answer ({reason}): {failures}", name=agent
    )
    logger.error("agent %s failed, run ends: %s (%s)", agent, reason, failures)
    return Command(
        goto=END,
        update={
            "messages": [*masked_user_message(state, error), message],
            "end_reason": reason,
            "usage": partial_usage(error),
            **update,
        },
    )


def make_stop_handler(agent: str) -> Handler:
    """An `error_handler` that ends the run cleanly when node `agent` fails after its chain.

    The run stops with `end_reason` (`budget_exceeded`, `deadline` or `agent_failed`), the
    explanation as the last message, and everything before it checkpointed, so the dead-letter
    queue can replay it.
    """

    def stop_on_failure(state: Any, error: NodeError) -> Command[Any]:
        return stop_command(agent, error.error, state=state)

    return stop_on_failure


def answer_and_end(state: Any, reply: AgentReply, **update: Any) -> Command[Any]:
    """A person's answer as the turn's answer: appended to the conversation; the run ends."""
    return Command(
        goto=END,
        update={"messages": reply.messages, "usage": reply.usage, **update},
    )


def make_fallback_handler(spec: AgentSpec, *, default_agent: str | None = None) -> Handler:
    """The `error_handler` of an agent node whose turn another agent node can take over.

    For the router and the swarm, whose agents answer the conversation as themselves: the
    turn goes to the `default_agent` node, then to a person (`escalating`; build the node with
    `make_chain_node`), then the run stops.

    Args:
        spec: The agent whose node the handler guards.
        default_agent: Node to hand the turn to when the agent failed (None, or the agent
            itself: skip this step).

    Returns:
        A handler for `StateGraph.add_node(..., error_handler=...)`. Pass `fallback_destinations`
        as the node's `destinations` so the drawn graph shows where a fallback can go.
    """
    person = escalating(make_stop_handler(spec.name), agent=spec)

    def hand_over(state: Any, error: NodeError) -> Any:
        if can_fall_back(error.error) and default_agent not in (None, spec.name):
            logger.warning("agent %s failed; handing the turn to %s", spec.name, default_agent)
            return Command(goto=default_agent, update={"usage": partial_usage(error.error)})
        return person(state, error)

    return hand_over


def fallback_destinations(spec: AgentSpec, default_agent: str | None) -> tuple[str, ...]:
    """Where the fallback handler of `spec` may send the run (for `add_node(destinations=...)`)."""
    if default_agent is not None and default_agent != spec.name:
        return (default_agent, END)
    return (END,)
