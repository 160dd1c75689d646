"""Checkpointers: where sessions live. SQLite by default, `memory` for tests.

`SWITCHYARD_CHECKPOINTER` (or the `setting` argument) selects one: a SQLite file path, `memory`, or
(with the `postgres` extra) a `postgresql://` DSN.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from switchyard.errors import PersistenceConfigError

CHECKPOINTER_ENV = "SWITCHYARD_CHECKPOINTER"
DEFAULT_SQLITE_PATH = Path(".switchyard") / "state.sqlite"


def checkpointer_setting(setting: str | None = None) -> str:
    """The effective setting: the argument, else `SWITCHYARD_CHECKPOINTER`, else the SQLite file."""
    return (setting or os.environ.get(CHECKPOINTER_ENV, "").strip()) or str(DEFAULT_SQLITE_PATH)


@contextmanager
def open_checkpointer(setting: str | None = None) -> Iterator[BaseCheckpointSaver[str]]:
    """Open the configured checkpointer for synchronous graphs, and close it afterwards.

    Raises:
        PersistenceConfigError: The path cannot be opened or the DSN is not usable; the message
            says which.
    """
    value = checkpointer_setting(setting)
    if value == "memory":
        yield InMemorySaver()
        return
    if value.startswith(("postgres://", "postgresql://")):
        raise PersistenceConfigError(
            "PostgreSQL checkpointers are not available in this version; use a SQLite path or "
            "'memory'"
        )
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(value).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(str(path), check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
    except (OSError, sqlite3.Error) as exc:
        raise PersistenceConfigError(
            f"cannot open the SQLite checkpointer at {str(path)!r}: {exc}; set "
            f"{CHECKPOINTER_ENV} to a writable file path or 'memory'"
        ) from None
    try:
        saver = SqliteSaver(connection)
        saver.setup()
        yield saver
    finally:
        connection.close()
