"""An agent's middleware chain: our guardrails and the user's middleware, composed once per agent.

The chain is LangChain's `AgentMiddleware` protocol. `wrap_model_call` / `wrap_tool_call` layers
compose first-outermost, as in `create_agent`; `before_*` / `after_*` hooks run in list order. The
default chain (`default_middleware`) is, outermost first:

0. `ConfidenceGate`: a structured answer reporting a `confidence` below the agent's
   `min_confidence` (or the run's) is not handed on but goes down the fallback chain
   (`switchyard.guardrails.confidence`); outside the tripwires, so what it holds back has been
   checked by the output guardrails;
   then `Tripwires`: the agent's input and output guardrails and the run's built-in ones; a
   tripwire ends the run (`guardrail_tripped`) before the model is called, or before an
   output is handed on;
   then `SummarizedMemory`: the turns the agent's window dropped, summarised once into its
   notes (a summary and key facts) shown in their place (`switchyard.nodes.memory`);
1. `FallbackModels`: the agent's fallback models, when its model fails;
2. `SchemaReask`: structured output that fails its schema is asked for again, with the error;
3. `DeadlineRetry` (LangChain's `ModelRetryMiddleware`): transient failures are retried, never
   waiting past the run's deadline;
4. `SpendGuard`: run, session and agent budgets admit each call and are charged what it used;
5. `BreakerGuard`: the model's circuit breaker;
   then `RateLimitGuard`: the model's requests and tokens per minute (shared through Redis when
   configured): each attempt waits for room within the run's deadline;
6. `UsageRecorder`: the usage ledger, one entry per actual call (a call abandoned at its time
   limit included, charged its prompt's estimate);
7. `CallLimits`: the agent's timeout and the run's deadline, on model and tool calls in flight;
8. `ToolAuthority`: an agent calls only the tools it declared.

A user's middleware (`AgentSpec.middleware`, or `build_*_graph(middleware=...)` for every agent)
goes outside all of these, so whatever it does (retries of its own, another model) is still
guarded and charged. `AgentSpec(default_middleware=False)` drops the defaults: the chain is then
exactly the user's list (build it from `default_middleware(spec)` to reorder the defaults).

Middleware state follows LangChain's scopes: a state key marked `UntrackedValue` lasts one run
(kept in the run scope), any other key lasts the session (kept per agent in the graph's
`agent_state` channel and checkpointed). Each agent's keys are its own.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, Required

import typing_extensions
from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelResponse,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langgraph.channels import EphemeralValue, UntrackedValue
from typing_extensions import ReadOnly

from switchyard.core.models import default_max_tokens, load_chat_model
from switchyard.guardrails.breaker import BreakerGuard
from switchyard.guardrails.confidence import ConfidenceGate
from switchyard.guardrails.fallback import FallbackModels
from switchyard.guardrails.limits import CallLimits, DeadlineRetry
from switchyard.guardrails.ratelimit import RateLimitGuard
from switchyard.guardrails.spend import SpendGuard
from switchyard.nodes.agent_guards import SchemaReask, ToolAuthority, UsageRecorder
from switchyard.nodes.memory import SummarizedMemory
from switchyard.nodes.tripwires import Tripwires, agent_tripwires
from switchyard.state.agents import AgentSpec
from switchyard.state.context import current_context

HOOKS = ("before_agent", "before_model", "after_model", "after_agent")
"""The node-style hooks a middleware may define, in the order an agent call reaches them."""

_BASE_KEYS = frozenset(typing.get_type_hints(AgentState, include_extras=True))


def model_params(spec: AgentSpec, model: str) -> dict[str, Any]:
    """The settings an agent's model is loaded with: temperature, max_tokens (always), timeout."""
    params: dict[str, Any] = {}
    if spec.temperature is not None:
        params["temperature"] = spec.temperature
    # Always bounded: the agent's limit, else the process default (see `default_max_tokens`).
    params["max_tokens"] = spec.max_tokens or default_max_tokens(model)
    if spec.timeout_s is not None and not model.startswith("offline"):
        # Sync calls cannot be cancelled in-process, so the HTTP client enforces the timeout.
        params["timeout"] = spec.timeout_s
    return params


