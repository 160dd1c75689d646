"""Checkpointers and stores: where sessions live.

`SWITCHYARD_CHECKPOINTER` (or the `setting` argument) selects the backend:

- a SQLite file path (the embedded default, `.switchyard/state.sqlite`): sessions survive restarts
  of one machine;
- `memory`: nothing survives the process (tests);
- a `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE` DSN: LangGraph's PostgreSQL checkpointer
  and store, shared by every worker process that uses the same DSN (the `postgres` extra).

Tables are created on first use (`setup()`); with PostgreSQL the set-up is serialised with an
advisory lock, so several workers starting at once do not race on the migrations. Bad settings
fail before anything is written, with a `PersistenceConfigError` that names what to fix: a
malformed DSN, an unreachable server (host and port named), a missing package.

Example:
    ```python
    with open_persistence("postgresql://postgres@127.0.0.1:5432/test") as p:
        graph = builder.compile(checkpointer=p.checkpointer, store=p.store, name="router")
    ```
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from switchyard.core.errors import PersistenceConfigError

CHECKPOINTER_ENV = "SWITCHYARD_CHECKPOINTER"
DEFAULT_SQLITE_PATH = Path(".switchyard") / "state.sqlite"
POSTGRES_SCHEMES = ("postgres://", "postgresql://")

DEFAULT_POOL_SIZE = 4
"""Connections per process. LangGraph's PostgreSQL checkpointer serialises its queries on one
lock per saver, so a process rarely holds more than one connection for checkpoints plus one or two
for the store; scale comes from more worker processes, each with its own small pool (4 workers x 4
connections stay far below PostgreSQL's default `max_connections` of 100)."""

DEFAULT_CONNECT_TIMEOUT_S = 5
"""Seconds to wait for a PostgreSQL connection before reporting the server unreachable (unless
the DSN sets `connect_timeout`)."""

_SETUP_LOCK_KEY = 0x5357_4954_4348  # "SWITCH": one advisory lock for every Switchyard setup
_SETUP_POLL_S = 0.05

Backend = Literal["memory", "sqlite", "postgres"]

_T = TypeVar("_T")
_Steps = Generator[Callable[[], Any], Any, _T]  # a sans-IO generator: see `_adrive`


@dataclass(frozen=True)
class PostgresTarget:
    """A validated PostgreSQL DSN and the parts worth naming in an error.

    Attributes:
        dsn: The DSN as given (it may contain a password: never print it).
        host: Host name(s), or "local socket" when the DSN names none.
        port: Port(s), "5432" when the DSN names none.
        dbname: Database name ("" when the DSN leaves it to libpq's default).
        user: User name ("" when the DSN leaves it to libpq's default).
        has_connect_timeout: Whether the DSN sets `connect_timeout` itself.
    """

    dsn: str
    host: str
    port: str
    dbname: str
    user: str
    has_connect_timeout: bool

    @property
    def display(self) -> str:
        """The DSN without its password, for messages."""
        user = f"{self.user}@" if self.user else ""
        return f"postgresql://{user}{self.host}:{self.port}/{self.dbname}"


@dataclass(frozen=True)
class Persistence:
    """An open checkpointer and store on one backend.

    Attributes:
        checkpointer: Saves every step of every thread.
        store: Cross-thread key-value memory, and the effect ledger of `switchyard.once`.
        backend: "memory", "sqlite" or "postgres".
        location: Where the data lives: a file path, a DSN without password, or "memory".
    """

    checkpointer: BaseCheckpointSaver[Any]
    store: BaseStore
    backend: Backend
    location: str


def checkpointer_setting(setting: str | None = None) -> str:
    """The effective setting: the argument, else `SWITCHYARD_CHECKPOINTER`, else the SQLite file."""
    return (setting or os.environ.get(CHECKPOINTER_ENV, "").strip()) or str(DEFAULT_SQLITE_PATH)


def backend_of(setting: str | None = None) -> tuple[Backend, str]:
    """Classify a setting without opening anything.

    Returns:
        The backend and its target: the SQLite path, the DSN, or "memory".

    Raises:
        PersistenceConfigError: The setting names a URL scheme Switchyard cannot store sessions in.
    """
    value = checkpointer_setting(setting)
    if value == "memory":
        return "memory", value
    if value.startswith(POSTGRES_SCHEMES):
        return "postgres", value
    if "://" in value:
        scheme = value.split("://", 1)[0]
        raise PersistenceConfigError(
            f"unsupported checkpointer scheme {scheme + '://'!r}; set {CHECKPOINTER_ENV} to a "
            "SQLite file path, 'memory' or a postgresql:// DSN"
        )
    return "sqlite", value


def require_existing(setting: str | None = None) -> None:
    """For commands that only read or prune: refuse a SQLite path where no database exists.

    Opening a missing SQLite file would create an empty one; a mistyped path should say so.

    Raises:
        PersistenceConfigError: The setting is a SQLite path with no file behind it.
    """
    backend, value = backend_of(setting)
    if backend == "sqlite" and not Path(value).expanduser().is_file():
        raise PersistenceConfigError(
            f"no SQLite database at {value!r}; pass --checkpointer (or set {CHECKPOINTER_ENV}) "
            "to the file your sessions are in"
        )


def parse_postgres_dsn(dsn: str) -> PostgresTarget:
    """Validate a PostgreSQL DSN without connecting.

    Raises:
        PersistenceConfigError: The DSN cannot be parsed or has an invalid port; the message
            shows the expected form.
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    expected = "expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    try:
        params = conninfo_to_dict(dsn)
    except ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise PersistenceConfigError(f"malformed PostgreSQL DSN: {reason}; {expected}") from None
    ports = str(params.get("port") or "5432")
    for port in ports.split(","):
        if not port.strip().isdigit() or not 0 < int(port) < 65536:
            raise PersistenceConfigError(
                f"malformed PostgreSQL DSN: port {port!r} is not a number between 1 and 65535; "
                f"{expected}"
            )
    return PostgresTarget(
        dsn=dsn,
        host=str(params.get("host") or params.get("hostaddr") or "local socket"),
        port=ports,
        dbname=str(params.get("dbname") or ""),
        user=str(params.get("user") or ""),
        has_connect_timeout="connect_timeout" in params,
    )


def _require_postgres_packages() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
        from langgraph.checkpoint.postgres import PostgresSaver  # noqa: F401
    except ImportError as exc:
        raise PersistenceConfigError(
            f"PostgreSQL persistence needs the postgres extra ({exc.name} is missing): "
            "pip install 'switchyard-agents[postgres]'"
        ) from None


def _unreachable(target: PostgresTarget, exc: BaseException) -> PersistenceConfigError:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = lines[0].removeprefix("connection failed: ") if lines else type(exc).__name__
    database = f" (database {target.dbname!r}, user {target.user!r})" if target.dbname else ""
    return PersistenceConfigError(
        f"cannot connect to PostgreSQL at {target.host}:{target.port}{database}: {reason}; "
        f"check that the server is running and that {CHECKPOINTER_ENV} (or the DSN passed in) "
        "is right"
    )


def _connect_kwargs(target: PostgresTarget) -> dict[str, Any]:
    from psycopg.rows import dict_row

    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    if not target.has_connect_timeout:
        kwargs["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT_S
    return kwargs


def _check_pool_size(pool_size: int) -> None:
    if pool_size < 1:
        raise PersistenceConfigError(f"pool_size must be at least 1, got {pool_size}")


# -- sans-IO steps, run by one driver for both forms ---------------------------------------------
#
# Opening a backend (and pruning one, in `retention`) is written once, as a generator that yields
# *steps*: calls taking no arguments, such as `partial(conn.execute, sql)`. The driver calls each
# step and sends its result back; with async objects the result is awaitable, and `_adrive` awaits
# it. The synchronous form runs the same driver without an event loop: when no step returns an
# awaitable, the coroutine never suspends, and one `send` runs it to its end.


def _no_await_in_sync(value: object) -> None:
    if inspect.iscoroutine(value):
        value.close()  # never started: closing it avoids a "never awaited" warning
    raise TypeError(
        "an async checkpointer, store or connection was used from synchronous code; use the "
        "async form (open_async_persistence, aprune)"
    )


async def _adrive(steps: _Steps[_T], *, synchronous: bool = False) -> _T:
    """Run the steps of a sans-IO generator, sending each result back and each error in."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(reply) if error is None else steps.throw(error)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        reply, error = None, None
        try:
            reply = step()
            if inspect.isawaitable(reply):
                if synchronous:
                    _no_await_in_sync(reply)
                reply = await reply
        except BaseException as exc:  # thrown back in, so the generator can clean up
            error = exc


def _drive(steps: _Steps[_T]) -> _T:
    """Run the steps of a sans-IO generator synchronously (see `_adrive`)."""
    runner = _adrive(steps, synchronous=True)
    try:
        runner.send(None)
    except StopIteration as done:
        result: _T = done.value
        return result
    runner.close()  # pragma: no cover - a synchronous run has nothing to wait for
    raise AssertionError("a synchronous run suspended")  # pragma: no cover


def _close(closers: Sequence[Callable[[], Any]]) -> _Steps[None]:
    """Call every closer, newest first, even when one fails; then raise the first failure."""
    failure: Exception | None = None
    for close in reversed(closers):
        try:
            yield close
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


def _sqlite_classes(asynchronous: bool) -> tuple[Callable[..., Any], type[Any], type[Any]]:
    """The connect call and LangGraph's saver and store classes on SQLite, for one form."""
    if asynchronous:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
        from langgraph.store.sqlite.aio import AsyncSqliteStore

        return _aiosqlite_connection, AsyncSqliteSaver, AsyncSqliteStore
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.store.sqlite import SqliteStore

    return _sqlite_connection, SqliteSaver, SqliteStore


def _postgres_classes(asynchronous: bool) -> tuple[Callable[..., Any], Any, Any, Any, Any]:
    """The connect call, pool class, LangGraph saver and store classes and sleep, for one form."""
    import psycopg
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    if asynchronous:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver as Saver
        from langgraph.store.postgres.aio import AsyncPostgresStore as Store

        return psycopg.AsyncConnection.connect, AsyncConnectionPool, Saver, Store, asyncio.sleep
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore

    return psycopg.Connection.connect, ConnectionPool, PostgresSaver, PostgresStore, time.sleep


# -- SQLite -------------------------------------------------------------------------------------


def _sqlite_connection(value: str, *, autocommit: bool = False) -> sqlite3.Connection:
    path = Path(value).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(str(path), check_same_thread=False)
        if autocommit:  # LangGraph's SQLite store runs its own BEGIN/COMMIT
            connection.isolation_level = None
        connection.execute("PRAGMA journal_mode=WAL")
        # Several processes may share one file: wait for a writer instead of failing at once.
        connection.execute("PRAGMA busy_timeout=10000")
    except (OSError, sqlite3.Error) as exc:
        raise PersistenceConfigError(
            f"cannot open the SQLite checkpointer at {str(path)!r}: {exc}; set "
            f"{CHECKPOINTER_ENV} to a writable file path or 'memory'"
        ) from None
    return connection


async def _aiosqlite_connection(value: str, *, autocommit: bool = False) -> Any:
    import aiosqlite

    _sqlite_connection(value).close()  # same checks and messages as the sync path, WAL mode set
    kwargs: dict[str, Any] = {"isolation_level": None} if autocommit else {}
    connection = await aiosqlite.connect(str(Path(value).expanduser()), **kwargs)
    try:
        await connection.execute("PRAGMA busy_timeout=10000")
    except BaseException:
        await connection.close()
        raise
    return connection


def _sqlite_setup_lock(value: str, sleep: Callable[[float], Any]) -> _Steps[Callable[[], None]]:
    """Serialise table creation across processes (LangGraph's SQLite migrations race otherwise).

    The file lock is polled, never waited for: two opens of one file in one event loop (a
    scheduler and a run-now in one process) would otherwise block the loop that the holder
    needs to finish. Returns the release.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: one process per file is assumed
        return lambda: None
    lock_file = open(f"{Path(value).expanduser()}.lock", "a")  # noqa: SIM115 - held past here
    try:
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                yield partial(sleep, _SETUP_POLL_S)
    except BaseException:
        lock_file.close()
        raise

    def release() -> None:
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        lock_file.close()

    return release


def _open_sqlite(
    value: str, asynchronous: bool, *, store: bool
) -> _Steps[tuple[Any, Callable[[], Any]]]:
    """A saver (or, with `store`, a store) on its own connection to the file, tables made."""
    connect, saver_class, store_class = _sqlite_classes(asynchronous)
    connection = yield partial(connect, value, autocommit=store)
    try:
        opened = (store_class if store else saver_class)(connection)
        # Brief, and only on first use of the file.
        release = yield from _sqlite_setup_lock(
            value, asyncio.sleep if asynchronous else time.sleep
        )
        try:
            yield opened.setup
        finally:
            release()
    except BaseException:
        yield connection.close
        raise
    return opened, connection.close


# -- PostgreSQL ---------------------------------------------------------------------------------


def _take_setup_lock(lock_conn: Any, sleep: Callable[[float], Any]) -> _Steps[None]:
    # Poll rather than wait inside `pg_advisory_lock`: a waiting statement holds a snapshot,
    # and the migrations' CREATE INDEX CONCURRENTLY in the lock holder waits for every snapshot
    # to end, so two workers starting together would wait on each other forever.
    while True:
        cursor = yield partial(
            lock_conn.execute, "SELECT pg_try_advisory_lock(%s) AS locked", (_SETUP_LOCK_KEY,)
        )
        row = yield cursor.fetchone
        if row is not None and row["locked"]:
            return
        yield partial(sleep, _SETUP_POLL_S)


def _setup_postgres(
    lock_conn: Any,
    target: PostgresTarget,
    setups: list[Callable[[], Any]],
    sleep: Callable[[float], Any],
) -> _Steps[None]:
    """Run the migrations under an advisory lock, so workers starting together do not race."""
    import psycopg

    yield from _take_setup_lock(lock_conn, sleep)
    try:
        for setup in setups:  # noqa: UP028 - `yield from` a list cannot take the sent results
            yield setup
    except psycopg.Error as exc:
        raise PersistenceConfigError(
            f"cannot create Switchyard's tables in {target.display}: "
            f"{str(exc).strip().splitlines()[0]}; check that the user may create tables there"
        ) from None
    finally:
        yield partial(lock_conn.execute, "SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))


def _open_postgres(
    target: PostgresTarget, pool_size: int, want: _Want, asynchronous: bool
) -> _Steps[_Opened]:
    """A pool and the wanted saver and store on it, tables made; fails fast when unreachable."""
    import psycopg
    from psycopg_pool import PoolTimeout

    connect, pool_class, saver_class, store_class, sleep = _postgres_classes(asynchronous)
    kwargs = _connect_kwargs(target)
    try:  # one direct connection first: fails fast, with libpq's own reason
        lock_conn = yield partial(connect, target.dsn, **kwargs)
    except psycopg.Error as exc:
        raise _unreachable(target, exc) from None
    try:
        pool = pool_class(
            target.dsn,
            min_size=1,
            max_size=pool_size,
            kwargs=kwargs,
            # Validate a connection before handing it out, so a restarted server costs a
            # reconnect rather than a failed step.
            check=pool_class.check_connection,
            open=False,
            name="switchyard",
        )
        try:
            yield partial(
                pool.open, wait=True, timeout=float(kwargs.get("connect_timeout", 30)) + 1
            )
        except (PoolTimeout, psycopg.Error) as exc:
            yield pool.close
            raise _unreachable(target, exc) from None
        saver = saver_class(pool) if want.checkpointer else None
        store = store_class(pool) if want.store else None
        try:
            setups = [o.setup for o in (saver, store) if o is not None]
            yield from _setup_postgres(lock_conn, target, setups, sleep)
        except BaseException:
            yield pool.close
            raise
    finally:
        yield lock_conn.close
    return _Opened(saver, store, "postgres", target.display, (pool.close,))


# -- opening, for both forms ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Want:
    checkpointer: bool
    store: bool


@dataclass(frozen=True)
class _Opened:
    checkpointer: Any  # None when not wanted
    store: Any  # None when not wanted
    backend: Backend
    location: str
    closers: tuple[Callable[[], Any], ...] = ()  # run by `_close` when the caller is done

    def persistence(self) -> Persistence:
        """Both, for `open_persistence`."""
        return Persistence(self.checkpointer, self.store, self.backend, self.location)


_BOTH = _Want(checkpointer=True, store=True)
_CHECKPOINTER = _Want(checkpointer=True, store=False)
_STORE = _Want(checkpointer=False, store=True)


def _open(setting: str | None, pool_size: int, want: _Want, asynchronous: bool) -> _Steps[_Opened]:
    """Open what `want` names on the configured backend: the one implementation of both forms."""
    backend, value = backend_of(setting)
    if backend == "memory":
        saver = InMemorySaver() if want.checkpointer else None
        return _Opened(saver, InMemoryStore() if want.store else None, backend, value)
    if backend == "postgres":
        _check_pool_size(pool_size)
        _require_postgres_packages()
        target = parse_postgres_dsn(value)
        return (yield from _open_postgres(target, pool_size, want, asynchronous))
    saver = store = None
    closers: list[Callable[[], Any]] = []
    try:
        if want.checkpointer:
            saver, close = yield from _open_sqlite(value, asynchronous, store=False)
            closers.append(close)
        if want.store:
            store, close = yield from _open_sqlite(value, asynchronous, store=True)
            closers.append(close)
    except BaseException:
        yield from _close(closers)
        raise
    return _Opened(saver, store, backend, value, tuple(closers))


# The two forms' context managers differ only in `await`; everything they run is `_open` and
# `_close`, shared.
@contextmanager
def _opened(setting: str | None, pool_size: int, want: _Want) -> Iterator[_Opened]:
    opened = _drive(_open(setting, pool_size, want, asynchronous=False))
    try:
        yield opened
    finally:
        _drive(_close(opened.closers))


@asynccontextmanager
async def _aopened(setting: str | None, pool_size: int, want: _Want) -> AsyncIterator[_Opened]:
    opened = await _adrive(_open(setting, pool_size, want, asynchronous=True))
    try:
        yield opened
    finally:
        await _adrive(_close(opened.closers))


# -- public entry points ------------------------------------------------------------------------
#
# Six thin openers that share one signature (the public API): each picks what `_opened` or
# `_aopened` opened, and everything they run is `_open` and `_close`, shared by both forms.


@contextmanager
def open_persistence(
    setting: str | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> Iterator[Persistence]:
    """Open the configured checkpointer and store for synchronous graphs; close them afterwards.

    Args:
        setting: A SQLite path, "memory" or a postgresql:// DSN; None reads
            `SWITCHYARD_CHECKPOINTER`, else uses `.switchyard/state.sqlite`.
        pool_size: Most PostgreSQL connections this process opens (shared by both).

    Raises:
        PersistenceConfigError: The path cannot be opened, the DSN is malformed, the server is
            unreachable or a package is missing; the message says which.
    """
    with _opened(setting, pool_size, _BOTH) as opened:
        yield opened.persistence()


@contextmanager
def open_checkpointer(
    setting: str | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> Iterator[BaseCheckpointSaver[Any]]:
    """Open the configured checkpointer for synchronous graphs, and close it afterwards.

    Args:
        setting: A SQLite path, "memory" or a postgresql:// DSN; None reads
            `SWITCHYARD_CHECKPOINTER`, else uses `.switchyard/state.sqlite`.
        pool_size: Most PostgreSQL connections this process opens.

    Raises:
        PersistenceConfigError: The path cannot be opened, the DSN is malformed, the server is
            unreachable or a package is missing; the message says which.
    """
    with _opened(setting, pool_size, _CHECKPOINTER) as opened:
        yield opened.checkpointer


@contextmanager
def open_store(
    setting: str | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> Iterator[BaseStore]:
    """Open the configured store (cross-thread memory) for synchronous graphs.

    Same settings and errors as `open_checkpointer`.
    """
    with _opened(setting, pool_size, _STORE) as opened:
        yield opened.store


@asynccontextmanager
async def open_async_persistence(
    setting: str | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> AsyncIterator[Persistence]:
    """Async form of `open_persistence`, for graphs run with `ainvoke` / `arun`.

    Raises:
        PersistenceConfigError: As `open_persistence`.
    """
    async with _aopened(setting, pool_size, _BOTH) as opened:
        yield opened.persistence()


@asynccontextmanager
async def open_async_checkpointer(
    setting: str | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """Async form of `open_checkpointer`, for graphs run with `ainvoke` / `arun`.

    Raises:
        PersistenceConfigError: As `open_checkpointer`.
    """
    async with _aopened(setting, pool_size, _CHECKPOINTER) as opened:
        yield opened.checkpointer


@asynccontextmanager
async def open_async_store(
    setting: str | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> AsyncIterator[BaseStore]:
    """Async form of `open_store`.

    Raises:
        PersistenceConfigError: As `open_checkpointer`.
    """
    async with _aopened(setting, pool_size, _STORE) as opened:
        yield opened.store
