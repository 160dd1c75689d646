"""The `switchyard` command line: answers and tables, JSON, sessions, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.cli import main
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OFFLINE_MARKER, OfflineChatModel
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.runtime.registry import load_graph
from switchyard.runtime.run import RunResult, thread_id_for
from switchyard.storage.persistence import open_checkpointer

REPO = Path(__file__).resolve().parents[2]
TABLE_HEADER = re.compile(
    r"agent\s+┃\s+confidence\s+┃\s+latency\s+┃\s+tokens in\/out\/total\s+┃\s+cost", re.MULTILINE
)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "state.sqlite")


def test_run_prints_the_answer_and_the_table(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["run", "router", "I need a refund for my last payment", "--checkpointer", db, "--quiet"]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"{OFFLINE_MARKER} Customer support agent: I received your request")
    assert TABLE_HEADER.search(out)
    row = next(line for line in lines if line.lstrip().startswith("support "))
    assert re.fullmatch(
        r" support\s+│\s+[01]\.\d\d │\s+[\d.]+ ms │\s+\d+/\d+/\d+ │ \$0\.000000\s*", row
    ), row
    assert "route: closest match support (similarity " in out
    assert re.search(r"session: (\w+) \(continue with --user local --session \1\)", out)


def test_json_output_is_a_run_result(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "run",
            "router",
            "How do I authenticate with the API?",
            "--json",
            "--user",
            "ada",
            "--session",
            "s1",
            "--checkpointer",
            db,
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    result = RunResult.model_validate(json.loads(out))
    assert result.ok
    assert result.agent_name == "docs"
    assert result.output.startswith(OFFLINE_MARKER)
    assert (result.user_id, result.session_id) == ("ada", "s1")
    assert result.thread_id == thread_id_for("ada", "s1")
    assert result.total_tokens == result.input_tokens + result.output_tokens > 0


def test_two_runs_with_the_same_session_continue_the_conversation(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ada_s1 = ["--user", "ada", "--session", "s1", "--checkpointer", db, "--json"]
    bob_s1 = ["--user", "bob", "--session", "s1", "--checkpointer", db, "--json"]
    assert main(["run", "router", "I need a refund for my last payment", *ada_s1]) == 0
    assert main(["run", "router", "I was charged twice this month", *ada_s1]) == 0
    assert main(["run", "router", "Is there a Python SDK?", *bob_s1]) == 0
    capsys.readouterr()
    with open_checkpointer(db) as saver:
        graph = load_graph("router").builder.compile(checkpointer=saver)
        ada = graph.get_state({"configurable": {"thread_id": thread_id_for("ada", "s1")}})
        bob = graph.get_state({"configurable": {"thread_id": thread_id_for("bob", "s1")}})
    assert [(m.type, m.name) for m in ada.values["messages"]] == [
        ("human", None),
        ("ai", "support"),
        ("human", None),
        ("ai", "support"),
    ]
    assert [m.text for m in ada.values["messages"]][::2] == [
        "I need a refund for my last payment",
        "I was charged twice this month",
    ]
    assert [m.text for m in bob.values["messages"]][:1] == ["Is there a Python SDK?"]
    assert len(bob.values["messages"]) == 2


def test_graphs_lists_exactly_the_patterns_in_langgraph_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["graphs"]) == 0
    out, _ = capsys.readouterr()
    listed = re.findall(r"^ (\w+)\s+│", out, flags=re.MULTILINE)
    expected = json.loads((REPO / "langgraph.json").read_text())["graphs"]
    assert listed == list(expected)
    assert "Router: a classifier picks one specialised agent per turn" in out


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


BAD_RUNS: dict[str, tuple[list[str], str]] = {
    "empty": (["run", "router", ""], "message is empty: send some text"),
    "whitespace": (["run", "router", "  \n "], "message is empty: send some text"),
    "one_megabyte": (["run", "router", "x" * 1_000_000], "message is 1,000,000 characters"),
    "invalid_utf8": (
        ["run", "router", os.fsdecode(b"refund \xff please")],
        "message is not valid UTF-8 text (undecodable byte at position 7)",
    ),
    "unknown_pattern": (["run", "nosuch", "hi"], "unknown pattern 'nosuch'; choose one of: "),
    "unknown_model": (
        ["run", "router", "hi", "--model", "nosuch:model"],
        "unknown model provider 'nosuch'",
    ),
    "malformed_model": (
        ["run", "router", "hi", "--model", "gpt-4o"],
        "model 'gpt-4o' must be 'offline' or 'provider:model'",
    ),
    "missing_api_key": (
        ["run", "router", "hi", "--model", "openai:gpt-4o-mini"],
        "provider 'openai' needs credentials: set OPENAI_API_KEY",
    ),
    "missing_aws_credentials": (
        ["run", "router", "hi", "--model", "bedrock_converse:anthropic.claude-3-haiku"],
        "provider 'bedrock_converse' needs AWS credentials",
    ),
}


@pytest.mark.usefixtures("no_aws")
@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_input_is_one_error_line_and_exit_code_2(
    case: str, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, message = BAD_RUNS[case]
    code = main([*argv, "--user", "ada", "--session", "s1", "--checkpointer", db])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("switchyard: error: ")
    assert err.count("\n") == 1
    assert message in err
    assert "Traceback" not in err


def test_bad_input_leaves_the_session_unchanged(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    session = ["--user", "ada", "--session", "s1", "--checkpointer", db]
    assert main(["run", "router", "I need a refund", *session]) == 0
    assert main(["run", "router", "   ", *session]) == 2
    assert main(["run", "router", "hi", "--model", "nosuch:model", *session]) == 2
    capsys.readouterr()
    with open_checkpointer(db) as saver:
        graph = load_graph("router").builder.compile(checkpointer=saver)
        messages = graph.get_state(
            {"configurable": {"thread_id": thread_id_for("ada", "s1")}}
        ).values["messages"]
    assert [m.type for m in messages] == ["human", "ai"]


def test_unwritable_checkpointer_path_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = main(["run", "router", "hi", "--checkpointer", str(blocker / "sub" / "state.sqlite")])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("switchyard: error: cannot open the SQLite checkpointer at ")
    assert err.count("\n") == 1


@pytest.fixture
def failing_model() -> Iterator[str]:
    register_chat_model("offline:down", OfflineChatModel(fail_on_calls=(1,), failure_status=400))
    yield "offline:down"
    unregister_chat_model("offline:down")


def test_a_run_that_fails_exits_1_with_the_reason_and_the_table(
    db: str, failing_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "router", "I need a refund", "--model", failing_model, "--checkpointer", db]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert out.startswith("run ended: agent_failed: ")
    assert "HTTP 400" in out.splitlines()[0]
    assert TABLE_HEADER.search(out)
    assert "Traceback" not in out + err


def test_missing_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2
    assert "switchyard: error: the following arguments are required: COMMAND" in (
        capsys.readouterr().err
    )


def test_console_script_rejects_invalid_utf8_argv(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("switchyard")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHYARD_", "OPENAI_"))}
    env["LANGSMITH_TRACING"] = "false"
    completed = subprocess.run(
        [script, b"run", b"router", b"refund \xff\xfe please", b"--checkpointer", b"memory"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    assert completed.stdout == b""
    assert completed.stderr == (
        b"switchyard: error: message is not valid UTF-8 text (undecodable byte at position 7); "
        b"send UTF-8 encoded text\n"
    )


def test_demo_agents_are_what_the_cli_routes_between(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for spec in ROUTER_AGENTS:
        assert main(["run", "router", spec.examples[0], "--json", "--checkpointer", db]) == 0
        assert json.loads(capsys.readouterr().out)["agent_name"] == spec.name


def test_deadline_and_timeout_are_flags_with_their_defaults_in_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--deadline SECONDS" in text
    assert "(default: 300.0)" in text
    assert "--timeout SECONDS" in text
    assert "timeout_s, 60 unless it sets another" in text


@pytest.mark.parametrize(
    ("flags", "end_reason", "why"),
    [
        (["--timeout", "0.2"], "agent_failed", "timed out after 0.2s"),
        (["--deadline", "0.5", "--timeout", "600"], "deadline", "run deadline"),
    ],
)
def test_deadline_and_timeout_bound_a_run_of_a_model_that_hangs(
    db: str, capsys: pytest.CaptureFixture[str], flags: list[str], end_reason: str, why: str
) -> None:
    release = threading.Event()

    class Hangs(OfflineChatModel):
        def _generate(self, *args: object, **kwargs: object) -> Any:
            release.wait(60)
            return super()._generate(*args, **kwargs)  # type: ignore[arg-type]

    register_chat_model("offline:hangs", Hangs(latency_s=0.001))
    try:
        argv = ["run", "router", "I need a refund", "--checkpointer", db, "--json", "--quiet"]
        code = main([*argv, "--model", "offline:hangs", *flags])
    finally:
        release.set()
        unregister_chat_model("offline:hangs")
    assert code == 1
    result = json.loads(capsys.readouterr().out)
    assert result["end_reason"] == end_reason
    assert why in result["error"]


@pytest.mark.parametrize("flag", ["--deadline", "--timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_a_bad_limit_is_a_usage_error(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "router", "hi", flag, value])
    assert exited.value.code == 2
    assert "expected a positive number of seconds" in capsys.readouterr().err
