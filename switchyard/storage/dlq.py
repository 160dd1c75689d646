"""The dead-letter queue: failed runs, kept so they can be listed, inspected and replayed.

A run that ends without completing (an agent failed after retries and fallbacks, a budget or the
deadline stopped it, a limit ended it) is recorded with its input, error, end reason, thread,
correlation id and the checkpoint to resume from. `replay` resumes the run from that checkpoint —
steps that completed before the failure are not run again — and marks the record replayed when the
run then completes.

Storage: SQLite (`.switchyard/dlq.sqlite` by default, or `SWITCHYARD_DLQ`), or PostgreSQL when
`SWITCHYARD_DLQ` (else `SWITCHYARD_CHECKPOINTER`) is a `postgresql://` DSN.

Each record keeps its owner (`user_id`): given a user, `list` shows only that user's records and
`get` refuses another user's exactly as it refuses an unknown id. It also keeps how to rebuild its
graph (`graph`, an import path `module:attribute`) and the run's settings (`settings`: its context
and default model), so a replay runs the same graph with the same models.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from switchyard.core.defaults import DLQ_MAX_LIMIT as MAX_LIMIT
from switchyard.core.errors import (
    InvalidInputError,
    SessionAccessError,
    SwitchyardError,
)
from switchyard.core.redact import redact, redact_value
from switchyard.storage.sql import is_postgres, transaction

DLQ_ENV = "SWITCHYARD_DLQ"
DEFAULT_DLQ_PATH = Path(".switchyard") / "dlq.sqlite"

_COLUMNS = (
    "id",
    "created_at",
    "pattern",
    "thread_id",
    "checkpoint_id",
    "correlation_id",
    "user_id",
    "session_id",
    "input",
    "error",
    "end_reason",
    "status",
    "replays",
    "detail",
    "graph",
    "settings",
)

_ADDED_COLUMNS = (("graph", "TEXT"), ("settings", "TEXT NOT NULL DEFAULT '{}'"))
"""Columns added after the first release: queues created before get them on open."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS switchyard_dead_letters (
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    pattern TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    checkpoint_id TEXT,
    correlation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    input TEXT NOT NULL,
    error TEXT,
    end_reason TEXT NOT NULL,
    status TEXT NOT NULL,
    replays INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '{}',
    graph TEXT,
    settings TEXT NOT NULL DEFAULT '{}'
)
"""


class DeadLetter(BaseModel):
    """One failed run.

    Attributes:
        id: Record id (short, for the CLI).
        created_at: Unix time the failure was recorded.
        pattern: Pattern (graph) name, so the CLI can load the graph to replay it.
        thread_id: The session's thread.
        checkpoint_id: Checkpoint the run resumes from on replay.
        correlation_id: Id of the failed run, shared with its logs and traces.
        user_id: Owner of the session.
        session_id: The session.
        input: The user message of the failed run.
        error: One line describing the failure.
        end_reason: Why the run ended.
        status: "open" until a replay completes, then "replayed".
        replays: Replay attempts so far.
        detail: Anything else worth keeping (e.g. the usage of the failed run).
        graph: How to rebuild the failed run's graph: an import path `module:attribute`
            (None when the graph was not loaded by one; such a record is replayed from Python).
        settings: The run's settings (`switchyard.runtime.settings.run_settings`): its context
            and default model, restored on replay unless the caller overrides them.
    """

    id: str
    created_at: float
    pattern: str
    thread_id: str
    checkpoint_id: str | None
    correlation_id: str
    user_id: str
    session_id: str
    input: str
    error: str | None
    end_reason: str
    status: str = "open"
    replays: int = 0
    detail: dict[str, Any] = {}
    graph: str | None = None
    settings: dict[str, Any] = {}


class DeadLetterNotFoundError(SwitchyardError, LookupError):
    """No dead letter has the given id."""


class DeadLetterAccessError(DeadLetterNotFoundError, SessionAccessError):
    """No dead letter with the given id belongs to the caller.

    Raised alike for an unknown id and for another user's record, so the answer reveals neither
    the record nor its owner.
    """


class DeadLetterQueue:
    """A dead-letter store on SQLite or PostgreSQL (see the module docstring)."""

    def __init__(self, target: str | None = None) -> None:
        """Open (and create if needed) the store.

        Args:
            target: SQLite path or `postgresql://` DSN; None reads `SWITCHYARD_DLQ`, then a
                Postgres `SWITCHYARD_CHECKPOINTER`, then the default SQLite file.

        Raises:
            PersistenceConfigError: The store cannot be opened; says which and how to fix it.
        """
        self.target = target or _default_target()
        self._postgres = is_postgres(self.target)
        self._lock = threading.Lock()
        self._placeholder = "%s" if self._postgres else "?"
        with self._connect() as connection:
            connection.execute(_SCHEMA)
            self._add_columns(connection)

    def _add_columns(self, connection: Any) -> None:
        """Bring a queue created by an earlier release up to the current columns.

        The columns are read first: an `ALTER TABLE` locks the table even when it changes
        nothing, and every process opening the queue would queue up behind it.
        """
        if self._postgres:
            rows = connection.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'switchyard_dead_letters' AND table_schema = current_schema()"
            ).fetchall()
        else:
            rows = [
                (row[1],)
                for row in connection.execute("PRAGMA table_info(switchyard_dead_letters)")
            ]
        present = {row[0] for row in rows}
        guard = "IF NOT EXISTS " if self._postgres else ""
        for name, kind in _ADDED_COLUMNS:
            if name in present:
                continue
            try:
                connection.execute(
                    f"ALTER TABLE switchyard_dead_letters ADD COLUMN {guard}{name} {kind}"
                )
            except sqlite3.OperationalError as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise

    def _connect(self) -> AbstractContextManager[Any]:
        return transaction(self.target, what="the dead-letter queue", env=DLQ_ENV, lock=self._lock)

    def record(
        self,
        *,
        pattern: str,
        thread_id: str,
        checkpoint_id: str | None,
        correlation_id: str,
        user_id: str,
        session_id: str,
        input: str,
        error: str | None,
        end_reason: str,
        detail: dict[str, Any] | None = None,
        graph: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> DeadLetter:
        """Store a failed run and return its record."""
        letter = DeadLetter(
            id=uuid.uuid4().hex[:12],
            created_at=time.time(),
            pattern=pattern,
            thread_id=thread_id,
            checkpoint_id=checkpoint_id,
            correlation_id=correlation_id,
            user_id=user_id,
            session_id=session_id,
            input=input,
            error=error,
            end_reason=end_reason,
            detail=detail or {},
            graph=graph,
            settings=settings or {},
        )
        row = letter.model_dump()
        # What users typed and what providers answered may carry keys: stored redacted.
        row["input"] = redact(row["input"])
        row["error"] = redact(row["error"]) if row["error"] else row["error"]
        row["detail"] = json.dumps(redact_value(row["detail"]), default=str)
        row["settings"] = json.dumps(row["settings"], default=str)
        marks = ", ".join([self._placeholder] * len(_COLUMNS))
        with self._connect() as connection:
            connection.execute(
                f"INSERT INTO switchyard_dead_letters ({', '.join(_COLUMNS)}) VALUES ({marks})",
                tuple(row[c] for c in _COLUMNS),
            )
        return letter

    def list(
        self, *, status: str | None = None, limit: int = 100, user_id: str | None = None
    ) -> list[DeadLetter]:
        """Records, newest first, optionally only those with `status` or of one user.

        Args:
            status: Only records with this status ("open", "replayed").
            limit: Most records returned, from 1 to `MAX_LIMIT`.
            user_id: Only this user's records (None: every user's, the operator's view).

        Raises:
            InvalidInputError: `limit` is not a whole number from 1 to `MAX_LIMIT`.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidInputError(
                f"limit must be a whole number from 1 to {MAX_LIMIT:,}, got {limit!r}"
            )
        query = f"SELECT {', '.join(_COLUMNS)} FROM switchyard_dead_letters"
        filters = [(name, value) for name, value in (("status", status), ("user_id", user_id))]
        wanted = [(name, value) for name, value in filters if value is not None]
        if wanted:
            query += " WHERE " + " AND ".join(f"{name} = {self._placeholder}" for name, _ in wanted)
        params = tuple(value for _, value in wanted)
        query += f" ORDER BY created_at DESC LIMIT {limit}"
        with self._connect() as connection:
            rows = connection.execute(query, params).fetchall()
        return [_letter(row) for row in rows]

    def get(self, letter_id: str, *, user_id: str | None = None) -> DeadLetter:
        """One record by id; given a user, only one of that user's records.

        Raises:
            DeadLetterNotFoundError: No record has this id.
            DeadLetterAccessError: A user was given and no record of theirs has this id (another
                user's record is refused in the same words as an unknown id).
        """
        with self._connect() as connection:
            row = connection.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM switchyard_dead_letters "
                f"WHERE id = {self._placeholder}",
                (letter_id,),
            ).fetchone()
        letter = _letter(row) if row is not None else None
        message = f"no dead letter with id {letter_id!r}; `switchyard dlq list` shows the ids"
        if user_id is not None and (letter is None or letter.user_id != user_id):
            raise DeadLetterAccessError(message)
        if letter is None:
            raise DeadLetterNotFoundError(message)
        return letter

    def mark(self, letter_id: str, *, status: str) -> None:
        """Count a replay attempt and set the record's status."""
        with self._connect() as connection:
            connection.execute(
                f"UPDATE switchyard_dead_letters SET status = {self._placeholder}, "
                f"replays = replays + 1 WHERE id = {self._placeholder}",
                (status, letter_id),
            )


def _letter(row: tuple[Any, ...]) -> DeadLetter:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["detail"] = json.loads(values["detail"] or "{}")
    values["settings"] = json.loads(values["settings"] or "{}")
    return DeadLetter(**values)


def _default_target() -> str:
    explicit = os.environ.get(DLQ_ENV, "").strip()
    if explicit:
        return explicit
    checkpointer = os.environ.get("SWITCHYARD_CHECKPOINTER", "").strip()
    if checkpointer.startswith(("postgres://", "postgresql://")):
        return checkpointer
    return str(DEFAULT_DLQ_PATH)
