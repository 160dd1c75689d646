"""Confidence at handoffs: an agent's answer that it is not sure of is not handed on as if it were.

An agent whose output schema has a `confidence` field (a number from 0 to 1) reports how sure it
is of each answer. `ConfidenceGate` reads it before the answer leaves the agent: below the
threshold the answer is not handed on (to the next stage, the supervisor, the merger, the user)
but raised as `LowConfidenceError`, which goes down the pattern's fallback chain like a failure:
the fallback agent (or the router's default agent) answers instead, else a person is asked
(`Context.escalate_to_human`; they see the answer and its confidence, and their answer stands),
else the run ends with `end_reason="low_confidence"` and a dead letter.

The threshold is set per agent (`AgentSpec.min_confidence`), for every agent of a graph
(`build_*_graph(middleware=[ConfidenceGate(0.6)])`), or for a run (`Context.min_confidence`,
which overrides both). Answers without a confidence pass: an agent that does not report one is
not assumed unsure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain.agents.middleware import ModelRequest, ModelResponse
from pydantic import BaseModel

from switchyard.core.errors import SwitchyardError
from switchyard.guardrails.guard import ResponseCheck

CONFIDENCE_FIELD = "confidence"
"""The output schema field an agent reports its confidence in (0 to 1)."""

RunThreshold = Callable[[], float | None]
"""Reads the run's override of every agent's threshold (`Context.min_confidence`)."""


class LowConfidenceError(SwitchyardError):
    """An agent's answer reported a confidence below its threshold; it was not handed on.

    Attributes:
        confidence: The confidence the agent reported.
        threshold: The least it needed.
        answer: The answer it gave, as JSON: kept out of the message (which goes where the
            answer would have: a manager's synthesis, a merger, the run's result) and shown
            to the person asked instead of the agent.
    """

    def __init__(self, agent: str | None, confidence: float, threshold: float, answer: str) -> None:
        who = f"agent {agent!r}" if agent else "the agent"
        super().__init__(
            f"{who} reported confidence {confidence:.2f}, below its threshold "
            f"{threshold:.2f}; its answer was not handed on"
        )
        self.confidence = confidence
        self.threshold = threshold
        self.answer = answer


def reported_confidence(output: Any) -> float | None:
    """The confidence a structured answer reports, if its schema has a numeric one."""
    if not isinstance(output, BaseModel):
        return None
    value = getattr(output, CONFIDENCE_FIELD, None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _no_override() -> float | None:
    return None


class ConfidenceGate(ResponseCheck):
    """Refuses to pass on a structured answer whose reported confidence is below `threshold`.

    Args:
        threshold: The least confidence an answer must report to be handed on (0 to 1); None:
            only the run's override, when it sets one.
        agent: The agent it guards (named in the error).
        run_threshold: The run's override, read at each call (the default chain passes
            `Context.min_confidence`).

    Raises:
        ValueError: `threshold` outside 0 to 1.
    """

    def __init__(
        self,
        threshold: float | None,
        *,
        agent: str | None = None,
        run_threshold: RunThreshold = _no_override,
    ) -> None:
        super().__init__()
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        self.threshold = threshold
        self.agent = agent
        self.run_threshold = run_threshold

    def check(self, request: ModelRequest[Any], response: ModelResponse[Any]) -> None:
        """Refuse a structured answer whose reported confidence is below the threshold."""
        confidence = reported_confidence(response.structured_response)
        if confidence is None:
            return
        override = self.run_threshold()
        threshold = self.threshold if override is None else override
        if threshold is not None and confidence < threshold:
            output = response.structured_response
            assert isinstance(output, BaseModel)  # a confidence was read from it
            raise LowConfidenceError(self.agent, confidence, threshold, output.model_dump_json())
