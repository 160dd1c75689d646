"""One session, one turn at a time: across threads, processes and hosts.

Two turns of one session that run at once both start from the same checkpoint: each writes its
own, the thread forks, and one turn's messages are lost. `one_turn` / `aone_turn` make a turn wait
for (strategy `enqueue`) or refuse to run beside (strategy `reject`: `SessionBusyError`) any other
turn of its session, as the Agent Server's multitask strategies of the same names do.

A turn holds two locks, taken in this order:

1. in this process, a first-come-first-served queue per thread (threads and tasks wait in the
   order they arrived);
2. across processes, the checkpointer's own: a PostgreSQL advisory lock per thread (released by
   the server if the process dies; every host on the database shares it), or for SQLite a byte-
   range lock on a file beside the database (`<database>.locks`; released by the OS if the process
   dies); for any other checkpointer, a lease in Redis when `SWITCHYARD_REDIS_URL` is set. An
   in-memory checkpointer lives in one process: the first lock is all it needs.

Waiters poll the second lock (5 ms, doubling to 50 ms) rather than block on it, so a waiting turn
holds no database connection and can be refused at the run's deadline. Across processes, turns go
in the order they win the lock, not strictly the order they arrived.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import functools
import hashlib
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ClassVar

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel

from switchyard.core.defaults import MULTITASK_STRATEGIES

# Re-exported: the runtime and `switchyard` import the strategy type from here.
from switchyard.core.defaults import MultitaskStrategy as MultitaskStrategy
from switchyard.core.errors import InvalidInputError, PersistenceConfigError, SwitchyardError
from switchyard.core.redact import masked_logger
from switchyard.runtime.effects import AsyncInvoker, Invoker, Steps, adrive, drive

logger = masked_logger(__name__)

_FIRST_POLL_S = 0.005
_LAST_POLL_S = 0.05


class SessionBusyError(SwitchyardError):
    """Another turn of the session is running (`reject`), or did not finish in time (`enqueue`)."""


def check_strategy(strategy: str) -> MultitaskStrategy:
    """`strategy` if it is one; else the one error that lists them.

    Raises:
        InvalidInputError: Not a known strategy.
    """
    if strategy not in MULTITASK_STRATEGIES:
        raise InvalidInputError(
            f"multitask_strategy must be one of {', '.join(MULTITASK_STRATEGIES)}, got {strategy!r}"
        )
    return strategy


def _lock_key(thread_id: str) -> int:
    """A signed 64-bit key for `thread_id` (PostgreSQL advisory locks take a bigint)."""
    digest = hashlib.blake2b(f"switchyard-turn:{thread_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# --- in this process: first come, first served ---------------------------------------------------


class _Queue:
    """Turns waiting per thread id, in arrival order; the head of a queue may run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, deque[object]] = {}

    def join(self, thread_id: str) -> object:
        ticket = object()
        with self._lock:
            self._waiting.setdefault(thread_id, deque()).append(ticket)
        return ticket

    def first(self, thread_id: str, ticket: object) -> bool:
        with self._lock:
            return self._waiting[thread_id][0] is ticket

    def leave(self, thread_id: str, ticket: object) -> None:
        with self._lock:
            waiting = self._waiting.get(thread_id)
            if waiting is None or ticket not in waiting:  # a forked child left its parent's turn
                return
            waiting.remove(ticket)
            if not waiting:
                del self._waiting[thread_id]


_queue = _Queue()


def _forget_after_fork() -> None:
    """A forked child starts with none of its parent's turns, lock files or lock connections.

    Inherited, they would let the child share the parent's PostgreSQL session (whose advisory
    locks are re-entrant: no exclusion at all), believe it holds file locks it does not, and wait
    on turns that will never end in its own process.
    """
    global _queue
    _queue = _Queue()
    _FileRange._files.clear()
    _FileRange._held.clear()
    _FileRange._guard = threading.Lock()
    _LockConnection._open.clear()
    _LockConnection._guard = threading.Lock()
    _RedisLease._clients.clear()
    _RedisLease._guard = threading.Lock()


