"""Calibration: Platt fits recover known parameters, ECE, the threshold choice, saved files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from switchyard.nodes.calibration import (
    Calibration,
    CalibrationError,
    Platt,
    choose_threshold,
    evidence,
    expected_calibration_error,
    fit_calibration,
    fit_platt,
    out_of_scope,
)

AGENTS = ("billing", "oos", "travel")


def test_platt_fit_recovers_the_generating_parameters() -> None:
    rng = np.random.default_rng(7)
    scores = rng.uniform(-2, 3, size=40_000)
    outcome = rng.random(40_000) < 1 / (1 + np.exp(-(3.0 * scores - 1.0)))
    platt = fit_platt(scores[:, None], outcome)
    (weight,) = platt.weights
    assert weight == pytest.approx(3.0, abs=0.15)
    assert platt.bias == pytest.approx(-1.0, abs=0.1)
    # and the fitted map is calibrated on fresh data from the same process
    fresh = rng.uniform(-2, 3, size=40_000)
    fresh_outcome = rng.random(40_000) < 1 / (1 + np.exp(-(3.0 * fresh - 1.0)))
    assert expected_calibration_error(platt(fresh[:, None]), fresh_outcome) < 0.02


def test_platt_with_one_kind_of_outcome_is_the_smoothed_share() -> None:
    platt = fit_platt(np.array([[0.1], [0.5], [0.9]]), [True, True, True])
    assert platt.weights == (0.0,)
    assert platt(np.array([[5.0]]))[0] == pytest.approx(4 / 5)


def test_platt_refuses_bad_input() -> None:
    with pytest.raises(CalibrationError, match="zero examples"):
        fit_platt(np.zeros((0, 1)), [])
    with pytest.raises(CalibrationError, match="3 feature rows but 2 outcomes"):
        fit_platt(np.zeros((3, 1)), [True, False])


def test_ece_of_a_known_miscalibration() -> None:
    # every route claims 0.9 but only 6 in 10 are right: the gap is 0.3
    assert expected_calibration_error([0.9] * 10, [True] * 6 + [False] * 4) == pytest.approx(0.3)
    # two bins, each exactly right
    assert expected_calibration_error([0.25] * 4 + [0.75] * 4, [1, 0, 0, 0, 1, 1, 1, 0]) == 0.0
    with pytest.raises(CalibrationError, match="as many outcomes"):
        expected_calibration_error([0.5], [])


def test_evidence_is_the_top_score() -> None:
    top, features = evidence(np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0]]))
    assert top.tolist() == [1, 0]  # ties go to the first agent
    assert features.tolist() == [[0.7], [0.5]]


def test_threshold_with_a_clean_gap_separates_perfectly() -> None:
    rng = np.random.default_rng(0)
    in_scope = rng.uniform(0.6, 1.0, 200)
    oos = rng.uniform(0.0, 0.4, 50)
    confidence = np.concatenate([in_scope, oos])
    is_default = np.r_[np.zeros(200, bool), np.ones(50, bool)]
    choice = choose_threshold(confidence, ~is_default, is_default)
    assert oos.max() < choice.threshold <= in_scope.min()
    assert (choice.in_scope_accuracy, choice.oos_recall) == (1.0, 1.0)


def test_threshold_is_the_known_optimum_of_the_weighted_objective() -> None:
    # in-scope confidences 0.1..1.0 (all right), out-of-scope 0.05..0.5; with weight w the
    # objective (1-w)*in_acc + w*oos_recall is maximised at a threshold we can enumerate
    in_scope = np.linspace(0.1, 1.0, 10)
    oos = np.linspace(0.05, 0.5, 10)
    confidence = np.concatenate([in_scope, oos])
    is_default = np.r_[np.zeros(10, bool), np.ones(10, bool)]
    for weight in (0.2, 0.5, 0.8):
        candidates = np.unique(np.r_[confidence, 1.1])
        objective = [
            (1 - weight) * (in_scope >= t).mean() + weight * (oos < t).mean() for t in candidates
        ]
        expected = candidates[int(np.argmax(objective))]
        choice = choose_threshold(confidence, ~is_default, is_default, oos_weight=weight)
        assert choice.threshold == pytest.approx(min(expected, 1.0))
        assert choice.objective == pytest.approx(max(objective))


def test_threshold_never_goes_below_the_floor() -> None:
    confidence = np.array([0.2, 0.3, 0.9, 0.95])
    is_default = np.array([True, False, False, False])
    choice = choose_threshold(confidence, ~is_default, is_default, floor=0.5)
    assert choice.threshold == 0.5
    assert choice.in_scope_accuracy == pytest.approx(2 / 3)


def test_threshold_refuses_bad_input() -> None:
    with pytest.raises(CalibrationError, match="equally long"):
        choose_threshold(np.array([0.5]), np.array([True, False]), np.array([False]))
    with pytest.raises(CalibrationError, match="oos_weight"):
        choose_threshold(np.array([0.5]), np.array([True]), np.array([False]), oos_weight=2)


def synthetic_scores(n: int = 3000, seed: int = 1) -> tuple[np.ndarray, list[str]]:
    """Scores whose top is right more often the higher it is; out-of-scope rows score low."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["billing", "travel", "oos"], size=n, p=[0.45, 0.45, 0.1]).tolist()
    scores = rng.normal(0.0, 0.3, size=(n, 3))
    for row, label in enumerate(labels):
        if label == "oos":
            scores[row, rng.integers(0, 3)] += 0.3
        else:
            scores[row, AGENTS.index(label)] += 1.5
    return scores, labels


