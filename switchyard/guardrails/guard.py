"""`CallGuard`: the shape of a guardrail that acts around every model call, sync or async.

Each guard is a LangChain `AgentMiddleware` (so guards and LangChain's own middleware compose in
one chain), whose whole behaviour is in `before` (may refuse the call or change the request) and
`after` (sees the reply, or the error). The sync and async wraps below drive both, so a guard is
written once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage

ModelCall = Callable[[ModelRequest[Any]], ModelResponse[Any]]
AsyncModelCall = Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]


def reply_of(outcome: ModelResponse[Any] | AIMessage | BaseException | None) -> BaseMessage | None:
    """The model's reply in a handler's outcome.

    An error may carry the reply it rejected (`OutputValidationError.reply`): a call that was
    answered and billed, then failed validation, still reports what it used.
    """
    if isinstance(outcome, BaseException):
        reply = getattr(outcome, "reply", None)
        return reply if isinstance(reply, BaseMessage) else None
    if isinstance(outcome, AIMessage):
        return outcome
    if isinstance(outcome, ModelResponse):
        return next((m for m in outcome.result if isinstance(m, AIMessage)), None)
    return None


class CallGuard(AgentMiddleware[Any, Any, Any]):
    """A guardrail around each model call: `before` it is made, `after` it returned or failed."""

    def before(self, request: ModelRequest[Any]) -> tuple[ModelRequest[Any], Any]:
        """Check (or change) the request; returns it with a ticket handed to `after`."""
        return request, None

    def after(
        self,
        request: ModelRequest[Any],
        ticket: Any,
        reply: BaseMessage | None,
        error: BaseException | None,
    ) -> None:
        """Account for the call: its reply (or the reply an error carries), and the error."""

    def wrap_model_call(self, request: ModelRequest[Any], handler: ModelCall) -> Any:
        """Run the call between `before` and `after`."""
        request, ticket = self.before(request)
        try:
            response = handler(request)
        except Exception as exc:
            self.after(request, ticket, reply_of(exc), exc)
            raise
        self.after(request, ticket, reply_of(response), None)
        return response

    async def awrap_model_call(self, request: ModelRequest[Any], handler: AsyncModelCall) -> Any:
        """Async form of `wrap_model_call` (the same `before` and `after`)."""
        request, ticket = self.before(request)
        try:
            response = await handler(request)
        except Exception as exc:
            self.after(request, ticket, reply_of(exc), exc)
            raise
        self.after(request, ticket, reply_of(response), None)
        return response
