"""Events: agents subscribe to event types, handle events and publish new ones, through a bus.

START -> ingest -> bus -> (one `Send` per event and subscriber) handlers -> bus -> ... -> finish
-> END. The user's message becomes the run's first event (`input_event`, e.g. `article.submitted`,
with the text as `data["content"]`), or the caller sends an explicit `event`. Each handler sees only
the event it handles (a typed payload) and may publish the event types it declares (`publishes`)
through structured output; the bus logs every event in an append-only, capped log and delivers it
to the type's subscribers in parallel. An event nobody subscribes to is logged as unhandled. A run
is bounded by `max_events` and `max_depth` (and by the run's recursion limit): the round that would
break one is dropped and the run ends with that `end_reason` and the partial result. A handler
that fails goes down the fallback chain (`switchyard.nodes.fallback`): its retries and fallback
models inside its call, then the graph's `fallback_agent` handling the event in its place (with
its publication rights); then the handler leaves a dead letter with the event, and the other
handlers carry on. The bus asks a person about each dead letter of the run, one at a time, when
`Context.escalate_to_human` is on: their answer is the handler's result (it publishes nothing).
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal, cast

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.config import get_config
from langgraph.errors import NodeError
from langgraph.graph import END, START
from langgraph.types import Command, Overwrite, Send
from pydantic import BaseModel, Field, create_model

from switchyard.core.errors import AgentConfigError, InvalidInputError, describe_error
from switchyard.graphs.guarded import PatternGraph
from switchyard.guardrails.convergence import ConvergedError, Convergence
from switchyard.guardrails.tripwires import input_trip, masked_user_message
from switchyard.nodes.agent import NodeRunnable
from switchyard.nodes.classify import last_user_text
from switchyard.nodes.convergence import DEFAULT_CONVERGENCE, convergence_guard
from switchyard.nodes.fallback import (
    FallbackAgent,
    answer_text,
    ask_person,
    make_chain_node,
    resolve_fallback_agent,
    standing_in,
)
from switchyard.nodes.record import AgentReply, partial_usage
from switchyard.state.agents import Agent, AgentSpec, as_agents, check_agents
from switchyard.state.context import Context, current_context, steps_after_first_node
from switchyard.state.events import (
    DeadLetter,
    Delivery,
    Event,
    EventRecord,
    EventsInput,
    EventsOutput,
    EventsState,
    Handled,
    InitialEvent,
    make_event,
    now,
)
from switchyard.state.outcomes import EndReason, guardrail_stop

INGEST: Final = "ingest"
BUS: Final = "bus"
FINISH: Final = "finish"

LIMIT_REASONS = ("max_events", "max_depth", "recursion_limit")
"""End reasons of a run stopped by a limit (its last round is dropped)."""

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


class Publication(BaseModel):
    """One event a handler publishes."""

    type: str = Field(description="The event type, one of those this agent may publish.")
    content: str = Field(description="What subscribers need to know, as text.")


class HandlerOutput(BaseModel):
    """The structured output of a handler that may publish events."""

    reply: str = Field(description="Your result for the event you handled.")
    publish: list[Publication] = Field(
        description="Events to publish for other agents; [] publishes nothing."
    )


def publication_schema(event_types: Sequence[str]) -> type[HandlerOutput]:
    """`HandlerOutput` narrowed to the event types one agent may publish (an enum in the schema).

    A model that names another type fails validation and is re-asked with the error.
    """
    allowed: Any = Literal[tuple(event_types)]
    publication = create_model(
        "Publication",
        __base__=Publication,
        type=(allowed, Field(description="The event type: one of " + ", ".join(event_types))),
    )
    schema: type[HandlerOutput] = create_model(
        "HandlerOutput",
        __base__=HandlerOutput,
        publish=(
            list[publication],
            Field(description="Events to publish for other agents; [] publishes nothing."),
        ),
    )
    return schema


@dataclass(frozen=True)
class Bus:
    """Subscriptions, publication rights and limits: what the nodes of one graph share.

    Attributes:
        subscriptions: Event type -> the agents that handle it, in delivery order.
        publishes: Agent -> the event types it may publish.
        input_event: The type of the event a user message becomes.
        max_events: Most events one run may accept, its first included.
        max_depth: Deepest causal chain one run may reach (the first event has depth 0).
    """

    subscriptions: Mapping[str, tuple[str, ...]]
    publishes: Mapping[str, tuple[str, ...]]
    input_event: str
    max_events: int
    max_depth: int


def depth_fitting(steps_allowed: int | None, max_depth: int) -> int:
    """The deepest event a run can still deliver within its recursion limit.

    After ingest a run takes one bus step, two steps (handlers, bus) per depth delivered and one
    finish step; None (outside a graph) leaves `max_depth` as is.
    """
    if steps_allowed is None:
        return max_depth
    return min(max_depth, (steps_allowed - 2) // 2 - 1)


def _run_correlation_id() -> str:
    """The run's correlation id (the run facade puts it in the metadata), else a new one."""
    try:
        metadata = get_config().get("metadata") or {}
    except RuntimeError:
        metadata = {}
    correlation = metadata.get("correlation_id")
    return correlation if isinstance(correlation, str) and correlation else uuid.uuid4().hex


