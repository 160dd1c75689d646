"""`switchyard graphs`: the patterns, as `langgraph.json` lists them."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from switchyard.runtime.registry import describe, pattern_names


def add_command(commands: Any) -> None:
    """Add the `graphs` subcommand to the CLI's subparsers."""
    graphs_cmd = commands.add_parser("graphs", help="list the patterns (as in langgraph.json)")
    graphs_cmd.set_defaults(handler=_graphs, needs_settings=False)


def _graphs(args: argparse.Namespace, console: Console) -> int:
    table = Table(show_edge=False)
    table.add_column("pattern")
    table.add_column("what it does")
    for name in pattern_names():
        table.add_row(name, describe(name))
    console.print(table)
    return 0
