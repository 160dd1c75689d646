"""Closing spans: what a run, node, model or tool span records as it ends, and its log line.

Every LangChain `*_end` and `*_error` callback comes here through `finish`, one implementation for
each kind of span whichever callback ended it. Model calls roll their tokens and cost up into
their node span and the run span; nodes report their route, end reason and failures to the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from langchain_core.outputs import LLMResult
from opentelemetry.trace import Status, StatusCode

from switchyard.core.redact import redact
from switchyard.observability.telemetry.attributes import (
    agent_attributes,
    agents_of,
    messages_json,
    model_response,
    route_attributes,
    run_end_attributes,
    run_end_reason,
    split_command,
    usage_attributes,
)
from switchyard.observability.telemetry.conventions import (
    CONTROL,
    END_REASON,
    GEN_AI_OUTPUT_MESSAGES,
    logger,
)
from switchyard.observability.telemetry.spans import (
    OpenSpan,
    SpanBook,
    mark_ok,
    node_of,
    record_error,
    set_attributes,
)


def finish(
    book: SpanBook,
    run_id: UUID,
    outputs: Any,
    error: BaseException | None,
    *,
    capture: bool,
) -> None:
    """End the span of `run_id` with its outputs or the error that ended it.

    A run that opened no span is forgotten.

    Args:
        book: The handler's open spans.
        run_id: The run that ended.
        outputs: What it returned (a state update, an `LLMResult`, a tool message); None on error.
        error: The error that ended it, None when it returned.
        capture: Record the reply of a model call as `gen_ai.output.messages`.
    """
    opened = book.get(run_id)
    if opened is None:
        book.forget(run_id)
        return
    if opened.kind == "node":
        _end_node(book, opened, outputs, error)
    elif opened.kind == "run":
        _end_run(book, opened, outputs, error)
    elif error is not None:
        record_error(opened, error)
    elif opened.kind == "model":
        _end_model(book, opened, outputs, capture=capture)
    else:
        _end_tool(opened, outputs)
    book.close(run_id)


def _spend_fields(opened: OpenSpan) -> dict[str, Any]:
    return {
        "duration_ms": opened.duration_ms(),
        "model_calls": opened.model_calls,
        "input_tokens": opened.input_tokens,
        "output_tokens": opened.output_tokens,
        "cost_usd": opened.cost_usd,  # None when a call had no known price
    }


# --------------------------------------------------------------------------- nodes


def _end_node(book: SpanBook, opened: OpenSpan, outputs: Any, error: BaseException | None) -> None:
    from langgraph.errors import GraphBubbleUp

    root = book.root_of(opened)
    agent = _record_update(opened, outputs, root)
    fields = {
        **book.log_fields(opened),
        "node": opened.node,
        "agent": agent,
        "attempt": opened.attempt,
        **_spend_fields(opened),
    }
    duration_ms = fields["duration_ms"]
    if error is None:
        mark_ok(opened)
        if agent is not None and root is not None:
            root.last_agent = agent
        logger.info("node %s finished in %.1f ms", opened.node, duration_ms, extra=fields)
    elif isinstance(error, GraphBubbleUp):  # an interrupt or a handoff to a parent graph
        opened.span.set_attribute(CONTROL, type(error).__name__)
        logger.info("node %s yielded control (%s)", opened.node, type(error).__name__, extra=fields)
    else:
        record_error(opened, error)
        if root is not None:
            root.failed_node = opened.node
        logger.warning(
            "node %s failed (attempt %d): %s: %s",
            opened.node,
            opened.attempt,
            type(error).__name__,
            redact(str(error)),
            extra=fields,
        )


def _record_update(opened: OpenSpan, outputs: Any, root: OpenSpan | None) -> str | None:
    """Record what a node's state update says; returns the agent it ran, None for no agent."""
    span = opened.span
    update, goto = split_command(outputs)
    set_attributes(span, goto)
    usage = update.get("usage") if isinstance(update, Mapping) else None
    agents = agents_of(opened, usage)
    label = agents[0] if len(agents) == 1 else opened.node
    if agents:
        span.update_name(f"invoke_agent {label}")
        set_attributes(span, agent_attributes(label, agents))
    if isinstance(usage, Mapping) and usage:
        set_attributes(span, usage_attributes(usage))
    if isinstance(update, Mapping):
        # A subgraph's own router or end reason is not the run's.
        run = root if root is not None and opened.parent is root else None
        route = update.get("route")
        if isinstance(route, Mapping) and route.get("agent"):
            set_attributes(span, route_attributes(route))
            if run is not None:
                run.route = dict(route)
        end_reason = update.get("end_reason")
        if isinstance(end_reason, str):
            set_attributes(span, {END_REASON: end_reason})
            if run is not None:
                run.end_reason = end_reason
    return label if agents else None


# --------------------------------------------------------------------------- runs


def _end_run(book: SpanBook, opened: OpenSpan, outputs: Any, error: BaseException | None) -> None:
    from langgraph.errors import GraphBubbleUp

    end_reason = run_end_reason(opened, outputs, error)
    set_attributes(opened.span, run_end_attributes(opened, end_reason))
    fields = {
        **book.log_fields(opened),
        "end_reason": end_reason,
        **_spend_fields(opened),
        "retries": opened.retries,
        "failed_node": opened.failed_node,
    }
    pattern = opened.metadata.get("pattern")
    if error is not None and not isinstance(error, GraphBubbleUp):
        record_error(opened, error)
        logger.warning(
            "run %s ended: %s (%s: %s)",
            pattern,
            end_reason,
            type(error).__name__,
            redact(str(error)),
            extra=fields,
        )
        return
    if end_reason in ("completed", "interrupted"):
        mark_ok(opened)
    else:
        opened.span.set_status(Status(StatusCode.ERROR, f"run ended: {end_reason}"))
    logger.info(
        "run %s ended: %s in %.1f ms", pattern, end_reason, fields["duration_ms"], extra=fields
    )


# --------------------------------------------------------------------------- model and tool calls


def _end_model(book: SpanBook, opened: OpenSpan, result: LLMResult, *, capture: bool) -> None:
    response = model_response(result)
    model = opened.metadata["model"]
    cost = response.cost_usd(opened.metadata["provider"], model)
    set_attributes(opened.span, response.attributes(cost))
    if capture and response.message is not None:
        opened.span.set_attribute(GEN_AI_OUTPUT_MESSAGES, messages_json([response.message]))
    mark_ok(opened)
    # Roll the call up into its node span and the run span (one span when the node is the run).
    holders = (node_of(opened), book.root_of(opened))
    for holder in {id(h): h for h in holders if h}.values():
        holder.model_calls += 1
        holder.input_tokens += response.input_tokens
        holder.output_tokens += response.output_tokens
        if cost is None:
            holder.unpriced_calls += 1
        else:
            holder.known_cost_usd += cost
    duration_ms = opened.duration_ms()
    logger.info(
        "model call %s for %s: %d/%d tokens in %.1f ms",
        model,
        opened.node,
        response.input_tokens,
        response.output_tokens,
        duration_ms,
        extra={
            **book.log_fields(opened),
            "agent": opened.node,
            "model": model,
            "input_tokens": response.input_tokens,
            "output_tokens": response.output_tokens,
            "cost_usd": cost,
            "duration_ms": duration_ms,
        },
    )


def _end_tool(opened: OpenSpan, output: Any) -> None:
    # A tool that catches its own error returns a ToolMessage with status "error".
    if getattr(output, "status", "success") == "error":
        opened.span.set_status(Status(StatusCode.ERROR, "tool reported an error"))
    else:
        mark_ok(opened)
