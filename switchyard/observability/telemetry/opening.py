"""Opening spans: which LangChain runs start a span, what kind, and under which parent.

A top-level chain is the run (`invoke_workflow`); a chain carrying LangGraph task metadata in a
checkpoint namespace its container does not already have is a node (each retry attempt its own);
every other chain only joins the span that contains it. Model and tool runs always open a span.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from opentelemetry.trace import SpanKind

from switchyard.core.resilience import ATTEMPT_KEY
from switchyard.observability.telemetry.attributes import (
    model_request,
    node_attributes,
    request_attributes,
    run_attributes,
    run_metadata,
    tool_attributes,
)
from switchyard.observability.telemetry.conventions import ATTEMPT, GEN_AI_INPUT_MESSAGES
from switchyard.observability.telemetry.spans import OpenSpan, SpanBook, node_of


def open_chain(
    book: SpanBook,
    run_id: UUID,
    parent_run_id: UUID | None,
    name: str,
    metadata: Mapping[str, Any],
) -> None:
    """Open the run span (a top-level chain) or a node span (a LangGraph task), or join one.

    Args:
        book: The handler's open spans.
        run_id: The chain's run.
        parent_run_id: The run it was started in, if any.
        name: The chain's name, the run span's pattern when its metadata names none.
        metadata: The chain's metadata (the run's config metadata and LangGraph's).
    """
    parent = book.containing(parent_run_id)
    if parent is None:
        _open_run(book, run_id, name, metadata)
        return
    node = metadata.get("langgraph_node")
    namespace = metadata.get("langgraph_checkpoint_ns")
    container = node_of(parent)
    named = metadata.get("agent")
    if isinstance(named, str) and container is not None and named not in container.agents:
        container.agents.append(named)
    is_new_task = (
        isinstance(node, str)
        and not node.startswith("__")
        and namespace is not None
        and (container is None or namespace != container.namespace)
    )
    if not is_new_task:
        assert parent_run_id is not None  # a parent was found for it
        book.adopt(run_id, parent_run_id)
        return
    assert isinstance(node, str)
    _open_node(book, run_id, parent, node, str(namespace), metadata)


def _open_run(book: SpanBook, run_id: UUID, name: str, metadata: Mapping[str, Any]) -> None:
    pattern = metadata.get("pattern") or name
    opened = book.start(
        run_id,
        f"invoke_workflow {pattern}",
        kind="run",
        parent=None,
        attributes=run_attributes(pattern, metadata),
        metadata=run_metadata(metadata),
    )
    opened.metadata["pattern"] = pattern


def _open_node(
    book: SpanBook,
    run_id: UUID,
    parent: OpenSpan,
    node: str,
    namespace: str,
    metadata: Mapping[str, Any],
) -> None:
    root = book.root_of(parent)
    assert root is not None  # a run's spans are closed with it
    # The same task namespace again is a retry of the node by its RetryPolicy.
    attempt = root.attempts.get(namespace, 0) + 1
    root.attempts[namespace] = attempt
    if attempt > 1:
        root.retries += 1
    book.start(
        run_id,
        node,
        kind="node",
        parent=parent,
        attributes=node_attributes(node, metadata, attempt=attempt, root=root),
        namespace=namespace,
        node=node,
        attempt=attempt,
    )


def open_model(
    book: SpanBook,
    run_id: UUID,
    parent_run_id: UUID | None,
    metadata: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    chat: bool,
    input_messages: str | None,
) -> None:
    """Open a `chat {model}` (or `text_completion {model}`) span, a CLIENT span.

    The node it runs in becomes an agent span, named after the agent the call's metadata names.

    Args:
        book: The handler's open spans.
        run_id: The model call's run.
        parent_run_id: The run it was started in, if any.
        metadata: The call's metadata (`ls_*`, `agent`, the run's config metadata).
        params: The call's invocation parameters.
        chat: A chat model (else a completion-style one).
        input_messages: `gen_ai.input.messages`, when message content is captured.
    """
    request = model_request(metadata, params, chat=chat)
    parent = book.containing(parent_run_id)
    node = node_of(parent)
    root = book.root_of(parent) if parent is not None else None
    named = metadata.get("agent")
    agent = named if isinstance(named, str) else (node.node if node is not None else None)
    if node is not None:  # a node that calls a model is an agent, even if the call fails
        node.called_model = True
        if isinstance(named, str) and named not in node.agents:
            node.agents.append(named)
    correlation_id = (root.metadata if root is not None else metadata).get("correlation_id")
    attributes = request_attributes(
        request, metadata, params, agent=agent, correlation_id=correlation_id
    )
    if input_messages is not None:
        attributes[GEN_AI_INPUT_MESSAGES] = input_messages
    attempt = metadata.get(ATTEMPT_KEY)
    if isinstance(attempt, int):  # the agent call's retry middleware numbers its attempts
        attributes[ATTEMPT] = attempt
        if attempt > 1 and root is not None:
            root.retries += 1
    book.start(
        run_id,
        request.span_name,
        kind="model",
        parent=parent,
        span_kind=SpanKind.CLIENT,
        attributes=attributes,
        node=str(agent) if agent else None,
        metadata={"model": request.model, "provider": request.provider},
    )


def open_tool(
    book: SpanBook, run_id: UUID, parent_run_id: UUID | None, name: str, call_id: Any
) -> None:
    """Open an `execute_tool {name}` span, attributed to the agent of the node it runs in."""
    parent = book.containing(parent_run_id)
    node = node_of(parent)
    book.start(
        run_id,
        f"execute_tool {name}",
        kind="tool",
        parent=parent,
        attributes=tool_attributes(name, call_id, node.node if node is not None else None),
    )
