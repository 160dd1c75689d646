"""Convergence detection: agents that repeat themselves end the run instead of looping to a limit.

A cycle of agents (a supervisor and its workers, a swarm, event handlers publishing to each
other, a manager re-planning) can go round until `max_rounds`, `max_handoffs` or `max_depth`
stops it, every round a paid model call that changes nothing. Each agent call of such a pattern
is noted in the run's `ConvergenceLog` (kept in the run scope, so parallel branches, `Send`s and
subgraphs of one run share it) as what the agent was given and what it did:

- the same answer to the same input, `repeats` times: the answer is stable. The run ends with
  `end_reason="converged"` and that answer (`ConvergedError` carries it to the pattern);
- the same handoff (target and arguments) from the same input, `repeats` times, or a rejected
  answer given again unchanged when asked to correct it: the agent is making no progress. The run
  goes down the fallback chain (`NoProgressError`: a fallback agent, a person when enabled),
  else ends with `end_reason="no_progress"`.

The same input is the same text after normalising (case, spacing, punctuation, and the ids and
timestamps of an event's envelope). The same answer or handoff is that too or, with `similarity`
set, a near-duplicate: the same numbers, the same negations, and character 3-gram cosine
similarity at or above it (`ngram_similarity`), or a sentence embedding's when one is supplied.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from switchyard.core.errors import SwitchyardError

DEFAULT_CONVERGENCE_REPEATS = 2
"""How often the same thing ends a run unless told otherwise: its first repetition."""

Similarity = Callable[[str, str], float]
"""How alike two texts are, from 0 (nothing shared) to 1 (the same)."""

VOLATILE_KEYS = frozenset(
    {"id", "event_id", "timestamp", "correlation_id", "causation_id", "depth", "call_id"}
)
"""Keys of a JSON payload that differ on every delivery of the same content (event ids, times)
and are left out when inputs are compared."""


class Convergence(BaseModel):
    """How repetition is detected; one per graph (`build_*_graph(convergence=...)`) or per agent.

    Example:
        ```python
        build_supervisor_graph(workers, convergence=Convergence(repeats=3, similarity=None))
        AgentSpec(name="critic", ..., convergence=Convergence(enabled=False))
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="Whether repetition is detected at all.")
    repeats: int = Field(
        default=DEFAULT_CONVERGENCE_REPEATS,
        ge=2,
        description="How often the same answer, or the same handoff, from the same input ends "
        "the run (2: the first repetition).",
    )
    similarity: float | None = Field(
        default=0.92,
        gt=0.0,
        le=1.0,
        description="Texts at least this alike count as the same (near-duplicates); None: "
        "only identical texts, after normalising.",
    )
    method: Literal["auto", "ngram", "embedding"] = Field(
        default="auto",
        description="How near-duplicates are measured: character 3-grams; the sentence "
        "embedding model (the semantic extra); or 'auto', the embedding model when it is "
        "already loaded in the process (by a semantic router), else 3-grams.",
    )


class ConvergedError(SwitchyardError):
    """An agent gave the same answer to the same input again: the answer is stable.

    Not a failure: the pattern ends the run with `end_reason="converged"` and `answer`.

    Attributes:
        agent: The agent that repeated itself.
        answer: Its (repeated) answer, as text.
        output: The answer as the agent gave it (its structured output, if it has a schema).
    """

    def __init__(self, agent: str, answer: str, detail: str, output: Any = None) -> None:
        super().__init__(f"{agent} converged: {detail}")
        self.agent = agent
        self.answer = answer
        self.output = answer if output is None else output


class NoProgressError(SwitchyardError):
    """An agent repeated a handoff, or a rejected answer, without anything changing.

    The fallback chain (a fallback agent, a person) may still get round it; else the run ends
    with `end_reason="no_progress"`.
    """


def normalise(text: str) -> str:
    """`text` for comparison: lower case, words and numbers only; an event without its envelope.

    Punctuation goes (a trailing full stop does not make an answer new); a number's decimal
    point stays (4.5 is not 45). An event payload (`{"event": {...}}`, as a handler sees it)
    loses the keys that differ on every delivery of the same content (`VOLATILE_KEYS`); any other
    JSON is compared whole.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):  # no event
            payload = json.loads(stripped)
            event = payload["event"]
            payload["event"] = {k: v for k, v in event.items() if k not in VOLATILE_KEYS}
            stripped = json.dumps(payload, sort_keys=True)
    words = re.sub(r"(?!(?<=\d)[.,](?=\d))[^\w\s]", " ", stripped.lower())
    return re.sub(r"\s+", " ", words).strip()


def numbers(text: str) -> list[str]:
    """The numbers in `text`, in order: near-duplicates must agree on them (120 is not 150)."""
    return re.findall(r"\d+(?:[.,]\d+)*", text)


NEGATIONS = frozenset({"not", "no", "never", "none", "cannot", "nor", "without"})
"""Words whose presence flips an answer: near-duplicates must agree on them ("approved" is not
"not approved", though their 3-grams are 0.93 alike)."""


def negations(text: str) -> set[str]:
    """The negating words of a normalised `text` (`n't` counts as "not")."""
    words = text.split()
    found = set(words) & NEGATIONS
    if any(word in _NT and after == "t" for word, after in itertools.pairwise(words)):
        found.add("not")  # "don't", normalised to "don t"
    return found


_NT = frozenset(
    word.removesuffix("n't") + "n"
    for word in ("don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "weren't", "couldn't")
) | {"won", "can"}
"""The stems a normalised "n't" follows ("don't" becomes "don t")."""


def _grams(text: str, n: int = 3) -> Counter[str]:
    padded = f" {text} "
    return Counter(padded[i : i + n] for i in range(max(1, len(padded) - n + 1)))


def ngram_similarity(left: str, right: str) -> float:
    """Cosine similarity of the character 3-gram counts of two (normalised) texts.

    Written here rather than taken from a library: it is ten lines, and scikit-learn's
    vectorisers would cost a second of import for a guard that runs on every agent call.
    """
    if left == right:
        return 1.0
    a, b = _grams(left), _grams(right)
    dot = sum(count * b[gram] for gram, count in a.items())
    norm = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norm if norm else 0.0


Kind = Literal["answer", "handoff"]


@dataclass(frozen=True)
class Step:
    """One agent call as the log keeps it: what the agent was given and what it did."""

    agent: str
    kind: Kind
    given: str
    did: str


@dataclass
class ConvergenceLog:
    """The agent calls of one run, for `repeated` (shared by every task of the run; thread-safe)."""

    acts: dict[tuple[str, Kind, str], list[str]] = field(default_factory=dict)
    """What each agent did, by (agent, kind, input): a step is compared with those only."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def repeated(
        self, step: Step, *, threshold: float | None, similarity: Similarity = ngram_similarity
    ) -> int:
        """Note `step`; how many earlier steps of the same agent it repeats (kind, input, act).

        Inputs must be the same after normalising: tasks written from one template, or events
        in one envelope, are alike without being the same. Acts (answers, handoffs) are the same
        when identical after normalising or, with a `threshold`, near-duplicates: the same
        numbers, the same negations and at least `threshold` similar.
        """

        def same(left: str, right: str) -> bool:
            if left == right:
                return True
            if threshold is None or numbers(left) != numbers(right):
                return False
            if negations(left) != negations(right):
                return False
            return similarity(left, right) >= threshold

        with self._lock:
            acts = self.acts.setdefault((step.agent, step.kind, step.given), [])
            earlier = list(acts)
            acts.append(step.did)
        return sum(1 for did in earlier if same(did, step.did))
