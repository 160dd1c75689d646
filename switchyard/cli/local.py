"""`switchyard local serve | models`: a real model on this machine, behind an OpenAI-style API.

`serve` starts llama.cpp's `llama-server` on loopback with a model that ships in a Python package
(the `local` extra), waits until it answers, prints what to set to run the patterns on it, and
keeps it running until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

# Only the constants of the runtime module are needed to build the parser; it imports nothing
# heavy (no LangChain), so `switchyard local --help` stays fast.
from switchyard.runtime.local_server import (
    DEFAULT_CTX_SIZE,
    DEFAULT_HOST,
    DEFAULT_MODEL,
    DEFAULT_N_PREDICT,
    LOCAL_MODELS,
    NO_REPACK_ENV,
)

if TYPE_CHECKING:
    from switchyard.runtime.local_server import LocalServer

EXAMPLE_MESSAGE = "Write a two-line note on plan A"


def add_command(commands: Any) -> None:
    """Add the `local` subcommand (`serve`, `models`) to the CLI's subparsers."""
    local = commands.add_parser(
        "local",
        help="serve a small model on this machine (the local extra)",
        description="Run the patterns on a real model without a provider: llama.cpp's "
        "llama-server with a model shipped in a Python package. Needs "
        "pip install 'switchyard-agents[local]'.",
    )
    actions = local.add_subparsers(dest="local_action", required=True, metavar="ACTION")
    serve = actions.add_parser(
        "serve",
        help="start llama-server and print the settings to use it; Ctrl-C stops it",
        description="Start llama-server on loopback with a packaged model, wait until it "
        "answers, print the --model string and the variables to set, and serve until Ctrl-C "
        f"or SIGTERM. On CPUs with AMX it runs with --no-repack ({NO_REPACK_ENV}=1/0 decides "
        "instead).",
    )
    serve.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="NAME",
        help=f"a model of `switchyard local models`, or a path to a .gguf file "
        f"(default: {DEFAULT_MODEL})",
    )
    serve.add_argument(
        "--port", type=_port, default=None, metavar="N", help="port (default: a free one)"
    )
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to listen on (default: %(default)s; the server has no authentication)",
    )
    serve.add_argument(
        "--ctx-size",
        type=_positive,
        default=DEFAULT_CTX_SIZE,
        metavar="N",
        help="tokens of context (default: %(default)s)",
    )
    serve.add_argument(
        "--n-predict",
        type=_positive,
        default=DEFAULT_N_PREDICT,
        metavar="N",
        help="most tokens a completion generates when its request sets no max_tokens "
        "(a request's own limit wins; Switchyard always sends one) (default: %(default)s)",
    )
    serve.add_argument(
        "--threads",
        type=_positive,
        default=None,
        metavar="N",
        help="CPU threads (default: half the CPUs, at least 1; more threads than free cores "
        "slow every token down)",
    )
    serve.add_argument(
        "--log",
        default=None,
        metavar="PATH",
        help="write llama-server's log here (default: a temporary file, removed on a clean stop)",
    )
    serve.set_defaults(handler=_serve, needs_settings=False)
    models = actions.add_parser("models", help="the models `serve` knows, and which are installed")
    models.set_defaults(handler=_models, needs_settings=False)


class _Stop(Exception):
    """Raised in the main thread by the first SIGINT or SIGTERM."""


def _serve(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from switchyard.runtime.local_server import LocalServer, LocalServerError, describe_exit

    server = LocalServer(
        args.model,
        host=args.host,
        port=args.port,
        ctx_size=args.ctx_size,
        n_predict=args.n_predict,
        threads=args.threads,
        log_path=Path(args.log) if args.log else None,
    )
    # SIGHUP too: a closed terminal must not leave llama-server (in a session of its own) behind.
    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in watched}

    def stop_once(signum: int, frame: FrameType | None) -> None:
        _ignore_signals(previous)
        raise _Stop

    for sig in previous:
        signal.signal(sig, stop_once)
    try:
        server.start()
        server.wait_ready()
        _print_ready(server, console)
        code = server.wait()
        raise LocalServerError(
            f"llama-server exited with {describe_exit(code)} while serving; log "
            f"{server.log_path}:\n"
            f"{server.log_tail()}"
        )
    except _Stop:
        server.stop()
        print("switchyard: local server stopped", file=sys.stderr)
        return 0
    except LocalServerError as exc:
        _ignore_signals(previous)
        server.stop()
        print(f"switchyard: error: {exc}", file=sys.stderr)
        return 1
    except BaseException:
        _ignore_signals(previous)
        server.stop()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore_signals(signals: dict[signal.Signals, Any]) -> None:
    """Ignore further SIGINT/SIGTERM/SIGHUP while the server stops: that stop is bounded anyway."""
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)


def _print_ready(server: LocalServer, console: Console) -> None:
    console.print(
        f"llama-server (pid {server.pid}) serves {server.model} as {server.alias!r} at "
        f"{server.base_url}",
        highlight=False,
        markup=False,
    )
    lines = [
        f"--model {server.model_string}",
        *(f"export {name}={value}" for name, value in server.environment.items()),
        f'switchyard run pipeline "{EXAMPLE_MESSAGE}" --model {server.model_string}',
        "Ctrl-C stops the server.",
    ]
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    sys.stdout.flush()


def _models(args: argparse.Namespace, console: Console) -> int:
    from switchyard.runtime.local_server import packaged_model_path

    table = Table("model", "installed", "package", "description", box=None)
    for model in LOCAL_MODELS.values():
        path = packaged_model_path(model)
        table.add_row(model.name, "yes" if path else "no", model.distribution, model.description)
    console.print(table)
    if not all(packaged_model_path(model) for model in LOCAL_MODELS.values()):
        console.print("install them with: pip install 'switchyard-agents[local]'", markup=False)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, not {value}")
    return value
