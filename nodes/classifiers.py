"""Classifiers: pick the agent for a request, with a confidence in [0, 1] and a reason.

Every classifier has the same small interface (`Classifier`), so the router does not care whether
the decision came from TF-IDF, embeddings or an LLM.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field, ValidationError, create_model
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.pipeline import make_union
from sklearn.preprocessing import normalize

from state.agents import AgentSpec, check_agents
from state.usage import UsageLedger, usage_entry
from switchyard.models import default_model, load_chat_model
from switchyard.pricing import cost_usd

_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Decision:
    """A classifier's answer.

    Attributes:
        agent: Name of the chosen agent.
        confidence: How likely the choice is right, in [0, 1].
        reason: One line a person can read.
        usage: Model usage spent deciding (LLM classifiers only), as a ledger update.
    """

    agent: str
    confidence: float
    reason: str
    usage: UsageLedger = field(default_factory=dict)


@runtime_checkable
class Classifier(Protocol):
    """Anything that maps a request to one of a fixed set of agents."""

    name: str
    agents: tuple[str, ...]

    def classify(self, text: str, *, model: str | None = None) -> Decision:
        """Choose an agent for `text`; `model` overrides the model of LLM classifiers."""
        ...

    async def aclassify(self, text: str, *, model: str | None = None) -> Decision:
        """Async form of `classify`."""
        ...


class LexicalClassifier:
    """TF-IDF over each agent's name, description and example utterances (scikit-learn).

    Each agent is scored by the cosine similarity of the request to the best of its documents
    (description or example) blended with its centroid. Confidence combines how strong the best
    match is with how far it leads the runner-up, so an off-topic request (no shared words) scores
    0 and a request that fits two agents equally scores low. Deterministic.

    Example:
        ```python
        classifier = LexicalClassifier(agents)
        classifier.classify("I need a refund").agent  # "support"
        ```
    """

    name = "lexical"

    def __init__(self, agents: Sequence[AgentSpec], *, saturation: float = 0.45) -> None:
        """Fit the vocabulary on the agents' texts.

        Args:
            agents: The agents to choose between.
            saturation: Best-match similarity at which confidence stops growing with similarity.
        """
        check_agents(agents)
        self.agents = tuple(spec.name for spec in agents)
        self.saturation = saturation
        documents: list[str] = []
        owners: list[int] = []
        for index, spec in enumerate(agents):
            for text in (f"{spec.name.replace('_', ' ')} {spec.description}", *spec.examples):
                documents.append(text)
                owners.append(index)
        # Words (without stop words, so "what is" matches nothing) plus character n-grams
        # inside words, so "tests" still matches "test" and "billed" matches "billing".
        self._vectorizer = make_union(
            TfidfVectorizer(
                sublinear_tf=True, ngram_range=(1, 2), strip_accents="unicode", stop_words="english"
            ),
            TfidfVectorizer(
                sublinear_tf=True,
                analyzer="char_wb",
                ngram_range=(4, 5),
                strip_accents="unicode",
                preprocessor=_content_words,
            ),
        )
        matrix = normalize(self._vectorizer.fit_transform(documents))
        self._documents = matrix
        self._owners = np.asarray(owners)
        centroids = np.vstack(
            [np.asarray(matrix[self._owners == i].mean(axis=0)) for i in range(len(agents))]
        )
        self._centroids = normalize(centroids)

    def scores(self, text: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Similarity of `text` to each agent, in the order of `self.agents`."""
        query = normalize(self._vectorizer.transform([text]))
        per_document = (self._documents @ query.T).toarray().ravel()
        best = np.zeros(len(self.agents))
        np.maximum.at(best, self._owners, per_document)
        centroid = np.asarray(self._centroids @ query.T.toarray()).ravel()
        result: np.ndarray[Any, np.dtype[np.float64]] = 0.7 * best + 0.3 * centroid
        return result

    def classify(self, text: str, *, model: str | None = None) -> Decision:
        """Choose the agent whose texts `text` resembles most."""
        scores = self.scores(text)
        order = np.argsort(-scores, kind="stable")
        top = float(scores[order[0]])
        second = float(scores[order[1]]) if len(order) > 1 else 0.0
        if top <= 0.0:
            return Decision(self.agents[0], 0.0, "no words in common with any agent")
        strength = min(1.0, top / self.saturation)
        lead = (top - second) / top
        confidence = round(float(np.clip(strength * (0.4 + 0.6 * lead), 0.0, 1.0)), 4)
        agent = self.agents[int(order[0])]
        runner_up = self.agents[int(order[1])] if len(order) > 1 else "none"
        return Decision(
            agent,
            confidence,
            f"closest match {agent} (similarity {top:.2f}; runner-up {runner_up} {second:.2f})",
        )

    async def aclassify(self, text: str, *, model: str | None = None) -> Decision:
        """Same as `classify` (the work is CPU-bound and sub-millisecond)."""
        return self.classify(text, model=model)


