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

`keep_latest=1` (alone) on PostgreSQL is done by the saver's own `prune(strategy="keep_latest")`
(langgraph-checkpoint-postgres 3.2 and later), run inside this module's transaction so that the
rules above hold, a dry run rolls it back and the report counts what it deleted. Every other
policy, SQLite (whose saver has no `prune`), DeltaChannel threads and effect records are done
here. `prune` and `aprune` are one implementation, a generator of steps that a sync or an async
driver runs.

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
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from importlib import metadata
from typing import Any, TypeVar

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore

from switchyard.core.errors import SessionAccessError, SwitchyardError
from switchyard.guardrails.idempotency import effects_namespace
from switchyard.storage.persistence import _adrive, _close, _drive, _Steps

MAX_ATTEMPTS = 3
"""Tries per thread when a concurrent writer makes PostgreSQL abort the snapshot."""

_UUID_EPOCH_OFFSET = 0x01B21DD213814000  # 100 ns intervals from 1582-10-15 to 1970-01-01
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_CHUNK = 500
_SENDS_IN_CHECKPOINT = 4  # from this format version on, a checkpoint keeps its pending sends

_T = TypeVar("_T")


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
    version: int | None = None  # checkpoint format; None: not read yet (SQLite)


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


# -- sessions: one connection, one transaction, for both forms ----------------------------------
#
# From here on everything is a sans-IO generator of steps (see `persistence._adrive`): `prune`
# runs it with `_drive`, `aprune` with `_adrive`, so each behaviour is written once. A step is a
# call to the saver's own objects, sync or async: `partial(cursor.execute, sql)` returns a cursor
# from psycopg's `Cursor` and an awaitable from its `AsyncCursor`, and the driver awaits that.


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


def _chunks(values: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start : start + _CHUNK])


@dataclass(frozen=True)
class _Session:
    """One connection of a saver, held while a body of statements runs on it.

    Statements are written for PostgreSQL (`%s`, `= ANY(%s)`); on SQLite `run` and `run_in`
    rewrite them to `?` and chunks of `IN (?, ...)`.
    """

    kind: str
    conn: Any
    cursor: Any  # PostgreSQL: the session's cursor; SQLite: None (a cursor per statement)

    def run(self, sql: str, params: Sequence[Any] = ()) -> _Steps[_Res]:
        """Execute one statement; its rows (when it returns any) and its row count."""
        if self.cursor is None:
            cur = yield partial(self.conn.execute, sql.replace("%s", "?"), tuple(params))
            try:
                rows = yield cur.fetchall
                count = cur.rowcount
            finally:
                yield cur.close
            return _Res(list(rows), count)
        # Unprepared, so PostgreSQL plans each statement knowing its arrays.
        yield partial(self.cursor.execute, sql, params, prepare=False)
        rows = (yield self.cursor.fetchall) if self.cursor.description is not None else []
        return _Res(list(rows), self.cursor.rowcount)

    def run_in(self, sql: str, params: Sequence[Any], ids: Sequence[str]) -> _Steps[_Res]:
        """Execute `sql` whose last parameter is `= ANY(%s)`, for `ids` (chunked on SQLite)."""
        if self.cursor is not None:
            return (yield from self.run(sql, (*params, list(ids))))
        total = _Res([], 0)
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            res = yield from self.run(sql.replace("= ANY(%s)", f"IN ({marks})"), (*params, *chunk))
            total = _Res(total.rows + res.rows, total.rowcount + res.rowcount)
        return total


def _pool_of(saver: Any) -> Any:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    return saver.conn if isinstance(saver.conn, ConnectionPool | AsyncConnectionPool) else None


def _tuple_rows() -> Any:
    from psycopg.rows import tuple_row

    return tuple_row


def _session(saver: Any, kind: str, body: Callable[[_Session], _Steps[_T]]) -> _Steps[_T]:
    """Run `body` on one connection of `saver`: one from its pool, or its only one, locked."""
    pool = _pool_of(saver) if kind == "postgres" else None
    release: list[Callable[[], Any]] = []
    try:
        if pool is None:
            # A saver on a single connection serialises its use with `lock`; a pool needs none.
            yield saver.lock.acquire
            release.append(saver.lock.release)
            conn = saver.conn
        else:
            conn = yield pool.getconn
            release.append(partial(pool.putconn, conn))
        cursor = None
        if kind == "postgres":
            cursor = conn.cursor(row_factory=_tuple_rows())
            release.append(cursor.close)
        return (yield from body(_Session(kind, conn, cursor)))
    finally:
        yield from _close(release)


