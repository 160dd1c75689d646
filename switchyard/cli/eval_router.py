"""`switchyard eval-router`: measure how well a classifier routes a labelled dataset.

The measuring is `switchyard.eval.router`; this module reads the arguments, shows progress, writes
the result files and prints the tables.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from switchyard import eval as evaluation_package
from switchyard.core.defaults import CLASSIFIERS, CONFIDENCE_THRESHOLD
from switchyard.core.errors import SwitchyardError

if TYPE_CHECKING:
    from rich.progress import Progress

    from switchyard.eval.router import AgentSet, RoutingReport, Row
    from switchyard.nodes.calibration import Calibration

# The handler imports the evaluation (scikit-learn, numpy, LangChain) when it runs: building the
# parser, for `switchyard --help` or `switchyard graphs`, must not load it.

OOS_WEIGHT = 0.2
"""Default weight of out-of-scope recall against in-scope accuracy when fitting the threshold.

At 0.2 an in-scope request sent to the default agent costs four times an out-of-scope request
sent to a specialist: losing in-scope requests is the worse mistake for a router. Measured on
the development splits (bench/ROUTING.md), 0.15 to 0.25 choose the same threshold.
"""


def evaluation_help() -> str:
    """The help of `eval-router`: the docstring of `switchyard.eval.router` after its first line.

    It is read from the module's source: importing the module would load scikit-learn.
    """
    source = Path(evaluation_package.__file__).with_name("router.py").read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(source), clean=False) or ""
    return docstring.split("\n\n", 1)[1]


def add_command(commands: Any) -> None:
    """Add the `eval-router` subcommand to the CLI's subparsers."""
    cmd = commands.add_parser(
        "eval-router",
        help="measure how well a classifier routes a labelled dataset",
        description=evaluation_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("dataset", metavar="DATASET.jsonl", help="the evaluation file")
    cmd.add_argument(
        "--label-field", required=True, help="the field holding the label (e.g. domain, intent)"
    )
    cmd.add_argument(
        "--classifier",
        choices=CLASSIFIERS,
        default=None,
        help="default: semantic when the semantic extra is installed, else lexical",
    )
    cmd.add_argument(
        "--train", default=None, help="training file (default: train.jsonl next to DATASET)"
    )
    cmd.add_argument(
        "--holdout",
        type=float,
        default=None,
        metavar="FRACTION",
        help="evaluate a seeded, stratified FRACTION of DATASET and train on the rest",
    )
    cmd.add_argument(
        "--max-examples",
        type=int,
        default=None,
        metavar="N",
        help="keep at most N seeded, random training rows per label (few-shot routing)",
    )
    cmd.add_argument("--seed", type=int, default=0, help="seed of every split (default 0)")
    cmd.add_argument(
        "--fit",
        action="store_true",
        help="fit the confidence map and the out-of-scope threshold, and save them",
    )
    cmd.add_argument(
        "--validation",
        default=None,
        help="validation file for --fit (default: cross-fitting on the training rows)",
    )
    cmd.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5)")
    cmd.add_argument(
        "--calibration", default=None, metavar="FILE", help="use a saved calibration JSON"
    )
    cmd.add_argument("--oos-label", default="oos", help="label of out-of-scope rows (default: oos)")
    cmd.add_argument(
        "--default-label",
        default=None,
        help="label whose agent is the default agent (default: the out-of-scope label)",
    )
    cmd.add_argument(
        "--oos-weight",
        type=float,
        default=OOS_WEIGHT,
        help="weight of out-of-scope recall against in-scope accuracy when fitting the "
        "threshold (default %(default)s: in-scope accuracy counts four times as much)",
    )
    cmd.add_argument(
        "--confidence-threshold",
        type=float,
        default=CONFIDENCE_THRESHOLD,
        help="the router's Context.confidence_threshold (default %(default)s)",
    )
    cmd.add_argument(
        "--head",
        choices=("auto", "similarity", "linear"),
        default="auto",
        help="scoring head of the lexical and semantic classifiers (default auto)",
    )
    cmd.add_argument(
        "--precision",
        choices=("auto", "float32", "int8"),
        default="auto",
        help="numeric precision of the embedding model (default auto: int8)",
    )
    cmd.add_argument("--model", default=None, help="model of the LLM classifier")
    cmd.add_argument("--limit", type=int, default=None, help="route only the first N rows")
    cmd.add_argument("--threads", type=int, default=1, help="CPU threads while routing (default 1)")
    cmd.add_argument(
        "--out",
        default=".switchyard/eval-router",
        help="folder for results JSON, confusion matrix and calibration (default %(default)s)",
    )
    cmd.set_defaults(handler=_handle)


def output_stem(args: argparse.Namespace, dataset: str, kind: str) -> str:
    """File name stem of a run's outputs: dataset, label field, classifier and what differs."""
    parts = ["routing", dataset, args.label_field, kind]
    if args.head != "auto":
        parts.append(args.head)
    if args.max_examples is not None:
        parts.append(f"{args.max_examples}shot")
    if args.seed != 0:
        parts.append(f"seed{args.seed}")
    if args.precision != "auto":
        parts.append(args.precision)
    if args.fit or args.calibration:
        parts.append("fitted")
    return "_".join(parts)


