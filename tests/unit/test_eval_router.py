"""`switchyard eval-router`: dataset loading, agents from labels, metrics, and the command."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from rich.console import Console

from switchyard.cli.eval_router import add_command
from switchyard.core.errors import SwitchyardError
from switchyard.eval.router import (
    AgentSet,
    DatasetError,
    Row,
    agent_name,
    build_agents,
    confusion_png,
    confusion_text,
    load_dataset,
    route_rows,
    sample_per_label,
    stratified_split,
)
from switchyard.nodes.calibration import Calibration
from switchyard.nodes.classifiers import Decision
from switchyard.state.usage import usage_entry

FIXTURES = Path(__file__).parent.parent / "fixtures"
TRAIN = FIXTURES / "routing_train.jsonl"
EVAL = FIXTURES / "routing_eval.jsonl"
VALIDATION = FIXTURES / "routing_val.jsonl"

# routing_eval.jsonl repeats training rows, so every classifier routes them to their own
# label, except one row deliberately labelled "weather" whose text is a travel request.
EXPECTED_CONFUSION = [
    # billing oos travel weather (routed to)
    [3, 0, 0, 0],  # billing
    [0, 3, 0, 0],  # oos
    [0, 0, 3, 0],  # travel
    [0, 0, 1, 2],  # weather
]


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


# --- loading ---------------------------------------------------------------------------------


def test_load_dataset_reads_rows_and_skips_blank_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl",
        '{"text": "hi", "intent": "greet"}',
        "",
        '{"text": "bye", "intent": "leave", "extra": 1}',
    )
    assert load_dataset(path, "intent") == [Row("hi", "greet", 1), Row("bye", "leave", 3)]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"text": "hi", "intent": "a"}', "{oops"], r"d.jsonl:2: not valid JSON"),
        (['["hi", "a"]'], r"d.jsonl:1: expected a JSON object, got list"),
        (['{"intent": "a"}'], r"d.jsonl:1: 'text' must be a non-empty string"),
        (['{"text": "  ", "intent": "a"}'], r"d.jsonl:1: 'text' must be a non-empty string"),
        (
            ['{"text": "hi", "domain": "a"}'],
            r"d.jsonl:1: no 'intent' field \(fields: domain, text\); pick one with --label-field",
        ),
        (['{"text": "hi", "intent": 3}'], r"d.jsonl:1: 'intent' must be a non-empty string"),
        ([""], r"has no rows"),
    ],
)
def test_load_dataset_errors_name_the_line(
    tmp_path: Path, lines: Sequence[str], message: str
) -> None:
    path = write(tmp_path / "d.jsonl", *lines)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path, "intent")


def test_load_dataset_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope.jsonl", "intent")


# --- agents from labels ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("card_arrival", "card_arrival"),
        ("Refund_not_showing_up", "refund_not_showing_up"),
        ("reverted_card_payment?", "reverted_card_payment"),
        ("Kitchen & Dining", "kitchen_dining"),
        ("24h support", "label_24h_support"),
    ],
)
def test_agent_names_from_labels(label: str, name: str) -> None:
    assert agent_name(label) == name


def test_agent_name_needs_letters_or_digits() -> None:
    with pytest.raises(DatasetError, match="no letters or digits"):
        agent_name("??")


def test_build_agents_one_per_label_and_oos_is_the_default() -> None:
    agent_set = build_agents(load_dataset(TRAIN, "domain"), oos_label="oos")
    assert agent_set.names == ("billing", "oos", "travel", "weather")
    assert agent_set.default_agent == "oos"
    billing = agent_set.agents[0]
    assert billing.description == "Requests about billing."
    assert len(billing.examples) == 12
    assert billing.examples[0] == "I was charged twice for my order"
    assert agent_set.agents[1].description.startswith("Out of scope")


def test_build_agents_without_oos_rows_has_no_default_agent() -> None:
    rows = [Row("a", "x", 1), Row("b", "y", 2)]
    assert build_agents(rows, oos_label="oos").default_agent is None
    assert build_agents(rows, oos_label="oos", default_label="y").default_agent == "y"
    with pytest.raises(DatasetError, match="default label 'z' is not a label"):
        build_agents(rows, oos_label="oos", default_label="z")


def test_build_agents_refuses_labels_that_collide() -> None:
    rows = [Row("a", "Card arrival", 1), Row("b", "card_arrival", 2)]
    with pytest.raises(DatasetError, match="both become agent 'card_arrival'"):
        build_agents(rows, oos_label="oos")


def test_stratified_split_is_seeded_and_keeps_label_shares() -> None:
    rows = [Row(f"t{i}", "a" if i < 80 else "b", i) for i in range(100)] + [Row("x", "c", 100)]
    kept, held = stratified_split(rows, 0.25, seed=3)
    assert (kept, held) == stratified_split(rows, 0.25, seed=3)
    assert stratified_split(rows, 0.25, seed=4)[1] != held
    assert sorted(r.label for r in held).count("a") == 20
    assert sorted(r.label for r in held).count("b") == 5
    assert Row("x", "c", 100) in kept  # a label with one row cannot be split
    assert set(kept).isdisjoint(held)
    assert len(kept) + len(held) == len(rows)
    with pytest.raises(DatasetError, match="--holdout must be between 0 and 1"):
        stratified_split(rows, 1.0, seed=0)


# --- metrics ---------------------------------------------------------------------------------


class ScriptedClassifier:
    """Returns the decision scripted for each text, with LLM-like usage."""

    name = "scripted"

    def __init__(self, agents: Sequence[str], decisions: dict[str, tuple[str, float]]) -> None:
        self.agents = tuple(agents)
        self.decisions = decisions

    def classify(self, text: str, *, model: str | None = None) -> Decision:
        agent, confidence = self.decisions[text]
        usage = usage_entry("router", "m", input_tokens=10, output_tokens=2, cost_usd=0.001)
        return Decision(agent, confidence, "scripted", usage)

    async def aclassify(self, text: str, *, model: str | None = None) -> Decision:
        return self.classify(text, model=model)


def test_route_rows_metrics_follow_the_router_rule() -> None:
    rows = [
        Row("a1", "a", 1),  # right, confident
        Row("a2", "a", 2),  # right agent but unsure -> default agent: wrong
        Row("b1", "b", 3),  # wrong agent, confident
        Row("o1", "oos", 4),  # unsure -> default agent: right
        Row("o2", "oos", 5),  # confidently wrong
    ]
    agent_set = build_agents(
        [Row("x", "a", 1), Row("y", "b", 2), Row("z", "oos", 3)], oos_label="oos"
    )
    classifier = ScriptedClassifier(
        agent_set.names,
        {"a1": ("a", 0.9), "a2": ("a", 0.2), "b1": ("a", 0.8), "o1": ("b", 0.1), "o2": ("a", 0.7)},
    )
    report = route_rows(classifier, rows, agent_set, threshold=0.35)
    assert report.labels == ["a", "b", "oos"]
    assert report.confusion == [[1, 0, 1], [1, 0, 0], [1, 0, 1]]
    assert report.accuracy == pytest.approx(2 / 5)
    assert report.in_scope_accuracy == pytest.approx(1 / 3)
    assert report.oos_recall == pytest.approx(1 / 2)
    assert report.oos_precision == pytest.approx(1 / 2)
    # F1 per agent: a = 2*(1/3*1/2)/(1/3+1/2) = 0.4, b = 0, oos = 0.5
    assert report.macro_f1 == pytest.approx((0.4 + 0.0 + 0.5) / 3)
    # calibration is measured on the decisions, each in its own bin: right ones are a1 and a2
    # |1-0.9|, |1-0.2|, |0-0.8|, |0-0.1|, |0-0.7|
    assert report.ece == pytest.approx((0.1 + 0.8 + 0.8 + 0.1 + 0.7) / 5)
    assert (report.input_tokens, report.output_tokens) == (50, 10)
    assert report.cost_usd == pytest.approx(0.005)
    assert report.latency_ms_mean > 0


def test_route_rows_without_default_agent_takes_every_decision() -> None:
    agent_set = AgentSet(
        build_agents([Row("x", "a", 1), Row("y", "b", 2)], oos_label="oos").agents,
        {"a": "a", "b": "b"},
        None,
    )
    classifier = ScriptedClassifier(agent_set.names, {"t": ("b", 0.01)})
    report = route_rows(classifier, [Row("t", "b", 1)], agent_set, threshold=0.35)
    assert (report.accuracy, report.oos_recall, report.oos_precision) == (1.0, None, None)


def test_confusion_outputs(tmp_path: Path) -> None:
    agent_set = build_agents([Row("x", "up", 1), Row("y", "downwards", 2)], oos_label="oos")
    classifier = ScriptedClassifier(agent_set.names, {"x": ("up", 1.0), "y": ("up", 1.0)})
    report = route_rows(
        classifier, [Row("x", "up", 1), Row("y", "downwards", 2)], agent_set, threshold=0.0
    )
    # columns are as wide as the longest name, up to 8 characters
    assert confusion_text(report) == (
        "           downward       up\ndownwards         0        1\nup                0        1\n"
    )
    pytest.importorskip("matplotlib", reason="the PNG needs matplotlib")
    png = tmp_path / "c.png"
    assert confusion_png(report, png, "title")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the command -----------------------------------------------------------------------------


def run_command(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="switchyard")
    add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval-router", *argv])
    buffer = io.StringIO()
    code = args.handler(args, Console(file=buffer, width=200))
    return code, buffer.getvalue()


LEXICAL = ("--train", str(TRAIN), "--label-field", "domain", "--classifier", "lexical")
"""Train on the fixture's training file and route with the lexical classifier."""