# --- across processes: the checkpointer's lock ---------------------------------------------------


class _Unshared:
    """A checkpointer only this process sees (in memory): nothing to lock beyond it."""

    def try_lock(self) -> bool:
        return True

    def unlock(self) -> None:
        return None

    async def atry_lock(self) -> bool:
        return True

    async def aunlock(self) -> None:
        return None


class _FileRange:
    """A one-byte POSIX lock at the thread's offset in `<database>.locks` (SQLite).

    POSIX locks belong to the process, not the file descriptor, and closing any descriptor of the
    file drops all of them: so one descriptor per file stays open for the life of the process, and
    the in-process queue (not this lock) keeps the process's own threads apart.
    """

    _files: ClassVar[dict[str, int]] = {}
    _held: ClassVar[dict[tuple[str, int], int]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, database: str, thread_id: str) -> None:
        self.path = f"{database}.locks"
        self.offset = _lock_key(thread_id) & 0x7FFF_FFFF

    def _fd(self) -> int:
        fd = self._files.get(self.path)
        if fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._files[self.path] = fd
        return fd

    def try_lock(self) -> bool:
        with self._guard:
            key = (self.path, self.offset)
            if key in self._held:  # another session of this process shares the byte
                self._held[key] += 1
                return True
            try:
                fd = self._fd()
            except OSError as exc:
                raise PersistenceConfigError(
                    f"cannot open the session lock file {self.path} ({exc.strerror}); "
                    "it must be readable and writable beside the database"
                ) from None
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.offset)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):  # another process holds it
                    return False
                raise PersistenceConfigError(
                    f"cannot lock the session lock file {self.path} ({exc.strerror})"
                ) from None
            self._held[key] = 1
            return True

    def unlock(self) -> None:
        with self._guard:
            key = (self.path, self.offset)
            self._held[key] -= 1
            if not self._held[key]:
                del self._held[key]
                fcntl.lockf(self._fd(), fcntl.LOCK_UN, 1, self.offset)

    async def atry_lock(self) -> bool:
        return self.try_lock()  # a non-blocking system call

    async def aunlock(self) -> None:
        self.unlock()


def _won(row: Any) -> bool:
    """The boolean a `SELECT pg_try_advisory_lock(...) AS won` row holds (dict or tuple rows)."""
    return bool(row["won"] if isinstance(row, dict) else row[0])


class _LockConnection:
    """One connection per database and process that holds this process's advisory locks.

    Advisory locks belong to a database session, so the connection holding a turn's lock must
    stay open for the turn: taking it from the saver's pool would starve the runs themselves (a
    pool of N is exhausted by N busy sessions). One extra connection holds every lock of the
    process instead; statements on it are short and go one at a time. If it drops, its locks go
    with it (the server releases them) and the next statement reconnects.
    """

    _open: ClassVar[dict[str, _LockConnection]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, conninfo: str, kwargs: dict[str, Any]) -> None:
        self.conninfo = conninfo
        # Keepalives: a connection dropped by the network is noticed (and its locks given up)
        # in about a minute, rather than at the next statement.
        self.kwargs = {
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "connect_timeout": 10,
            **kwargs,
            "autocommit": True,
        }
        self.lock = threading.Lock()
        self.conn: Any = None

    @classmethod
    def of(cls, pool: Any) -> _LockConnection:
        """The lock connection of the database `pool` connects to."""
        with cls._guard:
            found = cls._open.get(pool.conninfo)
            if found is None:
                found = cls._open[pool.conninfo] = cls(pool.conninfo, dict(pool.kwargs or {}))
            return found

    def execute(self, sql: str, key: int) -> Any:
        """Run one statement; a dropped connection is opened again once."""
        import psycopg

        with self.lock:
            for attempt in (1, 2):
                if self.conn is None or self.conn.closed:
                    self.conn = psycopg.Connection.connect(self.conninfo, **self.kwargs)
                try:
                    return self.conn.execute(sql, (key,)).fetchone()
                except psycopg.OperationalError:
                    self.conn = None
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")


