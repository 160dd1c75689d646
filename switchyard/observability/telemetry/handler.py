"""`TelemetryCallbackHandler`: LangChain's callbacks in, OpenTelemetry spans and log lines out.

The callbacks only take the handler's lock and pass what they received on: `opening` decides which
runs open which spans, `closing` what each span records as it ends, `SpanBook` keeps them.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from opentelemetry import trace

from switchyard.observability.telemetry.attributes import messages_json, prompt_json
from switchyard.observability.telemetry.closing import finish
from switchyard.observability.telemetry.conventions import CAPTURE_CONTENT_ENV, TRACER_NAME, truthy
from switchyard.observability.telemetry.opening import open_chain, open_model, open_tool
from switchyard.observability.telemetry.spans import SpanBook


@functools.cache
def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchyard")
    except PackageNotFoundError:  # running from a source tree
        return None


class TelemetryCallbackHandler(BaseCallbackHandler):
    """Turns a run's LangChain callbacks into OpenTelemetry spans and log lines.

    Put it in the run's config (`config["callbacks"]`); the run facade does. One handler may serve
    several runs, one after another or at once (it is thread-safe).

    Args:
        tracer_provider: Where spans go; OpenTelemetry's global provider when None (a no-op until
            one is installed, e.g. by `configure_tracing`).
        capture_content: Record prompts and replies (redacted) as `gen_ai.input.messages` /
            `gen_ai.output.messages`; when None, the environment variable
            `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` decides (default off).

    Example:
        ```python
        handler = TelemetryCallbackHandler()
        graph.invoke(inputs, {"callbacks": [handler], "metadata": {"correlation_id": "c1"}})
        ```
    """

    run_inline = True  # keep callbacks in order, and in the caller's context, under ainvoke

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        capture_content: bool | None = None,
    ) -> None:
        super().__init__()
        tracer = trace.get_tracer(TRACER_NAME, _package_version(), tracer_provider=tracer_provider)
        self._capture = (
            truthy(os.environ.get(CAPTURE_CONTENT_ENV))
            if capture_content is None
            else capture_content
        )
        self._book = SpanBook(tracer)
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- ends, of every kind
    # What a span records as it ends depends on its kind (run, node, model, tool), not on the
    # callback that ended it: every end callback goes to `_on_end`, every error callback is
    # `_on_error`. A retriever opens no span, so ending one only forgets it.

    def _on_end(self, outputs: Any, run_id: UUID) -> None:
        with self._lock:
            finish(self._book, run_id, outputs, None, capture=self._capture)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a node span (reading its state update) or the run span."""
        self._on_end(outputs, run_id)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a model span with the tokens, model and cost of the response."""
        self._on_end(response, run_id)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a tool span, with status ERROR when the tool reported an error."""
        self._on_end(output, run_id)

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the retriever run."""
        self._on_end(documents, run_id)

    def _on_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the run's span with the error that ended it, or forget a run that opened none."""
        with self._lock:
            finish(self._book, run_id, None, error, capture=self._capture)

    on_chain_error = on_llm_error = on_tool_error = on_retriever_error = _on_error

    # ----------------------------------------------------------------- chains (runs and nodes)

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open the run span (a top-level chain) or a node span (a LangGraph task)."""
        name = kwargs.get("name") or (serialized or {}).get("name") or "graph"
        with self._lock:
            open_chain(self._book, run_id, parent_run_id, str(name), metadata or {})

    # ----------------------------------------------------------------- model calls

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a `chat {model}` span."""
        content = messages_json(messages[0] if messages else []) if self._capture else None
        self._model_start(run_id, parent_run_id, metadata, kwargs, chat=True, content=content)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a `text_completion {model}` span (completion-style models)."""
        content = prompt_json(prompts[0]) if self._capture and prompts else None
        self._model_start(run_id, parent_run_id, metadata, kwargs, chat=False, content=content)

    def _model_start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
        *,
        chat: bool,
        content: str | None,
    ) -> None:
        params: dict[str, Any] = kwargs.get("invocation_params") or {}
        with self._lock:
            open_model(
                self._book,
                run_id,
                parent_run_id,
                metadata or {},
                params,
                chat=chat,
                input_messages=content,
            )

    # ----------------------------------------------------------------- tools

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open an `execute_tool {name}` span."""
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "tool")
        with self._lock:
            open_tool(self._book, run_id, parent_run_id, name, kwargs.get("tool_call_id"))

    # ----------------------------------------------------------------- retrievers (no span)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Keep runs inside a retriever under the span that contains the retriever."""
        with self._lock:
            if parent_run_id is not None and self._book.knows(parent_run_id):
                self._book.adopt(run_id, parent_run_id)
