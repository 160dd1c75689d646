"""`switchyard bench startup --quick` measures every row and writes startup.json and RESULTS.md.

These tests keep the harness working; they never assert how fast anything starts. The quick run
spawns a few dozen fresh processes (about a minute on two cores). It needs the `bench` extra (the
peer frameworks); the semantic rows need the semantic extra and say so when it is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from switchyard.bench.harness import rss_mb
from switchyard.bench.startup import Spawner, child_env, import_packages, parse_importtime
from switchyard.cli import bench as bench_cli
from switchyard.nodes.classifiers import semantic_available

ROWS = {
    "import": "process",
    "graphs": "process",
    "help": "process",
    "run-semantic": "process",
    "run-lexical": "process",
    "langgraph": "process",
    "openai-agents": "process",
    "agent-squad": "process",
    "warm-route": "warm-route",
    "first-run": "first-run",
}
SEMANTIC = {"run-semantic", "warm-route", "first-run"}
FIGURES = {
    "process": ("median_s", "min_s", "max_s", "peak_rss_mb"),
    "warm-route": ("median_ms", "p90_ms", "min_ms", "max_ms", "first_ms"),
    "first-run": ("wall_s", "peak_rss_mb"),
}


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `switchyard bench startup --quick` into a temporary directory, shared by the tests."""
    base = tmp_path_factory.mktemp("bench")
    parser = argparse.ArgumentParser(prog="switchyard")
    bench_cli.add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "startup", "--quick", "--dir", str(base)])
    code = args.handler(args, Console(quiet=True))
    result = json.loads((base / "results" / "startup.json").read_text())
    return {"code": code, "base": base, "result": result}


def test_every_row_is_measured_with_positive_numbers(quick_run: dict[str, Any]) -> None:
    result = quick_run["result"]
    assert quick_run["code"] == 0, result["notes"]
    rows = {row["key"]: row for row in result["rows"]}
    assert set(rows) == set(ROWS)
    for key, kind in ROWS.items():
        row = rows[key]
        assert row["kind"] == kind
        if key in SEMANTIC and not semantic_available():
            assert row["status"] == "unavailable"
            assert "semantic" in row["reason"]
            continue
        assert row["status"] == "ok", row.get("reason")
        for figure in FIGURES[kind]:
            assert _positive(row[figure]), (key, figure, row.get(figure))
    for key, row in rows.items():
        if ROWS[key] == "process" and row["status"] == "ok":
            assert row["n"] == len(row["samples_s"]) == len(row["rss_samples_mb"]) >= 1
            assert all(_positive(s) for s in row["samples_s"] + row["rss_samples_mb"])
            assert isinstance(row["met"], bool) or row["target_s"] is None


def test_the_result_file_records_the_environment_and_the_command(
    quick_run: dict[str, Any],
) -> None:
    result = quick_run["result"]
    assert result["name"] == "startup"
    assert result["quick"] is True
    assert result["environment"]["command"].startswith("switchyard bench startup --quick")
    assert result["environment"]["python"]
    assert result["config"]["repetitions"] >= 1


def test_the_report_has_the_startup_table_and_the_command(quick_run: dict[str, Any]) -> None:
    base: Path = quick_run["base"]
    report = (base / "RESULTS.md").read_text()
    section = report.split("## 5. Startup", 1)[1].split("\n## ", 1)[0]
    assert "switchyard bench startup" in section
    for row in quick_run["result"]["rows"]:
        assert f"| {row['name']}" in section
    # The other benchmarks were not run into this directory; their sections say so.
    assert "Not run yet: `switchyard bench overhead`" in report


def test_a_child_reports_its_own_peak_memory_not_the_parents(tmp_path: Path) -> None:
    with Spawner(tmp_path) as spawner:
        sample = spawner.run(
            [sys.executable, "-c", "pass"], env=child_env(tmp_path / "cache"), cwd=tmp_path
        )
    assert sample.code == 0
    # This test process has LangGraph and the bench loaded; a bare interpreter is far smaller,
    # which it would not be if the spawning process's memory were counted.
    assert 0 < sample.rss_mb < rss_mb()


def test_a_failing_child_is_reported_with_its_exit_code_and_stderr(tmp_path: Path) -> None:
    code = "import sys; print('broken', file=sys.stderr); sys.exit(3)"
    with Spawner(tmp_path) as spawner:
        sample = spawner.run([sys.executable, "-c", code], env=child_env(tmp_path), cwd=tmp_path)
    assert sample.code == 3
    assert "broken" in sample.stderr


def test_importtime_output_is_reduced_to_top_level_imports_by_cumulative_time() -> None:
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |     small.child",
            "import time:       200 |        300 |   small",
            "import time:        50 |       5000 | big",
            "import time:        10 |         10 | tiny",
            "not an import line",
        ]
    )
    assert parse_importtime(stderr) == [
        {"module": "big", "cumulative_ms": 5.0},
        {"module": "tiny", "cumulative_ms": 0.01},
    ]


def test_import_time_is_summed_per_package_by_self_time() -> None:
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |     small.child",
            "import time:       200 |        300 |   small",
            "import time:        50 |       5000 | big",
            "import time:      4000 |       4000 |   big.inner",
            "not an import line",
        ]
    )
    found = import_packages(stderr)
    assert [p["package"] for p in found] == ["big", "small"]
    assert [p["self_ms"] for p in found] == pytest.approx([4.05, 0.3])