_BEGIN = {
    # One snapshot: what a run saves meanwhile is neither seen nor deleted, and a concurrent
    # change to the rows read aborts the transaction (retried by `_prune_thread`).
    "postgres": ("BEGIN", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
    # Takes the write lock: one snapshot, no writer between.
    "sqlite": ("BEGIN IMMEDIATE",),
}


def _transaction(
    session: _Session, body: Callable[[_Session], _Steps[_T]], dry_run: bool
) -> _Steps[_T]:
    """Run `body` in one transaction; roll it back on an error, or at the end of a dry run."""
    begin, *setup = _BEGIN[session.kind]
    yield from session.run(begin)
    try:
        for sql in setup:
            yield from session.run(sql)
        result = yield from body(session)
    except BaseException:
        with suppress(Exception):  # a failed rollback must not hide why it was needed
            yield from session.run("ROLLBACK")
        raise
    yield from session.run("ROLLBACK" if dry_run else "COMMIT")
    return result


# -- one thread ---------------------------------------------------------------------------------

_DELTA_SKIPPED = "uses a DeltaChannel (its latest value needs older checkpoints)"

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
       metadata -> 'parents' ->> '' AS root, coalesce((checkpoint ->> 'v')::int, 0) AS v
FROM checkpoints WHERE thread_id = %s
"""

_PG_REFERENCED_SQL = """
SELECT DISTINCT v.key, v.value
FROM checkpoints c CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
WHERE c.thread_id = %s AND c.checkpoint_ns = %s
"""

_PG_COUNTS_SQL = """
SELECT (SELECT count(*) FROM checkpoints WHERE thread_id = %s),
       (SELECT count(*) FROM checkpoint_writes WHERE thread_id = %s),
       (SELECT count(*) FROM checkpoint_blobs WHERE thread_id = %s)
"""

# Writes older than the oldest kept checkpoint of their namespace: those of the checkpoints
# deleted now, and any a run saved in the background for a checkpoint an earlier prune deleted.
# Never "writes without a checkpoint" in general: a run's writes for a new checkpoint can commit
# before the checkpoint does, but that one is newer than anything kept.
_STALE_WRITES_SQL = (
    "DELETE FROM {writes} WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id < %s"
)


def _pg_uses_delta(session: _Session, thread_id: str) -> _Steps[bool]:
    return bool((yield from session.run(_PG_DELTA_SQL, (thread_id,))).rows)


def _pg_rows(session: _Session, thread_id: str) -> _Steps[list[_Row] | None]:
    """The thread's checkpoints, or None when it uses a DeltaChannel."""
    if (yield from _pg_uses_delta(session, thread_id)):
        return None
    return [_Row(*r) for r in (yield from session.run(_PG_ROWS_SQL, (thread_id,))).rows]


def _sqlite_rows(session: _Session, thread_id: str) -> _Steps[list[_Row] | None]:
    """The thread's checkpoints (format version read later, if needed), or None for a delta."""
    raw = (
        yield from session.run(
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, metadata "
            "FROM checkpoints WHERE thread_id = %s",
            (thread_id,),
        )
    ).rows
    rows: list[_Row] = []
    for ns, checkpoint_id, parent_id, metadata_raw in raw:
        metadata = json.loads(metadata_raw) if metadata_raw else {}
        if "counters_since_delta_snapshot" in metadata or "delta_writes_versioned" in metadata:
            return None
        rows.append(_Row(ns, checkpoint_id, parent_id, (metadata.get("parents") or {}).get("")))
    return rows


def _format_version(session: _Session, thread_id: str, row: _Row, serde: Any) -> _Steps[int]:
    if row.version is not None:
        return row.version
    typed = (
        yield from session.run(
            "SELECT type, checkpoint FROM checkpoints WHERE thread_id = %s "
            "AND checkpoint_ns = %s AND checkpoint_id = %s",
            (thread_id, row.ns, row.checkpoint_id),
        )
    ).rows
    if not typed:
        return _SENDS_IN_CHECKPOINT
    version: int = serde.loads_typed((typed[0][0], typed[0][1])).get("v", 0)
    return version


def _own_thread(
    session: _Session, thread_id: str, policy: RetentionPolicy, now: datetime, serde: Any
) -> _Steps[_Outcome]:
    """Our prune of one thread: every policy on SQLite, the rest of them on PostgreSQL."""
    read = _pg_rows if session.kind == "postgres" else _sqlite_rows
    rows = yield from read(session, thread_id)
    if rows is None:
        return _Outcome(skipped=_DELTA_SKIPPED)
    plan = _plan(rows, policy, now)
    by_id = {(r.ns, r.checkpoint_id): r for r in rows}
    for ns, doomed in list(plan.delete.items()):
        if not doomed:
            continue
        oldest = by_id[(ns, plan.oldest_kept[ns])]
        if (yield from _format_version(session, thread_id, oldest, serde)) < _SENDS_IN_CHECKPOINT:
            _keep_parent_of_oldest(plan, ns, rows)
    outcome = _Outcome(kept=plan.kept_count, kept_ids=plan.kept_ids)
    yield from _delete_planned(session, thread_id, plan, outcome)
    return outcome


def _delete_planned(
    session: _Session, thread_id: str, plan: _Plan, outcome: _Outcome
) -> _Steps[None]:
    pg = session.kind == "postgres"
    writes = "checkpoint_writes" if pg else "writes"
    if plan.drop_namespaces:
        drop = "DELETE FROM {} WHERE thread_id = %s AND checkpoint_ns = ANY(%s)"
        namespaces = (thread_id,), plan.drop_namespaces
        outcome.writes += (yield from session.run_in(drop.format(writes), *namespaces)).rowcount
        if pg:
            blobs = yield from session.run_in(drop.format("checkpoint_blobs"), *namespaces)
            outcome.blobs += blobs.rowcount
        gone = yield from session.run_in(drop.format("checkpoints"), *namespaces)
        outcome.checkpoints += gone.rowcount
    for ns, doomed in plan.delete.items():
        stale = _STALE_WRITES_SQL.format(writes=writes)
        outcome.writes += (
            yield from session.run(stale, (thread_id, ns, plan.oldest_kept[ns]))
        ).rowcount
        if not doomed:
            continue
        deleted = yield from session.run_in(
            "DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s "
            "AND checkpoint_id = ANY(%s)"
            + (" RETURNING checkpoint -> 'channel_versions'" if pg else ""),
            (thread_id, ns),
            doomed,
        )
        outcome.checkpoints += deleted.rowcount
        if plan.orphan[ns]:
            yield from session.run_in(
                "UPDATE checkpoints SET parent_checkpoint_id = NULL WHERE thread_id = %s "
                "AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)",
                (thread_id, ns),
                plan.orphan[ns],
            )
        if pg:
            outcome.blobs += yield from _pg_free_blobs(session, thread_id, ns, deleted.rows)


def _pg_free_blobs(session: _Session, thread_id: str, ns: str, deleted: list[Any]) -> _Steps[int]:
    """Delete the blobs the deleted checkpoints referenced and no remaining one does."""
    freed = {(ch, str(ver)) for (cv,) in deleted for ch, ver in (cv or {}).items()}
    if not freed:
        return 0
    referenced = {
        (r[0], r[1]) for r in (yield from session.run(_PG_REFERENCED_SQL, (thread_id, ns))).rows
    }
    garbage: dict[str, list[str]] = {}
    for channel, version in sorted(freed - referenced):
        garbage.setdefault(channel, []).append(version)
    count = 0
    for channel, versions in garbage.items():
        res = yield from session.run(
            "DELETE FROM checkpoint_blobs WHERE thread_id = %s AND checkpoint_ns = %s "
            "AND channel = %s AND version = ANY(%s)",
            (thread_id, ns, channel, versions),
        )
        count += res.rowcount
    return count


@cache
def _upstream_keep_latest_matches() -> bool:
    """Whether the installed PostgreSQL saver has the `prune` `_upstream_keep_latest` relies on.

    langgraph-checkpoint-postgres 3.2 is the version read for that: before it, `prune` is the
    base class's `NotImplementedError`.
    """
    try:
        installed = metadata.version("langgraph-checkpoint-postgres")
    except metadata.PackageNotFoundError:  # pragma: no cover - a PostgreSQL saver needs it
        return False
    major_minor = tuple(int(part) for part in re.findall(r"\d+", installed)[:2])
    return major_minor >= (3, 2)


def _upstream_prune_step(conn: Any, thread_id: str) -> Callable[[], Any]:
    """The saver's own keep_latest prune of one thread, on `conn` (sync or async saver)."""
    from psycopg import AsyncConnection

    if isinstance(conn, AsyncConnection):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        return partial(AsyncPostgresSaver(conn).aprune, [thread_id], strategy="keep_latest")
    from langgraph.checkpoint.postgres import PostgresSaver

    return partial(PostgresSaver(conn).prune, [thread_id], strategy="keep_latest")


def _upstream_keep_latest(session: _Session, thread_id: str) -> _Steps[_Outcome]:
    """`keep_latest=1` on PostgreSQL: the saver's own `prune(strategy="keep_latest")`.

    Upstream keeps exactly what this module does for it: the latest checkpoint of each namespace
    with its writes and the blobs it references, its parent when it predates format v4 (upstream:
    only when that parent has pending sends, which is what the parent is kept for), no parent link
    on what it keeps, and a subgraph call's namespace gone with the saved root checkpoint it
    started from. It runs on this session's connection, inside our transaction: its own becomes a
    savepoint and its REPEATABLE READ is the level already set, so it sees our snapshot, a dry run
    rolls it back, and counting before and after gives the report exact numbers.

    Ours is still needed around it for what upstream does not do: report what it deleted (it
    returns nothing), skip a DeltaChannel thread (it raises, for the whole batch), and delete
    writes a run saved for a checkpoint an earlier prune deleted (it deletes only the writes of
    the checkpoints it deletes now).
    """
    if (yield from _pg_uses_delta(session, thread_id)):
        return _Outcome(skipped=_DELTA_SKIPPED)
    before = (yield from session.run(_PG_COUNTS_SQL, (thread_id,) * 3)).rows[0]
    try:
        yield _upstream_prune_step(session.conn, thread_id)
    except NotImplementedError as exc:  # upstream saw a DeltaChannel that our check did not
        return _Outcome(skipped=f"{_DELTA_SKIPPED}: {exc}")
    heads = yield from session.run(
        "SELECT checkpoint_ns, min(checkpoint_id), array_agg(checkpoint_id) FROM checkpoints "
        "WHERE thread_id = %s GROUP BY checkpoint_ns",
        (thread_id,),
    )
    stale = _STALE_WRITES_SQL.format(writes="checkpoint_writes")
    for ns, oldest, _ in heads.rows:
        yield from session.run(stale, (thread_id, ns, oldest))
    after = (yield from session.run(_PG_COUNTS_SQL, (thread_id,) * 3)).rows[0]
    return _Outcome(
        checkpoints=before[0] - after[0],
        writes=before[1] - after[1],
        blobs=before[2] - after[2],
        kept=after[0],
        kept_ids={checkpoint_id for *_, ids in heads.rows for checkpoint_id in ids},
    )


def _thread_body(
    saver: Any, kind: str, thread_id: str, policy: RetentionPolicy, now: datetime
) -> Callable[[_Session], _Steps[_Outcome]]:
    """Who prunes this thread: the saver's own `prune` where it does what the policy asks."""
    if (
        kind == "postgres"
        and policy.keep_latest == 1
        and policy.older_than is None
        and _upstream_keep_latest_matches()
    ):
        return partial(_upstream_keep_latest, thread_id=thread_id)
    # Ours: upstream's keep_latest keeps only the latest checkpoint (no keep_latest > 1), has no
    # age cut-off (no older_than), and langgraph-checkpoint-sqlite has no `prune` at all.
    return partial(_own_thread, thread_id=thread_id, policy=policy, now=now, serde=saver.serde)


def _prune_thread(
    saver: Any, kind: str, thread_id: str, policy: RetentionPolicy, now: datetime, dry_run: bool
) -> _Steps[_Outcome]:
    """Prune one thread in one transaction, tried again when a concurrent writer aborts it."""
    body = partial(
        _transaction, body=_thread_body(saver, kind, thread_id, policy, now), dry_run=dry_run
    )
    for _ in range(MAX_ATTEMPTS):
        try:
            return (yield from _session(saver, kind, body))
        except Exception as exc:
            if not _is_retryable(exc):
                raise
    return _Outcome(skipped=f"changed by another transaction {MAX_ATTEMPTS} times")


def _is_retryable(exc: BaseException) -> bool:
    try:
        from psycopg import errors
    except ImportError:  # pragma: no cover - psycopg is present whenever a Postgres saver is
        return False
    return isinstance(exc, errors.SerializationFailure | errors.DeadlockDetected)


# -- whole prunes -------------------------------------------------------------------------------


def _list_threads(session: _Session, wanted: list[str] | None) -> _Steps[list[str]]:
    if wanted is None:
        res = yield from session.run(
            "SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id"
        )
        return [r[0] for r in res.rows]
    res = yield from session.run_in(
        "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id = ANY(%s)", (), wanted
    )
    missing = sorted(set(wanted) - {r[0] for r in res.rows})
    if missing:
        raise _missing_error(missing)
    return wanted


def _prune_effects(
    store: BaseStore, thread_id: str, kept: set[str], dry_run: bool, asynchronous: bool
) -> _Steps[int]:
    """Delete the thread's `once` effect records made in checkpoints that are gone."""
    search, delete = (
        (store.asearch, store.adelete) if asynchronous else (store.search, store.delete)
    )
    namespace = effects_namespace(thread_id)
    doomed: list[str] = []
    offset = 0
    while True:
        page = yield partial(search, namespace, limit=200, offset=offset)
        for item in page:
            checkpoint_id = item.value.get("checkpoint_id")
            if checkpoint_id is not None and checkpoint_id not in kept:
                doomed.append(item.key)
        if len(page) < 200:
            break
        offset += len(page)
    if not dry_run:
        for key in doomed:
            yield partial(delete, namespace, key)
    return len(doomed)


@dataclass(frozen=True)
class _Options:
    thread_ids: Sequence[str] | None
    store: BaseStore | None
    now: datetime | None
    dry_run: bool
    asynchronous: bool
    user_id: str | None = None


def _owned(
    checkpointer: BaseCheckpointSaver[Any],
    threads: list[str],
    options: _Options,
) -> _Steps[list[str]]:
    """The threads `options.user_id` owns (all of them when no user is given).

    Threads asked for by id must all be the user's: one that is not (another user's, ownerless
    or missing) refuses the whole prune, before anything is deleted, in words that do not say
    which of the three it is.
    """
    user_id = options.user_id
    if user_id is None:
        return threads
    read = checkpointer.aget_tuple if options.asynchronous else checkpointer.get_tuple
    owned: list[str] = []
    for thread_id in threads:
        head = yield partial(read, {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
        if head is not None and (head.metadata or {}).get("user_id") == user_id:
            owned.append(thread_id)
        elif options.thread_ids is not None:
            raise _not_yours(thread_id, user_id)
    return owned


def _not_yours(thread_id: str, user_id: str) -> SessionAccessError:
    return SessionAccessError(
        f"no thread {thread_id!r} of user {user_id!r} (it does not exist here, or belongs to "
        "another user); nothing was pruned"
    )


def _prune(
    checkpointer: BaseCheckpointSaver[Any],
    policy: RetentionPolicy,
    options: _Options,
) -> _Steps[PruneReport]:
    """The one implementation of `prune` and `aprune`."""
    kind = saver_kind(checkpointer)
    if not options.asynchronous and type(checkpointer).__name__.startswith("Async"):
        raise RetentionError(
            f"{type(checkpointer).__name__} is async: prune it with `await aprune(...)`"
        )
    wanted = _check_threads(options.thread_ids)
    when = options.now or datetime.now(UTC)
    if wanted is not None and options.user_id is not None:
        # Checked before the thread list, whose "no checkpoints" error would tell a user that
        # another user's thread exists.
        yield from _owned(checkpointer, wanted, options)
    threads = yield from _session(checkpointer, kind, partial(_list_threads, wanted=wanted))
    if wanted is None:
        threads = yield from _owned(checkpointer, threads, options)
    report = PruneReport(dry_run=options.dry_run)
    for thread_id in threads:
        outcome = yield from _prune_thread(
            checkpointer, kind, thread_id, policy, when, options.dry_run
        )
        _add(report, thread_id, outcome)
        if options.store is not None and not outcome.skipped:
            report.effects_deleted += yield from _prune_effects(
                options.store, thread_id, outcome.kept_ids, options.dry_run, options.asynchronous
            )
    return report


def prune(
    checkpointer: BaseCheckpointSaver[Any],
    policy: RetentionPolicy,
    *,
    thread_ids: Sequence[str] | None = None,
    store: BaseStore | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    user_id: str | None = None,
) -> PruneReport:
    """Delete the checkpoints a policy does not keep, thread by thread.

    Args:
        checkpointer: A SQLite or PostgreSQL checkpointer (sync).
        policy: What to keep.
        thread_ids: Only these threads; None prunes every thread.
        store: Also delete `once` effect records of deleted checkpoints from this store.
        now: The time `older_than` counts back from (default: now, UTC).
        dry_run: Count what would be deleted, then roll every change back.
        user_id: Act as this user: only their threads are pruned, and every thread in
            `thread_ids` must be theirs. None prunes any thread (the operator's view).

    Returns:
        What was deleted and kept, and the threads skipped with the reason.

    Raises:
        RetentionError: Unsupported or async checkpointer, or a requested thread has no
            checkpoints (checked before anything is deleted).
        SessionAccessError: `user_id` is given and a requested thread is not theirs (missing,
            ownerless or another user's, refused alike; checked before anything is deleted).
    """
    options = _Options(thread_ids, store, now, dry_run, asynchronous=False, user_id=user_id)
    return _drive(_prune(checkpointer, policy, options))


# `aprune` repeats `prune`'s signature (the public API of both forms); both bodies are one line
# around the shared `_prune`.
async def aprune(
    checkpointer: BaseCheckpointSaver[Any],
    policy: RetentionPolicy,
    *,
    thread_ids: Sequence[str] | None = None,
    store: BaseStore | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    user_id: str | None = None,
) -> PruneReport:
    """Async form of `prune`, for `AsyncPostgresSaver` and `AsyncSqliteSaver`.

    Raises:
        RetentionError: As `prune`.
        SessionAccessError: As `prune`.
    """
    options = _Options(thread_ids, store, now, dry_run, asynchronous=True, user_id=user_id)
    return await _adrive(_prune(checkpointer, policy, options))


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


# -- measurement --------------------------------------------------------------------------------

_PG_BYTES_SQL = (
    "SELECT (SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM checkpoints c "
    "WHERE c.thread_id = %s) + (SELECT coalesce(sum(pg_column_size(w.*)), 0) "
    "FROM checkpoint_writes w WHERE w.thread_id = %s) + (SELECT "
    "coalesce(sum(pg_column_size(b.*)), 0) FROM checkpoint_blobs b WHERE b.thread_id = %s)"
)
_SQLITE_BYTES_SQL = (
    "SELECT (SELECT coalesce(sum(length(thread_id) + length(checkpoint_ns) + "
    "length(checkpoint_id) + coalesce(length(parent_checkpoint_id), 0) + "
    "coalesce(length(type), 0) + coalesce(length(checkpoint), 0) + "
    "coalesce(length(metadata), 0)), 0) FROM checkpoints WHERE thread_id = %s) + "
    "(SELECT coalesce(sum(length(thread_id) + length(checkpoint_ns) + length(checkpoint_id) "
    "+ length(task_id) + length(task_path) + 8 + length(channel) + coalesce(length(type), 0) "
    "+ coalesce(length(value), 0)), 0) FROM writes WHERE thread_id = %s)"
)


def thread_storage_bytes(checkpointer: BaseCheckpointSaver[Any], thread_id: str) -> int:
    """Bytes a thread's checkpoints, writes and blobs occupy.

    PostgreSQL: `pg_column_size` of each row (after TOAST compression); SQLite: the length of the
    stored values and ids. Used by the retention benchmark and tests.

    Raises:
        RetentionError: Unsupported checkpointer.
    """
    kind = saver_kind(checkpointer)
    sql = _PG_BYTES_SQL if kind == "postgres" else _SQLITE_BYTES_SQL
    res = _drive(
        _session(
            checkpointer,
            kind,
            partial(_Session.run, sql=sql, params=(thread_id,) * sql.count("%s")),
        )
    )
    return int(res.rows[0][0])