def explicit_event(initial: InitialEvent, correlation_id: str) -> Event:
    """The run's first event from an explicit `event` input.

    Raises:
        InvalidInputError: The type is missing or empty, or data / correlation_id have the wrong
            type.
    """
    if not isinstance(initial, Mapping):
        raise InvalidInputError(
            f"event must be an object like {{'type': 'article.submitted', 'data': {{...}}}}, "
            f"got {type(initial).__name__}"
        )
    event_type = initial.get("type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise InvalidInputError("event.type must be a non-empty string, e.g. 'article.submitted'")
    data = initial.get("data", {})
    if not isinstance(data, dict):
        raise InvalidInputError(f"event.data must be an object, got {type(data).__name__}")
    given = initial.get("correlation_id", correlation_id)
    if not isinstance(given, str) or not given.strip():
        raise InvalidInputError("event.correlation_id must be a non-empty string when given")
    return make_event(event_type.strip(), data, source="input", correlation_id=given)


def ingest(state: EventsState, *, bus: Bus) -> dict[str, Any]:
    """Start a run: turn the explicit event, or the user's message, into the run's first event.

    Raises:
        InvalidInputError: Neither a user message nor a valid explicit event was sent.
    """
    correlation_id = _run_correlation_id()
    initial = state.get("event")
    if initial:
        root = explicit_event(initial, correlation_id)
    else:
        text = last_user_text(state.get("messages", []))
        if not text.strip():
            raise InvalidInputError(
                "nothing to publish: send a user message, or an explicit event "
                "{'type': ..., 'data': {...}} under 'event'"
            )
        root = make_event(
            bus.input_event, {"content": text}, source="user", correlation_id=correlation_id
        )
    return {
        "event": None,
        "correlation_id": root["correlation_id"],
        "depth_limit": depth_fitting(steps_after_first_node(), bus.max_depth),
        "published": Overwrite([root]),
        "handled": Overwrite([]),
    }


def limit_breach(
    outbox: Sequence[Event], accepted: int, bus: Bus, depth_limit: int
) -> tuple[EndReason, str] | None:
    """The limit that accepting `outbox` would break, as (end_reason, explanation), or None."""
    if accepted + len(outbox) > bus.max_events:
        return "max_events", (
            f"{len(outbox)} more event(s) would take the run past max_events={bus.max_events} "
            f"({accepted} accepted so far)"
        )
    deepest = max((event["depth"] for event in outbox), default=0)
    if deepest > bus.max_depth:
        return "max_depth", f"an event at depth {deepest} exceeds max_depth={bus.max_depth}"
    if deepest > depth_limit:
        return "recursion_limit", (
            f"an event at depth {deepest} cannot be delivered within the run's recursion limit "
            f"(depth {depth_limit} is the deepest that fits; raise Context.recursion_limit)"
        )
    return None


def _record(
    event: Event,
    outcome: Literal["delivered", "unhandled", "dropped"],
    delivered_to: Sequence[str] = (),
    note: str = "",
) -> EventRecord:
    return EventRecord(event=event, outcome=outcome, delivered_to=list(delivered_to), note=note)


def collect(state: EventsState, *, bus: Bus) -> dict[str, Any]:
    """The bus: drain the outbox, enforce the limits, log every event and queue its deliveries."""
    outbox = state.get("published") or []
    new_run = any(event["depth"] == 0 for event in outbox)
    accepted = 0 if new_run else state.get("event_count", 0)
    correlation_id = state.get("correlation_id")
    breach = limit_breach(outbox, accepted, bus, state.get("depth_limit", bus.max_depth))
    converged = [h["converged"] for h in state.get("handled") or [] if "converged" in h]
    if converged:
        # A handler repeated its answer to the same event: the run ends with it, and what the
        # other handlers of that round published is logged but not delivered.
        breach = ("converged", "; ".join(converged))
    records: list[EventRecord] = []
    deliveries: list[Delivery] = []
    unhandled_root = False
    if breach is not None:
        records = [_record(event, "dropped", note=breach[1]) for event in outbox]
    else:
        for event in outbox:
            accepted += 1
            subscribers = bus.subscriptions.get(event["type"], ())
            if not subscribers:
                records.append(_record(event, "unhandled", note="no agent subscribes to it"))
                unhandled_root = unhandled_root or event["depth"] == 0
                continue
            records.append(_record(event, "delivered", subscribers))
            deliveries += [Delivery(agent=agent, event=event) for agent in subscribers]
    answered = ask_about_dead_letters(state)
    done = {(h["agent"], h["event_id"]) for h in [*(state.get("handled") or []), *answered]}
    failed = [
        letter
        for letter in state.get("dead_letters") or []
        if letter["event"]["correlation_id"] == correlation_id
        and (letter["agent"], letter["event"]["id"]) not in done
    ]
    end_reason: EndReason | None = None
    end_detail: str | None = None
    if breach is not None:
        end_reason, end_detail = breach
    elif unhandled_root:
        end_reason = "unhandled"
        end_detail = f"no agent subscribes to {outbox[0]['type']!r}; the event was logged"
    elif failed:
        # A budget or the deadline that stopped a handler ends the run with its own reason.
        stops = [letter["stopped_by"] for letter in failed if "stopped_by" in letter]
        end_reason = stops[0] if stops else "handler_failed"
        end_detail = "; ".join(
            f"{letter['agent']} failed on {letter['event']['type']} ({letter['error']})"
            for letter in failed
        )
    update: dict[str, Any] = {
        "published": Overwrite([]),
        "pending": deliveries,
        "event_count": accepted,
        "event_log": records,
        "end_reason": end_reason,
        "end_detail": end_detail,
    }
    if answered:
        update["handled"] = answered
    return update


def ask_about_dead_letters(state: EventsState) -> list[Handled]:
    """A person's answer for each handler of this run that failed, as its result.

    Only when `Context.escalate_to_human` is on; one question at a time, in the order the
    handlers failed: a resume answers the next one. Handlers a budget or the deadline stopped are
    not asked about, nor those already answered. A person's answer publishes nothing.
    """
    if not current_context().escalate_to_human:
        return []
    correlation_id = state.get("correlation_id")
    done = {(h["agent"], h["event_id"]) for h in state.get("handled") or []}
    answered: list[Handled] = []
    for letter in state.get("dead_letters") or []:
        event = letter["event"]
        key = (letter["agent"], event["id"])
        if event["correlation_id"] != correlation_id or "stopped_by" in letter or key in done:
            continue
        answer = ask_person(
            agent=letter["agent"],
            failures=[f"{letter['agent']}: {letter['error']}"],
            request=last_user_text(state.get("messages", [])),
            task=event_message(event, []).text,
        )
        done.add(key)
        answered.append(
            Handled(
                agent=letter["agent"],
                event_id=event["id"],
                event_type=event["type"],
                output=answer_text(answer),
                published=[],
            )
        )
    return answered


def route_events(state: EventsState) -> list[Send] | Literal["finish"]:
    """One `Send` per queued delivery (all in parallel), or finish when nothing is queued."""
    pending = state.get("pending") or []
    if not pending:
        return FINISH
    return [Send(delivery["agent"], delivery) for delivery in pending]


def event_message(event: Event, may_publish: Sequence[str]) -> HumanMessage:
    """The typed payload a handler sees: the event, and the event types it may publish."""
    payload = {
        "event": {
            "type": event["type"],
            "data": event["data"],
            "id": event["id"],
            "source": event["source"],
            "depth": event["depth"],
            "correlation_id": event["correlation_id"],
            "causation_id": event["causation_id"],
            "timestamp": event["timestamp"],
        },
        "may_publish": list(may_publish),
    }
    return HumanMessage(json.dumps(payload, ensure_ascii=False))


def handled_update(delivery: Delivery, reply: AgentReply) -> dict[str, Any]:
    """The state update of a handler that answered: its result and the events it publishes."""
    event = delivery["event"]
    output = reply.output
    published: list[Event] = []
    value: str | dict[str, Any]
    if isinstance(output, HandlerOutput):
        value = output.reply
        published = [
            make_event(
                item.type,
                {"content": item.content},
                source=delivery["agent"],
                correlation_id=event["correlation_id"],
                cause=event,
            )
            for item in output.publish
        ]
    elif isinstance(output, BaseModel):
        value = output.model_dump(mode="json")
    else:
        value = output
    record = Handled(
        agent=delivery["agent"],
        event_id=event["id"],
        event_type=event["type"],
        output=value,
        published=[e["id"] for e in published],
    )
    return {"published": published, "handled": [record], "usage": reply.usage}


def event_view(
    delivery: Delivery, context: Context, *, may_publish: Sequence[str]
) -> list[BaseMessage]:
    """What a handler sees: only the event's typed payload (`event_message`)."""
    return [event_message(delivery["event"], may_publish)]


def accept_handled(delivery: Delivery, reply: AgentReply) -> dict[str, Any]:
    """A handler's `accept` (`handled_update`)."""
    return handled_update(delivery, reply)


def dead_letter(delivery: Delivery, error: NodeError) -> Command[Literal["bus"]]:
    """Error handler of every handler node: the event goes to the dead letters; the run goes on.

    LangGraph calls it once the handler's call failed: its retries and fallback models were tried
    inside the call, and structured output that failed its schema was asked for again. What the
    failed call spent stays in the ledger; the other handlers, and the run, carry on.
    """
    if isinstance(error.error, ConvergedError):
        return converged(delivery, error.error)
    letter = DeadLetter(
        agent=delivery["agent"],
        event=delivery["event"],
        error=describe_error(error.error),
        timestamp=now(),
    )
    stopped_by = guardrail_stop(error.error)
    if stopped_by is not None:
        letter["stopped_by"] = stopped_by
    return Command(update={"dead_letters": [letter], "usage": partial_usage(error.error)}, goto=BUS)


def converged(delivery: Delivery, error: ConvergedError) -> Command[Literal["bus"]]:
    """A handler gave the same answer to the same event again: that answer ends the run.

    It is recorded as the handler's result (what it would have published is not: the cycle
    stops here), and the bus ends the run with `end_reason="converged"`.
    """
    output = error.output
    value = output.reply if isinstance(output, HandlerOutput) else error.answer
    record = Handled(
        agent=delivery["agent"],
        event_id=delivery["event"]["id"],
        event_type=delivery["event"]["type"],
        output=value,
        published=[],
        converged=str(error),
    )
    # Several handlers of one round may converge: each writes only to channels with reducers.
    update = {
        "messages": [AIMessage(value, name=delivery["agent"])],
        "handled": [record],
        "usage": partial_usage(error),
    }
    return Command(update=update, goto=BUS)


def finish(state: EventsState) -> dict[str, Any]:
    """End the run: the last handler's answer, or why the run stopped, with the partial result.

    A run that converged has its answer already (`converged`).
    """
    handled = state.get("handled") or []
    last = handled[-1] if handled else None
    reason = state.get("end_reason")
    if reason == "converged":
        return {}
    if reason is None and last is not None:
        answer = AIMessage(render_output_value(last["output"]), name=last["agent"])
        return {"messages": [answer]}
    why = state.get("end_detail") or "no agent handled the event"
    tail = (
        f" Last result, from {last['agent']}: {render_output_value(last['output'])}"
        if last is not None
        else " No handler had answered."
    )
    stopped = AIMessage(f"Stopped ({reason or 'no_answer'}): {why}.{tail}", name=BUS)
    return {"messages": [*masked_user_message(state), stopped], **masked_input_events(state)}


def masked_input_events(state: EventsState) -> dict[str, Any]:
    """After an input tripwire: the event log and dead letters with the user's event masked.

    The user's message became the run's first event (depth 0) before any handler checked it;
    the thread must keep nothing of it unmasked (see `switchyard.guardrails.tripwires`).
    """
    trip = input_trip()
    if trip is None:
        return {}
    run = state.get("correlation_id")

    def masked(event: Event) -> Event:
        if event["depth"] != 0 or event["correlation_id"] != run:  # earlier turns were clean
            return event
        data = {k: trip.mask(v) if isinstance(v, str) else v for k, v in event["data"].items()}
        return {**event, "data": data}

    log = [{**r, "event": masked(r["event"])} for r in state.get("event_log") or []]
    letters = [{**d, "event": masked(d["event"])} for d in state.get("dead_letters") or []]
    return {"event_log": Overwrite(log), "dead_letters": Overwrite(letters)}


def render_output_value(output: str | dict[str, Any]) -> str:
    """A handler's stored output as text (structured output as indented JSON)."""
    return output if isinstance(output, str) else json.dumps(output, indent=2)


def _check_type(event_type: Any, where: str) -> str:
    if not isinstance(event_type, str) or not _EVENT_TYPE.match(event_type):
        raise AgentConfigError(
            f"{where}: event type {event_type!r} must be dotted lowercase words, e.g. "
            "'article.submitted'"
        )
    return event_type


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise AgentConfigError(f"{where} must be a list of names, got {value!r}")
    names = tuple(value)
    repeated = sorted(name for name, n in Counter(names).items() if n > 1)
    if repeated:
        raise AgentConfigError(f"{where} lists {', '.join(repeated)} more than once")
    return names


def check_bus(
    agents: Sequence[AgentSpec],
    *,
    subscriptions: Mapping[str, Sequence[str]],
    publishes: Mapping[str, Sequence[str]] | None,
    input_event: str | None,
    max_events: int,
    max_depth: int,
) -> tuple[dict[str, AgentSpec], Bus]:
    """Validate agents, subscriptions, publication rights and limits, up front.

    Raises:
        AgentConfigError: No agents, duplicate or reserved names, no subscriptions, a
            subscription or publication naming an unknown agent, an agent subscribed to nothing,
            a malformed event type, an input event nobody subscribes to, or an agent that both
            publishes and has its own output schema.
        ValueError: A limit out of range.
    """
    by_name = check_agents(agents, reserved=(INGEST, BUS, FINISH))
    subs = _check_subscriptions(subscriptions, by_name)
    rights = _check_publications(publishes or {}, by_name)
    chosen = input_event if input_event is not None else next(iter(subs))
    if chosen not in subs:
        raise AgentConfigError(
            f"input_event {chosen!r} has no subscribers, so every user message would go "
            f"unhandled; choose one of: {', '.join(subs)}"
        )
    if not isinstance(max_events, int) or max_events < 1:
        raise ValueError(f"max_events must be a positive integer, got {max_events!r}")
    if not isinstance(max_depth, int) or max_depth < 0:
        raise ValueError(f"max_depth must be a non-negative integer, got {max_depth!r}")
    bus = Bus(
        subscriptions=subs,
        publishes=rights,
        input_event=chosen,
        max_events=max_events,
        max_depth=max_depth,
    )
    return by_name, bus


def _check_subscriptions(
    subscriptions: Mapping[str, Sequence[str]], by_name: Mapping[str, AgentSpec]
) -> dict[str, tuple[str, ...]]:
    """Event type -> its subscribers; every type has some, every agent subscribes to one."""
    if not subscriptions:
        raise AgentConfigError(
            "no subscriptions given: map event types to the agents that handle them, e.g. "
            "{'article.submitted': ['reviewer']}"
        )
    subs: dict[str, tuple[str, ...]] = {}
    for event_type, names in subscriptions.items():
        where = f"subscriptions[{event_type!r}]"
        _check_type(event_type, where)
        subs[event_type] = _names(names, where)
        if not subs[event_type]:
            raise AgentConfigError(
                f"event type {event_type!r} has no subscribers; list its agents or remove it"
            )
        unknown = [name for name in subs[event_type] if name not in by_name]
        if unknown:
            raise AgentConfigError(
                f"event type {event_type!r} is subscribed by unknown agents: "
                f"{', '.join(unknown)}; known agents: {', '.join(by_name)}"
            )
    idle = [name for name in by_name if not any(name in names for names in subs.values())]
    if idle:
        raise AgentConfigError(
            f"agents {', '.join(idle)} subscribe to no event type and would never run; add them "
            "to subscriptions or remove them"
        )
    return subs


def _check_publications(
    publishes: Mapping[str, Sequence[str]], by_name: Mapping[str, AgentSpec]
) -> dict[str, tuple[str, ...]]:
    """Agent -> the event types it may publish; publishers have no output schema of their own."""
    rights: dict[str, tuple[str, ...]] = {}
    for agent, types in publishes.items():
        where = f"publishes[{agent!r}]"
        if agent not in by_name:
            raise AgentConfigError(
                f"{where}: unknown agent {agent!r}; known agents: {', '.join(by_name)}"
            )
        rights[agent] = tuple(_check_type(t, where) for t in _names(types, where))
        if rights[agent] and by_name[agent].output_schema is not None:
            raise AgentConfigError(
                f"agent {agent!r} publishes events, so its output is the publication schema; "
                "remove its output_schema or its publishes entry"
            )
    return rights


def handler(
    spec: AgentSpec,
    may_publish: Sequence[str],
    middleware: Sequence[AgentMiddleware[Any, Any, Any]],
    fallback_agent: AgentSpec | None = None,
    convergence: Convergence | None = DEFAULT_CONVERGENCE,
) -> NodeRunnable:
    """The node an agent handles its events in; a publisher answers in `publication_schema`.

    `fallback_agent` handles the event in the agent's place (with its publication rights) when
    the agent's call fails; `convergence` ends the run when the agent answers the same event
    the same way again.
    """
    if may_publish:
        spec = spec.model_copy(update={"output_schema": publication_schema(may_publish)})
    view = partial(event_view, may_publish=may_publish)
    return make_chain_node(
        spec,
        fallback_agent=standing_in(fallback_agent, spec.output_schema),
        view=view,
        accept=accept_handled,
        middleware=[*middleware, *convergence_guard(spec, convergence)],
    )


def build_events_graph(
    agents: Sequence[Agent],
    *,
    subscriptions: Mapping[str, Sequence[str]],
    publishes: Mapping[str, Sequence[str]] | None = None,
    input_event: str | None = None,
    max_events: int = 20,
    max_depth: int = 5,
    middleware: Sequence[AgentMiddleware[Any, Any, Any]] = (),
    fallback_agent: FallbackAgent = None,
    convergence: Convergence | None = DEFAULT_CONVERGENCE,
) -> PatternGraph:
    """Build the event-driven pattern (uncompiled: the caller picks checkpointer and store).

    Args:
        agents: The handlers; names must be unique.
        subscriptions: Event type -> the agents that handle it (each agent at least once).
        publishes: Agent -> the event types it may publish (its output then carries them).
        input_event: The type of the event a user message becomes; defaults to the first type in
            `subscriptions`.
        max_events: Most events one run may accept, the first included.
        max_depth: Deepest causal chain one run may reach; the first event has depth 0.
        middleware: LangChain `AgentMiddleware` for every handler, outside each agent's own.
        fallback_agent: The agent that handles an event in a failed handler's place (with its
            publication rights) once the handler's model and fallback models failed: the name
            of one of the agents, or an agent of its own. None: none. Then a person, when
            `Context.escalate_to_human` is on (see `switchyard.nodes.fallback`).
        convergence: A handler that answers the same event the same way again ends the run
            with that answer (`end_reason="converged"`) instead of publishing round after
            round until `max_depth` (see `switchyard.guardrails.convergence`); None: off. An
            agent's own `AgentSpec.convergence` overrides it.

    Raises:
        AgentConfigError: See `check_bus`; or an unknown fallback agent.
        ValueError: `max_events` below 1 or `max_depth` below 0.

    Example:
        ```python
        builder = build_events_graph(
            agents,
            subscriptions={"article.submitted": ["reviewer"], "review.done": ["editor"]},
            publishes={"reviewer": ["review.done"]},
        )
        graph = builder.compile(checkpointer=InMemorySaver(), name="events")
        ```
    """
    by_name, bus = check_bus(
        as_agents(agents),
        subscriptions=subscriptions,
        publishes=publishes,
        input_event=input_event,
        max_events=max_events,
        max_depth=max_depth,
    )
    standby = resolve_fallback_agent(fallback_agent, by_name)
    builder = PatternGraph(
        EventsState, context_schema=Context, input_schema=EventsInput, output_schema=EventsOutput
    )
    builder.add_node(INGEST, partial(ingest, bus=bus))
    builder.add_node(BUS, partial(collect, bus=bus))
    for name, spec in by_name.items():
        rights = bus.publishes.get(name, ())
        node = handler(spec, rights, middleware, standby, convergence)
        # LangGraph calls error handlers with (input, error); its stubs type them as nodes.
        builder.add_node(name, node, error_handler=cast(Any, dead_letter))
        builder.add_edge(name, BUS)
    builder.add_node(FINISH, finish)
    builder.add_edge(START, INGEST)
    builder.add_edge(INGEST, BUS)
    builder.add_conditional_edges(BUS, route_events, [*by_name, FINISH])
    builder.add_edge(FINISH, END)
    return builder
