"""The `--engine` options `run` and `worker` share: where a graph's run executes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from switchyard.core.defaults import TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE

if TYPE_CHECKING:
    from switchyard.runtime.engine import Engine

ENGINES = ("local", "temporal")


def add_engine_arguments(parser: argparse.ArgumentParser, *, default: str = "local") -> None:
    """Add `--engine`, `--address`, `--task-queue` and `--namespace` to `parser`."""
    parser.add_argument(
        "--engine",
        choices=ENGINES if default == "local" else ENGINES[1:],
        default=default,
        help="where the graph runs: in this process, or as a Temporal Workflow on the workers "
        "of --task-queue (default: %(default)s)",
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help="the Temporal frontend (default: SWITCHYARD_TEMPORAL_ADDRESS, else "
        f"{TEMPORAL_ADDRESS})",
    )
    parser.add_argument(
        "--task-queue",
        default=None,
        metavar="QUEUE",
        help="the Temporal task queue (default: SWITCHYARD_TEMPORAL_TASK_QUEUE, else "
        f"{TEMPORAL_TASK_QUEUE})",
    )
    parser.add_argument(
        "--namespace", default=None, help="the Temporal namespace (default: 'default')"
    )


def engine_of(args: Any) -> Engine:
    """The engine the parsed `args` ask for (None: this process).

    Raises:
        ConfigError: An address that is not host:port, or an empty queue or namespace.
        InvalidInputError: Temporal options given without `--engine temporal`.
    """
    from switchyard.core.errors import InvalidInputError
    from switchyard.runtime.engine import TemporalEngine

    if args.engine != "temporal":
        if args.address or args.task_queue or args.namespace:
            raise InvalidInputError(
                "--address, --task-queue and --namespace need --engine temporal"
            )
        return None
    env = TemporalEngine.from_env()
    return TemporalEngine(
        address=args.address or env.address,
        task_queue=args.task_queue or env.task_queue,
        namespace=args.namespace or env.namespace,
    )
