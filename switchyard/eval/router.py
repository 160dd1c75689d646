"""Routing evaluation: how well a classifier routes a labelled dataset (`switchyard eval-router`).

One agent per label is built from a training file (description from the label's name, examples
from the training rows); every row of an evaluation file is routed as the router routes a first
turn (the classifier's decision, then `switchyard.nodes.classify.choose` with the router's
confidence threshold); the report gives accuracy, in-scope accuracy, out-of-scope recall and
precision, macro F1, a confusion matrix (text and PNG), expected calibration error, mean and p95
latency per route, and tokens and cost for the LLM classifier.

Data: one JSON object per line with `text` and the label field; out-of-scope rows carry the
label `oos` (`--oos-label`), and their agent is the default agent.

Files: `DATASET` is the evaluation file. The training file is `--train`, else `train.jsonl` next
to `DATASET`. With `--holdout FRACTION`, a seeded, stratified share of `DATASET` is evaluated and
the rest trains (for a dataset with a single file). `--fit` fits the calibration (confidence map
and out-of-scope threshold) on `--validation FILE`, or, without one, on k-fold cross-fitted
scores of the training rows (each row scored by a classifier fitted on the other folds), and
saves it as JSON next to the results; `--calibration FILE` reuses a saved one.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from switchyard.core.defaults import CLASSIFIERS
from switchyard.core.errors import SwitchyardError
from switchyard.core.machine import cpu_model
from switchyard.nodes.calibration import (
    Calibration,
    FloatArray,
    expected_calibration_error,
)
from switchyard.nodes.classifiers import (
    Classifier,
    LexicalClassifier,
    LLMClassifier,
    semantic_available,
)
from switchyard.nodes.classify import choose
from switchyard.state.agents import AgentSpec
from switchyard.state.usage import UsageEntry, total_cost

_AGENT_NAME = re.compile(r"[^a-z0-9]+")


class Progress(Protocol):
    """Where long evaluations report progress (a `rich.progress.Progress` fits)."""

    def add_task(self, description: str, *, total: float | None = ...) -> Any:
        """Start a task of `total` steps; returns its handle."""

    def advance(self, task_id: Any, advance: float = 1) -> None:
        """One more step of `task_id` is done."""


class DatasetError(SwitchyardError, ValueError):
    """A dataset file is missing or malformed; the message names the file and the line."""


@dataclass(frozen=True)
class Row:
    """One labelled request: its text, its label, and where it came from."""

    text: str
    label: str
    line: int


def load_dataset(path: str | Path, label_field: str) -> list[Row]:
    """Read a JSON Lines dataset: one object per line with `text` and `label_field`.

    Blank lines are skipped.

    Raises:
        DatasetError: The file is missing, empty, or a line is not an object with a non-empty
            string `text` and a string label (the message gives the line number).
    """
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"dataset {source} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read dataset {source}: {exc}") from None
    rows: list[Row] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(data).__name__}")
        text, label = data.get("text"), data.get(label_field)
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{where}: 'text' must be a non-empty string")
        if label is None:
            fields = ", ".join(sorted(data)) or "none"
            raise DatasetError(
                f"{where}: no {label_field!r} field (fields: {fields}); pick one with --label-field"
            )
        if not isinstance(label, str) or not label.strip():
            raise DatasetError(f"{where}: {label_field!r} must be a non-empty string")
        rows.append(Row(text, label, number))
    if not rows:
        raise DatasetError(f"dataset {source} has no rows")
    return rows


def agent_name(label: str) -> str:
    """A valid agent name for a label: lowercase, words joined by `_` (`Card arrival?` -> ...).

    Raises:
        DatasetError: The label has no letters or digits.
    """
    name = _AGENT_NAME.sub("_", label.lower()).strip("_")
    if not name:
        raise DatasetError(f"label {label!r} has no letters or digits to name an agent after")
    if not name[0].isalpha():
        name = f"label_{name}"
    return name[:64].rstrip("_")


@dataclass(frozen=True)
class AgentSet:
    """The agents built from a training file, and how labels map to them."""

    agents: tuple[AgentSpec, ...]
    agent_of: dict[str, str]
    default_agent: str | None

    @property
    def names(self) -> tuple[str, ...]:
        """Agent names, in order."""
        return tuple(spec.name for spec in self.agents)


def build_agents(
    rows: Sequence[Row], *, oos_label: str, default_label: str | None = None
) -> AgentSet:
    """One agent per label: description from the label's name, examples from its rows.

    The out-of-scope label's agent (if the rows have it) is the default agent; its examples are
    the out-of-scope rows. `default_label` names another default agent.

    Raises:
        DatasetError: Two labels map to the same agent name, or the default label is unknown.
    """
    examples: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        examples[row.label].append(row.text)
    agent_of: dict[str, str] = {}
    for label in sorted(examples):
        name = agent_name(label)
        clash = next((other for other, n in agent_of.items() if n == name), None)
        if clash is not None:
            raise DatasetError(f"labels {clash!r} and {label!r} both become agent {name!r}")
        agent_of[label] = name
    agents = []
    for label, name in agent_of.items():
        if label == oos_label:
            description = "Out of scope: requests that none of the other agents handles."
        else:
            description = f"Requests about {label.replace('_', ' ').strip()}."
        agents.append(AgentSpec(name=name, description=description, examples=examples[label]))
    default = default_label if default_label is not None else oos_label
    if default_label is not None and default_label not in agent_of:
        raise DatasetError(f"default label {default_label!r} is not a label of the training rows")
    return AgentSet(tuple(agents), agent_of, agent_of.get(default))


def stratified_split(
    rows: Sequence[Row], fraction: float, seed: int
) -> tuple[list[Row], list[Row]]:
    """Split rows into (kept, held out), the held-out share `fraction` of each label.

    Labels with a single row stay in the kept part. Seeded: the same input gives the same split.

    Raises:
        DatasetError: `fraction` outside (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"--holdout must be between 0 and 1, got {fraction}")
    counts = Counter(row.label for row in rows)
    single = [i for i, row in enumerate(rows) if counts[row.label] < 2]
    splittable = [i for i, row in enumerate(rows) if counts[row.label] >= 2]
    kept, held = train_test_split(
        splittable,
        test_size=fraction,
        random_state=seed,
        stratify=[rows[i].label for i in splittable],
    )
    return [rows[i] for i in sorted([*kept, *single])], [rows[i] for i in sorted(held)]


