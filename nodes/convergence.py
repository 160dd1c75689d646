"""`ConvergenceGuard`: the middleware that notices an agent repeating itself.

See `switchyard.guardrails.convergence` for what counts and what happens then. The patterns
that can cycle (supervisor, swarm, events) put it on each of their agents, outside the agent's
own middleware and the default guardrails, so it sees the answer the agent finally gave (after
its retries and fallback models), which is charged before the guard stops the run. A manager
that re-plans is covered where re-asks happen (`SchemaReask`, which gives up on an answer
repeated unchanged).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from pydantic import BaseModel

from switchyard.core.redact import masked_logger
from switchyard.guardrails.convergence import (
    ConvergedError,
    Convergence,
    Kind,
    NoProgressError,
    Similarity,
    Step,
    ngram_similarity,
    normalise,
)
from switchyard.guardrails.guard import ResponseCheck
from switchyard.guardrails.scope import current_scope
from switchyard.nodes.handoff import HANDOFF_PREFIX
from switchyard.state.agents import AgentSpec
from switchyard.state.context import current_context

logger = masked_logger(__name__)

DEFAULT_CONVERGENCE = Convergence()
"""What every cyclic pattern detects unless told otherwise: the first repetition, 3-gram
near-duplicates at 0.92."""


def given(messages: Sequence[AnyMessage]) -> str:
    """What started the agent's current step: the newest message from outside its own tool loop.

    For a worker, its task; for a supervisor, the report it just received (a handoff's result);
    for an event handler, the event (without its ids and time, see `normalise`). The results of
    the agent's own tools are skipped: two different tasks whose tools both answered "ok" are not
    the same input.
    """
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return normalise(message.text)
        if isinstance(message, ToolMessage) and (message.name or "").startswith(HANDOFF_PREFIX):
            return normalise(message.text)
    return ""


def done(response: ModelResponse[Any]) -> tuple[Kind, str, str] | None:
    """What the agent did: ("handoff", what, shown) or ("answer", what, shown).

    None for a call of an ordinary tool (a step of its work, not a result).
    """
    message = next((m for m in response.result if isinstance(m, AIMessage)), None)
    if message is None:
        return None
    structured = response.structured_response
    if isinstance(structured, BaseModel):  # (a schema answered by a tool call included)
        shown = structured.model_dump_json()
        return "answer", normalise(shown), shown
    calls = message.tool_calls
    handoffs = [c for c in calls if c["name"].startswith(HANDOFF_PREFIX)]
    if handoffs:
        what = json.dumps([[c["name"], c["args"]] for c in handoffs], sort_keys=True)
        return "handoff", normalise(what), what
    if calls:
        return None
    return "answer", normalise(message.text), message.text


def embedding_similarity(*, load: bool) -> Similarity | None:
    """Cosine similarity of sentence embeddings, or None when the model is not at hand.

    Not at hand: not loaded yet (unless `load`), or the semantic extra is missing.
    """
    from switchyard.nodes import embedder as semantic  # imported only here: it pulls numpy

    if not load and not semantic.loaded():
        return None
    try:
        embedder = semantic.Embedder()
        embedder.encode(["probe"])
    except semantic.SemanticUnavailableError:
        return None

    @functools.lru_cache(maxsize=1024)  # each step's text is compared with every later one
    def vector(text: str) -> Any:
        return embedder.encode([text])[0]

    def similar(left: str, right: str) -> float:
        return float(vector(left) @ vector(right))

    return similar


def similarity_for(config: Convergence) -> Similarity:
    """The near-duplicate measure `config.method` names (3-grams when no embedding is at hand)."""
    if config.method == "ngram" or config.similarity is None:
        return ngram_similarity
    return embedding_similarity(load=config.method == "embedding") or ngram_similarity


class ConvergenceGuard(ResponseCheck):
    """Ends the run when its agent repeats an answer (`converged`) or a handoff (`no_progress`).

    Args:
        agent: The agent it watches.
        config: What counts as a repetition (`Context.convergence_repeats` overrides `repeats`).
    """

    def __init__(self, agent: str, config: Convergence = DEFAULT_CONVERGENCE) -> None:
        super().__init__()
        self.agent = agent
        self.config = config
        self._similarity: Similarity | None = None

    @property
    def name(self) -> str:
        """One guard per agent: the chain may hold several, so each has its own name."""
        return f"ConvergenceGuard[{self.agent}]"

    def check(self, request: ModelRequest[Any], response: ModelResponse[Any]) -> None:
        """Note what the agent did; stop the run when it repeats an earlier call."""
        scope = current_scope()
        action = done(response)
        if scope is None or action is None:
            return
        kind, what, shown = action
        repeats = current_context().convergence_repeats or self.config.repeats
        if self._similarity is None:
            self._similarity = similarity_for(self.config)
        step = Step(self.agent, kind, given(request.messages), what)
        seen = scope.convergence.repeated(
            step, threshold=self.config.similarity, similarity=self._similarity
        )
        if seen + 1 < repeats:
            return
        times = f"{seen + 1} times from the same input"
        if kind == "handoff":
            logger.warning("agent %s is making no progress: the same handoff %s", self.agent, times)
            raise NoProgressError(
                f"agent {self.agent!r} made the same handoff {times} ({shown}): no progress "
                f"(Convergence.repeats={repeats})"
            )
        logger.info("agent %s converged: the same answer %s", self.agent, times)
        output = response.structured_response
        raise ConvergedError(self.agent, shown, f"the same answer {times}", output)


def convergence_guard(
    spec: AgentSpec, graph: Convergence | None
) -> list[AgentMiddleware[Any, Any, Any]]:
    """The guard for `spec` in a cyclic pattern: its own setting, else the graph's; [] when off."""
    config = spec.convergence or graph
    if config is None or not config.enabled:
        return []
    return [ConvergenceGuard(spec.name, config)]
