"""The shape of a guardrail around model calls, written once for sync and async runs.

A guardrail is a LangChain `AgentMiddleware`, so guardrails and LangChain's own middleware
compose in one chain. What a wrapping middleware does is a plan of attempts: a generator that
yields the requests to send and is sent each attempt's `Outcome`, and returns the response to
give back (or raises). `run_attempts` carries a plan out for `wrap_model_call`, `arun_attempts` for
`awrap_model_call`: the guard itself is written once.

`CallGuard` is the simplest guard: `before` the call (may refuse it or change the request), one
attempt, `after` it (sees the reply, or the error).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, NamedTuple

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.errors import GraphBubbleUp

ModelCall = Callable[[ModelRequest[Any]], ModelResponse[Any]]
AsyncModelCall = Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]


@dataclass(frozen=True)
class Outcome:
    """What one attempt gave: the handler's response, or the error it raised."""

    response: Any = None
    error: Exception | None = None

    def result(self) -> Any:
        """The response, or the error raised again."""
        if self.error is not None:
            raise self.error
        return self.response


Attempts = Generator[ModelRequest[Any], Outcome, Any]
"""A plan of attempts: yields requests, is sent their outcomes, returns the final response."""


def run_attempts(attempts: Attempts, handler: ModelCall) -> Any:
    """Carry a plan of attempts out with a sync handler."""
    request = next(attempts)
    while True:
        try:
            outcome = Outcome(response=handler(request))
        except GraphBubbleUp:  # LangGraph's control flow (an interrupt) is not a failure
            raise
        except Exception as exc:
            outcome = Outcome(error=exc)
        try:
            request = attempts.send(outcome)
        except StopIteration as done:
            return done.value


async def arun_attempts(attempts: Attempts, handler: AsyncModelCall) -> Any:
    """Carry a plan of attempts out with an async handler (the same plan as `run_attempts`)."""
    request = next(attempts)
    while True:
        try:
            outcome = Outcome(response=await handler(request))
        except GraphBubbleUp:
            raise
        except Exception as exc:
            outcome = Outcome(error=exc)
        try:
            request = attempts.send(outcome)
        except StopIteration as done:
            return done.value


def reply_of(outcome: Outcome) -> BaseMessage | None:
    """The model's reply in an attempt's outcome.

    An error may carry the reply it rejected (`OutputValidationError.reply`): a call that was
    answered and billed, then failed validation, still reports what it used.
    """
    if outcome.error is not None:
        reply = getattr(outcome.error, "reply", None)
        return reply if isinstance(reply, BaseMessage) else None
    response = outcome.response
    if isinstance(response, AIMessage):
        return response
    if isinstance(response, ModelResponse):
        return next((m for m in response.result if isinstance(m, AIMessage)), None)
    return None


class Attempt(NamedTuple):
    """One guarded model call, as `CallGuard.after` sees it.

    Attributes:
        request: The request as it was sent (after `before`).
        ticket: What `before` handed on.
        reply: The model's reply, or the reply an error carries.
        error: The error, when the call failed.
    """

    request: ModelRequest[Any]
    ticket: Any
    reply: BaseMessage | None
    error: Exception | None


class WrappingGuard(AgentMiddleware[Any, Any, Any]):
    """A middleware whose `wrap_model_call` is a plan of attempts (`plan`), sync and async."""

    def plan(self, request: ModelRequest[Any]) -> Attempts:
        """The attempts for `request` (default: the request once, its outcome as it is)."""
        return (yield request).result()

    def applies(self, request: ModelRequest[Any]) -> bool:
        """Whether `plan` can do anything for `request` (if not, the request just goes on)."""
        return True

    def wrap_model_call(self, request: ModelRequest[Any], handler: ModelCall) -> Any:
        """Carry out `plan`."""
        if not self.applies(request):
            return handler(request)
        return run_attempts(self.plan(request), handler)

    async def awrap_model_call(self, request: ModelRequest[Any], handler: AsyncModelCall) -> Any:
        """Carry out `plan`, awaiting each attempt."""
        if not self.applies(request):
            return await handler(request)
        return await arun_attempts(self.plan(request), handler)


class CallGuard(AgentMiddleware[Any, Any, Any]):
    """A guardrail around each model call: `before` it is made, `after` it returned or failed.

    One attempt needs no plan: the two wrap methods below are the whole guard, written out for
    sync and async. They run on every model call (three layers of the default chain), where a
    plan's generator would cost about 2.5 microseconds per layer (bench/PER_HOP.md).
    """

    def before(self, request: ModelRequest[Any]) -> tuple[ModelRequest[Any], Any]:
        """Check (or change) the request; returns it with a ticket handed to `after`."""
        return request, None

    def after(self, attempt: Attempt) -> None:
        """Account for the call: its reply (or the reply an error carries), and the error."""

    def _failed(self, request: ModelRequest[Any], ticket: Any, error: Exception) -> None:
        self.after(Attempt(request, ticket, reply_of(Outcome(error=error)), error))

    def _answered(self, request: ModelRequest[Any], ticket: Any, response: Any) -> Any:
        self.after(Attempt(request, ticket, reply_of(Outcome(response=response)), None))
        return response

    def wrap_model_call(self, request: ModelRequest[Any], handler: ModelCall) -> Any:
        """`before`, the call, `after`."""
        request, ticket = self.before(request)
        try:
            response = handler(request)
        except GraphBubbleUp:  # LangGraph's control flow (an interrupt) is not a failure
            raise
        except Exception as exc:
            self._failed(request, ticket, exc)
            raise
        return self._answered(request, ticket, response)

    async def awrap_model_call(self, request: ModelRequest[Any], handler: AsyncModelCall) -> Any:
        """Async form of `wrap_model_call`."""
        request, ticket = self.before(request)
        try:
            response = await handler(request)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            self._failed(request, ticket, exc)
            raise
        return self._answered(request, ticket, response)


class ResponseCheck(AgentMiddleware[Any, Any, Any]):
    """A guardrail on what a model call answered: the call is made, then `check` may refuse it.

    The response passes on unchanged unless `check` raises (the call was made and is charged by
    the layers inside). Sync and async wrap methods are written once here.
    """

    def check(self, request: ModelRequest[Any], response: ModelResponse[Any]) -> None:
        """Raise to refuse `response` (default: accept it)."""

    def wrap_model_call(self, request: ModelRequest[Any], handler: ModelCall) -> Any:
        """The call, then `check`."""
        response = handler(request)
        self.check(request, response)
        return response

    async def awrap_model_call(self, request: ModelRequest[Any], handler: AsyncModelCall) -> Any:
        """The call, awaited, then `check`."""
        response = await handler(request)
        self.check(request, response)
        return response
