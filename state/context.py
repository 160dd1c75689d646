"""The run-time `Context`: per-run settings read by nodes through `Runtime[Context]`.

Studio shows these fields, with their descriptions, as the graph's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
        default=0.35,
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

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(
                f"confidence_threshold must be between 0 and 1, got {self.confidence_threshold}"
            )
        for name in ("recursion_limit", "max_input_chars", "max_handoffs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("max_message_pairs", "max_context_tokens"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive when set, got {value}")
