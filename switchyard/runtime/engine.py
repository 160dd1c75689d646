"""Where a run executes: in this process (the default) or on a Temporal worker fleet.

Only the settings live here, so choosing an engine imports nothing of Temporal's; the integration
itself is `switchyard.runtime.temporal`, imported when a run uses it (the `temporal` extra).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from switchyard.core.defaults import TEMPORAL_ADDRESS as DEFAULT_ADDRESS
from switchyard.core.defaults import TEMPORAL_TASK_QUEUE as DEFAULT_TASK_QUEUE
from switchyard.core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class TemporalEngine:
    """Run on Temporal: each turn a Workflow, each agent node an Activity on a worker fleet.

    Attributes:
        address: The Temporal frontend, `host:port`.
        task_queue: The queue the workers poll (`switchyard worker --task-queue`).
        namespace: The Temporal namespace.
    """

    address: str = DEFAULT_ADDRESS
    task_queue: str = DEFAULT_TASK_QUEUE
    namespace: str = "default"

    def __post_init__(self) -> None:
        """Refuse an address without a port and an empty queue or namespace."""
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(
                f"Temporal address {self.address!r} is not host:port; e.g. 127.0.0.1:7233"
            )
        if not self.task_queue.strip() or not self.namespace.strip():
            raise ConfigError("the Temporal task queue and namespace must not be empty")

    @classmethod
    def from_env(cls) -> TemporalEngine:
        """The engine `SWITCHYARD_TEMPORAL_ADDRESS`, `_TASK_QUEUE` and `_NAMESPACE` describe."""
        return cls(
            address=os.environ.get("SWITCHYARD_TEMPORAL_ADDRESS") or DEFAULT_ADDRESS,
            task_queue=os.environ.get("SWITCHYARD_TEMPORAL_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
            namespace=os.environ.get("SWITCHYARD_TEMPORAL_NAMESPACE") or "default",
        )


Engine = TemporalEngine | None
"""A run's engine: None runs in this process."""
