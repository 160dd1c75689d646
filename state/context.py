"""The run-time `Context`: per-run settings read by nodes through `Runtime[Context]`.

Studio shows these fields, with their descriptions, as the graph's configuration.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from langgraph.config import get_config
from langgraph.runtime import get_runtime
from pydantic import ValidationError

from switchyard.core.defaults import CONFIDENCE_THRESHOLD, DEADLINE_S
from switchyard.core.errors import ConfigError, ModelConfigError
from switchyard.core.models import split_model
from switchyard.guardrails.budgets import Budget
from switchyard.guardrails.ratelimit import RateLimit, parse_rate_limits


@dataclass(kw_only=True)
class Context:
    """Settings for one run; every pattern accepts it as `context_schema`."""

    model: str | None = field(
        default=None,
        metadata={
            "description": "Model for every agent in this run: 'offline' or 'provider:model' "
            "(e.g. 'openai:gpt-4o-mini'). Empty: each agent's own model, else SWITCHYARD_MODEL, "
            "else the offline model."
        },
    )
    confidence_threshold: float = field(
        default=CONFIDENCE_THRESHOLD,
        metadata={"description": "Routes below this confidence go to the default agent (0 to 1)."},
    )
    recursion_limit: int = field(
        default=25,
        metadata={"description": "Most graph steps one run may take before it is stopped."},
    )
    max_message_pairs: int | None = field(
        default=None,
        metadata={
            "description": "Override of every agent's window: most recent exchanges it sees."
        },
    )
    max_context_tokens: int | None = field(
        default=None,
        metadata={"description": "Override of every agent's window: token budget of its view."},
    )
    max_input_chars: int = field(
        default=100_000,
        metadata={"description": "Longest user message accepted, in characters."},
    )
    max_handoffs: int = field(
        default=8,
        metadata={"description": "Most handoffs between agents in one run (cyclic patterns)."},
    )
    run_budget: Budget | None = field(
        default_factory=lambda: Budget(max_tokens=200_000),
        metadata={"description": "Spend limit of one run (tokens and/or US dollars)."},
    )
    session_budget: Budget | None = field(
        default=None,
        metadata={"description": "Spend limit of the whole session, this run included."},
    )
    rate_limits: dict[str, RateLimit] | None = field(
        default=None,
        metadata={
            "description": "Override of the agents' and the process's rate limits, by model "
            'string: {"openai:gpt-4o-mini": {"rpm": 60, "tpm": 100000}}. A call waits for room '
            "within the deadline, else the run ends with end reason 'rate_limited'. Empty: "
            "each agent's own, else the process's (configure_rate_limits)."
        },
    )
    deadline_s: float | None = field(
        default=DEADLINE_S,
        metadata={
            "description": "Seconds a run may take: model and tool calls still running then are "
            "abandoned and the run ends with end reason 'deadline'. Empty: no deadline."
        },
    )
    timeout_s: float | None = field(
        default=None,
        metadata={
            "description": "Override of every agent's timeout_s: seconds one model or tool call "
            "may take. Empty: each agent's own (60 s unless it sets another)."
        },
    )
    max_retries: int | None = field(
        default=10,
        metadata={
            "description": "Most retries of model calls in one run, all agents (and fan-out "
            "shards) together, on top of each agent's own max_attempts; spent, the run ends "
            "with end reason 'retry_budget_exhausted'. Empty: no run-wide limit."
        },
    )
    min_confidence: float | None = field(
        default=None,
        metadata={
            "description": "Override of every agent's min_confidence: structured answers "
            "reporting a lower `confidence` (0 to 1) are not handed on but go down the fallback "
            "chain (a person when escalate_to_human is on). Empty: each agent's own."
        },
    )
    convergence_repeats: int | None = field(
        default=None,
        metadata={
            "description": "Override of every agent's Convergence.repeats: how often the same "
            "answer (end reason 'converged') or the same handoff ('no_progress') from the same "
            "input ends a run of a pattern that can cycle (at least 2). Empty: the graph's."
        },
    )
    durability: Literal["sync", "async", "exit"] = field(
        default="sync",
        metadata={
            "description": "When checkpoints are written: 'sync' before the next step starts "
            "(crash-safe resume and idempotent side effects), 'async' alongside it, 'exit' "
            "only at the end."
        },
    )
    escalate_to_human: bool = field(
        default=False,
        metadata={
            "description": "Pause for a person (interrupt) when an agent's fallback chain is "
            "exhausted, instead of ending the run as failed."
        },
    )
    escalation_threshold: float | None = field(
        default=None,
        metadata={
            "description": "Routes below this confidence pause for a person to choose the agent "
            "(must be below confidence_threshold). Empty: never."
        },
    )
    guardrail_injection: bool = field(
        default=False,
        metadata={
            "description": "Check the user's input for prompt-injection text before any agent's "
            "model sees it; found, the run ends with end reason 'guardrail_tripped'."
        },
    )
    guardrail_personal_data: Literal["block", "redact", "mask", "hash"] | None = field(
        default=None,
        metadata={
            "description": "Personal data (emails, cards, phones, IPs, national id numbers) in "
            "the user's input and the agents' outputs: 'block' ends the run with "
            "'guardrail_tripped'; 'redact', 'mask' or 'hash' rewrite it. Empty: not checked."
        },
    )
    guardrail_max_chars: int | None = field(
        default=None,
        metadata={
            "description": "Longest user input, in characters, any agent's model may be sent; "
            "longer ends the run with 'guardrail_tripped'. Empty: not checked."
        },
    )

    memory: bool | None = field(
        default=None,
        metadata={
            "description": "Override of every agent's summarised memory (AgentSpec.memory): "
            "true summarises the turns an agent's window drops, false forgets them. Empty: "
            "each agent's own (on unless it turns it off)."
        },
    )
    memory_model: str | None = field(
        default=None,
        metadata={
            "description": "Model that writes every agent's memory summary ('offline' or "
            "'provider:model'). Empty: each agent's memory.model, else the agent's own model."
        },
    )

    def __post_init__(self) -> None:
        # A context sent as JSON (the Agent Server, Studio, langgraph-sdk) arrives as a dict, and
        # LangGraph builds `Context(**fields)`: its budgets are dicts until validated here.
        for name in ("run_budget", "session_budget"):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _budget(name, value))
        if self.rate_limits is not None:
            self.rate_limits = parse_rate_limits(self.rate_limits, where="rate_limits")
        _check_field_types(self)
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ConfigError(
                f"confidence_threshold must be between 0 and 1, got {self.confidence_threshold}"
            )
        for name in ("recursion_limit", "max_input_chars", "max_handoffs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ConfigError(f"deadline_s must be positive when set, got {self.deadline_s}")
        if self.escalation_threshold is not None and not (
            0.0 <= self.escalation_threshold < self.confidence_threshold
        ):
            raise ConfigError(
                "escalation_threshold must be at least 0 and below confidence_threshold "
                f"({self.confidence_threshold}), got {self.escalation_threshold}"
            )
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(
                f"min_confidence must be between 0 and 1 when set, got {self.min_confidence}"
            )
        if self.convergence_repeats is not None and self.convergence_repeats < 2:
            raise ConfigError(
                "convergence_repeats must be at least 2 when set (1 would stop every run at its "
                f"first answer), got {self.convergence_repeats}"
            )
        if self.guardrail_max_chars is not None and self.guardrail_max_chars <= 0:
            raise ConfigError(
                f"guardrail_max_chars must be positive when set, got {self.guardrail_max_chars}"
            )
        if self.memory_model is not None:
            try:
                split_model(self.memory_model)
            except ModelConfigError as exc:
                raise ConfigError(f"memory_model: {exc}") from None
        if self.max_retries is not None and self.max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more when set, got {self.max_retries}")
        for name in ("max_message_pairs", "max_context_tokens", "timeout_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive when set, got {value}")


def _budget(name: str, value: dict[str, Any]) -> Budget:
    """A budget sent as a dict, validated; one line naming the first bad entry otherwise."""
    try:
        return Budget.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join([name, *(str(part) for part in error["loc"])])
        raise ConfigError(f"{where}: {error['msg']}, got {error.get('input')!r}") from None


_FieldRule = tuple[str, tuple[object, ...] | None, type | None, bool]
_field_rules_of: dict[type[Context], tuple[_FieldRule, ...]] = {}


def _field_rules(schema: type[Context]) -> tuple[_FieldRule, ...]:
    """What each field of a `Context` (or of a subclass) accepts, read from its type hint.

    Per field: the `Literal` values allowed (None: not a `Literal`), the scalar type required
    (`float`, `int` or `bool`; None: not checked here) and whether None is allowed. Read from the
    hints, so a new field is checked without being listed.
    """
    known = _field_rules_of.get(schema)
    if known is not None:
        return known
    hints = get_type_hints(schema)
    rules: list[_FieldRule] = []
    for spec in fields(schema):
        hint = hints[spec.name]
        args = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
        optional = type(None) in args
        members = [arg for arg in args if arg is not type(None)]
        choices: tuple[object, ...] | None = None
        scalar: type | None = None
        if members and all(get_origin(arg) is Literal for arg in members):
            choices = tuple(value for arg in members for value in get_args(arg))
        elif members == [bool]:
            scalar = bool
        elif members and set(members) <= {int, float}:
            scalar = float if float in members else int
        rules.append((spec.name, choices, scalar, optional))
    _field_rules_of[schema] = tuple(rules)
    return _field_rules_of[schema]


def _check_field_types(context: Context) -> None:
    """Refuse a value outside its field's `Literal`, or of the wrong scalar type, in one line.

    A dataclass does not check its types at run time, and a context often arrives as JSON (the
    Agent Server, Studio): `durability="never"` or `max_handoffs="5"` must fail here, not deep
    inside a run.
    """
    for name, choices, scalar, optional in _field_rules(type(context)):
        value = getattr(context, name)
        if value is None and optional:
            continue
        if choices is not None and value not in choices:
            allowed = ", ".join(repr(choice) for choice in choices)
            raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
        if scalar is bool and not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        if scalar in (int, float):
            numeric = int if scalar is int else (int, float)
            if isinstance(value, bool) or not isinstance(value, numeric):
                kind = "a whole number" if scalar is int else "a number"
                raise ConfigError(f"{name} must be {kind}, got {value!r}")
            if math.isnan(value):
                raise ConfigError(f"{name} must be a number, got {value!r}")


def current_context() -> Context:
    """The `Context` of the graph run executing this code; the defaults outside a run.

    The one way nodes, middleware and tools read the run's settings. A run started without a
    context (or with `None`) gets the defaults, as does code called outside a graph (a unit test).
    """
    try:
        runtime = get_runtime(Context)
    except RuntimeError:  # not inside a runnable
        return Context()
    # Inside a runnable that is no graph run (an agent called directly with a config), the
    # config carries no runtime.
    context = getattr(runtime, "context", None)
    return context if isinstance(context, Context) else Context()


def steps_after_first_node() -> int | None:
    """Graph steps a run may take after its first node, from the run's recursion limit.

    The first node runs two steps after the run's input, and the last step allowed is the input's
    step plus the limit; None outside a graph run.
    """
    try:
        limit = get_config().get("recursion_limit")
    except RuntimeError:
        return None
    return int(limit) - 2 if isinstance(limit, int) else None