def model_loader(spec: AgentSpec) -> Callable[[str], BaseChatModel]:
    """Loads a model by name with the agent's settings (for fallbacks and downgrades)."""

    def load(model: str) -> BaseChatModel:
        return load_chat_model(model, **model_params(spec, model))

    return load


def _run_min_confidence() -> float | None:
    return current_context().min_confidence


def default_middleware(spec: AgentSpec) -> list[AgentMiddleware[Any, Any, Any]]:
    """The guardrails every agent gets, outermost first (see the module docstring)."""
    load = model_loader(spec)
    chain: list[AgentMiddleware[Any, Any, Any]] = [
        # Outside the tripwires: the answer it holds back (and shows a person) is one the output
        # guardrails have already checked and rewritten.
        ConfidenceGate(spec.min_confidence, agent=spec.name, run_threshold=_run_min_confidence),
        agent_tripwires(spec),
        SummarizedMemory(spec),
    ]
    if spec.fallback_models:
        chain.append(FallbackModels(spec.fallback_models, load=load))
    chain += [
        SchemaReask(),
        DeadlineRetry(spec.max_attempts),
        SpendGuard(spec.name, budget=spec.budget, load=load),
        BreakerGuard(),
        RateLimitGuard(spec.name, rate_limits=spec.rate_limits),
        UsageRecorder(spec.name),
        CallLimits(spec.name, timeout_s=spec.timeout_s),
        ToolAuthority(spec.name),
    ]
    return chain


def defines(middleware: AgentMiddleware[Any, Any, Any], name: str) -> bool:
    """Whether `middleware` implements method `name` itself (rather than inheriting the no-op)."""
    return getattr(type(middleware), name, None) is not getattr(AgentMiddleware, name, None)


def _overrides(middleware: AgentMiddleware[Any, Any, Any], name: str) -> bool:
    """Whether `middleware` implements hook `name`, sync or async."""
    return defines(middleware, name) or defines(middleware, f"a{name}")


def state_keys(middleware: Sequence[AgentMiddleware[Any, Any, Any]]) -> tuple[frozenset[str], ...]:
    """(run-scoped, session-scoped) middleware state keys, from the middleware's state schemas."""
    run: set[str] = set()
    session: set[str] = set()
    for layer in middleware:
        hints = typing.get_type_hints(layer.state_schema, include_extras=True)
        for key, hint in hints.items():
            if key in _BASE_KEYS:
                continue
            while typing_extensions.get_origin(hint) in (NotRequired, Required, ReadOnly):
                hint = typing_extensions.get_args(hint)[0]  # the Annotated[...] inside
            marks = getattr(hint, "__metadata__", ())
            if any(m is EphemeralValue or isinstance(m, EphemeralValue) for m in marks):
                continue
            untracked = any(m is UntrackedValue or isinstance(m, UntrackedValue) for m in marks)
            (run if untracked else session).add(key)
    return frozenset(run), frozenset(session)


def normalized(result: Any) -> ModelResponse[Any]:
    """A `wrap_model_call` layer's result as a `ModelResponse` (as `create_agent` passes it on)."""
    if isinstance(result, ModelResponse):
        return result
    if isinstance(result, AIMessage):
        return ModelResponse(result=[result])
    if isinstance(result, ExtendedModelResponse):
        # A state update riding on the response is applied as a hook's update would be.
        response: ModelResponse[Any] = result.model_response
        if result.command is not None and isinstance(result.command.update, Mapping):
            response.switchyard_update = dict(result.command.update)  # type: ignore[attr-defined]
        return response
    raise TypeError(f"wrap_model_call returned {type(result).__name__}, not a ModelResponse")