def reproduce_command(args: argparse.Namespace, kind: str) -> str:
    """The `switchyard eval-router` command line that repeats this evaluation."""
    parts = ["switchyard", "eval-router", args.dataset, "--label-field", args.label_field]
    parts += ["--classifier", kind]
    defaults = {
        "train": None,
        "holdout": None,
        "max_examples": None,
        "seed": 0,
        "validation": None,
        "folds": 5,
        "calibration": None,
        "oos_label": "oos",
        "default_label": None,
        "oos_weight": OOS_WEIGHT,
        "confidence_threshold": CONFIDENCE_THRESHOLD,
        "head": "auto",
        "precision": "auto",
        "model": None,
        "limit": None,
        "threads": 1,
    }
    for name, default in defaults.items():
        value = getattr(args, name)
        if value != default:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    if args.fit:
        parts.append("--fit")
    parts += ["--out", args.out]
    return shlex.join(parts)


@dataclass
class _Files:
    train: Path
    evaluate: Path
    validation: Path | None
    split: str


def _resolve_files(args: argparse.Namespace) -> _Files:
    evaluate = Path(args.dataset)
    validation = Path(args.validation) if args.validation else None
    if args.holdout is not None:
        if args.train:
            raise SwitchyardError(
                "--holdout splits DATASET into training and evaluation rows; drop --train"
            )
        split = (
            f"{evaluate}: a seeded (seed {args.seed}), stratified {args.holdout:.0%} "
            f"is evaluated, the rest trains"
        )
        return _Files(evaluate, evaluate, validation, split)
    train = Path(args.train) if args.train else evaluate.parent / "train.jsonl"
    if train.exists() and evaluate.exists() and train.resolve() == evaluate.resolve():
        raise SwitchyardError(
            f"{evaluate} is the training file; pass --holdout FRACTION to evaluate on a "
            "held-out part of it"
        )
    return _Files(train, evaluate, validation, f"trained on {train}, evaluated on {evaluate}")


