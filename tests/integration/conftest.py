"""Service fixtures for integration tests: PostgreSQL and Redis on this machine.

Both run on loopback here and in CI (`postgresql://postgres@127.0.0.1:5432/test`, trust auth;
`redis://127.0.0.1:6379/0`); `SWITCHYARD_TEST_POSTGRES` / `SWITCHYARD_TEST_REDIS` point elsewhere.
A test that needs an unreachable service is skipped with the reason, except in CI (`CI=true`),
where it fails: CI must not go green by skipping the scale-out tests.

Each test that asks for `postgres_dsn` gets a fresh schema (dropped afterwards), selected through
the DSN's `search_path`, so tests and concurrent runs never see each other's tables.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

POSTGRES_ENV = "SWITCHYARD_TEST_POSTGRES"
REDIS_ENV = "SWITCHYARD_TEST_REDIS"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def unavailable(service: str, reason: str) -> None:
    """Skip (locally) or fail (in CI) a test whose service cannot be reached."""
    message = f"{service} is not reachable: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: the service must run in CI)", pytrace=False)
    pytest.skip(message)


def with_search_path(dsn: str, schema: str) -> str:
    """The DSN with `options=-csearch_path=<schema>` added to its query."""
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}options={quote(f'-csearch_path={schema}', safe='')}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL DSN, once it answers; skips (fails in CI) when it does not."""
    dsn = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    try:
        import psycopg
    except ImportError as exc:
        unavailable("PostgreSQL", f"psycopg is not installed ({exc})")
        raise
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        unavailable("PostgreSQL", f"{dsn}: {str(exc).strip().splitlines()[0]}")
    return dsn


@pytest.fixture
def postgres_dsn(postgres_server: str) -> Iterator[str]:
    """A DSN whose tables live in a fresh schema of their own, dropped after the test."""
    import psycopg

    schema = f"switchyard_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(postgres_server, schema)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            # Connections of a test's own pools are closed by then; drop what they made.
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """The Redis URL, once it answers PING; skips (fails in CI) when it does not.

    Sockets are enabled for the test that uses it (redis-py talks through Python sockets).
    """
    request.getfixturevalue("socket_enabled")
    url = os.environ.get(REDIS_ENV, DEFAULT_REDIS)
    try:
        import redis
    except ImportError as exc:
        unavailable("Redis", f"the redis package is not installed ({exc})")
        raise
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("Redis", f"{url}: {exc}")
    finally:
        client.close()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def persistence_setting(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A checkpointer setting for each backend: a SQLite file, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return str(tmp_path / "state.sqlite")
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


def run_cli(argv: list[str]) -> int:
    """`switchyard` with the `resume` and `prune` commands, as `switchyard.cli.main` runs them.

    Independent of `COMMAND_MODULES`, so these tests do not depend on how the CLI registers them.
    """
    import argparse

    from rich.console import Console

    from switchyard.cli import prune as prune_cli
    from switchyard.cli import resume as resume_cli
    from switchyard.core.errors import SwitchyardError

    parser = argparse.ArgumentParser(prog="switchyard")
    commands = parser.add_subparsers(dest="command", required=True)
    resume_cli.add_command(commands)
    prune_cli.add_command(commands)
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args, Console(soft_wrap=True))
    except SwitchyardError as exc:
        print(f"switchyard: error: {exc}", file=sys.stderr)
        return 2
    return code