def _layer(method: Callable[..., Any], inner: Callable[[Any], Any], request: Any) -> Any:
    return normalized(method(request, inner))


async def _alayer(method: Callable[..., Any], inner: Callable[[Any], Any], request: Any) -> Any:
    return normalized(await method(request, inner))


def _direct(method: Callable[..., Any], inner: Callable[[Any], Any], request: Any) -> Any:
    return method(request, inner)


_PASS_THROUGH = frozenset(
    {
        Tripwires,
        ConfidenceGate,
        FallbackModels,
        SchemaReask,
        DeadlineRetry,
        SpendGuard,
        BreakerGuard,
        RateLimitGuard,
        CallLimits,
        UsageRecorder,
    }
)
"""Our own layers (exactly these classes, not subclasses a user may write) return their handler's
response as it is, a `ModelResponse` already: they are called `_direct`ly, without normalising and
without an extra coroutine per layer per call."""

Layer = tuple[Callable[..., Any], Callable[..., Any]]
"""A middleware method and how to call it (`_layer`, `_alayer` or `_direct`)."""


def compose(layers: Sequence[Layer], innermost: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`layers[0](request, layers[1](request, ... innermost))`: the first layer is outermost.

    The same fold serves sync and async chains, of model calls and of tool calls (whose results
    need no normalising).
    """
    handler = innermost
    for method, call in reversed(layers):
        handler = functools.partial(call, method, handler)
    return handler


@dataclass(frozen=True)
class AgentChain:
    """One agent's middleware, with what a call needs of it worked out once, at build time.

    Attributes:
        middleware: The whole chain, outermost first.
        hooks: For each hook name, the middleware that implement it, in order.
        run_keys: Middleware state keys that last one run.
        session_keys: Middleware state keys that last the session.
    """

    middleware: tuple[AgentMiddleware[Any, Any, Any], ...]
    hooks: Mapping[str, tuple[AgentMiddleware[Any, Any, Any], ...]] = field(default_factory=dict)
    run_keys: frozenset[str] = frozenset()
    session_keys: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls, spec: AgentSpec, extra: Sequence[AgentMiddleware[Any, Any, Any]] = ()
    ) -> AgentChain:
        """The chain of `spec`: `extra` (graph-wide), the agent's own, then the defaults."""
        chain = [*extra, *spec.middleware]
        if spec.default_middleware:
            chain += default_middleware(spec)
        run, session = state_keys(chain)
        return cls(
            middleware=tuple(chain),
            hooks={name: tuple(m for m in chain if _overrides(m, name)) for name in HOOKS},
            run_keys=run,
            session_keys=session,
        )

    @functools.cached_property
    def _wrapping(self) -> dict[str, tuple[AgentMiddleware[Any, Any, Any], ...]]:
        # Worked out on the first call, not on every one: the chain runs on every model call.
        return {
            name: tuple(m for m in self.middleware if _overrides(m, name))
            for name in ("wrap_model_call", "wrap_tool_call")
        }

    def model_call(self, execute: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """The sync model-call chain around `execute`."""
        return compose(
            [
                (m.wrap_model_call, _direct if type(m) in _PASS_THROUGH else _layer)
                for m in self._wrapping["wrap_model_call"]
            ],
            execute,
        )

    def amodel_call(self, execute: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """The async model-call chain around `execute`."""
        return compose(
            [
                (m.awrap_model_call, _direct if type(m) in _PASS_THROUGH else _alayer)
                for m in self._wrapping["wrap_model_call"]
            ],
            execute,
        )

    def tool_call(self, execute: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """The sync tool-call chain around `execute`."""
        return compose(
            [(m.wrap_tool_call, _direct) for m in self._wrapping["wrap_tool_call"]], execute
        )

    def atool_call(self, execute: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """The async tool-call chain around `execute`."""
        return compose(
            [(m.awrap_tool_call, _direct) for m in self._wrapping["wrap_tool_call"]], execute
        )
