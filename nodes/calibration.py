"""Calibration: confidences that mean what they say, and the out-of-scope rule, fitted on data.

A classifier scores every agent; the top agent's score is the *evidence* for a route. A
`Calibration` maps evidence to probabilities with Platt scaling (a logistic regression fitted on
labelled validation data):

- `confidence`: the probability that the top agent is the right one;
- `default_confidence`: the probability that the request belongs to the default agent (for a
  dataset with out-of-scope requests: that it is out of scope).

The out-of-scope rule is one comparison (`out_of_scope`): a route whose confidence is below
`threshold` goes to the default agent. Because the confidence grows with the top score, the same
threshold ranks requests by how closely they match any agent, which is what separates
out-of-scope requests from in-scope ones. (The lead of the top agent over the runner-up predicts
mistakes between agents, but adding it to the evidence ranks out-of-scope requests worse; see
bench/ROUTING.md.)

`fit_calibration` fits both maps and chooses the threshold on validation decisions;
`expected_calibration_error` says how well confidences match accuracy. A fitted calibration is
saved as a small JSON file (`Calibration.save`) and given to a classifier's constructor, so the
router and `switchyard eval-router` apply the same rule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from switchyard.core.errors import SwitchyardError

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

EVIDENCE = ("top_score",)
"""What each evidence column holds: the top agent's raw score."""

FORMAT = "switchyard.calibration/1"
"""The `format` field of a saved calibration; files without it are refused."""


class CalibrationError(SwitchyardError, ValueError):
    """A calibration cannot be fitted, loaded, or used with this classifier."""


