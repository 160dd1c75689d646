"""Fitted classifiers on disk: a classifier read from the cache decides exactly as a fresh one,
a fit gives the numbers scikit-learn gives, bad entries are refitted, and a process that reads
the cache routes without importing scikit-learn or scipy.

Tests marked `needs_semantic` skip without the semantic extra (and fail then under CI=true).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_union
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

from switchyard.core.loading import LoadEvent, add_listener
from switchyard.eval.router import build_agents, load_dataset
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.nodes import fitted
from switchyard.nodes.classifiers import (
    LINEAR_NGRAMS,
    SIMILARITY_NGRAMS,
    LexicalClassifier,
    agent_documents,
)
from switchyard.nodes.fitted import fit_key, pack_strings, unpack_strings
from switchyard.state.agents import AgentSpec

needs_semantic = pytest.mark.usefixtures("semantic_extra")

FIXTURES = Path(__file__).parent.parent / "fixtures"
AGENT_SET = build_agents(load_dataset(FIXTURES / "routing_train.jsonl", "domain"), oos_label="oos")
FIT = "router classifier (fitting once)"
READ = "router classifier (from cache)"
HEADS = ["linear", "similarity"]


def _requests() -> list[str]:
    """A few hundred requests: the fixtures' texts, their halves, pairs, shouting, and noise."""
    texts = [
        json.loads(line)["text"]
        for path in sorted(FIXTURES.glob("routing_*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    return [
        *texts,
        *(text[: len(text) // 2] for text in texts),
        *(f"{first} and {second}" for first, second in zip(texts, texts[7:], strict=False)),
        *(text.upper() for text in texts),
        *["", "???", "xqzv blorp", "the and of", "Café crème naïve", "東京へ行く", "a" * 300],
    ]


REQUESTS = _requests()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder of this test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SWITCHYARD_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def loads() -> Iterator[list[str]]:
    """The fits and cache reads that start while the test runs, in order."""
    seen: list[str] = []

    def record(event: LoadEvent) -> None:
        if event.seconds is None and event.what in (FIT, READ):
            seen.append(event.what)

    remove = add_listener(record)
    yield seen
    remove()


def own(agents: Sequence[AgentSpec], tmp_path: Path) -> list[AgentSpec]:
    """`agents` with an example naming this test, so the first classifier built for them fits.

    For the semantic tests, which keep the session's cache folder: the embedding model is
    exported there once for every test and process of the session.
    """
    first, *others = agents
    return [first.model_copy(update={"examples": (*first.examples, tmp_path.name)}), *others]


def lexical(head: str, agents: tuple[AgentSpec, ...] = AGENT_SET.agents) -> LexicalClassifier:
    default = "oos" if agents == AGENT_SET.agents else None
    return LexicalClassifier(agents, head=head, default_agent=default)  # type: ignore[arg-type]


# --- a classifier from the cache decides as a fresh one ---------------------------------------


@pytest.mark.parametrize("head", HEADS)
def test_a_lexical_classifier_from_the_cache_decides_as_a_fresh_one(
    head: str, cache: Path, loads: list[str]
) -> None:
    fresh = lexical(head)
    assert loads == [FIT]
    cached = lexical(head)
    assert loads == [FIT, READ]
    for text in REQUESTS:
        assert cached.classify(text) == fresh.classify(text), text
    np.testing.assert_array_equal(cached.score_batch(REQUESTS), fresh.score_batch(REQUESTS))


@needs_semantic
@pytest.mark.parametrize("head", HEADS)
def test_a_semantic_classifier_from_the_cache_decides_as_a_fresh_one(
    head: str, loads: list[str], tmp_path: Path
) -> None:
    from switchyard.nodes.embedder import Embedder
    from switchyard.nodes.semantic import SemanticClassifier

    agents = own(AGENT_SET.agents, tmp_path)
    embedder = Embedder(cache=tmp_path / "embeddings")
    embedder.remember(REQUESTS, embedder.encode(REQUESTS))  # each request embedded once
    fresh = SemanticClassifier(agents, head=head, embedder=embedder)  # type: ignore[arg-type]
    fresh.prepare()
    assert loads == [FIT]

    class NoTexts(Embedder):
        def encode_cached(self, texts: Any) -> Any:
            raise AssertionError("a classifier read from the cache needs no embeddings of texts")

    reader = NoTexts(cache=tmp_path / "embeddings")
    reader.remember(REQUESTS, embedder.encode(REQUESTS))
    cached = SemanticClassifier(agents, head=head, embedder=reader)  # type: ignore[arg-type]
    cached.prepare()
    assert loads == [FIT, READ]
    for text in REQUESTS:
        assert cached.classify(text) == fresh.classify(text), text


@needs_semantic
def test_another_embedding_model_is_another_fit(tmp_path: Path, loads: list[str]) -> None:
    from switchyard.nodes.embedder import Embedder
    from switchyard.nodes.semantic import SemanticClassifier

    class Renamed(Embedder):
        @property
        def model_id(self) -> str:
            return f"{super().model_id}, renamed"

    agents = own(ROUTER_AGENTS, tmp_path)
    for embedder in (Embedder(cache=tmp_path), Renamed(cache=tmp_path), Embedder(cache=tmp_path)):
        SemanticClassifier(agents, embedder=embedder).prepare()
    assert loads == [FIT, FIT, READ]


# --- a fit gives the numbers scikit-learn gives -------------------------------------------------


def _union(ngrams: Any, min_df: tuple[int, int]) -> Any:
    return make_union(
        *(
            TfidfVectorizer(sublinear_tf=True, min_df=least, **analyzer.vectorizer_options())
            for analyzer, least in zip(ngrams, min_df, strict=True)
        )
    )


def test_the_linear_head_scores_as_scikit_learns_svm(cache: Path) -> None:
    documents, owners = agent_documents(AGENT_SET.agents)
    union = _union(LINEAR_NGRAMS, (1, 1))
    svm = LinearSVC(C=1.0, random_state=0).fit(normalize(union.fit_transform(documents)), owners)
    expected = svm.decision_function(normalize(union.transform(REQUESTS)))
    classifier = lexical("linear")
    np.testing.assert_allclose(classifier.score_batch(REQUESTS), expected, atol=1e-12)
    for text, row in zip(REQUESTS, expected, strict=True):
        np.testing.assert_allclose(classifier.scores(text), row, atol=1e-12)


def test_the_similarity_head_scores_as_scikit_learns_features(cache: Path) -> None:
    documents, owners = agent_documents(AGENT_SET.agents)
    union = _union(SIMILARITY_NGRAMS, (1, 1))
    matrix = normalize(union.fit_transform(documents))
    queries = normalize(union.transform(REQUESTS))
    per_document = (queries @ matrix.T).toarray()
    agents = range(len(AGENT_SET.agents))
    nearest = np.column_stack([per_document[:, np.equal(owners, i)].max(axis=1) for i in agents])
    centroids = normalize(
        np.vstack([np.asarray(matrix[np.equal(owners, i)].mean(axis=0)) for i in agents])
    )
    expected = 0.7 * nearest + 0.3 * np.asarray(queries @ centroids.T)
    classifier = lexical("similarity")
    np.testing.assert_allclose(classifier.score_batch(REQUESTS), expected, atol=1e-12)
    for text, row in zip(REQUESTS, expected, strict=True):
        np.testing.assert_allclose(classifier.scores(text), row, atol=1e-12)


# --- what goes wrong with the cache ---------------------------------------------------------------

_TRIPPED: list[str] = []


def _trip() -> str:
    _TRIPPED.append("unpickled")
    return "unpickled"


class _Trap:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _trip, ()


def _garbage(entry: Path, other: Path) -> None:
    entry.write_bytes(b"not a cache entry")


def _empty(entry: Path, other: Path) -> None:
    entry.write_bytes(b"")


def _truncated(entry: Path, other: Path) -> None:
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])


def _bare_array(entry: Path, other: Path) -> None:
    with entry.open("wb") as file:
        np.save(file, np.zeros(3))


def _another_fit(entry: Path, other: Path) -> None:
    shutil.copyfile(other, entry)


def _pickled(entry: Path, other: Path) -> None:
    with np.load(entry) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["trap"] = np.array([_Trap()], dtype=object)
    with entry.open("wb") as file:
        np.savez(file, **arrays)


@pytest.mark.parametrize(
    "spoil",
    [_garbage, _empty, _truncated, _bare_array, _another_fit, _pickled],
    ids=lambda spoil: spoil.__name__.strip("_"),
)
def test_a_bad_entry_is_refitted_and_rewritten(cache: Path, loads: list[str], spoil: Any) -> None:
    lexical("linear", ROUTER_AGENTS)
    (other,) = (cache / "classifiers").glob("*.npz")
    fresh = lexical("linear")
    (entry,) = set((cache / "classifiers").glob("*.npz")) - {other}
    spoil(entry, other)
    _TRIPPED.clear()
    del loads[:]
    refitted = lexical("linear")
    assert loads == [READ, FIT]
    assert _TRIPPED == []  # a cache file runs no code
    again = lexical("linear")
    assert loads == [READ, FIT, READ]
    for text in REQUESTS[:50]:
        assert refitted.classify(text) == again.classify(text) == fresh.classify(text)


def test_an_unwritable_cache_folder_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loads: list[str]
) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SWITCHYARD_CACHE_DIR", str(blocker))
    first = lexical("linear")
    second = lexical("linear")
    assert loads == [FIT, FIT]
    assert first.classify("book a flight to paris") == second.classify("book a flight to paris")
    assert blocker.read_text() == "not a folder"


def test_an_entry_is_written_whole_and_alone(cache: Path) -> None:
    lexical("linear")
    lexical("similarity")
    names = sorted(path.name for path in (cache / "classifiers").iterdir())
    assert [name.split("-")[:2] for name in names] == [
        ["lexical", "linear"],
        ["lexical", "similarity"],
    ]
    assert all(name.endswith(".npz") for name in names)  # no temporary file left behind


def test_the_key_changes_with_everything_that_changes_the_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base: dict[str, Any] = {
        "kind": "lexical/linear",
        "documents": ["pay my bill", "book a flight"],
        "owners": [0, 1],
        "settings": {"min_df": [1, 1], "embedder": "minilm"},
    }
    key = fit_key(**base)
    assert fit_key(**base) == key
    variants: list[dict[str, Any]] = [
        {"kind": "lexical/similarity"},
        {"documents": ["pay my bill", "book a hotel"]},
        {"owners": [1, 0]},
        {"settings": {"min_df": [1, 2], "embedder": "minilm"}},
        {"settings": {"min_df": [1, 1], "embedder": "minilm int8"}},
    ]
    keys = {fit_key(**{**base, **variant}) for variant in variants}
    assert len(keys) == len(variants)
    assert key not in keys
    monkeypatch.setattr(fitted, "FORMAT", fitted.FORMAT + 1)
    assert fit_key(**base) != key
    monkeypatch.undo()
    real_version = importlib.metadata.version

    def newer_sklearn(package: str) -> str:
        return "99.0" if package == "scikit-learn" else real_version(package)

    monkeypatch.setattr(importlib.metadata, "version", newer_sklearn)
    assert fit_key(**base) != key


@pytest.mark.parametrize(
    "strings",
    [[], [""], ["a", "", "bc"], ["naïve", "東京", "😀", "\udc80 lone surrogate"]],
    ids=str,
)
def test_strings_survive_packing(strings: list[str]) -> None:
    packed = pack_strings("words", strings)
    assert all(array.dtype != object for array in packed.values())
    assert unpack_strings(packed, "words") == strings


def test_packed_strings_that_do_not_add_up_are_refused() -> None:
    packed = pack_strings("words", ["ab", "c"])
    packed["words.lengths"] = np.array([2, 2])
    with pytest.raises(ValueError, match="do not add up"):
        unpack_strings(packed, "words")


# --- a process that reads the cache imports neither scikit-learn nor scipy ------------------------

_PROBE = textwrap.dedent(
    """
    import asyncio, json, sys

    from switchyard.core.loading import add_listener
    from switchyard.state.agents import AgentSpec

    kind, agents, text = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    loads = []
    add_listener(lambda event: loads.append(event.what) if event.seconds is None else None)
    if kind == "lexical":
        from switchyard.nodes.classifiers import LexicalClassifier as Classifier
    else:
        from switchyard.nodes.semantic import SemanticClassifier as Classifier
    specs = [AgentSpec.model_validate(agent) for agent in agents]
    decisions = []
    for head in ("linear", "similarity"):
        classifier = Classifier(specs, head=head)
        decisions.append(classifier.classify(text))
        assert asyncio.run(classifier.aclassify(text)) == decisions[-1]
        classifier.scores(text)
        if kind == "semantic":
            classifier.no_signal(text, classifier.embedder.encode([text])[0])
    print(json.dumps({
        "decisions": [[d.agent, d.confidence, d.reason] for d in decisions],
        "loads": loads,
        "heavy": sorted(name for name in ("sklearn", "scipy") if name in sys.modules),
    }))
    """
)


def _route_in_a_fresh_process(kind: str, agents: Any, folder: Path) -> dict[str, Any]:
    """Build both heads of `kind` for `agents` and route one request, in a new interpreter.

    The request is classified (sync and async) and scored, and for the semantic classifier
    checked for signal.
    """
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
            kind,
            json.dumps([spec.model_dump(mode="json") for spec in agents]),
            "I need a refund for my last payment",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "SWITCHYARD_CACHE_DIR": str(folder)},
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    result["loads"] = [what for what in result["loads"] if what in (FIT, READ)]
    return result


