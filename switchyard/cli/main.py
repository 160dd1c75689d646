"""The `switchyard` command line: one module per command, registered here.

Every deliberate error prints one line to stderr and exits with code 2; there are no tracebacks for
bad input.

Building the parser imports only argparse, rich and light modules: each command imports what it
runs on (LangGraph, LangChain, scikit-learn...) in its handler, so `switchyard --help`,
`switchyard graphs` and `switchyard X --help` answer at once (`tests/unit/test_cli_startup.py`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from rich.console import Console

from switchyard.core.errors import SwitchyardError

EXIT_USAGE = 2

COMMAND_MODULES: tuple[str, ...] = (
    "switchyard.cli.run",
    "switchyard.cli.graphs",
    "switchyard.cli.dlq",
    "switchyard.cli.report",
    "switchyard.cli.resume",
    "switchyard.cli.prune",
    "switchyard.cli.bench",
    "switchyard.cli.eval_router",
    "switchyard.cli.worker",
    "switchyard.cli.schedule",
    "switchyard.cli.local",
)
"""The modules that add subcommands, in the order `--help` lists them (see `_parser`)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchyard",
        description="Multi-agent orchestration patterns on LangGraph, with guardrails built in.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each module exposes `add_command(subparsers)`, which adds a subparser whose
    # `handler(args, console) -> int` is set with `set_defaults(handler=...)`. A command that
    # calls no model and takes no session lock also sets `needs_settings=False` (see `main`).
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `switchyard` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    console = Console(soft_wrap=True)
    try:
        # Settings from the environment are checked before a command that uses them runs: one
        # line, exit 2. The others do not pay for the check (it loads LangChain).
        if getattr(args, "needs_settings", True):
            _check_settings()
        handler: Callable[[argparse.Namespace, Console], int] = args.handler
        return handler(args, console)
    except SwitchyardError as exc:
        print(f"switchyard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # invalid settings, e.g. a Context field out of range
        print(f"switchyard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("switchyard: interrupted", file=sys.stderr)
        return 130


def _check_settings() -> None:
    """Enable the response cache and check Redis, as configured by the environment."""
    from switchyard.guardrails.breaker import check_redis
    from switchyard.guardrails.cache import cache_from_environment

    cache_from_environment()
    check_redis()


if __name__ == "__main__":
    sys.exit(main())