def _handle(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from switchyard.eval.router import (
        DatasetError,
        build_agents,
        confusion_png,
        confusion_text,
        environment,
        load_dataset,
        make_classifier,
        route_rows,
        sample_per_label,
        stratified_split,
    )
    from switchyard.nodes.calibration import Calibration
    from switchyard.nodes.classifiers import semantic_available

    kind = args.classifier or ("semantic" if semantic_available() else "lexical")
    if args.fit and args.calibration:
        raise SwitchyardError("give --fit or --calibration, not both")
    if (args.fit or args.calibration) and kind == "llm":
        raise SwitchyardError(
            "--fit and --calibration need a scoring classifier: --classifier lexical or semantic"
        )
    if args.folds < 2:
        raise SwitchyardError(f"--folds must be at least 2, got {args.folds}")
    files = _resolve_files(args)
    training = load_dataset(files.train, args.label_field)
    if args.holdout is not None:
        training, evaluation = stratified_split(training, args.holdout, args.seed)
    else:
        evaluation = load_dataset(files.evaluate, args.label_field)
    if args.limit is not None:
        evaluation = evaluation[: args.limit]
    if args.max_examples is not None:
        training = sample_per_label(training, args.max_examples, args.seed)
    agent_set = build_agents(training, oos_label=args.oos_label, default_label=args.default_label)
    unknown = sorted({row.label for row in evaluation} - set(agent_set.agent_of))
    if unknown:
        raise DatasetError(
            f"{files.evaluate}: labels not in the training rows: {', '.join(unknown[:5])}"
        )
    embedder = None
    if kind == "semantic" and semantic_available():
        from switchyard.nodes.embedder import Embedder

        embedder = Embedder(precision=args.precision)
    dataset = files.evaluate.parent.name or "dataset"
    stem = output_stem(args, dataset, kind)
    out = Path(args.out)
    calibration: Calibration | None = None
    fit_note = "none (default confidence map)" if kind != "llm" else "the model's own"
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        if embedder is not None:
            texts = sorted({row.text for row in training})
            task = progress.add_task("embedding training rows (cached on disk)", total=None)
            embedder.remember(texts, embedder.encode_cached(texts))
            progress.update(task, total=1, completed=1)
        classifier = make_classifier(
            kind, agent_set, head=args.head, embedder=embedder, model=args.model
        )
        if args.calibration:
            calibration = Calibration.load(args.calibration)
            fit_note = f"loaded from {args.calibration}"
        elif args.fit:
            calibration, fit_note = _fit(
                args, kind, classifier, training, agent_set, files, embedder, progress
            )
        if calibration is not None:
            classifier = make_classifier(
                kind,
                agent_set,
                head=getattr(classifier, "head", "auto"),
                calibration=calibration,
                embedder=embedder,
                model=args.model,
            )
        prepare = getattr(classifier, "prepare", None)
        if prepare is not None:
            prepare()
        if embedder is not None:
            embedder.forget()  # every route embeds its request, as in the router
        report = route_rows(
            classifier,
            evaluation,
            agent_set,
            threshold=args.confidence_threshold,
            threads=args.threads,
            progress=progress,
        )
    report.settings = {
        "command": reproduce_command(args, kind),
        "classifier": kind,
        "scorer": getattr(classifier, "scorer", kind),
        "label_field": args.label_field,
        "split": files.split,
        "training_rows": len(training),
        "evaluation_rows": len(evaluation),
        "default_agent": agent_set.default_agent,
        "router_threshold": args.confidence_threshold if agent_set.default_agent else None,
        "calibration": fit_note,
        "calibration_threshold": calibration.threshold if calibration else None,
        "threads": args.threads,
        "environment": environment(classifier),
    }
    out.mkdir(parents=True, exist_ok=True)
    if calibration is not None and args.fit:
        calibration.save(out / f"{stem}.calibration.json")
    (out / f"{stem}.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (out / f"{stem}.confusion.txt").write_text(confusion_text(report))
    drew = confusion_png(
        report, out / f"{stem}.confusion.png", f"{dataset} {args.label_field}: {kind}"
    )
    _print_report(report, console, files, fit_note)
    written = [f"{stem}.json", f"{stem}.confusion.txt"]
    if drew:
        written.append(f"{stem}.confusion.png")
    if calibration is not None and args.fit:
        written.append(f"{stem}.calibration.json")
    console.print(f"written to {out}/: {', '.join(written)}", markup=False, highlight=False)
    if not drew:
        console.print("confusion PNG skipped: matplotlib is not installed", markup=False)
    return 0


def _fit(
    args: argparse.Namespace,
    kind: str,
    classifier: Any,
    training: Sequence[Row],
    agent_set: AgentSet,
    files: _Files,
    embedder: Any,
    progress: Progress,
) -> tuple[Calibration, str]:
    """Fit a calibration on the validation file, or on cross-fitted training scores."""
    from switchyard.eval.router import DatasetError, cross_fitted_scores, load_dataset, score_rows
    from switchyard.nodes.calibration import CalibrationError, fit_calibration

    if files.validation is not None:
        validation = load_dataset(files.validation, args.label_field)
        unknown = sorted({row.label for row in validation} - set(agent_set.agent_of))
        if unknown:
            raise DatasetError(
                f"{files.validation}: labels not in the training rows: {', '.join(unknown[:5])}"
            )
        scores = score_rows(classifier, [row.text for row in validation])
        rows: Sequence[Row] = validation
        source = f"validation file {files.validation} ({len(validation)} rows)"
    else:
        scores = cross_fitted_scores(
            kind,
            training,
            agent_set,
            folds=args.folds,
            seed=args.seed,
            head=classifier.head,
            embedder=embedder,
            progress=progress,
        )
        rows = training
        source = f"{args.folds}-fold cross-fitted training rows ({len(training)} rows)"
    try:
        calibration = fit_calibration(
            classifier.scorer,
            agent_set.names,
            scores,
            [agent_set.agent_of[row.label] for row in rows],
            default_agent=agent_set.default_agent,
            oos_weight=args.oos_weight,
            floor=args.confidence_threshold,
            fitted_on={"source": source, "seed": args.seed},
        )
    except CalibrationError as exc:
        raise SwitchyardError(f"cannot fit the calibration: {exc}") from None
    return calibration, f"fitted on {source}"


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _print_report(report: RoutingReport, console: Console, files: _Files, fit: str) -> None:
    from switchyard.core.pricing import format_cost
    from switchyard.eval.router import confusion_text

    console.print(f"split: {files.split}", markup=False, highlight=False)
    console.print(f"calibration: {fit}", markup=False, highlight=False)
    table = Table(show_edge=False)
    for column in (
        "rows",
        "acc",
        "in-scope",
        "OOS rec",
        "OOS prec",
        "F1",
        "ECE",
        "ms/route",
        "p95",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        str(report.rows),
        _pct(report.accuracy),
        _pct(report.in_scope_accuracy),
        _pct(report.oos_recall),
        _pct(report.oos_precision),
        f"{report.macro_f1:.3f}",
        f"{report.ece:.3f}",
        f"{report.latency_ms_mean:.2f}",
        f"{report.latency_ms_p95:.2f}",
    )
    console.print(table)
    if report.input_tokens or report.output_tokens:
        console.print(
            f"tokens in/out: {report.input_tokens}/{report.output_tokens}, "
            f"cost {format_cost(report.cost_usd, known=report.known_cost_usd, digits=4)}",
            markup=False,
        )
    if len(report.labels) <= 20:
        console.print(confusion_text(report), markup=False, highlight=False)
    else:
        pairs = [
            (count, report.labels[i], report.labels[j])
            for i, row in enumerate(report.confusion)
            for j, count in enumerate(row)
            if i != j and count
        ]
        console.print("most frequent confusions (true -> routed):", markup=False)
        for count, true, routed in sorted(pairs, reverse=True)[:10]:
            console.print(f"  {count:4d}  {true} -> {routed}", markup=False, highlight=False)