class _Advisory:
    """A PostgreSQL session-level advisory lock on the thread's key.

    Held by the process's lock connection (`_LockConnection`) when the saver has a pool, or by the
    saver's own connection (used under the saver's lock) when it has just one.
    """

    _TRY = "SELECT pg_try_advisory_lock(%s) AS won"
    _UNLOCK = "SELECT pg_advisory_unlock(%s) AS done"

    def __init__(self, saver: Any, thread_id: str) -> None:
        self.saver = saver
        self.key = _lock_key(thread_id)
        pooled = hasattr(saver.conn, "getconn")
        self.dedicated = _LockConnection.of(saver.conn) if pooled else None

    def _run(self, sql: str) -> Any:
        if self.dedicated is not None:
            return self.dedicated.execute(sql, self.key)
        with self.saver.lock:
            return self.saver.conn.execute(sql, (self.key,)).fetchone()

    def try_lock(self) -> bool:
        return _won(self._run(self._TRY))

    def unlock(self) -> None:
        self._run(self._UNLOCK)

    async def _arun(self, sql: str) -> Any:
        if self.dedicated is not None:  # a sync connection, off the event loop
            return await asyncio.to_thread(self.dedicated.execute, sql, self.key)
        async with self.saver.lock:
            cursor = await self.saver.conn.execute(sql, (self.key,))
            return await cursor.fetchone()

    async def atry_lock(self) -> bool:
        return _won(await self._arun(self._TRY))

    async def aunlock(self) -> None:
        await self._arun(self._UNLOCK)


class _RedisLease:
    """A lease on the thread's key in Redis (`SET NX PX`), when `SWITCHYARD_REDIS_URL` is set.

    For checkpointers shared across hosts that lock nothing themselves (a Redis or MongoDB saver,
    say). The lease outlives its turn's deadline by a minute, so a process that dies holding it
    blocks the session for that long at most; it is released only by the token that took it.
    """

    _RELEASE = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
        "return 0"
    )
    _clients: ClassVar[dict[str, Any]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str, thread_id: str, lease_s: float) -> None:
        self.key = f"switchyard:turn:{thread_id}"
        self.token = os.urandom(16).hex()
        self.lease_ms = int(lease_s * 1000)
        with self._guard:
            if url not in self._clients:
                import redis

                # Bounded waits: an unreachable Redis fails the turn instead of hanging it.
                self._clients[url] = redis.Redis.from_url(
                    url, socket_connect_timeout=5, socket_timeout=5
                )
            self.client = self._clients[url]

    def try_lock(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, px=self.lease_ms))

    def unlock(self) -> None:
        self.client.eval(self._RELEASE, 1, self.key, self.token)

    async def atry_lock(self) -> bool:
        return await asyncio.to_thread(self.try_lock)

    async def aunlock(self) -> None:
        await asyncio.to_thread(self.unlock)


_REDIS_ENV = "SWITCHYARD_REDIS_URL"
_NO_DEADLINE_LEASE_S = 3600.0

_databases: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
"""The file of each SQLite checkpointer seen ("" for an in-memory database)."""


def _sqlite_file(rows: list[Any]) -> str:
    return next((str(row[2]) for row in rows if row[1] == "main"), "")


_SAVERS = (
    # the base of every PostgreSQL saver: sync, async and the shallow ones
    ("postgres", "langgraph.checkpoint.postgres.base", "BasePostgresSaver"),
    ("sqlite", "langgraph.checkpoint.sqlite", "SqliteSaver"),
    ("sqlite", "langgraph.checkpoint.sqlite.aio", "AsyncSqliteSaver"),
)


def _kind(saver: Any) -> str:
    """The saver's kind: postgres, sqlite or unshared, by class (subclasses included).

    Looked up in `sys.modules`, not imported: a saver's class is loaded before the saver
    exists, and importing the PostgreSQL saver for a SQLite run costs 45 ms of psycopg.
    """
    for kind, module, name in _SAVERS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(saver, cls):
            return kind
    return "unshared"