def test_a_warm_lexical_cache_routes_without_scikit_learn_or_scipy(tmp_path: Path) -> None:
    cold = _route_in_a_fresh_process("lexical", ROUTER_AGENTS, tmp_path)
    assert cold["loads"] == [FIT, FIT]
    warm = _route_in_a_fresh_process("lexical", ROUTER_AGENTS, tmp_path)
    assert warm["loads"] == [READ, READ]
    assert warm["heavy"] == []
    assert warm["decisions"] == cold["decisions"]
    assert [agent for agent, _, _ in warm["decisions"]] == ["support", "support"]


@needs_semantic
def test_a_warm_semantic_cache_routes_without_scikit_learn_or_scipy(tmp_path: Path) -> None:
    folder = Path(os.environ["SWITCHYARD_CACHE_DIR"])  # the session's: see `own`
    agents = own(ROUTER_AGENTS, tmp_path)
    cold = _route_in_a_fresh_process("semantic", agents, folder)
    assert cold["loads"] == [FIT, FIT]
    warm = _route_in_a_fresh_process("semantic", agents, folder)
    assert warm["loads"] == [READ, READ]
    assert warm["heavy"] == []
    assert warm["decisions"] == cold["decisions"]
    assert [agent for agent, _, _ in warm["decisions"]] == ["support", "support"]
