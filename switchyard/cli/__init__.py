"""The `switchyard` command line: one module per command; the only home of argparse and rich.

`main` is the console script's entry point.
"""

from switchyard.cli.main import main

__all__ = ["main"]