def sample_per_label(rows: Sequence[Row], limit: int, seed: int) -> list[Row]:
    """At most `limit` rows of each label, drawn at random with `seed` (order kept).

    Raises:
        DatasetError: `limit` below 1.
    """
    if limit < 1:
        raise DatasetError(f"--max-examples must be at least 1, got {limit}")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row.label].append(i)
    kept: list[int] = []
    for label in sorted(by_label):
        members = by_label[label]
        chosen = rng.choice(len(members), size=min(limit, len(members)), replace=False)
        kept.extend(members[int(i)] for i in chosen)
    return [rows[i] for i in sorted(kept)]


def make_classifier(
    kind: str,
    agent_set: AgentSet,
    *,
    head: str = "auto",
    calibration: Calibration | None = None,
    embedder: Any = None,
    model: str | None = None,
    cache_fit: bool = True,
) -> Classifier:
    """Build the classifier `kind` (`lexical`, `semantic`, `llm`) for these agents.

    `cache_fit=False` fits without the on-disk cache (for cross-validation folds).

    Raises:
        SwitchyardError: An unknown kind, or the semantic extra is missing.
    """
    if kind == "lexical":
        return LexicalClassifier(
            agent_set.agents,
            head=head,  # type: ignore[arg-type]
            calibration=calibration,
            default_agent=agent_set.default_agent,
            cache_fit=cache_fit,
        )
    if kind == "semantic":
        if not semantic_available():
            raise SwitchyardError(
                "--classifier semantic needs the semantic extra: "
                "pip install 'switchyard-agents[semantic]'"
            )
        from switchyard.nodes.semantic import SemanticClassifier

        return SemanticClassifier(
            agent_set.agents,
            head=head,  # type: ignore[arg-type]
            calibration=calibration,
            default_agent=agent_set.default_agent,
            embedder=embedder,
            cache_fit=cache_fit,
        )
    if kind == "llm":
        return LLMClassifier(agent_set.agents, model=model)
    raise SwitchyardError(f"unknown classifier {kind!r}; choose one of {', '.join(CLASSIFIERS)}")


