"""Real PostgreSQL and MariaDB servers, started once per test session, and
open backends on an emptied schema for each test."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pymysql
import pytest
from grok2api_storage_sql import Dialect, SqlStorage, parse_storage_url

from grok2api.testing.sql_servers import SqlServer, running_mariadb, running_postgres

_TABLES = (
    "tokens",
    "reservations",
    "spent_leases",
    "api_keys",
    "rate_buckets",
    "window_counters",
    "slot_buckets",
    "slot_holders",
    "request_stats",
    "audit_log",
    "named_values",
    "expiring_values",
)
_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[SqlServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[SqlServer]:
    with running_mariadb() as server:
        yield server


@pytest.fixture(params=["postgresql", "mariadb"])
def sql_server(
    request: pytest.FixtureRequest,
) -> SqlServer:
    """Each SQL server in turn."""
    name = "postgres_server" if request.param == "postgresql" else "mariadb_server"
    server: SqlServer = request.getfixturevalue(name)
    return server


@pytest.fixture
def fresh_database_url(sql_server: SqlServer) -> str:
    """The URL of a new, empty database on the server."""
    return sql_server.create_database(f"fresh{next(_databases)}")


def run_sql(url: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run statements on a database outside the backend; returns the rows of
    the last one (empty when it returns none)."""
    spec = parse_storage_url(url)
    rows: list[tuple[Any, ...]] = []
    if spec.dialect is Dialect.POSTGRESQL:
        with psycopg.connect(
            host=spec.host,
            port=spec.port,
            user=spec.user,
            password=spec.password,
            dbname=spec.database,
            autocommit=True,
        ) as conn:
            for statement in statements:
                cursor = conn.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
        return rows
    conn = pymysql.connect(
        host=spec.host,
        port=spec.port,
        user=spec.user,
        password=spec.password,
        database=spec.database,
        autocommit=True,
    )
    with contextlib.closing(conn), conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
            rows = list(cur.fetchall()) if cur.description else []
    return rows


def empty_schema(url: str) -> None:
    """Empty every table of a migrated database and reset its single rows."""
    if parse_storage_url(url).dialect is Dialect.POSTGRESQL:
        truncate = [f"TRUNCATE {', '.join(_TABLES)}"]
    else:
        truncate = [f"TRUNCATE TABLE {table}" for table in _TABLES]
    run_sql(
        url,
        *truncate,
        "UPDATE config_overrides SET data = '{}'",
        "UPDATE change_counter SET version = 0",
    )


@contextlib.asynccontextmanager
async def open_storage(url: str, **kwargs: float) -> AsyncIterator[SqlStorage]:
    storage = SqlStorage(parse_storage_url(url), **kwargs)  # type: ignore[arg-type]
    await storage.open()
    try:
        yield storage
    finally:
        await storage.aclose()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: SqlServer) -> str:
    """A migrated database shared by the tests that empty it first."""
    return postgres_server.create_database("shared")


@pytest.fixture(scope="session")
def mariadb_url(mariadb_server: SqlServer) -> str:
    return mariadb_server.create_database("shared")


@pytest.fixture
async def sql_storage(
    sql_server: SqlServer, request: pytest.FixtureRequest
) -> AsyncIterator[SqlStorage]:
    """An open backend on an empty schema, on each SQL server in turn."""
    name = "postgres_url" if sql_server.kind == "postgresql" else "mariadb_url"
    url: str = request.getfixturevalue(name)
    async with open_storage(url) as storage:
        empty_schema(url)
        yield storage
