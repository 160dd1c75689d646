"""`switchyard schedule ...` from the command line: each action, and one clear error per mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchyard.cli.main import main
from switchyard.storage.schedules import ScheduleStore


@pytest.fixture(autouse=True)
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sessions, dead letters and schedules of this test in its own folder."""
    monkeypatch.setenv("SWITCHYARD_CHECKPOINTER", str(tmp_path / "state.sqlite"))
    monkeypatch.setenv("SWITCHYARD_DLQ", str(tmp_path / "dlq.sqlite"))
    monkeypatch.setenv("SWITCHYARD_SCHEDULES", str(tmp_path / "schedules.sqlite"))
    monkeypatch.delenv("SWITCHYARD_MODEL", raising=False)
    return tmp_path


def _add(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["schedule", "add", *argv, "--json"]) == 0
    job: dict[str, object] = json.loads(capsys.readouterr().out)
    return job


def test_add_list_show_pause_resume_remove(capsys: pytest.CaptureFixture[str]) -> None:
    job = _add(
        capsys,
        "events",
        "check the queues at {scheduled_at}",
        "--cron",
        "*/5 * * * *",
        "--tz",
        "Europe/Zurich",
        "--user",
        "ops",
        "--budget-usd",
        "0.5",
        "--daily-budget-usd",
        "5",
        "--overlap",
        "queue",
        "--catchup",
        "120",
        "--jitter",
        "3",
        "--max-failures",
        "2",
    )
    assert job["model"] == "offline"  # pinned: SWITCHYARD_MODEL is unset
    assert (job["overlap"], job["catchup_s"], job["jitter_s"]) == ("queue", 120.0, 3.0)
    assert (job["budget_usd"], job["daily_budget_usd"], job["max_failures"]) == (0.5, 5.0, 2)
    job_id = str(job["id"])
    assert main(["schedule", "list"]) == 0
    listed = capsys.readouterr().out
    assert job_id in listed
    assert "events" in listed
    assert main(["schedule", "pause", job_id, "--reason", "maintenance"]) == 0
    assert ScheduleStore().get(job_id).paused_reason == "maintenance"
    assert main(["schedule", "show", job_id]) == 0
    shown = capsys.readouterr().out
    assert "paused (maintenance)" in shown
    assert "Europe/Zurich" in shown
    assert main(["schedule", "resume", job_id]) == 0
    assert ScheduleStore().get(job_id).status == "active"
    assert main(["schedule", "remove", job_id]) == 0
    assert ScheduleStore().jobs() == []


def test_run_now_fires_once_and_show_lists_it_with_outcome_and_cost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id = str(_add(capsys, "router", "I was charged twice", "--every", "3600")["id"])
    assert main(["schedule", "run-now", job_id]) == 0
    capsys.readouterr()
    assert main(["schedule", "show", job_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    [firing] = shown["firings"]
    assert firing["status"] == "ok"
    assert firing["end_reason"] == "completed"
    assert firing["cost_usd"] == 0.0
    assert firing["tokens"] > 0
    assert firing["id"].startswith(f"{job_id}@")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["router", "hi", "--cron", "61 * * * *"], "cron expression '61 * * * *' is invalid"),
        (["router", "hi", "--cron", "0 9 * * *", "--tz", "Mars/Base"], "unknown time zone"),
        (["nowhere", "hi", "--every", "60"], "nowhere"),
        (["router", "hi", "--every", "60", "--model", "nope:model"], "nope"),
        (["router", "   ", "--every", "60"], "empty"),
        (["router", "hi", "--every", "60", "--user", " "], "user_id is empty"),
        (["router", "hi", "--every", "60", "--address", "x:1"], "need --engine temporal"),
        (["router", "hi", "--every", "1e20"], "whole number of seconds"),
        (["router", "hi", "--every", "2.5"], "whole number of seconds"),
        (["router", "hi", "--every", "60", "--jitter", "1e300"], "jitter_s must be from 0"),
        (["router", "hi", "--every", "60", "--jitter", "60"], "shorter than the interval"),
        (
            ["router", "hi", "--cron", "0 9 1 * 1", "--engine", "temporal", "--address", "h:1"],
            "restricts both the day of the month and the day of the week",
        ),
    ],
)
def test_a_bad_job_is_one_clear_error_and_stores_nothing(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["schedule", "add", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("switchyard: error: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert ScheduleStore().jobs() == []


@pytest.mark.parametrize(
    "argv",
    [
        ["schedule", "add", "router", "hi"],  # neither --cron nor --every
        ["schedule", "add", "router", "hi", "--every", "60", "--cron", "* * * * *"],
        ["schedule", "add", "router", "hi", "--every", "60", "--session", "s", "--fresh-session"],
        ["schedule", "add", "router", "hi", "--every", "-1"],
        ["schedule", "add", "router", "hi", "--every", "60", "--overlap", "sometimes"],
    ],
)
def test_contradictory_options_are_refused_by_the_parser(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


@pytest.mark.parametrize("action", ["show", "pause", "resume", "remove", "run-now"])
def test_an_unknown_job_is_one_clear_error(capsys: pytest.CaptureFixture[str], action: str) -> None:
    assert main(["schedule", action, "nosuchjob"]) == 2
    err = capsys.readouterr().err
    assert "no scheduled job 'nosuchjob'" in err
    assert len(err.strip().splitlines()) == 1


def test_a_store_that_fails_is_one_line_that_never_shows_its_password(
    capsys: pytest.CaptureFixture[str], postgres_server: str
) -> None:
    secret = "postgresql://postgres:S3cretPW@127.0.0.1:1/test"
    assert main(["schedule", "--store", secret, "list"]) == 2
    err = capsys.readouterr().err
    assert "S3cretPW" not in err
    assert "cannot open the schedules at postgresql://postgres@127.0.0.1:1/test" in err
    no_schema = f"{postgres_server}?options=-csearch_path%3Dno_such_schema_here"
    assert main(["schedule", "--store", no_schema, "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("switchyard: error: the schedules at postgresql://")
    assert len(err.strip().splitlines()) == 1