def score_rows(classifier: Any, texts: Sequence[str]) -> FloatArray:
    """Raw scores of a scoring classifier (lexical or semantic) for many texts."""
    if getattr(classifier, "name", None) == "semantic":
        scores: FloatArray = classifier.score_batch(texts, cached=True)
        return scores
    scores = classifier.score_batch(texts)
    return scores


def cross_fitted_scores(
    kind: str,
    rows: Sequence[Row],
    agent_set: AgentSet,
    *,
    folds: int,
    seed: int,
    head: str,
    embedder: Any,
    progress: Progress | None = None,
) -> FloatArray:
    """Score every training row with a classifier fitted on the other folds (stratified).

    Each fold's classifier keeps every agent (an agent whose examples all fall in the scored
    fold still has its description).
    """
    labels = [row.label for row in rows]
    smallest = min(Counter(labels).values())
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = np.zeros((len(rows), len(agent_set.agents)))
    task = progress.add_task("cross-fitting", total=folds) if progress else None
    # Labels rarer than the number of folds cannot be stratified; spread them round-robin.
    strata = [label if smallest >= folds else "all" for label in labels]
    for train_index, score_index in splitter.split(np.zeros(len(rows)), strata):
        kept = {int(i) for i in train_index}
        examples: dict[str, list[str]] = defaultdict(list)
        for i in sorted(kept):
            examples[rows[i].label].append(rows[i].text)
        fold_agents = tuple(
            spec.model_copy(
                update={"examples": tuple(examples.get(_label_of(agent_set, spec.name), ()))}
            )
            for spec in agent_set.agents
        )
        fold_set = AgentSet(fold_agents, agent_set.agent_of, agent_set.default_agent)
        # one-off fits: kept on disk they would only fill it (tens of MB each)
        classifier = make_classifier(kind, fold_set, head=head, embedder=embedder, cache_fit=False)
        scores[score_index] = score_rows(classifier, [rows[int(i)].text for i in score_index])
        if progress is not None and task is not None:
            progress.advance(task)
    return scores


def _label_of(agent_set: AgentSet, name: str) -> str:
    return next(label for label, agent in agent_set.agent_of.items() if agent == name)


@dataclass
class RoutingReport:
    """Everything `eval-router` measured on one evaluation set.

    `cost_usd` is None (JSON `null`) when a classifier call had no known price; `known_cost_usd`
    is then the part that is known.
    """

    rows: int
    labels: list[str]
    accuracy: float
    in_scope_accuracy: float
    oos_recall: float | None
    oos_precision: float | None
    macro_f1: float
    ece: float
    latency_ms_mean: float
    latency_ms_p95: float
    confusion: list[list[int]]
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    known_cost_usd: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


@contextmanager
def single_threaded(threads: int) -> Iterator[None]:
    """Limit torch and BLAS to `threads` threads inside the block (restored afterwards)."""
    torch: Any = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)


