"""Cold start: the command line builds its parser, lists the patterns and prints every help without
importing LangGraph, LangChain, scikit-learn, numpy or OpenTelemetry's SDK.

What gets imported is checked in a fresh interpreter (this test process has them all loaded);
nothing here measures time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from switchyard.cli.eval_router import evaluation_help
from switchyard.cli.main import _parser, main
from switchyard.runtime.registry import DESCRIPTIONS, PATTERNS, describe
from switchyard.state.agents import AgentSpec
from switchyard.state.context import Context

HEAVY = (
    "langgraph",
    "langchain_core",
    "langchain",
    "sklearn",
    "scipy",
    "numpy",
    "torch",
    "transformers",
    "opentelemetry.sdk",
)
"""What a cold `switchyard graphs` or `switchyard X --help` must not import."""

_PROBE = textwrap.dedent(
    """
    import contextlib, io, json, pkgutil, sys

    import switchyard.cli
    from switchyard.cli.main import main

    def call(argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
        return {"argv": argv, "code": code, "out": out.getvalue()}

    for module in pkgutil.iter_modules(switchyard.cli.__path__):
        __import__(f"switchyard.cli.{module.name}")
    calls = [call(argv) for argv in json.loads(sys.argv[1])]
    heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
    print(json.dumps({"calls": calls, "heavy": heavy}))
    """
)


def _commands() -> list[list[str]]:
    """Every subcommand, nested ones (`dlq list`) included, as the argv that names it."""

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append([*prefix, name])
                    found.extend(walk(sub, [*prefix, name]))
        return found

    return walk(_parser(), [])


def _cold(argvs: list[list[str]]) -> dict[str, Any]:
    """Run `main` on each argv in a fresh interpreter: what each printed, and what got imported."""
    env = {**os.environ, "COLUMNS": "250"}  # one table row per pattern: nothing is wrapped
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argvs), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def cold() -> dict[str, Any]:
    """`switchyard graphs`, `switchyard --help` and every `switchyard X --help`, run cold."""
    return _cold([["graphs"], ["--help"], *([*argv, "--help"] for argv in _commands())])


def test_listing_patterns_and_printing_help_import_nothing_heavy(cold: dict[str, Any]) -> None:
    assert cold["heavy"] == []


def test_graphs_lists_every_pattern_with_what_it_does(cold: dict[str, Any]) -> None:
    graphs = cold["calls"][0]
    assert graphs["code"] == 0
    lines = graphs["out"].splitlines()
    assert len(PATTERNS) == 7
    for name in PATTERNS:
        (row,) = [line for line in lines if line.split()[:1] == [name]]
        assert describe(name) in row


def test_every_command_prints_its_help(cold: dict[str, Any]) -> None:
    top, *helps = cold["calls"][1:]
    assert top["code"] == 0
    assert "usage: switchyard" in top["out"]
    assert len(helps) == len(_commands())
    for call in helps:
        assert call["code"] == 0, call["argv"]
        assert f"usage: switchyard {' '.join(call['argv'][:-1])}" in call["out"], call["argv"]


def test_pattern_descriptions_are_the_pattern_modules_docstrings() -> None:
    assert list(DESCRIPTIONS) == list(PATTERNS)
    for name in PATTERNS:
        module = importlib.import_module(f"switchyard.graphs.{name}")
        assert describe(name) == (module.__doc__ or "").strip().splitlines()[0]


def test_eval_router_help_is_the_evaluation_modules_docstring() -> None:
    evaluation = importlib.import_module("switchyard.eval.router")
    assert evaluation_help() == (evaluation.__doc__ or "").split("\n\n", 1)[1]


def test_the_parser_shows_the_defaults_the_runtime_applies(cold: dict[str, Any]) -> None:
    run_args = _parser().parse_args(["run", "router", "hi"])
    assert run_args.deadline == Context().deadline_s
    evaluation = _parser().parse_args(["eval-router", "data.jsonl", "--label-field", "domain"])
    assert evaluation.confidence_threshold == Context().confidence_threshold
    (run_help,) = [call["out"] for call in cold["calls"] if call["argv"] == ["run", "--help"]]
    assert f"{AgentSpec(name='a', description='b').timeout_s:g} unless" in " ".join(
        run_help.split()
    )


@pytest.mark.parametrize("argv", [["graphs"], ["dlq", "list"]])
def test_commands_that_run_no_model_skip_the_settings_check(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWITCHYARD_REDIS_URL", "not a redis url")
    monkeypatch.setenv("SWITCHYARD_DLQ", str(tmp_path / "dlq.sqlite"))
    assert main(argv) == 0


def test_a_command_that_runs_a_model_still_checks_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWITCHYARD_REDIS_URL", "not a redis url")
    store = tmp_path / "state.sqlite"
    assert main(["run", "router", "hi", "--checkpointer", str(store)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("switchyard: error: SWITCHYARD_REDIS_URL is not a Redis URL")
    assert not store.exists()


def test_the_demo_module_builds_only_the_graph_asked_for() -> None:
    probe = textwrap.dedent(
        """
        import json, sys
        import switchyard.graphs.demos as demos
        before = sorted(m for m in sys.modules if m.startswith("switchyard.graphs."))
        from switchyard.graphs.demos import router
        from switchyard.graphs.router import build_router_graph
        from switchyard.runtime.registry import graph_reference
        mine = build_router_graph(demos.ROUTER_AGENTS, default_agent="support").compile()
        reference = graph_reference(mine)  # looks for a demo graph without building one
        built = sorted(n for n in ("router", "pipeline", "events", "HIERARCHICAL_WORKERS")
                       if n in vars(demos))
        after = sorted(m for m in sys.modules if m.startswith("switchyard.graphs."))
        workers = demos.HIERARCHICAL_WORKERS
        print(json.dumps({"before": before, "built": built, "after": after,
                          "same": demos.router is router, "workers": len(workers),
                          "listed": "swarm" in dir(demos), "reference": reference}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(done.stdout)
    assert seen["before"] == ["switchyard.graphs.demos"]
    assert seen["built"] == ["router"]
    assert "switchyard.graphs.events" not in seen["after"]
    assert seen["same"] is True
    assert seen["workers"] == 3
    assert seen["listed"] is True
    assert seen["reference"] is None
    import switchyard.graphs.demos as demos

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = demos.nope


def test_run_says_when_building_the_graph_fits_its_classifier(
    fresh_cache_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "SWITCHYARD_CACHE_DIR": str(fresh_cache_dir)}
    env["SWITCHYARD_CLASSIFIER"] = "lexical"
    command = [sys.executable, "-m", "switchyard", "run", "router", "I need a refund"]
    first, second = (
        subprocess.run(
            [*command, "--checkpointer", "memory"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=True,
        )
        for _ in range(2)
    )
    assert ".. loading router classifier (fitting once) " in first.stderr
    assert ".. loading router classifier (from cache) " in second.stderr
    assert "fitting" not in second.stderr