def _lock_for(saver: Any, thread_id: str, wait_s: float | None) -> Any:
    kind = _kind(saver)
    if kind == "postgres":
        return _Advisory(saver, thread_id)
    url = os.environ.get(_REDIS_ENV, "").strip()
    if kind == "unshared" and url and not isinstance(saver, InMemorySaver):
        lease_s = (_NO_DEADLINE_LEASE_S if wait_s is None else wait_s) + 60.0
        return _RedisLease(url, thread_id, lease_s)
    if kind == "sqlite":
        if saver not in _databases:
            with saver.lock:
                _databases[saver] = _sqlite_file(
                    saver.conn.execute("PRAGMA database_list").fetchall()
                )
        database = _databases[saver]
        return _FileRange(database, thread_id) if database else _Unshared()
    return _Unshared()


async def _alock_for(saver: Any, thread_id: str, wait_s: float | None) -> Any:
    if _kind(saver) == "sqlite" and saver not in _databases:
        async with saver.lock:
            cursor = await saver.conn.execute("PRAGMA database_list")
            _databases[saver] = _sqlite_file(list(await cursor.fetchall()))
    return _lock_for(saver, thread_id, wait_s)


# --- the turn ------------------------------------------------------------------------------------


def _busy(strategy: MultitaskStrategy, waited_s: float) -> SessionBusyError:
    if strategy == "reject":
        return SessionBusyError(
            "this session is answering another message; send this one when it is done "
            "(or use multitask_strategy='enqueue' to wait)"
        )
    return SessionBusyError(
        f"this session was still answering another message after {waited_s:.3g}s "
        "(the run's deadline); send this message again later"
    )


class _Wait:
    """Polling with back-off until a turn may start, or until its wait is over."""

    def __init__(self, strategy: MultitaskStrategy, wait_s: float | None) -> None:
        self.strategy = strategy
        self.started = time.monotonic()
        self.wait_s = wait_s
        self.delay = _FIRST_POLL_S

    def next_delay(self) -> float:
        """Seconds until the next try.

        Raises:
            SessionBusyError: `reject`, or `enqueue` past its wait.
        """
        waited = time.monotonic() - self.started
        if self.strategy == "reject" or (self.wait_s is not None and waited >= self.wait_s):
            raise _busy(self.strategy, waited)
        delay, self.delay = self.delay, min(self.delay * 2, _LAST_POLL_S)
        return delay if self.wait_s is None else min(delay, self.wait_s - waited)

    def too_late(self) -> SessionBusyError | None:
        """The error of a turn that won its session only after its wait (its deadline) ran out.

        It is refused as if it had timed out one poll earlier, before anything is written. A turn
        that got its session at once is not: its run ends on its own deadline, as any run does.
        """
        if self.delay == _FIRST_POLL_S:  # it did not wait: the run meets its own deadline
            return None
        waited = time.monotonic() - self.started
        if self.wait_s is not None and waited >= self.wait_s:
            return _busy(self.strategy, waited)
        return None


def _unlock(unlock: Callable[[], None], thread_id: str) -> None:
    """Give the session back; a failure is logged, not raised over the turn's own result.

    The turn is checkpointed by now: raising would lose its result (and invite a resend). A lock
    whose connection failed has been released by its server (PostgreSQL) or expires (Redis).
    """
    try:
        unlock()
    except Exception as exc:
        logger.warning("could not release the turn lock of thread %s: %s", thread_id, exc)


async def _aunlock(lock: Any, thread_id: str) -> None:
    try:
        await lock.aunlock()
    except Exception as exc:
        logger.warning("could not release the turn lock of thread %s: %s", thread_id, exc)


