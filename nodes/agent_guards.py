"""The guardrails that act on what one agent call records: schema re-asks, tool authority, usage.

They are `AgentMiddleware` like the rest of the chain (`switchyard.nodes.chain`), and write to the
call's `CallRecord`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest

from switchyard.core.models import model_name_of
from switchyard.core.redact import masked_logger
from switchyard.core.resilience import retry_attempt
from switchyard.guardrails.convergence import DEFAULT_CONVERGENCE_REPEATS, NoProgressError
from switchyard.guardrails.fallback import fallback_model
from switchyard.guardrails.guard import Attempt, Attempts, CallGuard, WrappingGuard
from switchyard.guardrails.spend import call_cost, reports_usage, request_prompt, used_tokens
from switchyard.nodes.record import OutputValidationError, current_record
from switchyard.state.context import current_context
from switchyard.state.usage import usage_entry

logger = masked_logger(__name__)

MAX_VALIDATION_RETRIES = 1
"""Times an agent is re-asked, with the validation error, when its output fails its schema."""


def reask(request: ModelRequest[Any], error: OutputValidationError) -> ModelRequest[Any]:
    """`request` again, with a message telling the model what was wrong with its answer.

    The rejected answer itself is shown first (as plain text) when the error carries it.
    """
    note = HumanMessage(
        error.reask
        or f"Your previous answer did not match the required schema: {error.problem}. "
        "Answer again, following the schema exactly."
    )
    shown = [AIMessage(error.answer)] if error.answer else []
    return request.override(messages=[*request.messages, *shown, note])


def _given_up(error: OutputValidationError, asked: int) -> OutputValidationError:
    """`error`, saying how often the model was asked."""
    if asked == 1:
        return error
    return OutputValidationError(
        f"{error} (asked {asked} times)",
        reply=error.reply,
        problem=error.problem,
        reask=error.reask,
        answer=error.answer,
    )


def _reasks(default: int) -> int:
    record = current_record()
    return record.reasks if record is not None and record.reasks is not None else default


def _reject(error: OutputValidationError) -> None:
    record = current_record()
    if record is not None:
        record.rejections.append(error.problem)


NO_PROGRESS = "no progress"
"""How the rejection that ends re-asks of an unchanged answer begins."""


class RepeatedAnswerError(OutputValidationError, NoProgressError):
    """The model gave a rejected answer again, unchanged, when asked to correct it.

    Asking once more would cost a call and change nothing: re-asks stop here. It is both an
    `OutputValidationError` (a pattern treats it as output that never passed, e.g. the
    hierarchical manager's default plan stands in) and a `NoProgressError` (its end reason is
    `no_progress` when nothing stands in).
    """


def _rejected_answer(error: OutputValidationError) -> str | None:
    """The rejected answer, spacing collapsed (None when there is none to compare).

    Compared exactly otherwise: a corrected quote, case or id is a change worth asking again for.
    """
    text = error.answer or (error.reply.text if error.reply is not None else "")
    return " ".join(text.split()) or None


def _unchanged(error: OutputValidationError, rejected: list[str]) -> RepeatedAnswerError | None:
    """Note `error`'s answer; the error that stops re-asking, once the answer came back unchanged.

    Unchanged: `Context.convergence_repeats` times in all (default 2, the first repetition).
    """
    answer = _rejected_answer(error)
    if answer is None:
        return None
    rejected.append(answer)
    repeats = current_context().convergence_repeats or DEFAULT_CONVERGENCE_REPEATS
    if rejected.count(answer) < repeats:
        return None
    problem = (
        f"{NO_PROGRESS}: the same rejected answer came back {rejected.count(answer)} times "
        f"({error.problem}); not asked again"
    )
    return RepeatedAnswerError(
        f"{error} ({NO_PROGRESS}: the same answer {rejected.count(answer)} times)",
        reply=error.reply,
        problem=problem,
        reask=error.reask,
        answer=error.answer,
    )


class SchemaReask(WrappingGuard):
    """Structured output that fails its schema is asked for again, once, with the error.

    Only requests with a `response_format` are affected. The failed answer never reaches the
    transcript; when the answer fails again, the `OutputValidationError` goes on to the fallback
    models (outer in the chain), then to the pattern. A pattern may set how often one call asks
    again (`CallRecord.reasks`: the hierarchical manager's plan attempts); every rejection is
    recorded (`CallRecord.rejections`).

    Args:
        retries: Times the model is asked again.
    """

    def __init__(self, retries: int = MAX_VALIDATION_RETRIES) -> None:
        super().__init__()
        self.retries = retries

    def applies(self, request: ModelRequest[Any]) -> bool:
        """Only requests for structured output are re-asked."""
        return request.response_format is not None

    def plan(self, request: ModelRequest[Any]) -> Attempts:
        """Ask; while the answer fails its schema, ask again with the error."""
        retries = _reasks(self.retries)
        rejected: list[str] = []
        for attempt in range(retries + 1):
            outcome = yield request
            error = outcome.error
            if not isinstance(error, OutputValidationError):
                return outcome.result()
            if attempt == retries:
                _reject(error)
                raise _given_up(error, attempt + 1) from error
            repeated = _unchanged(error, rejected)
            if repeated is not None:
                _reject(repeated)
                raise repeated from error
            _reject(error)
            request = reask(request, error)
        raise AssertionError("unreachable: the last attempt returns or raises")


class ToolAuthority(AgentMiddleware[Any, Any, Any]):
    """An agent calls only the tools it declared; any other call is refused, recorded and logged.

    The refusal answers the call (an error `ToolMessage`), so the model can carry on, and the
    run goes on. Handoffs to undeclared peers are refused the same way: a peer's handoff tool
    is only offered to the agents that declare it.

    Args:
        agent: The agent whose calls this checks.
    """

    def __init__(self, agent: str) -> None:
        super().__init__()
        self.agent = agent

    def _refusal(self, request: ToolCallRequest) -> ToolMessage | None:
        if request.tool is not None:
            return None
        call = request.tool_call
        declared = ", ".join(t.name for t in request.runtime.tools) or "none"
        note = f"refused: agent {self.agent!r} has no tool {call['name']!r} (its tools: {declared})"
        logger.warning(note)
        record = current_record()
        if record is not None:
            record.refusals.append(note)
        return ToolMessage(note, tool_call_id=call["id"] or "", name=call["name"], status="error")

    def wrap_tool_call(self, request: ToolCallRequest, handler: Callable[..., Any]) -> Any:
        """Refuse an undeclared tool; run a declared one."""
        return self._refusal(request) or handler(request)

    async def awrap_tool_call(self, request: ToolCallRequest, handler: Callable[..., Any]) -> Any:
        """Async form of `wrap_tool_call`."""
        return self._refusal(request) or await handler(request)


_estimated_models: set[str] = set()
"""Models already warned about for replies without a token count (one warning per process)."""


class UsageRecorder(CallGuard):
    """The usage ledger: one entry per model call actually made, failed ones included.

    Inside the retries and fallbacks, so every attempt is seen with the model it really went to: a
    retry (`retry_attempt() > 1`) and a fallback model are counted as such; a cached reply costs
    nothing and counts as a cache hit. Outside `CallLimits`, so a call abandoned at its time limit
    is recorded too, with the usage its error carries.

    Tokens are the provider's own count (the reply's `usage_metadata`, from the response's
    `usage` block) whenever the reply has one, and estimated from the prompt and the reply when
    it has none (a warning says so, once per model). The cost is the model's price for them, or
    None (unknown, JSON `null`) when the model has no known price: never 0.0 for money that was
    spent (`switchyard.state.usage`).

    Args:
        agent: The agent whose calls are recorded.
    """

    def __init__(self, agent: str) -> None:
        super().__init__()
        self.agent = agent

    def before(self, request: ModelRequest[Any]) -> tuple[ModelRequest[Any], Any]:
        """Note when the call starts."""
        return request, time.perf_counter()

    def after(self, attempt: Attempt) -> None:
        """Add the call to the record's ledger."""
        record = current_record()
        if record is None:
            return
        model = model_name_of(attempt.request.model)
        tokens = used_tokens(attempt.reply, request_prompt(attempt.request))
        if tokens.total and not reports_usage(attempt.reply):
            _warn_estimated(model)
        record.add_usage(
            usage_entry(
                self.agent,
                model,
                input_tokens=tokens.input,
                output_tokens=tokens.output,
                latency_ms=(time.perf_counter() - float(attempt.ticket)) * 1000,
                cost_usd=call_cost(model, tokens),
                cache_hits=int(tokens.cache_hit),
                retries=int(retry_attempt() > 1),
                fallbacks=int(fallback_model() is not None),
            )
        )


def _warn_estimated(model: str) -> None:
    if model in _estimated_models:
        return
    _estimated_models.add(model)
    logger.warning(
        "model %s reported no token usage; its tokens are estimated (and its cost with them)",
        model,
    )
