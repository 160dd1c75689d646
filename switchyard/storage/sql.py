"""One transaction on a SQLite file or a PostgreSQL database, for Switchyard's own tables.

The dead-letter queue and the schedules keep small tables of their own next to the checkpoints;
both open a short connection per operation (schedulers and CLI commands run in many processes),
so the connection, its errors and the commit/rollback live here once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from switchyard.core.errors import PersistenceConfigError

POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def is_postgres(target: str) -> bool:
    """Whether `target` is a PostgreSQL DSN (else a SQLite path)."""
    return target.startswith(POSTGRES_SCHEMES)


def display(target: str) -> str:
    """`target` safe to print: a DSN without its password."""
    if not is_postgres(target):
        return target
    from switchyard.storage.persistence import parse_postgres_dsn

    try:
        return parse_postgres_dsn(target).display
    except PersistenceConfigError:  # malformed: say which kind, never what it holds
        return "postgresql://(malformed DSN)"


@contextmanager
def transaction(
    target: str,
    *,
    what: str,
    env: str,
    lock: threading.Lock | None = None,
    exclusive: bool = False,
) -> Iterator[Any]:
    """A connection inside one transaction: committed on exit, rolled back on error.

    Args:
        target: SQLite path or `postgresql://` DSN.
        what: What the tables hold, for errors ("the dead-letter queue").
        env: The variable that sets `target`, for errors.
        lock: Held for the transaction (one writer per process on SQLite).
        exclusive: On SQLite, take the database's write lock at the start (`BEGIN IMMEDIATE`),
            so a read-then-write is not interleaved with another process's; PostgreSQL callers
            lock rows instead (`FOR UPDATE`).

    Raises:
        PersistenceConfigError: The database cannot be opened, or fails a statement (a missing
            schema, a full disk, a lock held too long): one line naming the database (never
            its password) and the database's own words.
    """
    connection: Any
    where = display(target)
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    if is_postgres(target):
        try:
            import psycopg
        except ImportError:
            raise PersistenceConfigError(
                f"{what} on PostgreSQL needs psycopg: pip install 'switchyard-agents[postgres]'"
            ) from None
        errors = (psycopg.Error,)
        try:
            connection = psycopg.connect(target, autocommit=False, connect_timeout=5)
        except psycopg.Error as exc:
            raise PersistenceConfigError(
                f"cannot open {what} at {where}: {_first_line(exc)}"
            ) from None
    else:
        path = Path(target).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise PersistenceConfigError(
                f"cannot open {what} at {str(path)!r}: {exc}; set {env} to a writable path"
            ) from None
        try:
            connection.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")
        except sqlite3.Error as exc:
            connection.close()
            raise PersistenceConfigError(f"{what} at {str(path)!r}: {exc}") from None
    try:
        with lock if lock is not None else nullcontext():
            yield connection
            connection.commit()
    except BaseException as exc:
        with suppress(*errors):  # a failed rollback must not hide why it was rolled back
            connection.rollback()
        if isinstance(exc, errors):
            raise PersistenceConfigError(f"{what} at {where}: {_first_line(exc)}") from exc
        raise
    finally:
        connection.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


__all__ = ["POSTGRES_SCHEMES", "display", "is_postgres", "transaction"]