def evidence(scores: FloatArray) -> tuple[np.ndarray[Any, np.dtype[np.intp]], FloatArray]:
    """The top agent of each row of `scores` and that row's evidence.

    Args:
        scores: One row per request, one column per agent (higher is better).

    Returns:
        The index of the top agent per row (ties go to the first agent) and an array with one
        row per request and the columns named in `EVIDENCE`.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    top = np.argmax(scores, axis=1)
    return top, scores[np.arange(len(scores)), top][:, None]


def _sigmoid(x: FloatArray) -> FloatArray:
    result: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(x, -500.0, 500.0)))
    return result


@dataclass(frozen=True)
class Platt:
    """A logistic map from evidence to a probability: `sigmoid(weights . evidence + bias)`."""

    weights: tuple[float, ...]
    bias: float

    def __call__(self, features: FloatArray) -> FloatArray:
        """Probabilities for each row of `features` (columns as in `EVIDENCE`)."""
        features = np.atleast_2d(np.asarray(features, dtype=np.float64))
        return _sigmoid(features @ np.asarray(self.weights) + self.bias)


def fit_platt(features: FloatArray, outcome: Sequence[bool] | np.ndarray[Any, Any]) -> Platt:
    """Fit `P(outcome | features)` by logistic regression (Platt scaling).

    With only one kind of outcome there is nothing to separate; the map is then a constant, the
    Laplace-smoothed share of positive outcomes.

    Args:
        features: One row per example, columns as in `EVIDENCE`.
        outcome: Whether each example was a positive (for example: the route was right).

    Raises:
        CalibrationError: No examples, or features and outcomes of different lengths.
    """
    x = np.atleast_2d(np.asarray(features, dtype=np.float64))
    y = np.asarray(outcome, dtype=bool)
    if len(y) == 0:
        raise CalibrationError("cannot calibrate on zero examples; give a validation set")
    if len(x) != len(y):
        raise CalibrationError(f"{len(x)} feature rows but {len(y)} outcomes")
    positives = int(y.sum())
    if positives in (0, len(y)):
        share = (positives + 1) / (len(y) + 2)
        return Platt(weights=(0.0,) * x.shape[1], bias=math.log(share / (1 - share)))
    # Imported here: a process that only routes applies fitted maps and never pays for the import.
    from sklearn.linear_model import LogisticRegression

    # Scale the features for the solver, then fold the scaling back into the weights.
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    model = LogisticRegression(C=100.0, max_iter=1000)
    model.fit((x - mean) / std, y)
    weights = model.coef_[0] / std
    bias = float(model.intercept_[0] - weights @ mean)
    return Platt(weights=tuple(float(w) for w in weights), bias=bias)


def expected_calibration_error(
    confidence: Sequence[float] | FloatArray,
    correct: Sequence[bool] | np.ndarray[Any, Any],
    *,
    bins: int = 15,
) -> float:
    """Expected calibration error: the gap between confidence and accuracy, averaged over bins.

    Confidences are put in `bins` equal-width bins on [0, 1]; each bin contributes
    `|accuracy - mean confidence|`, weighted by its share of the examples. 0 is perfect.

    Raises:
        CalibrationError: No examples, or inputs of different lengths.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    hits = np.asarray(correct, dtype=np.float64)
    if len(conf) == 0 or len(conf) != len(hits):
        raise CalibrationError(
            f"need as many outcomes as confidences, at least one: {len(conf)} vs {len(hits)}"
        )
    index = np.minimum((np.clip(conf, 0.0, 1.0) * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(hits[members].mean() - conf[members].mean())
    return float(total)


def out_of_scope(confidence: float, threshold: float) -> bool:
    """The out-of-scope rule: a route less confident than the threshold goes to the default agent.

    The router applies the same comparison with `Context.confidence_threshold`, so a route goes
    to the default agent when its confidence is below the larger of the two thresholds.
    """
    return confidence < threshold


@dataclass(frozen=True)
class Calibration:
    """A fitted confidence map and out-of-scope rule for one classifier and one set of agents.

    Attributes:
        classifier: Name of the classifier it was fitted for (`lexical`, `semantic`).
        agents: The agent names, in the classifier's order; a classifier built for other agents
            refuses it.
        confidence_map: Evidence -> probability that the top agent is right.
        default_agent: The agent that gets out-of-scope requests, if any.
        default_map: Evidence -> probability that the request belongs to the default agent.
        threshold: Routes with a confidence below this go to the default agent (0: never).
        fitted_on: Where and how it was fitted, with the validation metrics (for people).
    """

    classifier: str
    agents: tuple[str, ...]
    confidence_map: Platt
    default_agent: str | None = None
    default_map: Platt | None = None
    threshold: float = 0.0
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise CalibrationError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.default_agent is not None and self.default_agent not in self.agents:
            raise CalibrationError(
                f"default agent {self.default_agent!r} is not one of the calibrated agents"
            )

    def confidence(self, features: FloatArray) -> FloatArray:
        """Probability that the top agent is right, per row of evidence."""
        return self.confidence_map(features)

    def default_confidence(self, features: FloatArray) -> FloatArray:
        """Probability that the request belongs to the default agent, per row of evidence."""
        if self.default_map is None:
            return np.zeros(len(np.atleast_2d(features)))
        return self.default_map(features)

    def check(self, classifier: str, agents: Sequence[str]) -> None:
        """Refuse to be used by another classifier or with other agents.

        Raises:
            CalibrationError: The classifier name or the agent names differ.
        """
        if classifier != self.classifier:
            raise CalibrationError(
                f"this calibration was fitted for the {self.classifier} classifier, not the "
                f"{classifier} one; fit one for it with `switchyard eval-router ... --fit`"
            )
        if tuple(agents) != self.agents:
            missing = sorted(set(self.agents) - set(agents))
            extra = sorted(set(agents) - set(self.agents))
            detail = f"missing {missing}, unexpected {extra}" if missing or extra else "order"
            raise CalibrationError(
                f"this calibration was fitted for other agents ({detail}); refit it for these"
            )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary (see `load`)."""
        data = asdict(self)
        data["agents"] = list(self.agents)
        return {"format": FORMAT, "evidence": list(EVIDENCE), **data}

    def save(self, path: str | Path) -> Path:
        """Write the calibration as JSON to `path` (parent folders are created)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return target

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        """Rebuild a calibration from `to_json` output.

        Raises:
            CalibrationError: Not a Switchyard calibration, or a field is missing or invalid.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CalibrationError(
                f"not a Switchyard calibration (expected format {FORMAT!r}); "
                "create one with `switchyard eval-router ... --fit`"
            )
        if data.get("evidence") != list(EVIDENCE):
            raise CalibrationError(f"calibration evidence must be {list(EVIDENCE)}")
        try:
            default_map = data.get("default_map")
            return cls(
                classifier=str(data["classifier"]),
                agents=tuple(str(a) for a in data["agents"]),
                confidence_map=_platt(data["confidence_map"]),
                default_agent=data.get("default_agent"),
                default_map=None if default_map is None else _platt(default_map),
                threshold=float(data.get("threshold", 0.0)),
                fitted_on=dict(data.get("fitted_on", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError):
                raise
            raise CalibrationError(f"invalid calibration file: {exc!r}") from None

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration written by `save`.

        Raises:
            CalibrationError: The file is missing, not JSON, or not a calibration.
        """
        source = Path(path)
        try:
            data = json.loads(source.read_text())
        except FileNotFoundError:
            raise CalibrationError(f"calibration file {source} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"cannot read calibration {source}: {exc}") from None
        return cls.from_json(data)


def _platt(data: Any) -> Platt:
    weights = tuple(float(w) for w in data["weights"])
    if len(weights) != len(EVIDENCE):
        raise CalibrationError(f"a map needs {len(EVIDENCE)} weights, got {len(weights)}")
    return Platt(weights=weights, bias=float(data["bias"]))


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen out-of-scope threshold and what it achieved on the validation data."""

    threshold: float
    in_scope_accuracy: float
    oos_recall: float
    objective: float


def choose_threshold(
    confidence: FloatArray,
    top_correct: np.ndarray[Any, Any],
    is_default: np.ndarray[Any, Any],
    *,
    oos_weight: float = 0.5,
    floor: float = 0.0,
) -> ThresholdChoice:
    """Choose the out-of-scope threshold that best trades in-scope accuracy for OOS recall.

    A request goes to the default agent when its confidence is below the threshold (and below
    `floor`, the router's own threshold, whatever the choice). The objective weighs in-scope
    accuracy and out-of-scope recall independently of how many out-of-scope examples the
    validation data has: `(1 - oos_weight) * in_scope_accuracy + oos_weight * oos_recall`.
    Ties go to the lowest threshold.

    Args:
        confidence: Calibrated confidence of each validation decision's top agent.
        top_correct: Whether the top agent was the right one.
        is_default: Whether the request belongs to the default agent (is out of scope).
        oos_weight: Weight of out-of-scope recall in the objective, in [0, 1].
        floor: Thresholds below this behave like it (the router's confidence threshold).

    Raises:
        CalibrationError: Inputs of different lengths, or `oos_weight` outside [0, 1].
    """
    conf = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(top_correct, dtype=bool)
    default = np.asarray(is_default, dtype=bool)
    if not (len(conf) == len(correct) == len(default)) or len(conf) == 0:
        raise CalibrationError("confidence, top_correct and is_default must be equally long")
    if not 0.0 <= oos_weight <= 1.0:
        raise CalibrationError(f"oos_weight must be between 0 and 1, got {oos_weight}")
    in_scope = ~default
    n_in, n_oos = int(in_scope.sum()), int(default.sum())
    candidates = np.unique(np.concatenate([[floor], conf[conf > floor], [1.0 + 1e-9]]))
    best: ThresholdChoice | None = None
    for t in candidates:
        to_default = conf < t
        # An in-scope request is right when it is not sent away and its top agent is right;
        # an out-of-scope one when it is sent to the default agent or its top agent is default.
        in_acc = float((correct & ~to_default & in_scope).sum() / n_in) if n_in else 1.0
        oos_rec = float(((to_default | correct) & default).sum() / n_oos) if n_oos else 1.0
        score = (1 - oos_weight) * in_acc + oos_weight * oos_rec
        if best is None or score > best.objective + 1e-12:
            best = ThresholdChoice(float(min(t, 1.0)), in_acc, oos_rec, score)
    assert best is not None
    return best


def _truth(index: Mapping[str, int], labels: Sequence[str], *, rows: int) -> np.ndarray[Any, Any]:
    """The column of each label's agent.

    Raises:
        CalibrationError: Labels that are not agents, or not one label per score row.
    """
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise CalibrationError(f"validation labels are not agents: {', '.join(unknown[:5])}")
    if len(labels) != rows:
        raise CalibrationError(f"{rows} score rows but {len(labels)} labels")
    return np.asarray([index[label] for label in labels])


def fit_calibration(
    classifier: str,
    agents: Sequence[str],
    scores: FloatArray,
    labels: Sequence[str],
    *,
    default_agent: str | None = None,
    oos_weight: float = 0.5,
    floor: float = 0.0,
    fitted_on: dict[str, Any] | None = None,
) -> Calibration:
    """Fit the confidence maps and the out-of-scope threshold on labelled validation scores.

    Args:
        classifier: Name of the classifier that produced `scores`.
        agents: Agent names, one per column of `scores`.
        scores: The classifier's raw scores for each validation request.
        labels: The right agent for each validation request.
        default_agent: The agent for out-of-scope requests; `None` fits no out-of-scope rule.
        oos_weight: Weight of out-of-scope recall against in-scope accuracy (see
            `choose_threshold`).
        floor: The router's confidence threshold, below which routes go to the default agent
            anyway.
        fitted_on: Provenance to store with the calibration.

    Raises:
        CalibrationError: Labels that are not agents, or inputs of different lengths.
    """
    names = tuple(agents)
    index = {name: i for i, name in enumerate(names)}
    top, features = evidence(scores)
    truth = _truth(index, labels, rows=len(top))
    top_correct = top == truth
    confidence_map = fit_platt(features, top_correct)
    info: dict[str, Any] = dict(fitted_on or {})
    info["rows"] = len(truth)
    if default_agent is None:
        return Calibration(classifier, names, confidence_map, fitted_on=info)
    if default_agent not in index:
        raise CalibrationError(f"default agent {default_agent!r} is not one of the agents")
    is_default = truth == index[default_agent]
    default_map = fit_platt(features, is_default)
    choice = choose_threshold(
        confidence_map(features), top_correct, is_default, oos_weight=oos_weight, floor=floor
    )
    info.update(
        oos_weight=oos_weight,
        in_scope_accuracy=round(choice.in_scope_accuracy, 4),
        oos_recall=round(choice.oos_recall, 4),
        oos_rows=int(is_default.sum()),
    )
    return Calibration(
        classifier,
        names,
        confidence_map,
        default_agent=default_agent,
        default_map=default_map,
        threshold=round(choice.threshold, 6),
        fitted_on=info,
    )
