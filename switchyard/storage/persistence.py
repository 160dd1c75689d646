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
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from switchyard.core.errors import PersistenceConfigError

if TYPE_CHECKING:
    from psycopg import AsyncConnection, Connection
    from psycopg.rows import DictRow

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


@contextmanager
def _setup_lock(value: str) -> Iterator[None]:
    """Serialise table creation across processes: LangGraph's SQLite migrations race otherwise."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: one process per file is assumed
        yield
        return
    with open(f"{Path(value).expanduser()}.lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@contextmanager
def _sqlite_saver(value: str) -> Iterator[BaseCheckpointSaver[Any]]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    connection = _sqlite_connection(value)
    try:
        saver = SqliteSaver(connection)
        with _setup_lock(value):
            saver.setup()
        yield saver
    finally:
        connection.close()


@contextmanager
def _sqlite_store(value: str) -> Iterator[BaseStore]:
    from langgraph.store.sqlite import SqliteStore

    connection = _sqlite_connection(value, autocommit=True)
    try:
        store = SqliteStore(connection)
        with _setup_lock(value):
            store.setup()
        yield store
    finally:
        connection.close()


# -- PostgreSQL (sync) --------------------------------------------------------------------------


def _connect(target: PostgresTarget) -> Connection[DictRow]:
    """One direct connection: fails fast, with libpq's own reason, when the server is not there."""
    import psycopg

    try:
        return psycopg.Connection.connect(target.dsn, **_connect_kwargs(target))
    except psycopg.Error as exc:
        raise _unreachable(target, exc) from None


def _take_setup_lock(lock_conn: Connection[DictRow]) -> None:
    # Poll rather than wait inside `pg_advisory_lock`: a waiting statement holds a snapshot,
    # and the migrations' CREATE INDEX CONCURRENTLY in the lock holder waits for every snapshot
    # to end, so two workers starting together would wait on each other forever.
    while True:
        row = lock_conn.execute(
            "SELECT pg_try_advisory_lock(%s) AS locked", (_SETUP_LOCK_KEY,)
        ).fetchone()
        if row is not None and row["locked"]:
            return
        time.sleep(_SETUP_POLL_S)


def _setup_postgres(
    lock_conn: Connection[DictRow], target: PostgresTarget, setups: list[Callable[[], None]]
) -> None:
    """Run the migrations under an advisory lock, so workers starting together do not race."""
    import psycopg

    _take_setup_lock(lock_conn)
    try:
        for setup in setups:
            setup()
    except psycopg.Error as exc:
        raise PersistenceConfigError(
            f"cannot create Switchyard's tables in {target.display}: "
            f"{str(exc).strip().splitlines()[0]}; check that the user may create tables there"
        ) from None
    finally:
        lock_conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))


@contextmanager
def _open_postgres(
    target: PostgresTarget, pool_size: int, *, checkpointer: bool, store: bool
) -> Iterator[tuple[BaseCheckpointSaver[Any] | None, BaseStore | None]]:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore
    from psycopg_pool import ConnectionPool, PoolTimeout

    kwargs = _connect_kwargs(target)
    with _connect(target) as lock_conn:
        pool: ConnectionPool[Any] = ConnectionPool(
            target.dsn,
            min_size=1,
            max_size=pool_size,
            kwargs=kwargs,
            # Validate a connection before handing it out, so a restarted server costs a
            # reconnect rather than a failed step.
            check=ConnectionPool.check_connection,
            open=False,
            name="switchyard",
        )
        try:
            pool.open(wait=True, timeout=float(kwargs.get("connect_timeout", 30)) + 1)
        except (PoolTimeout, psycopg.Error) as exc:
            pool.close()
            raise _unreachable(target, exc) from None
        saver = PostgresSaver(pool) if checkpointer else None
        pg_store = PostgresStore(pool) if store else None
        try:
            _setup_postgres(lock_conn, target, [o.setup for o in (saver, pg_store) if o])
        except BaseException:
            pool.close()
            raise
    try:
        yield saver, pg_store
    finally:
        pool.close()


# -- PostgreSQL (async) -------------------------------------------------------------------------


async def _aconnect(target: PostgresTarget) -> AsyncConnection[DictRow]:
    import psycopg

    try:
        return await psycopg.AsyncConnection.connect(target.dsn, **_connect_kwargs(target))
    except psycopg.Error as exc:
        raise _unreachable(target, exc) from None


async def _atake_setup_lock(lock_conn: AsyncConnection[DictRow]) -> None:
    while True:  # polls, for the reason given in `_take_setup_lock`
        cursor = await lock_conn.execute(
            "SELECT pg_try_advisory_lock(%s) AS locked", (_SETUP_LOCK_KEY,)
        )
        row = await cursor.fetchone()
        if row is not None and row["locked"]:
            return
        await asyncio.sleep(_SETUP_POLL_S)


async def _asetup_postgres(
    lock_conn: AsyncConnection[DictRow], target: PostgresTarget, setups: list[Callable[[], Any]]
) -> None:
    import psycopg

    await _atake_setup_lock(lock_conn)
    try:
        for setup in setups:
            await setup()
    except psycopg.Error as exc:
        raise PersistenceConfigError(
            f"cannot create Switchyard's tables in {target.display}: "
            f"{str(exc).strip().splitlines()[0]}; check that the user may create tables there"
        ) from None
    finally:
        await lock_conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))