def test_fit_calibration_on_synthetic_scores() -> None:
    scores, labels = synthetic_scores()
    calibration = fit_calibration(
        "lexical/linear", AGENTS, scores, labels, default_agent="oos", oos_weight=0.5
    )
    assert calibration.default_agent == "oos"
    assert 0.0 < calibration.threshold < 1.0
    info = calibration.fitted_on
    assert info["rows"] == 3000
    assert info["oos_recall"] > 0.9
    assert info["in_scope_accuracy"] > 0.9
    # the confidence is calibrated on fresh data from the same process
    fresh, fresh_labels = synthetic_scores(seed=2)
    top, features = evidence(fresh)
    right = [AGENTS[t] == label for t, label in zip(top, fresh_labels, strict=True)]
    assert expected_calibration_error(calibration.confidence(features), right) < 0.03
    # out-of-scope probability is high for out-of-scope rows
    is_oos = np.array(fresh_labels) == "oos"
    p_oos = calibration.default_confidence(features)
    assert p_oos[is_oos].mean() > 0.5 > p_oos[~is_oos].mean()


def test_fit_calibration_without_a_default_agent_has_no_threshold() -> None:
    scores, labels = synthetic_scores()
    calibration = fit_calibration("semantic/linear", AGENTS, scores, labels)
    assert (calibration.default_agent, calibration.default_map, calibration.threshold) == (
        None,
        None,
        0.0,
    )
    assert calibration.default_confidence(np.array([[1.0]])).tolist() == [0.0]


def test_fit_calibration_refuses_unknown_labels() -> None:
    with pytest.raises(CalibrationError, match="validation labels are not agents: weather"):
        fit_calibration("lexical/linear", AGENTS, np.zeros((1, 3)), ["weather"])
    with pytest.raises(CalibrationError, match="default agent 'nope'"):
        fit_calibration("lexical/linear", AGENTS, np.zeros((1, 3)), ["oos"], default_agent="nope")


def test_out_of_scope_rule() -> None:
    assert out_of_scope(0.49, 0.5)
    assert not out_of_scope(0.5, 0.5)


def calibration() -> Calibration:
    return Calibration(
        "lexical/linear",
        AGENTS,
        Platt((2.0,), -1.0),
        default_agent="oos",
        default_map=Platt((-3.0,), 0.5),
        threshold=0.4,
        fitted_on={"source": "test"},
    )


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = calibration().save(tmp_path / "deep" / "calibration.json")
    assert Calibration.load(path) == calibration()
    data = json.loads(path.read_text())
    assert data["format"] == "switchyard.calibration/1"
    assert data["evidence"] == ["top_score"]


def test_load_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="does not exist"):
        Calibration.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CalibrationError, match="cannot read calibration"):
        Calibration.load(bad)
    bad.write_text(json.dumps({"threshold": 0.5}))
    with pytest.raises(CalibrationError, match="not a Switchyard calibration"):
        Calibration.load(bad)
    data = calibration().to_json()
    data["confidence_map"] = {"weights": [1.0, 2.0], "bias": 0.0}
    bad.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="needs 1 weights, got 2"):
        Calibration.load(bad)
    del data["agents"]
    with pytest.raises(CalibrationError, match="invalid calibration file"):
        Calibration.from_json(data)


def test_calibration_checks_its_classifier_and_agents() -> None:
    cal = calibration()
    cal.check("lexical/linear", AGENTS)
    with pytest.raises(CalibrationError, match="fitted for the lexical/linear classifier"):
        cal.check("semantic/linear", AGENTS)
    with pytest.raises(CalibrationError, match=r"missing \['travel'\], unexpected \['weather'\]"):
        cal.check("lexical/linear", ("billing", "oos", "weather"))
    with pytest.raises(CalibrationError, match=r"other agents \(order\)"):
        cal.check("lexical/linear", ("oos", "billing", "travel"))


def test_calibration_validates_its_fields() -> None:
    with pytest.raises(CalibrationError, match="threshold must be between 0 and 1"):
        Calibration("x", AGENTS, Platt((1.0,), 0.0), threshold=1.5)
    with pytest.raises(CalibrationError, match="default agent 'nope'"):
        Calibration("x", AGENTS, Platt((1.0,), 0.0), default_agent="nope")


def test_platt_is_a_logistic_map() -> None:
    platt = Platt((2.0,), -1.0)
    assert platt(np.array([[0.5]]))[0] == pytest.approx(0.5)
    assert platt(np.array([[1.0]]))[0] == pytest.approx(1 / (1 + math.exp(-1)))