def test_eval_router_on_the_fixture_gives_the_known_answers(tmp_path: Path) -> None:
    code, output = run_command(
        str(EVAL),
        *LEXICAL,
        "--out",
        str(tmp_path),
    )
    assert code == 0
    result = json.loads((tmp_path / "routing_fixtures_domain_lexical.json").read_text())
    assert result["confusion"] == EXPECTED_CONFUSION
    assert result["accuracy"] == pytest.approx(11 / 12)
    assert result["in_scope_accuracy"] == pytest.approx(8 / 9)
    assert (result["oos_recall"], result["oos_precision"]) == (1.0, 1.0)
    settings = result["settings"]
    assert settings["scorer"] == "lexical/linear"
    assert settings["default_agent"] == "oos"
    assert settings["command"] == (
        f"switchyard eval-router {EVAL} --label-field domain --classifier lexical "
        f"--train {TRAIN} --out {tmp_path}"
    )
    assert "91.7%" in output
    text = (tmp_path / "routing_fixtures_domain_lexical.confusion.txt").read_text()
    assert text.splitlines()[-1].split() == ["weather", "0", "0", "1", "2"]


def test_eval_router_fit_saves_a_calibration_the_classifier_loads(tmp_path: Path) -> None:
    code, output = run_command(
        str(EVAL), *LEXICAL, "--fit", "--validation", str(VALIDATION), "--out", str(tmp_path)
    )
    assert code == 0
    assert f"fitted on validation file {VALIDATION} (12 rows)" in output
    saved = tmp_path / "routing_fixtures_domain_lexical_fitted.calibration.json"
    calibration = Calibration.load(saved)
    assert calibration.classifier == "lexical/linear"
    assert calibration.default_agent == "oos"
    assert calibration.fitted_on["rows"] == 12
    fitted = json.loads((tmp_path / "routing_fixtures_domain_lexical_fitted.json").read_text())
    # the saved calibration routes the same way when loaded again
    again = tmp_path / "again"
    code, output = run_command(
        str(EVAL), *LEXICAL, "--calibration", str(saved), "--out", str(again)
    )
    assert code == 0
    assert f"loaded from {saved}" in output
    reloaded = json.loads((again / "routing_fixtures_domain_lexical_fitted.json").read_text())
    assert reloaded["confusion"] == fitted["confusion"]
    assert reloaded["ece"] == fitted["ece"]


