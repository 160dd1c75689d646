"""Text to n-grams, as scikit-learn's `TfidfVectorizer` analyzers do it, in plain Python.

scikit-learn fits the classifiers' TF-IDF vocabularies, but importing it costs a routing process
over a second and 100 MB; these analyzers produce the same n-grams for the settings Switchyard
uses, so a process that loads a fitted classifier (`switchyard.nodes.fitted`) routes with numpy
alone. `Analyzer.vectorizer_options` gives scikit-learn the same settings for the fit.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

ENGLISH_STOP_WORDS = frozenset(
    (  # noqa: SIM905 - 25 lines of words beat 318 quoted ones
        """
        a about above across after afterwards again against all almost alone along
        already also although always am among amongst amount an and another any anyhow
        anyone anything anyway anywhere are around as at back be became because become
        becomes becoming been before beforehand behind being below beside besides
        between beyond bill both bottom but by call can cannot co con could cry de
        describe detail do done down due during each eg eight either eleven else
        elsewhere empty enough etc even ever every everyone everything everywhere except
        few fifteen fifty fill find fire first five for former formerly forty found four
        from front full further get give go had has have he hence her here hereafter
        hereby herein hereupon hers herself him himself his how however hundred i ie if
        in inc indeed interest into is it its itself keep last latter latterly least
        less ltd made many may me meanwhile might mill mine more moreover most mostly
        move much must my myself name namely neither never nevertheless next nine no
        nobody none nor not nothing now nowhere of off often on once one only onto or
        other others otherwise our ours ourselves out over own part per perhaps please
        put rather re same see seem seemed seeming seems serious several she should show
        side since sincere six sixty so some somehow someone something sometime
        sometimes somewhere still such system take ten than that the their them
        themselves then thence there thereafter thereby therefore therein thereupon
        these they thick thin third this those though three through throughout thru thus
        to together too top toward towards twelve twenty two un under until up upon us
        very via was we well were what whatever when whence whenever where whereafter
        whereas whereby wherein whereupon wherever whether which while whither who
        whoever whole whom whose why will with within without would yet you your yours
        yourself yourselves
        """
        " amoungst cant couldnt hasnt noone"  # codespell:ignore - the list spells them so
    ).split()
)
"""scikit-learn's English stop words (`sklearn.feature_extraction.text.ENGLISH_STOP_WORDS`).

A copy: scikit-learn's own list cannot be imported without importing scikit-learn (and scipy).
A test checks that the two are the same.
"""

_TOKEN = re.compile(r"[a-z0-9]+")
_WORD = re.compile(r"(?u)\b\w\w+\b")  # TfidfVectorizer's default token_pattern


def content_words(text: str) -> list[str]:
    """Lowercased words of `text` that are not English stop words."""
    return [w for w in _TOKEN.findall(text.lower()) if w not in ENGLISH_STOP_WORDS]


def content_text(text: str) -> str:
    """Lowercased text without English stop words (the preprocessor of `content_only` analyzers)."""
    return " ".join(content_words(text))


def strip_accents_unicode(text: str) -> str:
    """`text` without combining marks after NFKD normalisation (scikit-learn's function)."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def word_ngrams(tokens: list[str], ngram_range: tuple[int, int]) -> list[str]:
    """The tokens' n-grams for n in `ngram_range`, joined by spaces, shortest n first."""
    low, high = ngram_range
    if high == 1:
        return tokens
    grams = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high, len(tokens)) + 1):
        grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return grams


def char_wb_ngrams(text: str, ngram_range: tuple[int, int]) -> list[str]:
    """Character n-grams inside words, each word padded with a space on both sides.

    A word no longer than n (padded) gives one n-gram, itself, and no longer ones.
    """
    low, high = ngram_range
    grams: list[str] = []
    for word in text.split():
        padded = f" {word} "
        for n in range(low, high + 1):
            last = len(padded) - n
            if last <= 0:
                grams.append(padded[:n])
                break
            grams.extend(padded[i : i + n] for i in range(last + 1))
    return grams


@dataclass(frozen=True)
class Analyzer:
    """How one TF-IDF part turns a text into the n-grams it counts.

    Lowercases and strips accents (`strip_accents_unicode`), then takes word n-grams (words of
    two or more letters or digits) or character n-grams within words (`char_wb`). With
    `content_only`, the text is reduced to its content words first (`content_text`), which
    replaces lowercasing and accent stripping, as a scikit-learn preprocessor does.

    Attributes:
        kind: `word` or `char_wb`.
        ngram_range: Smallest and largest n.
        stop_words: Drop English stop words before taking word n-grams.
        content_only: Reduce the text to its content words first.
    """

    kind: Literal["word", "char_wb"]
    ngram_range: tuple[int, int]
    stop_words: bool = False
    content_only: bool = False

    def __post_init__(self) -> None:
        low, high = self.ngram_range
        if self.kind not in ("word", "char_wb") or not 1 <= low <= high:
            raise ValueError(f"not an analyzer Switchyard knows: {self}")

    def __call__(self, text: str) -> list[str]:
        """The n-grams of `text`, as scikit-learn's analyzer for these settings lists them."""
        text = content_text(text) if self.content_only else strip_accents_unicode(text.lower())
        if self.kind == "char_wb":
            return char_wb_ngrams(text, self.ngram_range)
        tokens = _WORD.findall(text)
        if self.stop_words:
            tokens = [token for token in tokens if token not in ENGLISH_STOP_WORDS]
        return word_ngrams(tokens, self.ngram_range)

    def vectorizer_options(self) -> dict[str, Any]:
        """Keyword arguments for scikit-learn's `TfidfVectorizer` with the same analyzer."""
        preprocessor: Callable[[str], str] | None = content_text if self.content_only else None
        options: dict[str, Any] = {
            "analyzer": self.kind,
            "ngram_range": self.ngram_range,
            "strip_accents": "unicode",
            "preprocessor": preprocessor,
        }
        if self.stop_words:
            options["stop_words"] = "english"
        return options

    def describe(self) -> dict[str, Any]:
        """The settings as JSON-ready data (part of a fitted classifier's cache key)."""
        return asdict(self)
