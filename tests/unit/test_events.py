"""The event-driven pattern: topology, exact traces, fan-out, unhandled events, limits, failures."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ValidationError
from syrupy.assertion import SnapshotAssertion

from switchyard.core.errors import AgentConfigError, InvalidInputError
from switchyard.core.offline import OFFLINE_MARKER
from switchyard.graphs.demos import EVENTS_AGENTS, EVENTS_PUBLISHES, EVENTS_SUBSCRIPTIONS
from switchyard.graphs.demos import events as graph
from switchyard.graphs.events import (
    build_events_graph,
    depth_fitting,
    publication_schema,
    route_events,
)
from switchyard.runtime.run import arun, run
from switchyard.state import AgentSpec, Context
from switchyard.state.events import (
    DEAD_LETTER_CAP,
    EVENT_LOG_CAP,
    EventRecord,
    append_dead_letters,
    append_event_log,
    make_event,
)
from tests.fakes import ScriptedChatModel, scripted

Compiled = CompiledStateGraph[Any, Any, Any, Any]

SUBSCRIPTIONS = {
    "article.submitted": ["reviewer"],
    "review.done": ["editor"],
    "publish.requested": ["publisher"],
}
PUBLISHES = {"reviewer": ["review.done"], "editor": ["publish.requested"]}


def spec(name: str, **fields: Any) -> AgentSpec:
    """An agent on its own scripted model `scripted:<name>`."""
    return AgentSpec(
        name=name,
        description=f"The {name}.",
        system_prompt=f"You are the {name}.",
        model=f"scripted:{name}",
        **fields,
    )


AGENTS = tuple(spec(name) for name in ("reviewer", "editor", "publisher"))


@contextmanager
def fakes(**replies: Sequence[Any]) -> Iterator[dict[str, ScriptedChatModel]]:
    """One scripted model per named agent; every reply must be used, no more."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(scripted(f"scripted:{name}", *script))
            for name, script in replies.items()
        }


def publishing(reply: str, *events: tuple[str, str]) -> list[Any]:
    """A publishing handler's model reply: its `HandlerOutput`, in one structured call."""
    args = {"reply": reply, "publish": [{"type": t, "content": c} for t, c in events]}
    return [AIMessage(content="", tool_calls=[{"name": "HandlerOutput", "args": args, "id": "h"}])]


def compile_bus(
    agents: Sequence[AgentSpec] = AGENTS,
    subscriptions: Mapping[str, Sequence[str]] = SUBSCRIPTIONS,
    publishes: Mapping[str, Sequence[str]] | None = PUBLISHES,
    **options: Any,
) -> Compiled:
    return build_events_graph(
        agents, subscriptions=subscriptions, publishes=publishes, **options
    ).compile(checkpointer=InMemorySaver(), name="events")


def config(name: str = "t", limit: int = 25) -> RunnableConfig:
    return {"configurable": {"thread_id": name}, "recursion_limit": limit}


def seen(model: ScriptedChatModel, call: int = 0) -> dict[str, Any]:
    """The event payload one handler call received (its last message)."""
    message = model.calls[call].messages[-1]
    assert isinstance(message, HumanMessage)
    parsed: dict[str, Any] = json.loads(message.text)
    return parsed


def outcomes(log: Sequence[EventRecord]) -> list[tuple[str, str, int, list[str]]]:
    return [(r["event"]["type"], r["outcome"], r["event"]["depth"], r["delivered_to"]) for r in log]


# --- topology ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agents", "subscriptions", "publishes", "options"),
    [
        pytest.param(AGENTS, SUBSCRIPTIONS, PUBLISHES, {}, id="chain"),
        pytest.param(
            (*AGENTS, spec("seo")),
            {**SUBSCRIPTIONS, "article.submitted": ["reviewer", "seo"]},
            {"reviewer": ["review.done"], "seo": ["seo.done"]},
            {"input_event": "article.submitted", "max_depth": 1},
            id="fan-out",
        ),
        pytest.param(
            AGENTS[:1], {"article.submitted": ["reviewer"]}, None, {"max_events": 3}, id="single"
        ),
    ],
)
def test_topology(
    agents: Sequence[AgentSpec],
    subscriptions: Mapping[str, Sequence[str]],
    publishes: Mapping[str, Sequence[str]] | None,
    options: dict[str, Any],
    snapshot: SnapshotAssertion,
) -> None:
    builder = build_events_graph(
        agents, subscriptions=subscriptions, publishes=publishes, **options
    )
    assert builder.compile().get_graph().draw_mermaid(with_styles=False) == snapshot