def test_eval_router_cross_fits_without_a_validation_file(tmp_path: Path) -> None:
    code, output = run_command(
        str(EVAL),
        *LEXICAL,
        "--fit",
        "--folds",
        "3",
        "--out",
        str(tmp_path),
    )
    assert code == 0
    assert "fitted on 3-fold cross-fitted training rows (48 rows)" in output


def test_eval_router_few_shot_keeps_n_rows_per_label(tmp_path: Path) -> None:
    code, _ = run_command(
        str(EVAL),
        *LEXICAL,
        "--max-examples",
        "2",
        "--out",
        str(tmp_path),
    )
    assert code == 0
    result = json.loads((tmp_path / "routing_fixtures_domain_lexical_2shot.json").read_text())
    assert result["settings"]["training_rows"] == 8
    assert result["settings"]["scorer"] == "lexical/similarity"


def test_sample_per_label_is_seeded() -> None:
    rows = [Row(f"t{i}", "ab"[i % 2], i) for i in range(20)]
    sample = sample_per_label(rows, 3, seed=1)
    assert sample == sample_per_label(rows, 3, seed=1)
    assert sorted(r.label for r in sample) == ["a", "a", "a", "b", "b", "b"]
    assert sample == sorted(sample, key=lambda r: r.line)
    with pytest.raises(DatasetError, match="--max-examples must be at least 1"):
        sample_per_label(rows, 0, seed=1)


