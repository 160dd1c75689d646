"""The plain-Python n-gram analyzers and encoder give scikit-learn's n-grams and numbers.

The datasets under `../shared/datasets` (CLINC150 validation, Banking77) are compared text by
text; the test that needs them skips when they are missing, and fails then under CI=true.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as SKLEARN_STOP_WORDS
from sklearn.feature_extraction.text import TfidfVectorizer, strip_accents_unicode
from sklearn.pipeline import make_union
from sklearn.preprocessing import normalize

from switchyard.nodes import analyzers
from switchyard.nodes.analyzers import Analyzer
from switchyard.nodes.classifiers import LINEAR_NGRAMS, SIMILARITY_NGRAMS, NgramEncoder

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
DATASET_FILES = (DATASETS / "clinc150" / "val.jsonl", DATASETS / "banking77" / "train.jsonl")

ANALYZERS = [
    *LINEAR_NGRAMS,
    *SIMILARITY_NGRAMS,
    Analyzer("word", (1, 1)),
    Analyzer("word", (2, 3), stop_words=True),
    Analyzer("char_wb", (1, 3)),
]

TRICKY = [
    "",
    " ",
    "\t\n",
    "a",
    "I a b c d",
    "a bc",
    "x" * 40,
    "Café crème brûlée, naïve façade",
    "ﬁnance ½ Ⅻ ² ㎏",  # compatibility forms that NFKD expands
    "e\u0301te\u0301 Zoe\u0308",  # combining marks already decomposed
    "İstanbul ŞİŞLİ ß straße ǅ",  # lowercasing changes the length
    "日本語のテキスト 東京へ行く",
    "Привет, мир! Как дела?",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "😀 emoji😀😀 ☕",
    "123 4 5.6 7,8 $9 10% #1 2nd",
    "don't won't it's o'clock",
    "snake_case __init__ _x",
    "what is the what is",
    "the and of",
    "a\x1cb\u00a0c\u2003d  \t\n e",  # whitespace that str.split and regex \s both know
    "hello\u200bworld",  # zero-width space: not whitespace
    "tab\tseparated\nlines\r\nhere",
    "MiXeD CaSe WORDS",
    "!!! ... ???",
]


def sklearn_analyzer(analyzer: Analyzer) -> Callable[[str], list[str]]:
    built: Callable[[str], list[str]] = TfidfVectorizer(
        **analyzer.vectorizer_options()
    ).build_analyzer()
    return built


def dataset_texts() -> list[str]:
    """Every text of the datasets; skips (CI=true: fails) when they are missing."""
    missing = [str(path) for path in DATASET_FILES if not path.is_file()]
    if missing:
        message = f"needs the datasets: {', '.join(missing)} missing"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: they must be there)", pytrace=False)
        pytest.skip(message)
    texts: list[str] = []
    for path in DATASET_FILES:
        with path.open() as lines:
            texts.extend(json.loads(line)["text"] for line in lines)
    return texts


def test_stop_words_are_scikit_learns() -> None:
    assert analyzers.ENGLISH_STOP_WORDS == SKLEARN_STOP_WORDS


@pytest.mark.parametrize("analyzer", ANALYZERS, ids=str)
def test_the_analyzers_give_scikit_learns_ngrams_on_the_datasets(analyzer: Analyzer) -> None:
    texts = dataset_texts()
    assert len(texts) > 13_000
    reference = sklearn_analyzer(analyzer)
    different = [text for text in texts if analyzer(text) != reference(text)]
    assert different == []


@pytest.mark.parametrize("analyzer", ANALYZERS, ids=str)
def test_the_analyzers_give_scikit_learns_ngrams_on_tricky_text(analyzer: Analyzer) -> None:
    reference = sklearn_analyzer(analyzer)
    for text in TRICKY:
        assert analyzer(text) == reference(text), text


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_the_analyzers_give_scikit_learns_ngrams_on_any_text(text: str) -> None:
    for analyzer in ANALYZERS:
        assert analyzer(text) == sklearn_analyzer(analyzer)(text)


@pytest.mark.parametrize("text", TRICKY)
def test_accents_are_stripped_as_scikit_learn_strips_them(text: str) -> None:
    assert analyzers.strip_accents_unicode(text) == strip_accents_unicode(text)


def test_an_analyzer_outside_what_switchyard_uses_is_refused() -> None:
    with pytest.raises(ValueError, match="not an analyzer"):
        Analyzer("char", (2, 5))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an analyzer"):
        Analyzer("word", (2, 1))


@pytest.mark.parametrize(
    ("ngrams", "min_df"), [(LINEAR_NGRAMS, (1, 2)), (SIMILARITY_NGRAMS, (1, 1))], ids=str
)
def test_the_encoder_gives_scikit_learns_features(
    ngrams: tuple[Analyzer, ...], min_df: tuple[int, int]
) -> None:
    documents = [text for text in TRICKY if text.strip()] * 2 + [
        "I was charged twice for my order",
        "book a flight to paris",
        "will it rain tomorrow in paris",
    ]
    state, matrix = NgramEncoder.fit(documents, ngrams, min_df)
    encoder = NgramEncoder.from_state(state, ngrams)
    union = make_union(
        *(
            TfidfVectorizer(sublinear_tf=True, min_df=least, **analyzer.vectorizer_options())
            for analyzer, least in zip(ngrams, min_df, strict=True)
        )
    )
    expected = normalize(union.fit_transform(documents))
    np.testing.assert_array_equal(matrix.toarray(), expected.toarray())
    queries = [*TRICKY, "charged for a flight", "Paris paris PARIS"]
    np.testing.assert_allclose(
        encoder.transform(queries).toarray(),
        normalize(union.transform(queries)).toarray(),
        atol=1e-12,
    )