@asynccontextmanager
async def _aopen_postgres(
    target: PostgresTarget, pool_size: int, *, checkpointer: bool, store: bool
) -> AsyncIterator[tuple[BaseCheckpointSaver[Any] | None, BaseStore | None]]:
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.store.postgres.aio import AsyncPostgresStore
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    kwargs = _connect_kwargs(target)
    async with await _aconnect(target) as lock_conn:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            target.dsn,
            min_size=1,
            max_size=pool_size,
            kwargs=kwargs,
            check=AsyncConnectionPool.check_connection,
            open=False,
            name="switchyard",
        )
        try:
            await pool.open(wait=True, timeout=float(kwargs.get("connect_timeout", 30)) + 1)
        except (PoolTimeout, psycopg.Error) as exc:
            await pool.close()
            raise _unreachable(target, exc) from None
        saver = AsyncPostgresSaver(pool) if checkpointer else None
        pg_store = AsyncPostgresStore(pool) if store else None
        try:
            await _asetup_postgres(lock_conn, target, [o.setup for o in (saver, pg_store) if o])
        except BaseException:
            await pool.close()
            raise
    try:
        yield saver, pg_store
    finally:
        await pool.close()


# -- public entry points ------------------------------------------------------------------------


def _postgres_target(value: str, pool_size: int) -> PostgresTarget:
    _check_pool_size(pool_size)
    _require_postgres_packages()
    return parse_postgres_dsn(value)


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
    backend, value = backend_of(setting)
    if backend == "memory":
        yield Persistence(InMemorySaver(), InMemoryStore(), backend, value)
    elif backend == "sqlite":
        with _sqlite_saver(value) as saver, _sqlite_store(value) as store:
            yield Persistence(saver, store, backend, value)
    else:
        target = _postgres_target(value, pool_size)
        with _open_postgres(target, pool_size, checkpointer=True, store=True) as (saver, pg):
            assert saver is not None
            assert pg is not None
            yield Persistence(saver, pg, backend, target.display)


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
    backend, value = backend_of(setting)
    if backend == "memory":
        yield InMemorySaver()
    elif backend == "sqlite":
        with _sqlite_saver(value) as saver:
            yield saver
    else:
        target = _postgres_target(value, pool_size)
        with _open_postgres(target, pool_size, checkpointer=True, store=False) as (saver, _):
            assert saver is not None
            yield saver


@contextmanager
def open_store(
    setting: str | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> Iterator[BaseStore]:
    """Open the configured store (cross-thread memory) for synchronous graphs.

    Same settings and errors as `open_checkpointer`.
    """
    backend, value = backend_of(setting)
    if backend == "memory":
        yield InMemoryStore()
    elif backend == "sqlite":
        with _sqlite_store(value) as store:
            yield store
    else:
        target = _postgres_target(value, pool_size)
        with _open_postgres(target, pool_size, checkpointer=False, store=True) as (_, pg):
            assert pg is not None
            yield pg


@asynccontextmanager
async def open_async_persistence(
    setting: str | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> AsyncIterator[Persistence]:
    """Async form of `open_persistence`, for graphs run with `ainvoke` / `arun`.

    Raises:
        PersistenceConfigError: As `open_persistence`.
    """
    backend, value = backend_of(setting)
    if backend == "memory":
        yield Persistence(InMemorySaver(), InMemoryStore(), backend, value)
    elif backend == "sqlite":
        async with _asqlite_saver(value) as saver, _asqlite_store(value) as store:
            yield Persistence(saver, store, backend, value)
    else:
        target = _postgres_target(value, pool_size)
        async with _aopen_postgres(target, pool_size, checkpointer=True, store=True) as (s, pg):
            assert s is not None
            assert pg is not None
            yield Persistence(s, pg, backend, target.display)


@asynccontextmanager
async def open_async_checkpointer(
    setting: str | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """Async form of `open_checkpointer`, for graphs run with `ainvoke` / `arun`.

    Raises:
        PersistenceConfigError: As `open_checkpointer`.
    """
    backend, value = backend_of(setting)
    if backend == "memory":
        yield InMemorySaver()
    elif backend == "sqlite":
        async with _asqlite_saver(value) as saver:
            yield saver
    else:
        target = _postgres_target(value, pool_size)
        async with _aopen_postgres(target, pool_size, checkpointer=True, store=False) as (s, _):
            assert s is not None
            yield s


@asynccontextmanager
async def open_async_store(
    setting: str | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> AsyncIterator[BaseStore]:
    """Async form of `open_store`.

    Raises:
        PersistenceConfigError: As `open_checkpointer`.
    """
    backend, value = backend_of(setting)
    if backend == "memory":
        yield InMemoryStore()
    elif backend == "sqlite":
        async with _asqlite_store(value) as store:
            yield store
    else:
        target = _postgres_target(value, pool_size)
        async with _aopen_postgres(target, pool_size, checkpointer=False, store=True) as (_, pg):
            assert pg is not None
            yield pg


@asynccontextmanager
async def _asqlite_saver(value: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    _sqlite_connection(value).close()  # same checks and messages as the sync path, WAL mode set
    async with aiosqlite.connect(str(Path(value).expanduser())) as connection:
        await connection.execute("PRAGMA busy_timeout=10000")
        saver = AsyncSqliteSaver(connection)
        with _setup_lock(value):  # brief, and only on first use of the file
            await saver.setup()
        yield saver


@asynccontextmanager
async def _asqlite_store(value: str) -> AsyncIterator[BaseStore]:
    import aiosqlite
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    _sqlite_connection(value).close()
    async with aiosqlite.connect(str(Path(value).expanduser()), isolation_level=None) as connection:
        await connection.execute("PRAGMA busy_timeout=10000")
        store = AsyncSqliteStore(connection)
        with _setup_lock(value):
            await store.setup()
        yield store