def route_rows(
    classifier: Classifier,
    rows: Sequence[Row],
    agent_set: AgentSet,
    *,
    threshold: float,
    threads: int = 1,
    progress: Progress | None = None,
) -> RoutingReport:
    """Route every row as the router routes a first turn, and measure the routes.

    The classifier's decision goes through `switchyard.nodes.classify.choose` with `threshold` (the
    router's `Context.confidence_threshold`) when there is a default agent. Latency is the time
    of one `classify` call, with torch and BLAS limited to `threads` threads. Calibration error
    is measured on the classifier's decisions (is the decided agent right, at what confidence).
    """
    names = list(agent_set.names)
    index = {name: i for i, name in enumerate(names)}
    default = agent_set.default_agent
    truth, routed, confidence, decided_right, latency = [], [], [], [], []
    input_tokens = output_tokens = 0
    usage: list[UsageEntry] = []
    task = progress.add_task("routing", total=len(rows)) if progress else None
    with single_threaded(threads):
        for row in rows:
            started = time.perf_counter()
            decision = classifier.classify(row.text)
            latency.append((time.perf_counter() - started) * 1000)
            expected = agent_set.agent_of.get(row.label)
            if default is not None:
                route = choose(
                    decision,
                    classifier=classifier.name,
                    default_agent=default,
                    previous_agent=None,
                    threshold=threshold,
                )
                agent = route["agent"]
            else:
                agent = decision.agent
            truth.append(index.get(expected, -1) if expected else -1)
            routed.append(index[agent])
            confidence.append(decision.confidence)
            decided_right.append(decision.agent == expected)
            for entry in decision.usage.values():
                input_tokens += entry["input_tokens"]
                output_tokens += entry["output_tokens"]
                usage.append(entry)
            if progress is not None and task is not None:
                progress.advance(task)
    cost = total_cost(usage)
    y, p = np.asarray(truth), np.asarray(routed)
    right = y == p
    oos_recall = oos_precision = None
    in_scope = np.ones(len(y), dtype=bool)
    if default is not None:
        is_oos = y == index[default]
        in_scope = ~is_oos
        sent = p == index[default]
        oos_recall = float(right[is_oos].mean()) if is_oos.any() else None
        oos_precision = float(is_oos[sent].mean()) if sent.any() else None
    matrix = np.zeros((len(names), len(names)), dtype=int)
    for t, q in zip(y, p, strict=True):
        if t >= 0:
            matrix[t, q] += 1
    return RoutingReport(
        rows=len(rows),
        labels=names,
        accuracy=float(right.mean()),
        in_scope_accuracy=float(right[in_scope].mean()) if in_scope.any() else math.nan,
        oos_recall=oos_recall,
        oos_precision=oos_precision,
        macro_f1=float(
            f1_score(y, p, labels=list(range(len(names))), average="macro", zero_division=0)
        ),
        ece=expected_calibration_error(confidence, decided_right),
        latency_ms_mean=float(np.mean(latency)),
        latency_ms_p95=float(np.percentile(latency, 95)),
        confusion=matrix.tolist(),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost.cost_usd,
        known_cost_usd=cost.known_cost_usd,
    )


def confusion_text(report: RoutingReport) -> str:
    """The confusion matrix as a plain-text table (rows: true agent, columns: routed agent)."""
    names = report.labels
    width = max(6, *(len(n) for n in names))
    longest = max(len(str(max(max(r) for r in report.confusion))), min(8, max(map(len, names))))
    cell = max(5, longest + 1)
    short = [n[: cell - 1] for n in names]
    lines = [" " * width + " " + "".join(f"{s:>{cell}}" for s in short)]
    for name, counts in zip(names, report.confusion, strict=True):
        lines.append(f"{name:<{width}} " + "".join(f"{c:>{cell}}" for c in counts))
    return "\n".join(lines) + "\n"


def confusion_png(report: RoutingReport, path: Path, title: str) -> bool:
    """Draw the row-normalised confusion matrix to `path`; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    counts = np.asarray(report.confusion, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(report.labels)
    size = min(4 + 0.28 * n, 24)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(n), report.labels, rotation=90, fontsize=max(4, 10 - n // 12))
    axes.set_yticks(range(n), report.labels, fontsize=max(4, 10 - n // 12))
    axes.set_xlabel("routed to")
    axes.set_ylabel("true agent")
    axes.set_title(title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    colour = "white" if shares[i, j] > 0.5 else "black"
                    axes.text(
                        j,
                        i,
                        str(int(counts[i, j])),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=colour,
                    )
    figure.colorbar(
        image, ax=axes, fraction=0.046, pad=0.04, label="share of the true agent's rows"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def environment(classifier: Classifier) -> dict[str, Any]:
    """The machine and model a routing measurement ran on (for the results file)."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    embedder = getattr(classifier, "embedder", None)
    if embedder is not None:
        info["embedding_model"] = embedder.model_id
        torch: Any = sys.modules.get("torch")
        if torch is not None:
            info["torch"] = torch.__version__
    return info