def test_exported_demo_graph_has_no_checkpointer_and_the_content_pipeline() -> None:
    assert graph.checkpointer is None
    assert graph.name == "events"
    assert {"ingest", "bus", "reviewer", "editor", "publisher", "finish"} <= set(
        graph.get_graph().nodes
    )


# --- bad configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agents", "subscriptions", "publishes", "options", "message"),
    [
        pytest.param((), SUBSCRIPTIONS, None, {}, r"no agents given", id="no-agents"),
        pytest.param(
            (AGENTS[0], AGENTS[0]), {"a.b": ["reviewer"]}, None, {}, r"duplicate", id="dup"
        ),
        pytest.param((spec("bus"),), {"a.b": ["bus"]}, None, {}, r"reserved", id="reserved"),
        pytest.param(AGENTS, {}, None, {}, r"no subscriptions given", id="no-subscriptions"),
        pytest.param(
            AGENTS,
            {**SUBSCRIPTIONS, "review.done": ["editor", "ghost"]},
            None,
            {},
            r"'review.done' is subscribed by unknown agents: ghost; known agents: reviewer, ",
            id="unknown-subscriber",
        ),
        pytest.param(
            AGENTS,
            {"article.submitted": ["reviewer"]},
            None,
            {},
            r"agents editor, publisher subscribe to no event type",
            id="idle-agents",
        ),
        pytest.param(
            AGENTS,
            {**SUBSCRIPTIONS, "Article Submitted": ["reviewer"]},
            None,
            {},
            r"must be dotted lowercase words",
            id="bad-type",
        ),
        pytest.param(
            AGENTS, {**SUBSCRIPTIONS, "x.y": []}, None, {}, r"'x.y' has no subscribers", id="empty"
        ),
        pytest.param(
            AGENTS,
            {**SUBSCRIPTIONS, "x.y": "reviewer"},
            None,
            {},
            r"must be a list of names",
            id="string-not-list",
        ),
        pytest.param(
            AGENTS,
            SUBSCRIPTIONS,
            {"ghost": ["a.b"]},
            {},
            r"publishes\['ghost'\]: unknown agent",
            id="unknown-publisher",
        ),
        pytest.param(
            AGENTS,
            SUBSCRIPTIONS,
            {"reviewer": ["review.done", "review.done"]},
            {},
            r"lists review.done more than once",
            id="duplicate-publication",
        ),
        pytest.param(
            AGENTS,
            SUBSCRIPTIONS,
            PUBLISHES,
            {"input_event": "article.published"},
            r"input_event 'article.published' has no subscribers",
            id="input-event",
        ),
        pytest.param(AGENTS, SUBSCRIPTIONS, None, {"max_events": 0}, r"max_events", id="events"),
        pytest.param(AGENTS, SUBSCRIPTIONS, None, {"max_depth": -1}, r"max_depth", id="depth"),
    ],
)
def test_bad_configuration_is_refused_with_a_specific_error(
    agents: Sequence[Any],
    subscriptions: Mapping[str, Any],
    publishes: Mapping[str, Sequence[str]] | None,
    options: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        build_events_graph(agents, subscriptions=subscriptions, publishes=publishes, **options)


def test_an_agent_cannot_publish_and_have_its_own_output_schema() -> None:
    class Verdict(BaseModel):
        ok: bool

    reviewer = spec("reviewer", output_schema=Verdict)
    with pytest.raises(AgentConfigError, match=r"remove its output_schema or its publishes"):
        build_events_graph(
            (reviewer, *AGENTS[1:]), subscriptions=SUBSCRIPTIONS, publishes=PUBLISHES
        )


def test_publication_schema_only_accepts_the_declared_event_types() -> None:
    schema = publication_schema(["review.done"])
    parsed = schema.model_validate(
        {"reply": "r", "publish": [{"type": "review.done", "content": "c"}]}
    )
    assert parsed.publish[0].type == "review.done"
    with pytest.raises(ValidationError, match=r"review.done"):
        schema.model_validate(
            {"reply": "r", "publish": [{"type": "article.deleted", "content": ""}]}
        )


# --- behaviour: exact traces with scripted models ---------------------------------------------


def test_trace_article_flows_through_review_edit_and_publish() -> None:
    bus = compile_bus()
    with fakes(
        reviewer=publishing("Looks good", ("review.done", "Approved with two fixes")),
        editor=publishing("Edited", ("publish.requested", "Final text")),
        publisher=["Published at /blog/asyncio"],
    ) as models:
        out = bus.invoke({"messages": [HumanMessage("My asyncio article")]}, config())

    first = seen(models["reviewer"])
    assert first["may_publish"] == ["review.done"]
    root = first["event"]
    assert (root["type"], root["data"], root["source"], root["depth"]) == (
        "article.submitted",
        {"content": "My asyncio article"},
        "user",
        0,
    )
    assert root["causation_id"] is None
    datetime.fromisoformat(root["timestamp"])
    assert [type(m) for m in models["reviewer"].calls[0].messages] == [SystemMessage, HumanMessage]
    assert models["reviewer"].calls[0].tools == ["HandlerOutput"]  # one structured call

    review = seen(models["editor"])["event"]
    assert (review["type"], review["data"], review["source"], review["depth"]) == (
        "review.done",
        {"content": "Approved with two fixes"},
        "reviewer",
        1,
    )
    assert review["causation_id"] == root["id"]
    assert review["correlation_id"] == root["correlation_id"]

    request = seen(models["publisher"])
    assert request["may_publish"] == []
    assert request["event"]["causation_id"] == review["id"]
    assert request["event"]["data"] == {"content": "Final text"}
    assert len(models["publisher"].calls) == 1  # no publications: no structured-output call

    assert [(h["agent"], h["event_type"], h["output"]) for h in out["handled"]] == [
        ("reviewer", "article.submitted", "Looks good"),
        ("editor", "review.done", "Edited"),
        ("publisher", "publish.requested", "Published at /blog/asyncio"),
    ]
    assert outcomes(out["event_log"]) == [
        ("article.submitted", "delivered", 0, ["reviewer"]),
        ("review.done", "delivered", 1, ["editor"]),
        ("publish.requested", "delivered", 2, ["publisher"]),
    ]
    assert out["event_count"] == 3
    assert out["end_reason"] is None
    answer = out["messages"][-1]
    assert (answer.name, answer.text) == ("publisher", "Published at /blog/asyncio")
    assert [type(m) for m in out["messages"]] == [HumanMessage, AIMessage]
    assert set(out["usage"]) == {f"{n}/scripted:{n}" for n in ("reviewer", "editor", "publisher")}


async def test_trace_is_the_same_under_ainvoke() -> None:
    bus = compile_bus()
    with fakes(
        reviewer=publishing("ok", ("review.done", "r")),
        editor=publishing("ok", ("publish.requested", "p")),
        publisher=["Published"],
    ):
        out = await bus.ainvoke({"messages": [HumanMessage("An article")]}, config())
    assert [h["agent"] for h in out["handled"]] == ["reviewer", "editor", "publisher"]
    assert out["messages"][-1].text == "Published"


def test_subscribers_of_one_event_run_in_parallel_in_the_same_step() -> None:
    agents = (*AGENTS, spec("seo"))
    subscriptions = {**SUBSCRIPTIONS, "article.submitted": ["reviewer", "seo"]}
    bus = compile_bus(agents, subscriptions, {"editor": ["publish.requested"]})
    with fakes(reviewer=["reviewed"], seo=["keywords: asyncio"]) as models:
        steps: dict[int, list[str]] = {}
        chunks = bus.stream({"messages": [HumanMessage("Article")]}, config(), stream_mode="debug")
        for event in chunks:
            if event["type"] == "task":
                steps.setdefault(event["step"], []).append(event["payload"]["name"])
    assert [sorted(names) for _, names in sorted(steps.items())] == [
        ["ingest"],
        ["bus"],
        ["reviewer", "seo"],
        ["bus"],
        ["finish"],
    ]
    assert seen(models["seo"])["event"]["id"] == seen(models["reviewer"])["event"]["id"]
    state = bus.get_state(config()).values
    assert outcomes(state["event_log"]) == [
        ("article.submitted", "delivered", 0, ["reviewer", "seo"])
    ]
    assert state["messages"][-1].name in {"reviewer", "seo"}


def test_an_event_nobody_subscribes_to_is_logged_unhandled_and_the_run_completes() -> None:
    subscriptions = {"article.submitted": ["reviewer"], "review.done": ["editor", "publisher"]}
    bus = compile_bus(AGENTS, subscriptions, {"reviewer": ["review.done", "review.archived"]})
    with fakes(
        reviewer=publishing("ok", ("review.archived", "for the archive")),
    ):
        out = bus.invoke({"messages": [HumanMessage("Article")]}, config())
    assert outcomes(out["event_log"]) == [
        ("article.submitted", "delivered", 0, ["reviewer"]),
        ("review.archived", "unhandled", 1, []),
    ]
    assert out["event_log"][1]["note"] == "no agent subscribes to it"
    assert out["end_reason"] is None
    assert out["messages"][-1].name == "reviewer"


def test_an_explicit_first_event_keeps_its_type_data_and_correlation_id() -> None:
    bus = compile_bus()
    event = {"type": "review.done", "data": {"content": "LGTM"}, "correlation_id": "saga-7"}
    with fakes(
        editor=publishing("ok", ("publish.requested", "go")), publisher=["Published"]
    ) as models:
        out = bus.invoke({"event": event}, config())
    root = seen(models["editor"])["event"]
    assert (root["type"], root["data"], root["source"]) == (
        "review.done",
        {"content": "LGTM"},
        "input",
    )
    assert {r["event"]["correlation_id"] for r in out["event_log"]} == {"saga-7"}
    assert out["correlation_id"] == "saga-7"
    state = bus.get_state(config()).values
    assert state["event"] is None  # consumed: the next user message is not this event again


def test_an_explicit_event_nobody_subscribes_to_ends_the_run_as_unhandled() -> None:
    bus = compile_bus()
    out = bus.invoke({"event": {"type": "article.deleted"}}, config())
    assert out["end_reason"] == "unhandled"
    assert outcomes(out["event_log"]) == [("article.deleted", "unhandled", 0, [])]
    answer = out["messages"][-1]
    assert answer.name == "bus"
    assert answer.text == (
        "Stopped (unhandled): no agent subscribes to 'article.deleted'; the event was logged. "
        "No handler had answered."
    )


@pytest.mark.parametrize(
    ("event", "message"),
    [
        pytest.param({"data": {}}, r"event.type must be a non-empty string", id="no-type"),
        pytest.param({"type": " "}, r"event.type must be a non-empty string", id="blank-type"),
        pytest.param({"type": "a.b", "data": [1]}, r"event.data must be an object", id="data"),
        pytest.param({"type": "a.b", "correlation_id": 7}, r"correlation_id", id="correlation"),
    ],
)
def test_a_malformed_explicit_event_is_refused(event: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        compile_bus().invoke({"event": event}, config())


def test_no_message_and_no_event_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"send a user message, or an explicit event"):
        compile_bus().invoke({"messages": []}, config())


# --- failures ---------------------------------------------------------------------------------


def test_a_failing_handler_leaves_a_dead_letter_and_the_others_carry_on() -> None:
    agents = (*AGENTS, spec("seo"))
    subscriptions = {**SUBSCRIPTIONS, "article.submitted": ["reviewer", "seo"]}
    bus = compile_bus(agents, subscriptions)
    with fakes(
        reviewer=publishing("ok", ("review.done", "fine")),
        seo=[ValueError("keyword service rejected the text")],
        editor=publishing("ok", ("publish.requested", "go")),
        publisher=["Published"],
    ):
        result = run(bus, "Article", session_id="s")
    assert result.end_reason == "handler_failed"
    assert not result.ok
    assert result.agent_name == "bus"
    assert result.output == (
        "Stopped (handler_failed): seo failed on article.submitted (ValueError: keyword service "
        "rejected the text). Last result, from publisher: Published"
    )
    state = bus.get_state({"configurable": {"thread_id": result.thread_id}}).values
    [letter] = state["dead_letters"]
    assert letter["agent"] == "seo"
    assert letter["event"]["type"] == "article.submitted"
    assert letter["error"] == "ValueError: keyword service rejected the text"
    assert [h["agent"] for h in state["handled"]] == ["reviewer", "editor", "publisher"]


async def test_dead_letters_work_under_ainvoke_too() -> None:
    bus = compile_bus()
    with fakes(reviewer=[ValueError("reviewer is down")]):
        out = await bus.ainvoke({"messages": [HumanMessage("Article")]}, config())
    assert [(d["agent"], d["error"]) for d in out["dead_letters"]] == [
        ("reviewer", "ValueError: reviewer is down")
    ]
    assert out["end_reason"] == "handler_failed"
    assert out["messages"][-1].text == (
        "Stopped (handler_failed): reviewer failed on article.submitted (ValueError: reviewer is "
        "down). No handler had answered."
    )


def test_a_publication_of_an_undeclared_type_is_re_asked_then_dead_lettered() -> None:
    bus = compile_bus()
    with fakes(
        reviewer=[
            *publishing("ok", ("article.deleted", "oops")),
            *publishing("ok", ("article.deleted", "again")),
        ]
    ) as models:
        out = bus.invoke({"messages": [HumanMessage("Article")]}, config())
    retry = models["reviewer"].calls[1].messages[-1]
    assert retry.text.startswith("Your previous answer did not match the required schema")
    [letter] = out["dead_letters"]
    assert letter["error"].startswith("OutputValidationError: agent 'reviewer' returned output")
    assert out["handled"] == []
    assert out["end_reason"] == "handler_failed"


def test_a_failing_handler_falls_back_to_its_fallback_model() -> None:
    publisher = spec("publisher", fallback_models=("scripted:backup",))
    bus = compile_bus((*AGENTS[:2], publisher))
    with fakes(
        reviewer=publishing("ok", ("review.done", "fine")),
        editor=publishing("ok", ("publish.requested", "go")),
        publisher=[ValueError("down")],
        backup=["Published by the backup model"],
    ):
        out = bus.invoke({"messages": [HumanMessage("Article")]}, config())
    assert out["dead_letters"] == []
    assert out["messages"][-1].text == "Published by the backup model"
    assert out["end_reason"] is None


# --- limits -----------------------------------------------------------------------------------

PING_PONG = (
    AgentSpec(name="ping", description="Answers pongs.", model="offline"),
    AgentSpec(name="pong", description="Answers pings.", model="offline"),
)


def ping_pong(**options: Any) -> Compiled:
    return compile_bus(
        PING_PONG,
        {"ball.ping": ["pong"], "ball.pong": ["ping"]},
        {"pong": ["ball.pong"], "ping": ["ball.ping"]},
        **options,
    )


def test_max_depth_ends_an_endless_exchange_with_the_partial_result() -> None:
    bus = ping_pong(max_depth=3)
    result = run(bus, "serve", session_id="s")
    assert result.end_reason == "max_depth"
    assert not result.ok
    assert result.agent_name == "bus"
    assert result.output.startswith(
        "Stopped (max_depth): an event at depth 4 exceeds max_depth=3. Last result, from ping: "
    )
    state = bus.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert state["end_detail"] == "an event at depth 4 exceeds max_depth=3"


def test_limits_leave_the_log_and_partial_results_in_state() -> None:
    bus = ping_pong(max_depth=3)
    out = bus.invoke({"messages": [HumanMessage("serve")]}, config())
    assert out["end_reason"] == "max_depth"
    assert [r["outcome"] for r in out["event_log"]] == ["delivered"] * 4 + ["dropped"]
    assert out["event_log"][-1]["note"] == "an event at depth 4 exceeds max_depth=3"
    assert [h["agent"] for h in out["handled"]] == ["pong", "ping", "pong", "ping"]
    assert out["event_count"] == 4


def test_max_events_ends_the_run() -> None:
    out = ping_pong(max_events=3).invoke({"messages": [HumanMessage("serve")]}, config())
    assert out["end_reason"] == "max_events"
    assert out["event_count"] == 3
    assert out["end_detail"] == (
        "1 more event(s) would take the run past max_events=3 (3 accepted so far)"
    )
    assert out["messages"][-1].text.startswith("Stopped (max_events): ")


def test_the_recursion_limit_stops_the_exchange_cleanly_before_langgraph_would() -> None:
    result = run(ping_pong(max_depth=50), "serve", context=Context(recursion_limit=12))
    assert result.end_reason == "recursion_limit"
    assert result.error is not None
    assert "raise Context.recursion_limit" in result.error  # the pattern's note, not a crash
    assert depth_fitting(12 - 2, 50) == 3
    assert depth_fitting(None, 5) == 5


@pytest.mark.parametrize(
    ("limit", "reason"),
    [pytest.param(12, "max_depth", id="fits"), pytest.param(11, "recursion_limit", id="short")],
)
def test_the_recursion_budget_is_tight(limit: int, reason: str) -> None:
    # max_depth=3 delivers depths 0..3: ingest, bus, 4 x (handler, bus), finish = 11 steps,
    # which a recursion limit of 12 allows and 11 does not.
    out = ping_pong(max_depth=3).invoke({"messages": [HumanMessage("serve")]}, config(limit=limit))
    assert out["end_reason"] == reason


def test_every_run_starts_its_own_count_and_the_log_keeps_growing() -> None:
    bus = ping_pong(max_events=3)
    first = bus.invoke({"messages": [HumanMessage("serve")]}, config())
    second = bus.invoke({"messages": [HumanMessage("again")]}, config())
    assert second["event_count"] == 3
    assert len(second["handled"]) == 3
    assert len(second["event_log"]) == 2 * len(first["event_log"])
    assert second["correlation_id"] != first["correlation_id"]


def test_route_events_sends_each_delivery_or_finishes() -> None:
    event = make_event("a.b", {}, source="user", correlation_id="c")
    state: Any = {"pending": [{"agent": "x", "event": event}, {"agent": "y", "event": event}]}
    sends = route_events(state)
    assert [(s.node, s.arg["agent"]) for s in sends] == [("x", "x"), ("y", "y")]
    assert route_events({"pending": []}) == "finish"  # type: ignore[typeddict-item]


def test_the_event_log_and_dead_letters_are_append_only_and_capped() -> None:
    event = make_event("a.b", {}, source="user", correlation_id="c")
    records: list[EventRecord] = [
        EventRecord(event=event, outcome="delivered", delivered_to=[], note=str(i))
        for i in range(EVENT_LOG_CAP + 5)
    ]
    log = append_event_log(records[:10], records[10:])
    assert len(log) == EVENT_LOG_CAP
    assert [r["note"] for r in log[:2]] == ["5", "6"]  # the oldest were dropped
    assert log[-1]["note"] == str(EVENT_LOG_CAP + 4)
    assert append_event_log(None, None) == []
    letters = [
        {"agent": "a", "event": event, "error": str(i), "timestamp": "t"}
        for i in range(DEAD_LETTER_CAP + 1)
    ]
    kept = append_dead_letters(letters[:1], letters[1:])  # type: ignore[arg-type]
    assert len(kept) == DEAD_LETTER_CAP
    assert kept[0]["error"] == "1"


def test_the_exported_graph_runs_offline_without_a_checkpointer() -> None:
    out = graph.invoke({"messages": [HumanMessage("An article")]}, {"recursion_limit": 25})
    assert out["messages"][-1].name == "publisher"
    assert out["messages"][-1].text.startswith(OFFLINE_MARKER)


# --- the demo, offline, through the run facade ------------------------------------------------


def test_demo_runs_offline_through_the_run_facade() -> None:
    demo = build_events_graph(
        EVENTS_AGENTS, subscriptions=EVENTS_SUBSCRIPTIONS, publishes=EVENTS_PUBLISHES
    ).compile(checkpointer=InMemorySaver(), name="events")
    result = run(demo, "Why Python asyncio matters for web backends", session_id="s")
    assert result.ok, result.error
    assert result.agent_name == "publisher"
    assert result.output.startswith(OFFLINE_MARKER)
    state = demo.get_state({"configurable": {"thread_id": result.thread_id}}).values
    assert outcomes(state["event_log"]) == [
        ("article.submitted", "delivered", 0, ["reviewer"]),
        ("review.done", "delivered", 1, ["editor"]),
        ("publish.requested", "delivered", 2, ["publisher"]),
    ]
    assert {r["event"]["correlation_id"] for r in state["event_log"]} == {result.correlation_id}


async def test_demo_runs_offline_through_arun_and_continues_the_session() -> None:
    demo = graph.builder.compile(checkpointer=InMemorySaver(), name="events")
    first = await arun(demo, "First article", session_id="s")
    second = await arun(demo, "Second article", session_id="s")
    assert first.ok
    assert second.ok
    assert second.agent_name == "publisher"
    assert set(second.usage) == {"reviewer/offline", "editor/offline", "publisher/offline"}