def test_eval_router_holds_out_part_of_a_single_file(tmp_path: Path) -> None:
    code, output = run_command(
        str(TRAIN),
        "--label-field",
        "domain",
        "--classifier",
        "lexical",
        "--holdout",
        "0.25",
        "--out",
        str(tmp_path),
    )
    assert code == 0
    result = json.loads((tmp_path / "routing_fixtures_domain_lexical.json").read_text())
    assert (result["rows"], result["settings"]["training_rows"]) == (12, 36)
    assert "a seeded (seed 0), stratified 25% is evaluated" in output


def test_eval_router_refuses_to_evaluate_on_its_training_file() -> None:
    with pytest.raises(SwitchyardError, match="pass --holdout FRACTION"):
        run_command(str(TRAIN), "--train", str(TRAIN), "--label-field", "domain")
    with pytest.raises(SwitchyardError, match="drop --train"):
        run_command(
            str(TRAIN), "--train", str(TRAIN), "--label-field", "domain", "--holdout", "0.2"
        )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--classifier", "llm", "--fit"], "--fit and --calibration need a scoring classifier"),
        (["--classifier", "llm", "--calibration", "x.json"], "need a scoring classifier"),
        (["--classifier", "lexical", "--fit", "--calibration", "x.json"], "not both"),
        (["--classifier", "lexical", "--folds", "1"], "--folds must be at least 2"),
    ],
)
def test_eval_router_refuses_contradictory_options(argv: list[str], message: str) -> None:
    with pytest.raises(SwitchyardError, match=message):
        run_command(str(EVAL), "--train", str(TRAIN), "--label-field", "domain", *argv)


def test_eval_router_refuses_labels_it_was_not_trained_on(tmp_path: Path) -> None:
    other = write(tmp_path / "eval.jsonl", '{"text": "hi", "domain": "greeting"}')
    with pytest.raises(DatasetError, match="labels not in the training rows: greeting"):
        run_command(str(other), "--train", str(TRAIN), "--label-field", "domain")


def test_eval_router_default_training_file_is_next_to_the_dataset(tmp_path: Path) -> None:
    evaluation = write(tmp_path / "test.jsonl", '{"text": "hi", "domain": "a"}')
    with pytest.raises(DatasetError, match=f"dataset {tmp_path / 'train.jsonl'} does not exist"):
        run_command(str(evaluation), "--label-field", "domain")


def test_eval_router_with_the_llm_classifier_reports_tokens(tmp_path: Path) -> None:
    code, output = run_command(
        str(EVAL),
        "--train",
        str(TRAIN),
        "--label-field",
        "domain",
        "--classifier",
        "llm",
        "--model",
        "offline",
        "--limit",
        "4",
        "--out",
        str(tmp_path),
    )
    assert code == 0
    result = json.loads((tmp_path / "routing_fixtures_domain_llm.json").read_text())
    assert result["rows"] == 4
    assert result["input_tokens"] > 0
    assert result["output_tokens"] > 0
    assert result["cost_usd"] == 0.0
    assert "tokens in/out:" in output
