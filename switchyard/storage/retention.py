"""Retention: prune old checkpoints so a long conversation's storage stays bounded.

LangGraph's open-source savers keep every checkpoint of every thread forever. A policy here keeps
the `keep_latest` newest checkpoints of each thread, or those newer than `older_than`, or (both
set) the union of the two, and deletes the rest:

- the latest checkpoint of a thread (of each checkpoint namespace) is never deleted, so every
  thread can still be continued and resumed;
- the pending writes of a deleted checkpoint go with it; on PostgreSQL, a channel blob goes once
  no remaining checkpoint references it; the checkpoint that becomes the oldest loses its parent
  link; a subgraph call's checkpoints go with the parent checkpoint the call started from;
- each thread is pruned in one transaction on one snapshot (PostgreSQL `REPEATABLE READ`, SQLite
  `BEGIN IMMEDIATE`), so a run saving checkpoints meanwhile is safe and a failure leaves the
  thread as it was;
- threads that use a `DeltaChannel` (whose latest value is rebuilt from older checkpoints) are
  skipped and reported, never pruned;
- effect records of `switchyard.once` made in deleted checkpoints are deleted from the store
  when one is passed (a step that started there can no longer be resumed).

Forking or replaying from a checkpoint while it is being pruned is not safe (it is being deleted).

Example:
    ```python
    with open_checkpointer("postgresql://...") as saver:
        report = prune(saver, RetentionPolicy(keep_latest=20))
    ```

Command line (`switchyard.cli.prune`): `switchyard prune --keep-latest 20`,
`switchyard prune --older-than 30d`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Generator, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore

from switchyard.core.errors import SwitchyardError
from switchyard.guardrails.idempotency import effects_namespace

MAX_ATTEMPTS = 3
"""Tries per thread when a concurrent writer makes PostgreSQL abort the snapshot."""

_UUID_EPOCH_OFFSET = 0x01B21DD213814000  # 100 ns intervals from 1582-10-15 to 1970-01-01
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_CHUNK = 500


class RetentionError(SwitchyardError, ValueError):
    """A retention policy or prune request is invalid; the message says what to fix."""


@dataclass(frozen=True)
class RetentionPolicy:
    """Which checkpoints to keep.

    Attributes:
        keep_latest: Keep this many newest checkpoints per thread (at least 1).
        older_than: Delete checkpoints created longer ago than this.

    With both set, a checkpoint is deleted only when both allow it: it is outside the newest
    `keep_latest` and older than `older_than`. The latest checkpoint always stays.
    """

    keep_latest: int | None = None
    older_than: timedelta | None = None

    def __post_init__(self) -> None:
        if self.keep_latest is None and self.older_than is None:
            raise RetentionError("a retention policy needs keep_latest, older_than or both")
        if self.keep_latest is not None and (
            isinstance(self.keep_latest, bool)
            or not isinstance(self.keep_latest, int)
            or self.keep_latest < 1
        ):
            raise RetentionError(
                f"keep_latest must be a whole number of at least 1, got {self.keep_latest!r} "
                "(the latest checkpoint is always kept)"
            )
        if self.older_than is not None and self.older_than <= timedelta(0):
            raise RetentionError(f"older_than must be a positive duration, got {self.older_than}")


@dataclass
class PruneReport:
    """What a prune did (or, with `dry_run`, would do).

    Attributes:
        threads: Threads examined.
        threads_pruned: Threads that lost at least one checkpoint.
        checkpoints_deleted: Checkpoint rows deleted.
        checkpoints_kept: Checkpoint rows left in the examined threads.
        writes_deleted: Pending-write rows deleted.
        blobs_deleted: Channel blob rows deleted (PostgreSQL only; SQLite stores values inline).
        effects_deleted: Effect records of `once` deleted from the store.
        skipped: Threads left alone, with the reason.
        dry_run: Whether every change was rolled back.
    """

    threads: int = 0
    threads_pruned: int = 0
    checkpoints_deleted: int = 0
    checkpoints_kept: int = 0
    writes_deleted: int = 0
    blobs_deleted: int = 0
    effects_deleted: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as `90s`, `15m`, `12h`, `30d`, `2w` or `1d12h`.

    Raises:
        RetentionError: The text is not a positive duration in those units.
    """
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise RetentionError(
            f"cannot read duration {text!r}; write a number and a unit (s, m, h, d, w), "
            "e.g. 30d, 12h or 1d12h"
        )
    total = sum((timedelta(**{_UNITS[u]: int(n)}) for n, u in parts), timedelta(0))
    if total <= timedelta(0):
        raise RetentionError(f"duration {text!r} must be longer than zero")
    return total


