"""`CallLimits`: the agent's per-call timeout and the run's deadline, on model and tool calls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest
from langgraph.prebuilt.tool_node import ToolCallRequest

from switchyard.core.errors import SwitchyardError
from switchyard.guardrails.budgets import DeadlineExceededError
from switchyard.guardrails.guard import AsyncModelCall, ModelCall
from switchyard.guardrails.scope import current_scope

AsyncToolCall = Callable[[ToolCallRequest], Awaitable[Any]]


class AgentTimeoutError(SwitchyardError, TimeoutError):
    """An agent's model call took longer than its `timeout_s` (transient: retried)."""

    status_code = 408


def time_limit(agent: str, what: str, timeout_s: float | None) -> tuple[float | None, bool]:
    """Seconds a call may take, and whether the run's deadline (not `timeout_s`) sets it.

    Raises:
        DeadlineExceededError: The run's deadline has passed: the call must not start.
    """
    scope = current_scope()
    remaining = scope.remaining_s() if scope is not None else None
    if remaining is not None and remaining <= 0:
        raise DeadlineExceededError(
            f"run deadline passed before agent {agent!r} could {what}; "
            "raise Context.deadline_s for longer runs"
        )
    if remaining is not None and (timeout_s is None or remaining < timeout_s):
        return remaining, True
    return timeout_s, False


async def bounded(
    call: Awaitable[Any], agent: str, limit: float | None, *, by_deadline: bool
) -> Any:
    """Await `call`, cancelled after `limit` seconds (`time_limit` gives both arguments).

    Raises:
        DeadlineExceededError: The run's deadline came first.
        AgentTimeoutError: The agent's timeout came first.
    """
    if limit is None:
        return await call
    try:
        async with asyncio.timeout(limit) as bound:
            return await call
    except TimeoutError:
        if not bound.expired():  # the call's own timeout error, not ours
            raise
        if by_deadline:
            raise DeadlineExceededError(
                f"run deadline reached while agent {agent!r} was waiting for a call"
            ) from None
        raise AgentTimeoutError(f"agent {agent!r} timed out after {limit:.3g}s") from None


class CallLimits(AgentMiddleware[Any, Any, Any]):
    """Bounds every model and tool call of an agent in time.

    No call starts once the run's deadline has passed (`DeadlineExceededError`). An async call in
    flight is cancelled at the agent's `timeout_s` (`AgentTimeoutError`, which is transient, so the
    retry middleware tries again) or at the deadline, whichever comes first. A sync call cannot be
    cancelled from inside the process: the model client's own timeout (set from `timeout_s` when
    the model is loaded) bounds it instead.

    Args:
        agent: The agent whose calls this bounds.
        timeout_s: Longest a model call may take (None: no per-call limit).
    """

    def __init__(self, agent: str, *, timeout_s: float | None = None) -> None:
        super().__init__()
        self.agent = agent
        self.timeout_s = timeout_s

    def _limit(self, what: str, *, timed: bool) -> tuple[float | None, bool]:
        return time_limit(self.agent, what, self.timeout_s if timed else None)

    def wrap_model_call(self, request: ModelRequest[Any], handler: ModelCall) -> Any:
        """Refuse the call after the deadline; the client's timeout bounds it in flight."""
        self._limit("call its model", timed=True)
        return handler(request)

    async def awrap_model_call(self, request: ModelRequest[Any], handler: AsyncModelCall) -> Any:
        """Refuse the call after the deadline; cancel it at the timeout or the deadline."""
        limit, by_deadline = self._limit("call its model", timed=True)
        return await bounded(handler(request), self.agent, limit, by_deadline=by_deadline)

    def wrap_tool_call(self, request: ToolCallRequest, handler: Callable[..., Any]) -> Any:
        """Refuse a tool call after the deadline."""
        self._limit(f"run tool {request.tool_call['name']!r}", timed=False)
        return handler(request)

    async def awrap_tool_call(self, request: ToolCallRequest, handler: AsyncToolCall) -> Any:
        """Refuse a tool call after the deadline; cancel it when the deadline comes."""
        limit, by_deadline = self._limit(f"run tool {request.tool_call['name']!r}", timed=False)
        return await bounded(handler(request), self.agent, limit, by_deadline=by_deadline)