class LLMClassifier:
    """Asks a chat model, through structured output, which agent should answer.

    The model sees every agent's name, description and examples and must return one of the agent
    names (the schema's `Literal` enforces it), a confidence and a reason. Its token usage is
    reported in the decision so routing cost shows in the ledger.
    """

    name = "llm"

    def __init__(self, agents: Sequence[AgentSpec], *, model: str | None = None) -> None:
        """Prepare the prompt and the output schema.

        Args:
            agents: The agents to choose between.
            model: Model string; `None` uses the run's model, else the process default.
        """
        check_agents(agents)
        self.agents = tuple(spec.name for spec in agents)
        self.model = model
        self._schema = _route_schema(self.agents)
        lines = [
            "You route each user request to exactly one agent. Agents:",
            *(
                f"- {spec.name}: {spec.description}"
                + (f" Examples: {'; '.join(spec.examples[:5])}" if spec.examples else "")
                for spec in agents
            ),
            "Answer with the agent's name, your confidence from 0 to 1 that it is the right one, "
            "and a one-sentence reason. Use a low confidence when no agent fits.",
        ]
        self._system = SystemMessage("\n".join(lines))

    def _prepare(self, model: str | None) -> tuple[str, Any]:
        model_name = model or self.model or default_model()
        runnable = load_chat_model(model_name, temperature=0).with_structured_output(
            self._schema, include_raw=True
        )
        return model_name, runnable

    def _decide(self, model_name: str, output: dict[str, Any], started: float) -> Decision:
        latency = (time.perf_counter() - started) * 1000
        raw = output.get("raw")
        tokens = getattr(raw, "usage_metadata", None) or {}
        input_tokens = int(tokens.get("input_tokens", 0))
        output_tokens = int(tokens.get("output_tokens", 0))
        usage = usage_entry(
            "router",
            model_name,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=latency,
            cost_usd=cost_usd(model_name, input_tokens, output_tokens) or 0.0,
        )
        parsed = output.get("parsed")
        if parsed is None:
            error = _one_line(output.get("parsing_error"))
            return Decision(self.agents[0], 0.0, f"model gave no valid route: {error}", usage)
        return Decision(parsed.agent, float(parsed.confidence), parsed.reason, usage)

    def classify(self, text: str, *, model: str | None = None) -> Decision:
        """Ask the model to choose an agent for `text`."""
        model_name, runnable = self._prepare(model)
        started = time.perf_counter()
        output = runnable.invoke([self._system, HumanMessage(text)])
        return self._decide(model_name, output, started)

    async def aclassify(self, text: str, *, model: str | None = None) -> Decision:
        """Async form of `classify`."""
        model_name, runnable = self._prepare(model)
        started = time.perf_counter()
        output = await runnable.ainvoke([self._system, HumanMessage(text)])
        return self._decide(model_name, output, started)


def _one_line(error: object) -> str:
    """A parsing error as one readable line (a `Decision.reason` is shown as one line)."""
    if error is None:  # the model answered in text instead of calling the schema's tool
        return "no structured answer"
    if isinstance(error, ValidationError) and error.errors():
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _content_words(text: str) -> str:
    """Lowercased text without English stop words (for the character n-gram analyzer)."""
    return " ".join(w for w in _TOKEN.findall(text.lower()) if w not in ENGLISH_STOP_WORDS)


def _route_schema(agents: tuple[str, ...]) -> type[BaseModel]:
    """A pydantic model whose `agent` field only accepts the given names."""
    names: Any = Literal[agents]
    return create_model(
        "RouteChoice",
        __doc__="The agent that should answer the request.",
        agent=(names, Field(description="Name of the agent that should answer.")),
        confidence=(float, Field(ge=0.0, le=1.0, description="Probability the choice is right.")),
        reason=(str, Field(description="One sentence explaining the choice.")),
    )


def default_classifier(agents: Sequence[AgentSpec]) -> Classifier:
    """The classifier a router uses when none is given: lexical (TF-IDF)."""
    return LexicalClassifier(agents)