async def _atry(lock: Any, thread_id: str) -> bool:
    """`lock.atry_lock()`, safe against cancellation.

    The try may run on a worker thread (`asyncio.to_thread`) that takes the lock after the
    awaiting task was cancelled; the lock is then given back before the cancellation goes on.
    """
    attempt = asyncio.ensure_future(lock.atry_lock())
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        # Not awaited here (a second cancellation would cancel the try itself): when the try
        # ends, a lock it won is given back.
        attempt.add_done_callback(functools.partial(_give_back_if_won, lock, thread_id))
        raise


_giving_back: set[asyncio.Task[None]] = set()
"""Releases scheduled for cancelled turns (kept referenced until they are done)."""


def _give_back_if_won(lock: Any, thread_id: str, attempt: asyncio.Future[bool]) -> None:
    if attempt.cancelled() or attempt.exception() is not None or not attempt.result():
        return
    release = asyncio.ensure_future(_aunlock(lock, thread_id))
    _giving_back.add(release)
    release.add_done_callback(_giving_back.discard)


@contextmanager
def one_turn(
    saver: Any, thread_id: str, strategy: MultitaskStrategy, wait_s: float | None
) -> Iterator[None]:
    """Hold the session `thread_id` for one turn (see the module docstring).

    Args:
        saver: The graph's checkpointer (None: a graph without one, nothing to hold).
        thread_id: The session's thread.
        strategy: `enqueue` (wait, at most `wait_s` seconds) or `reject`.
        wait_s: Longest wait for `enqueue` (the run's deadline); None: no limit.

    Raises:
        SessionBusyError: The session stayed busy (nothing of this turn ran).
    """
    if saver is None:
        yield
        return
    lock = _lock_for(saver, thread_id, wait_s)
    ticket = _queue.join(thread_id)
    try:
        wait = _Wait(strategy, wait_s)
        while not (_queue.first(thread_id, ticket) and lock.try_lock()):
            time.sleep(wait.next_delay())
        late = wait.too_late()
        if late is not None:
            _unlock(lock.unlock, thread_id)
            raise late
        try:
            yield
        finally:
            _unlock(lock.unlock, thread_id)
    finally:
        _queue.leave(thread_id, ticket)


@asynccontextmanager
async def aone_turn(
    saver: Any, thread_id: str, strategy: MultitaskStrategy, wait_s: float | None
) -> AsyncIterator[None]:
    """Async form of `one_turn`: waiting does not block the event loop."""
    if saver is None:
        yield
        return
    lock = await _alock_for(saver, thread_id, wait_s)
    ticket = _queue.join(thread_id)
    try:
        wait = _Wait(strategy, wait_s)
        while not (_queue.first(thread_id, ticket) and await _atry(lock, thread_id)):
            await asyncio.sleep(wait.next_delay())
        late = wait.too_late()
        if late is not None:
            await asyncio.shield(_aunlock(lock, thread_id))
            raise late
        try:
            yield
        finally:
            # Shielded: a cancelled turn still gives its session back.
            await asyncio.shield(_aunlock(lock, thread_id))
    finally:
        _queue.leave(thread_id, ticket)


def drive_turn(
    graph: Pregel[Any, Any, Any, Any],
    steps: Steps,
    thread_id: str,
    strategy: MultitaskStrategy,
    wait_s: float | None,
    invoker: Invoker | None = None,
) -> Any:
    """`drive(graph, steps, invoker)` as the session's one turn (`one_turn`)."""
    with one_turn(graph.checkpointer, thread_id, check_strategy(strategy), wait_s):
        return drive(graph, steps, invoker)


async def adrive_turn(
    graph: Pregel[Any, Any, Any, Any],
    steps: Steps,
    thread_id: str,
    strategy: MultitaskStrategy,
    wait_s: float | None,
    invoker: AsyncInvoker | None = None,
) -> Any:
    """Async form of `drive_turn`."""
    async with aone_turn(graph.checkpointer, thread_id, check_strategy(strategy), wait_s):
        return await adrive(graph, steps, invoker)


os.register_at_fork(after_in_child=_forget_after_fork)