def checkpoint_created_at(checkpoint_id: str) -> datetime | None:
    """When a checkpoint was created, read from its id (LangGraph ids are time-ordered UUIDv6).

    Returns:
        The UTC creation time, or None when the id is not a version 6 UUID (such a checkpoint
        is never treated as old).
    """
    try:
        value = uuid.UUID(checkpoint_id)
    except (ValueError, TypeError, AttributeError):
        return None
    if value.version != 6:
        return None
    ticks = ((value.int >> 80) << 12) | ((value.int >> 64) & 0x0FFF)
    return datetime.fromtimestamp((ticks - _UUID_EPOCH_OFFSET) / 10_000_000, tz=UTC)


# -- planning (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    ns: str
    checkpoint_id: str
    parent_id: str | None
    root_id: str | None  # for subgraph checkpoints: the root checkpoint the call started from


@dataclass
class _Plan:
    delete: dict[str, list[str]] = field(default_factory=dict)  # ns -> checkpoint ids
    orphan: dict[str, list[str]] = field(default_factory=dict)  # ns -> kept ids losing a parent
    oldest_kept: dict[str, str] = field(default_factory=dict)  # ns -> id
    drop_namespaces: list[str] = field(default_factory=list)
    kept_ids: set[str] = field(default_factory=set)
    kept_count: int = 0


def _plan(rows: Sequence[_Row], policy: RetentionPolicy, now: datetime) -> _Plan:
    by_ns: dict[str, list[_Row]] = {}
    for row in rows:
        by_ns.setdefault(row.ns, []).append(row)
    plan = _Plan()
    cutoff = now - policy.older_than if policy.older_than is not None else None
    for ns, ns_rows in by_ns.items():
        ns_rows.sort(key=lambda r: r.checkpoint_id, reverse=True)  # newest first
        ids = [r.checkpoint_id for r in ns_rows]
        keep = {ids[0]}
        if policy.keep_latest is not None:
            keep.update(ids[: policy.keep_latest])
        if cutoff is not None:
            for checkpoint_id in ids:
                created = checkpoint_created_at(checkpoint_id)
                if created is None or created >= cutoff:
                    keep.add(checkpoint_id)
        plan.delete[ns] = [i for i in ids if i not in keep]
        plan.kept_ids.update(keep)
        plan.kept_count += len(keep)
        deleted = set(plan.delete[ns])
        plan.orphan[ns] = [
            r.checkpoint_id for r in ns_rows if r.checkpoint_id in keep and r.parent_id in deleted
        ]
        plan.oldest_kept[ns] = next(i for i in reversed(ids) if i in keep)
    root_deleted = set(plan.delete.get("", []))
    for ns, ns_rows in by_ns.items():
        # A subgraph call's namespace carries its task id after ":"; it goes with the root
        # checkpoint the call started from, once that one is saved and deleted here.
        if ":" in ns and ns_rows[0].root_id in root_deleted:
            plan.drop_namespaces.append(ns)
            plan.kept_count -= len(ns_rows) - len(plan.delete[ns])
            plan.kept_ids.difference_update(r.checkpoint_id for r in ns_rows)
            plan.delete.pop(ns)
            plan.orphan.pop(ns)
            plan.oldest_kept.pop(ns)
    return plan


