"""Agent specifications: what an agent is, validated before any graph is built."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langgraph.pregel import Pregel
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    ValidationError,
    field_validator,
    model_validator,
)

from switchyard.core.defaults import DEFAULT_TIMEOUT_S
from switchyard.core.errors import AgentConfigError, ModelConfigError
from switchyard.core.models import is_registered, split_model
from switchyard.core.pricing import has_price
from switchyard.guardrails.budgets import Budget
from switchyard.guardrails.convergence import Convergence
from switchyard.guardrails.ratelimit import RateLimit
from switchyard.guardrails.tripwires import Guardrail
from switchyard.state.memory import MemoryPolicy

_SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _instances(value: Any, kind: type, what: str, fix: str) -> tuple[Any, ...]:
    """`value` (one item or a list) as a tuple of `kind` instances; one clear error otherwise."""
    items = tuple(value) if isinstance(value, list | tuple) else (value,)
    for item in items:
        if not isinstance(item, kind):
            raise ValueError(f"{what}, got {item!r}; {fix}")
    return items


class AgentSpec(BaseModel):
    """Declarative description of one agent; every pattern turns these into graph nodes.

    Example:
        ```python
        support = AgentSpec(
            name="support",
            description="Refunds, billing and account issues.",
            system_prompt="You are the customer support agent.",
            examples=["I was charged twice", "How do I get a refund?"],
        )
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(description="Unique snake_case name; also the graph node name.")
    description: str = Field(
        description="What the agent handles; routers and handoff tools read it."
    )
    system_prompt: str = Field(default="", description="Instructions sent as the system message.")
    model: str | None = Field(
        default=None,
        description="'offline' or 'provider:model'; None uses the run's or the process default.",
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0, description="Cap on output tokens per call.")
    tools: tuple[Any, ...] = Field(
        default=(), description="LangChain tools (BaseTool or callables) the agent may call."
    )
    handoffs: tuple[str, ...] = Field(
        default=(), description="Names of peers this agent may hand off to."
    )
    examples: tuple[str, ...] = Field(
        default=(), description="Example requests this agent should receive (used for routing)."
    )
    output_schema: type[BaseModel] | None = Field(
        default=None, description="Pydantic model the agent's output must validate against."
    )
    max_message_pairs: int = Field(
        default=10, gt=0, description="Most recent user/agent exchanges the agent sees."
    )
    max_context_tokens: int = Field(
        default=8_000, gt=0, description="Token budget for the agent's view of the conversation."
    )
    timeout_s: float | None = Field(
        default=DEFAULT_TIMEOUT_S,
        gt=0,
        description="Seconds one model or tool call may take before it is abandoned (a model "
        "call is then retried); None: only the run's deadline bounds it.",
    )
    max_attempts: int = Field(
        default=3, ge=1, le=10, description="Attempts per model call on transient failures."
    )
    fallback_models: tuple[str, ...] = Field(
        default=(), description="Models tried, in order, when the agent's own model fails."
    )
    rate_limits: dict[str, RateLimit] | None = Field(
        default=None,
        description="Requests and tokens per minute by model string, for this agent's calls "
        "(over the process's `configure_rate_limits`; a run's `Context.rate_limits` wins). "
        "Callers with the same limit for a model share one budget, across processes with Redis.",
    )
    budget: Budget | None = Field(
        default=None, description="Limit on this agent's spend over a session."
    )
    min_confidence: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Least confidence (0 to 1) the agent's structured answer must report in its "
        "`confidence` field to be handed on; below it the answer goes down the fallback chain "
        "(end reason 'low_confidence' when nothing stands in). None: not checked.",
    )
    convergence: Convergence | None = Field(
        default=None,
        description="How this agent's repetitions are detected in a pattern that can cycle "
        "(supervisor, swarm, events); None: the graph's (`build_*_graph(convergence=...)`).",
    )
    middleware: tuple[AgentMiddleware[Any, Any, Any], ...] = Field(
        default=(),
        description="LangChain AgentMiddleware for this agent, outside Switchyard's guardrails "
        "(first is outermost).",
    )
    default_middleware: bool = Field(
        default=True,
        description="Switchyard's guardrails (switchyard.nodes.chain.default_middleware) inside "
        "`middleware`; False leaves exactly `middleware`.",
    )
    input_guardrails: tuple[InstanceOf[Guardrail], ...] = Field(
        default=(),
        description="Checks of the user's input before this agent's model sees it "
        "(switchyard.InputGuardrail, prompt_injection(), personal_data(...), ...); a tripwire "
        "ends the run with end reason 'guardrail_tripped'.",
    )
    output_guardrails: tuple[InstanceOf[Guardrail], ...] = Field(
        default=(),
        description="Checks of this agent's output (its answer, or the task it hands on) before "
        "it is handed on or returned; a tripwire ends the run with 'guardrail_tripped'.",
    )
    memory: MemoryPolicy = Field(
        default_factory=MemoryPolicy,
        description="Summarised memory of the turns this agent's window drops (a running "
        "summary and key facts, switchyard.MemoryPolicy); False: they are forgotten.",
    )
    graph: Any = Field(
        default=None,
        description="A compiled LangGraph graph that does this agent's work instead of a model "
        "(e.g. from langchain.agents.create_agent); it is sent {'messages': [...]}.",
    )

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not _SNAKE_CASE.match(value):
            raise ValueError(
                f"agent name {value!r} must be snake_case: a lowercase letter, then lowercase "
                "letters, digits or underscores (at most 64 characters)"
            )
        return value

    @field_validator("middleware", mode="before")
    @classmethod
    def _middleware(cls, value: Any) -> Any:
        return _instances(
            value,
            AgentMiddleware,
            "middleware must be LangChain AgentMiddleware instances",
            "subclass langchain.agents.middleware.AgentMiddleware",
        )

    @field_validator("input_guardrails", "output_guardrails", mode="before")
    @classmethod
    def _guardrails(cls, value: Any) -> Any:
        return _instances(
            value,
            Guardrail,
            "guardrails must be InputGuardrail / OutputGuardrail instances",
            "wrap a function with switchyard.input_guardrail or output_guardrail",
        )

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        return MemoryPolicy(enabled=value) if isinstance(value, bool) else value

    @field_validator("description")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("description must not be empty; routers and handoffs rely on it")
        return value.strip()

    @model_validator(mode="after")
    def _graph_agent(self) -> AgentSpec:
        if self.graph is None:
            return self
        if not isinstance(self.graph, Pregel):
            raise ValueError(
                f"graph must be a compiled LangGraph graph (StateGraph(...).compile() or "
                f"create_agent(...)), got {type(self.graph).__name__}"
            )
        accepts = self.graph.get_input_jsonschema().get("properties", {})
        if "messages" not in accepts:
            raise ValueError(
                "the graph must accept {'messages': [...]} as input (its input keys are: "
                f"{', '.join(accepts) or 'none'})"
            )
        unused = [name for name in _MODEL_FIELDS if getattr(self, name) != _DEFAULTS[name]]
        if unused:
            raise ValueError(
                f"{', '.join(unused)} {'configure' if len(unused) > 1 else 'configures'} a model, "
                "but this agent's work is done by its graph: set it on the graph's own model "
                "(or middleware) instead"
            )
        return self

    @property
    def routing_text(self) -> str:
        """The text a classifier learns this agent from: its name, description and examples."""
        return " ".join([self.name.replace("_", " "), self.description, *self.examples])


_MODEL_FIELDS = (
    "system_prompt",
    "model",
    "temperature",
    "max_tokens",
    "tools",
    "fallback_models",
    "rate_limits",
    "output_schema",
    "middleware",
    "input_guardrails",
    "output_guardrails",
)
"""Fields that configure the agent's model, so mean nothing for an agent run by a graph."""

_DEFAULTS = {name: AgentSpec.model_fields[name].default for name in _MODEL_FIELDS}


Agent = AgentSpec | Pregel[Any, Any, Any, Any]
"""What a pattern accepts as an agent: an `AgentSpec`, or any compiled graph (named after it)."""


def as_agent(agent: Agent) -> AgentSpec:
    """An agent as an `AgentSpec`: a compiled graph becomes one named after the graph.

    Raises:
        AgentConfigError: A graph without a snake_case name (compile it with `name=...`), or
            something that is neither an `AgentSpec` nor a compiled graph.
    """
    if isinstance(agent, AgentSpec):
        return agent
    if isinstance(agent, Pregel):
        name = agent.name or ""
        if not _SNAKE_CASE.match(name):
            raise AgentConfigError(
                f"a graph used as an agent needs a snake_case name, got {name!r}: compile it "
                "with name='...' (create_agent(..., name='...')), or wrap it in "
                "AgentSpec(name=..., description=..., graph=graph)"
            )
        return AgentSpec(name=name, description=f"The {name} agent.", graph=agent)
    raise AgentConfigError(
        f"expected AgentSpec instances or compiled graphs, got {type(agent).__name__}: build "
        "agents with AgentSpec(...) or make_agent(...)"
    )


def as_agents(agents: Sequence[Agent]) -> list[AgentSpec]:
    """`as_agent` of each agent, in order."""
    return [as_agent(agent) for agent in agents]


def make_agent(**fields: Any) -> AgentSpec:
    """Build an `AgentSpec`, turning pydantic's error into one `AgentConfigError` line.

    Raises:
        AgentConfigError: A field is missing or invalid; the message names the field.
    """
    try:
        return AgentSpec(**fields)
    except ValidationError as exc:
        raise config_error(fields.get("name", "<unnamed>"), exc) from None


def config_error(name: Any, error: ValidationError) -> AgentConfigError:
    """Pydantic's validation error of agent `name` as one `AgentConfigError` line."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}" for err in error.errors()
    )
    return AgentConfigError(f"agent {name!r}: {problems}")


def check_agents(
    agents: Sequence[AgentSpec],
    *,
    default_agent: str | None = None,
    reserved: Iterable[str] = (),
) -> dict[str, AgentSpec]:
    """Validate a set of agents for one graph and index them by name.

    Args:
        agents: The agents the graph will contain.
        default_agent: The agent that answers when routing is unsure, if the pattern has one.
        reserved: Node names the pattern uses itself, which agents may not take.

    Returns:
        The agents keyed by name, in the order given.

    Raises:
        AgentConfigError: Empty list, duplicate or reserved names, an unknown default agent, or a
            handoff to an agent that is not in the list.
    """
    if not agents:
        raise AgentConfigError("no agents given: a graph needs at least one AgentSpec")
    for spec in agents:
        if not isinstance(spec, AgentSpec):
            raise AgentConfigError(
                f"expected AgentSpec instances, got {type(spec).__name__}: build agents with "
                "AgentSpec(...) or make_agent(...)"
            )
    counts = Counter(spec.name for spec in agents)
    duplicates = sorted(name for name, n in counts.items() if n > 1)
    if duplicates:
        raise AgentConfigError(
            f"duplicate agent names: {', '.join(duplicates)}; names must be unique"
        )
    clashes = sorted(set(counts) & set(reserved))
    if clashes:
        names = ", ".join(repr(name) for name in clashes)
        raise AgentConfigError(
            f"{'names' if len(clashes) > 1 else 'name'} {names} "
            f"{'are' if len(clashes) > 1 else 'is'} reserved by this pattern; rename the agent"
        )
    by_name = {spec.name: spec for spec in agents}
    if default_agent is not None and default_agent not in by_name:
        raise AgentConfigError(
            f"default agent {default_agent!r} is not one of the agents: {', '.join(by_name)}"
        )
    for spec in agents:
        unknown = [peer for peer in spec.handoffs if peer not in by_name]
        if unknown:
            raise AgentConfigError(
                f"agent {spec.name!r} hands off to unknown agents: {', '.join(unknown)}; "
                f"known agents: {', '.join(by_name)}"
            )
        if spec.name in spec.handoffs:
            raise AgentConfigError(f"agent {spec.name!r} cannot hand off to itself")
        _check_models(spec)
    return by_name


def _check_models(spec: AgentSpec) -> None:
    """Model strings must parse, and a dollar budget needs a price for every model it may use."""
    models = [m for m in (spec.model, *spec.fallback_models) if m is not None]
    if spec.budget is not None and spec.budget.downgrade_model:
        models.append(spec.budget.downgrade_model)
    if spec.memory.model:  # the summariser is charged to the agent like its own model
        models.append(spec.memory.model)
    for model in models:
        if is_registered(model):
            continue
        try:
            split_model(model)
        except ModelConfigError as exc:
            raise AgentConfigError(f"agent {spec.name!r}: {exc}") from None
    if spec.budget is not None and spec.budget.max_usd is not None:
        unpriced = [m for m in models if not has_price(m)]
        if unpriced:
            raise AgentConfigError(
                f"agent {spec.name!r} has a dollar budget but no price is known for "
                f"{', '.join(unpriced)}; register one with switchyard.core.pricing.set_price or "
                "use a token budget"
            )