def _keep_parent_of_oldest(plan: _Plan, ns: str, rows: Sequence[_Row]) -> None:
    """Checkpoints before format v4 read their pending sends from their parent: keep it."""
    oldest = plan.oldest_kept[ns]
    parent = next((r.parent_id for r in rows if r.ns == ns and r.checkpoint_id == oldest), None)
    if parent is None or parent not in plan.delete[ns]:
        return
    plan.delete[ns].remove(parent)
    plan.kept_ids.add(parent)
    plan.kept_count += 1
    plan.orphan[ns] = [
        r.checkpoint_id
        for r in rows
        if r.ns == ns and r.checkpoint_id in plan.kept_ids and r.parent_id in plan.delete[ns]
    ]
    plan.oldest_kept[ns] = parent


# -- statements: one generator per backend, run by a sync or an async driver ----------------------


@dataclass(frozen=True)
class _Stmt:
    sql: str
    params: Sequence[Any] = ()


@dataclass(frozen=True)
class _Res:
    rows: list[Any]
    rowcount: int


@dataclass
class _Outcome:
    checkpoints: int = 0
    writes: int = 0
    blobs: int = 0
    kept: int = 0
    kept_ids: set[str] = field(default_factory=set)
    skipped: str | None = None


_Statements = Generator[_Stmt, _Res, _Outcome]


def _chunks(values: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start : start + _CHUNK])


_PG_DELTA_SQL = """
SELECT 1 FROM checkpoints
WHERE thread_id = %s AND (
    metadata ? 'counters_since_delta_snapshot' OR metadata ? 'delta_writes_versioned'
    OR EXISTS (
        SELECT 1 FROM jsonb_each(checkpoint -> 'channel_values') AS v
        WHERE v.value = 'true'::jsonb AND EXISTS (
            SELECT 1 FROM checkpoint_blobs b
            WHERE b.thread_id = checkpoints.thread_id
            AND b.checkpoint_ns = checkpoints.checkpoint_ns
            AND b.channel = v.key
            AND b.version = checkpoints.checkpoint -> 'channel_versions' ->> v.key
        )
    )
)
LIMIT 1
"""

_PG_ROWS_SQL = """
SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id,
       (checkpoint ->> 'v')::int AS v, metadata -> 'parents' ->> '' AS root
FROM checkpoints WHERE thread_id = %s
"""

_PG_REFERENCED_SQL = """
SELECT DISTINCT v.key, v.value
FROM checkpoints c CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
WHERE c.thread_id = %s AND c.checkpoint_ns = %s
"""


def _pg_thread(thread_id: str, policy: RetentionPolicy, now: datetime) -> _Statements:
    yield _Stmt("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    if (yield _Stmt(_PG_DELTA_SQL, (thread_id,))).rows:
        return _Outcome(skipped="uses a DeltaChannel (its latest value needs older checkpoints)")
    raw = (yield _Stmt(_PG_ROWS_SQL, (thread_id,))).rows
    rows = [_Row(r[0], r[1], r[2], r[4]) for r in raw]
    versions = {(r[0], r[1]): r[3] for r in raw}
    plan = _plan(rows, policy, now)
    for ns in list(plan.delete):
        if (versions.get((ns, plan.oldest_kept[ns])) or 0) < 4:
            _keep_parent_of_oldest(plan, ns, rows)
    outcome = _Outcome(kept=plan.kept_count, kept_ids=plan.kept_ids)
    if plan.drop_namespaces:
        for table in ("checkpoint_writes", "checkpoint_blobs", "checkpoints"):
            res = yield _Stmt(
                f"DELETE FROM {table} WHERE thread_id = %s AND checkpoint_ns = ANY(%s)",
                (thread_id, plan.drop_namespaces),
            )
            if table == "checkpoint_writes":
                outcome.writes += res.rowcount
            elif table == "checkpoint_blobs":
                outcome.blobs += res.rowcount
            else:
                outcome.checkpoints += res.rowcount
    for ns, doomed in plan.delete.items():
        # Writes older than the oldest kept checkpoint: those of the checkpoints deleted now,
        # and any a run saved in the background for a checkpoint an earlier prune deleted.
        # Never "writes without a checkpoint" in general: a run's writes for a new checkpoint
        # can commit before the checkpoint does, but that one is newer than anything kept.
        res = yield _Stmt(
            "DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s "
            "AND checkpoint_id < %s",
            (thread_id, ns, plan.oldest_kept[ns]),
        )
        outcome.writes += res.rowcount
        if not doomed:
            continue
        res = yield _Stmt(
            "DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s "
            "AND checkpoint_id = ANY(%s) RETURNING checkpoint -> 'channel_versions'",
            (thread_id, ns, doomed),
        )
        outcome.checkpoints += res.rowcount
        freed = {(ch, str(ver)) for (cv,) in res.rows for ch, ver in (cv or {}).items()}
        if plan.orphan[ns]:
            yield _Stmt(
                "UPDATE checkpoints SET parent_checkpoint_id = NULL WHERE thread_id = %s "
                "AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)",
                (thread_id, ns, plan.orphan[ns]),
            )
        referenced = {(r[0], r[1]) for r in (yield _Stmt(_PG_REFERENCED_SQL, (thread_id, ns))).rows}
        garbage: dict[str, list[str]] = {}
        for channel, version in sorted(freed - referenced):
            garbage.setdefault(channel, []).append(version)
        for channel, channel_versions in garbage.items():
            res = yield _Stmt(
                "DELETE FROM checkpoint_blobs WHERE thread_id = %s AND checkpoint_ns = %s "
                "AND channel = %s AND version = ANY(%s)",
                (thread_id, ns, channel, channel_versions),
            )
            outcome.blobs += res.rowcount
    return outcome


def _sqlite_thread(
    thread_id: str, policy: RetentionPolicy, now: datetime, saver: BaseCheckpointSaver[Any]
) -> _Statements:
    raw = (
        yield _Stmt(
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, metadata "
            "FROM checkpoints WHERE thread_id = ?",
            (thread_id,),
        )
    ).rows
    rows: list[_Row] = []
    for ns, checkpoint_id, parent_id, metadata_raw in raw:
        metadata = json.loads(metadata_raw) if metadata_raw else {}
        if "counters_since_delta_snapshot" in metadata or "delta_writes_versioned" in metadata:
            return _Outcome(
                skipped="uses a DeltaChannel (its latest value needs older checkpoints)"
            )
        parents = metadata.get("parents") or {}
        rows.append(_Row(ns, checkpoint_id, parent_id, parents.get("")))
    plan = _plan(rows, policy, now)
    for ns in list(plan.delete):
        if not plan.delete[ns]:
            continue
        typed = (
            yield _Stmt(
                "SELECT type, checkpoint FROM checkpoints WHERE thread_id = ? "
                "AND checkpoint_ns = ? AND checkpoint_id = ?",
                (thread_id, ns, plan.oldest_kept[ns]),
            )
        ).rows
        if typed and saver.serde.loads_typed((typed[0][0], typed[0][1])).get("v", 0) < 4:
            _keep_parent_of_oldest(plan, ns, rows)
    outcome = _Outcome(kept=plan.kept_count, kept_ids=plan.kept_ids)
    for ns in plan.drop_namespaces:
        outcome.writes += (
            yield _Stmt(
                "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ?", (thread_id, ns)
            )
        ).rowcount
        outcome.checkpoints += (
            yield _Stmt(
                "DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ?", (thread_id, ns)
            )
        ).rowcount
    for ns, doomed in plan.delete.items():
        # As on PostgreSQL: every write older than the oldest kept checkpoint goes.
        outcome.writes += (
            yield _Stmt(
                "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? "
                "AND checkpoint_id < ?",
                (thread_id, ns, plan.oldest_kept[ns]),
            )
        ).rowcount
        for chunk in _chunks(doomed):
            marks = ",".join("?" * len(chunk))
            outcome.checkpoints += (
                yield _Stmt(
                    f"DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
                    f"AND checkpoint_id IN ({marks})",
                    (thread_id, ns, *chunk),
                )
            ).rowcount
        for chunk in _chunks(plan.orphan.get(ns, [])):
            marks = ",".join("?" * len(chunk))
            yield _Stmt(
                f"UPDATE checkpoints SET parent_checkpoint_id = NULL WHERE thread_id = ? "
                f"AND checkpoint_ns = ? AND checkpoint_id IN ({marks})",
                (thread_id, ns, *chunk),
            )
    return outcome


# -- drivers ------------------------------------------------------------------------------------


def _drive(statements: _Statements, execute: Any) -> _Outcome:
    """Run a statement generator with `execute(stmt) -> _Res`."""
    try:
        stmt = next(statements)
        while True:
            stmt = statements.send(execute(stmt))
    except StopIteration as stop:
        outcome: _Outcome = stop.value
        return outcome


async def _adrive(statements: _Statements, execute: Any) -> _Outcome:
    try:
        stmt = next(statements)
        while True:
            stmt = statements.send(await execute(stmt))
    except StopIteration as stop:
        outcome: _Outcome = stop.value
        return outcome


def saver_kind(saver: BaseCheckpointSaver[Any]) -> str:
    """`postgres` or `sqlite`: which saver `saver` is, for pruning.

    Raises:
        RetentionError: `saver` cannot be pruned (in memory, pipeline mode, another kind).
    """
    name = type(saver).__name__
    if name in {"PostgresSaver", "AsyncPostgresSaver"}:
        if getattr(saver, "pipe", None) is not None:
            raise RetentionError(
                "pruning needs a PostgreSQL checkpointer without pipeline mode; open one with "
                "switchyard.storage.persistence.open_checkpointer"
            )
        return "postgres"
    if name in {"SqliteSaver", "AsyncSqliteSaver"}:
        return "sqlite"
    if name in {"InMemorySaver", "MemorySaver"}:
        raise RetentionError(
            "an in-memory checkpointer needs no pruning (it vanishes with the process); prune a "
            "SQLite file or a PostgreSQL database"
        )
    raise RetentionError(f"retention supports the SQLite and PostgreSQL checkpointers, not {name}")


def _check_threads(thread_ids: Sequence[str] | None) -> list[str] | None:
    if thread_ids is None:
        return None
    if isinstance(thread_ids, str):
        raise RetentionError("thread_ids must be a list of thread ids, not one string")
    bad = [t for t in thread_ids if not isinstance(t, str) or not t.strip()]
    if bad:
        raise RetentionError(f"thread ids must be non-empty strings, got {bad!r}")
    return list(dict.fromkeys(thread_ids))


def _missing_error(missing: Sequence[str]) -> RetentionError:
    return RetentionError(
        f"no checkpoints for thread(s) {', '.join(sorted(missing))}; nothing was pruned "
        "(check the ids and the checkpointer setting)"
    )


def _add(report: PruneReport, thread_id: str, outcome: _Outcome) -> None:
    report.threads += 1
    if outcome.skipped:
        report.skipped[thread_id] = outcome.skipped
        return
    report.checkpoints_deleted += outcome.checkpoints
    report.checkpoints_kept += outcome.kept
    report.writes_deleted += outcome.writes
    report.blobs_deleted += outcome.blobs
    if outcome.checkpoints:
        report.threads_pruned += 1


class _Rollback(Exception):
    """Raised inside a transaction to undo a dry run."""


def _is_retryable(exc: BaseException) -> bool:
    try:
        from psycopg import errors
    except ImportError:  # pragma: no cover - psycopg is present whenever a Postgres saver is
        return False
    return isinstance(exc, errors.SerializationFailure | errors.DeadlockDetected)


def _prune_effects(store: BaseStore, thread_id: str, kept: set[str], dry_run: bool) -> int:
    namespace = effects_namespace(thread_id)
    doomed: list[str] = []
    offset = 0
    while True:
        page = store.search(namespace, limit=200, offset=offset)
        for item in page:
            checkpoint_id = item.value.get("checkpoint_id")
            if checkpoint_id is not None and checkpoint_id not in kept:
                doomed.append(item.key)
        if len(page) < 200:
            break
        offset += len(page)
    if not dry_run:
        for key in doomed:
            store.delete(namespace, key)
    return len(doomed)


async def _aprune_effects(store: BaseStore, thread_id: str, kept: set[str], dry_run: bool) -> int:
    namespace = effects_namespace(thread_id)
    doomed: list[str] = []
    offset = 0
    while True:
        page = await store.asearch(namespace, limit=200, offset=offset)
        for item in page:
            checkpoint_id = item.value.get("checkpoint_id")
            if checkpoint_id is not None and checkpoint_id not in kept:
                doomed.append(item.key)
        if len(page) < 200:
            break
        offset += len(page)
    if not dry_run:
        for key in doomed:
            await store.adelete(namespace, key)
    return len(doomed)


def prune(
    checkpointer: BaseCheckpointSaver[Any],
    policy: RetentionPolicy,
    *,
    thread_ids: Sequence[str] | None = None,
    store: BaseStore | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Delete the checkpoints a policy does not keep, thread by thread.

    Args:
        checkpointer: A SQLite or PostgreSQL checkpointer (sync).
        policy: What to keep.
        thread_ids: Only these threads; None prunes every thread.
        store: Also delete `once` effect records of deleted checkpoints from this store.
        now: The time `older_than` counts back from (default: now, UTC).
        dry_run: Count what would be deleted, then roll every change back.

    Returns:
        What was deleted and kept, and the threads skipped with the reason.

    Raises:
        RetentionError: Unsupported checkpointer, or a requested thread has no checkpoints
            (checked before anything is deleted).
    """
    kind = saver_kind(checkpointer)
    wanted = _check_threads(thread_ids)
    when = now or datetime.now(UTC)
    report = PruneReport(dry_run=dry_run)
    if kind == "postgres":
        threads = _pg_threads(checkpointer, wanted)
        for thread_id in threads:
            outcome = _pg_prune_thread(checkpointer, thread_id, policy, when, dry_run)
            _add(report, thread_id, outcome)
            if store is not None and not outcome.skipped:
                report.effects_deleted += _prune_effects(
                    store, thread_id, outcome.kept_ids, dry_run
                )
    else:
        threads = _sqlite_threads(checkpointer, wanted)
        for thread_id in threads:
            outcome = _sqlite_prune_thread(checkpointer, thread_id, policy, when, dry_run)
            _add(report, thread_id, outcome)
            if store is not None and not outcome.skipped:
                report.effects_deleted += _prune_effects(
                    store, thread_id, outcome.kept_ids, dry_run
                )
    return report


async def aprune(
    checkpointer: BaseCheckpointSaver[Any],
    policy: RetentionPolicy,
    *,
    thread_ids: Sequence[str] | None = None,
    store: BaseStore | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Async form of `prune`, for `AsyncPostgresSaver` and `AsyncSqliteSaver`.

    Raises:
        RetentionError: As `prune`.
    """
    kind = saver_kind(checkpointer)
    wanted = _check_threads(thread_ids)
    when = now or datetime.now(UTC)
    report = PruneReport(dry_run=dry_run)
    if kind == "postgres":
        threads = await _apg_threads(checkpointer, wanted)
        for thread_id in threads:
            outcome = await _apg_prune_thread(checkpointer, thread_id, policy, when, dry_run)
            _add(report, thread_id, outcome)
            if store is not None and not outcome.skipped:
                report.effects_deleted += await _aprune_effects(
                    store, thread_id, outcome.kept_ids, dry_run
                )
    else:
        threads = await _asqlite_threads(checkpointer, wanted)
        for thread_id in threads:
            outcome = await _asqlite_prune_thread(checkpointer, thread_id, policy, when, dry_run)
            _add(report, thread_id, outcome)
            if store is not None and not outcome.skipped:
                report.effects_deleted += await _aprune_effects(
                    store, thread_id, outcome.kept_ids, dry_run
                )
    return report


# -- PostgreSQL ---------------------------------------------------------------------------------


def _pg_connection(saver: Any) -> AbstractContextManager[Any]:
    from psycopg_pool import ConnectionPool

    if isinstance(saver.conn, ConnectionPool):
        return saver.conn.connection()
    return nullcontext(saver.conn)


def _pg_lock(saver: Any) -> AbstractContextManager[Any]:
    from psycopg_pool import ConnectionPool

    # A saver on a single connection serialises its use with `lock`; a pool needs no lock.
    return nullcontext() if isinstance(saver.conn, ConnectionPool) else saver.lock


def _pg_threads(saver: Any, wanted: list[str] | None) -> list[str]:
    with _pg_lock(saver), _pg_connection(saver) as conn, conn.cursor() as cur:
        if wanted is None:
            cur.execute("SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id")
        else:
            cur.execute(
                "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id = ANY(%s)", (wanted,)
            )
        found = [_first(row) for row in cur.fetchall()]
    if wanted is not None:
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise _missing_error(missing)
        return wanted
    return found


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def _pg_prune_thread(
    saver: Any, thread_id: str, policy: RetentionPolicy, now: datetime, dry_run: bool
) -> _Outcome:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with (
                _pg_lock(saver),
                _pg_connection(saver) as conn,
                conn.cursor(row_factory=_tuple_rows()) as cur,
            ):

                def execute(stmt: _Stmt) -> _Res:
                    cur.execute(stmt.sql, stmt.params, prepare=False)
                    rows = cur.fetchall() if cur.description is not None else []
                    return _Res(rows, cur.rowcount)

                try:
                    with conn.transaction():
                        outcome = _drive(_pg_thread(thread_id, policy, now), execute)
                        if dry_run:
                            raise _Rollback
                except _Rollback:
                    pass
                return outcome
        except Exception as exc:
            if not _is_retryable(exc) or attempt == MAX_ATTEMPTS:
                if _is_retryable(exc):
                    return _Outcome(skipped=f"changed by another transaction {attempt} times")
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _tuple_rows() -> Any:
    from psycopg.rows import tuple_row

    return tuple_row


async def _apg_threads(saver: Any, wanted: list[str] | None) -> list[str]:
    async with _apg_lock(saver), _apg_connection(saver) as conn, conn.cursor() as cur:
        if wanted is None:
            await cur.execute("SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id")
        else:
            await cur.execute(
                "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id = ANY(%s)", (wanted,)
            )
        found = [_first(row) for row in await cur.fetchall()]
    if wanted is not None:
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise _missing_error(missing)
        return wanted
    return found


def _apg_connection(saver: Any) -> Any:
    from psycopg_pool import AsyncConnectionPool

    if isinstance(saver.conn, AsyncConnectionPool):
        return saver.conn.connection()
    return _anull(saver.conn)


def _apg_lock(saver: Any) -> Any:
    from psycopg_pool import AsyncConnectionPool

    return _anull(None) if isinstance(saver.conn, AsyncConnectionPool) else saver.lock


class _anull:
    """An async nullcontext that yields a value."""

    def __init__(self, value: Any) -> None:
        self.value = value

    async def __aenter__(self) -> Any:
        return self.value

    async def __aexit__(self, *exc: object) -> None:
        return None


async def _apg_prune_thread(
    saver: Any, thread_id: str, policy: RetentionPolicy, now: datetime, dry_run: bool
) -> _Outcome:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with (
                _apg_lock(saver),
                _apg_connection(saver) as conn,
                conn.cursor(row_factory=_tuple_rows()) as cur,
            ):

                async def execute(stmt: _Stmt) -> _Res:
                    await cur.execute(stmt.sql, stmt.params, prepare=False)
                    rows = await cur.fetchall() if cur.description is not None else []
                    return _Res(rows, cur.rowcount)

                try:
                    async with conn.transaction():
                        outcome = await _adrive(_pg_thread(thread_id, policy, now), execute)
                        if dry_run:
                            raise _Rollback
                except _Rollback:
                    pass
                return outcome
        except Exception as exc:
            if not _is_retryable(exc) or attempt == MAX_ATTEMPTS:
                if _is_retryable(exc):
                    return _Outcome(skipped=f"changed by another transaction {attempt} times")
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# -- SQLite -------------------------------------------------------------------------------------


def _sqlite_threads(saver: Any, wanted: list[str] | None) -> list[str]:
    with saver.lock:
        if wanted is None:
            rows = saver.conn.execute(
                "SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id"
            ).fetchall()
            return [r[0] for r in rows]
        found: set[str] = set()
        for chunk in _chunks(wanted):
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in saver.conn.execute(
                    f"SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id IN ({marks})",
                    chunk,
                ).fetchall()
            )
    missing = sorted(set(wanted) - found)
    if missing:
        raise _missing_error(missing)
    return wanted


def _sqlite_prune_thread(
    saver: Any, thread_id: str, policy: RetentionPolicy, now: datetime, dry_run: bool
) -> _Outcome:
    conn: sqlite3.Connection = saver.conn
    with saver.lock:
        conn.execute("BEGIN IMMEDIATE")  # takes the write lock: one snapshot, no writer between
        try:

            def execute(stmt: _Stmt) -> _Res:
                cur = conn.execute(stmt.sql, stmt.params)
                return _Res(cur.fetchall(), cur.rowcount)

            outcome = _drive(_sqlite_thread(thread_id, policy, now, saver), execute)
        except BaseException:
            conn.rollback()
            raise
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
    return outcome


async def _asqlite_threads(saver: Any, wanted: list[str] | None) -> list[str]:
    async with saver.lock:
        if wanted is None:
            async with saver.conn.execute(
                "SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id"
            ) as cur:
                return [r[0] for r in await cur.fetchall()]
        found: set[str] = set()
        for chunk in _chunks(wanted):
            marks = ",".join("?" * len(chunk))
            async with saver.conn.execute(
                f"SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id IN ({marks})", chunk
            ) as cur:
                found.update(r[0] for r in await cur.fetchall())
    missing = sorted(set(wanted) - found)
    if missing:
        raise _missing_error(missing)
    return wanted


async def _asqlite_prune_thread(
    saver: Any, thread_id: str, policy: RetentionPolicy, now: datetime, dry_run: bool
) -> _Outcome:
    conn = saver.conn
    async with saver.lock:
        await conn.execute("BEGIN IMMEDIATE")
        try:

            async def execute(stmt: _Stmt) -> _Res:
                async with conn.execute(stmt.sql, stmt.params) as cur:
                    return _Res(list(await cur.fetchall()), cur.rowcount)

            outcome = await _adrive(_sqlite_thread(thread_id, policy, now, saver), execute)
        except BaseException:
            await conn.rollback()
            raise
        if dry_run:
            await conn.rollback()
        else:
            await conn.commit()
    return outcome


# -- measurement --------------------------------------------------------------------------------


def thread_storage_bytes(checkpointer: BaseCheckpointSaver[Any], thread_id: str) -> int:
    """Bytes a thread's checkpoints, writes and blobs occupy.

    PostgreSQL: `pg_column_size` of each row (after TOAST compression); SQLite: the length of the
    stored values and ids. Used by the retention benchmark and tests.

    Raises:
        RetentionError: Unsupported checkpointer.
    """
    kind = saver_kind(checkpointer)
    saver: Any = checkpointer
    if kind == "postgres":
        sql = (
            "SELECT (SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM checkpoints c "
            "WHERE c.thread_id = %s) + (SELECT coalesce(sum(pg_column_size(w.*)), 0) "
            "FROM checkpoint_writes w WHERE w.thread_id = %s) + (SELECT "
            "coalesce(sum(pg_column_size(b.*)), 0) FROM checkpoint_blobs b WHERE b.thread_id = %s)"
        )
        with _pg_lock(saver), _pg_connection(saver) as conn, conn.cursor() as cur:
            cur.execute(sql, (thread_id,) * 3)
            return int(_first(cur.fetchone()))
    sql = (
        "SELECT (SELECT coalesce(sum(length(thread_id) + length(checkpoint_ns) + "
        "length(checkpoint_id) + coalesce(length(parent_checkpoint_id), 0) + "
        "coalesce(length(type), 0) + coalesce(length(checkpoint), 0) + "
        "coalesce(length(metadata), 0)), 0) FROM checkpoints WHERE thread_id = ?) + "
        "(SELECT coalesce(sum(length(thread_id) + length(checkpoint_ns) + length(checkpoint_id) "
        "+ length(task_id) + length(task_path) + 8 + length(channel) + coalesce(length(type), 0) "
        "+ coalesce(length(value), 0)), 0) FROM writes WHERE thread_id = ?)"
    )
    with saver.lock:
        return int(saver.conn.execute(sql, (thread_id, thread_id)).fetchone()[0])
