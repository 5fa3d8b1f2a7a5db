"""MySQL and MariaDB through PyMySQL: connecting, translating its errors, and
the dialect's own SQL.

Connections use READ COMMITTED, like PostgreSQL's default, so a locking read
sees the latest committed row and a plain read never holds an old snapshot.
``CLIENT.FOUND_ROWS`` makes an ``UPDATE``'s row count the rows it matched,
not the rows whose values changed, which the conditional writes rely on.

MariaDB 10.11 has no ``UPDATE ... RETURNING``, so pick-and-reserve is one
transaction of three statements: ``SELECT ... FOR UPDATE SKIP LOCKED`` locks
the first eligible row in the walk's order (a row another worker is reserving
is skipped, not waited for), a conditional ``UPDATE`` reserves on the locked
row, and a ``SELECT`` reads back its secret. The row lock is held from the
pick to the commit, so no other worker can change the row in between. It does
have ``INSERT ... ON DUPLICATE KEY UPDATE ... RETURNING``, which gives back
the row as updated: the limiters take and answer in that one statement.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Iterator
from typing import Any

import pymysql
import pymysql.constants.CLIENT
import pymysql.cursors

from grok2api.errors import StorageError, StorageUnavailable

from .database import Driver, Params, Row, Session
from .schema import check_version, schema_steps
from .urls import ConnectionSpec, SslMode

__all__ = ["MySQLDriver"]

# Access denied, unknown database, authentication plugin refused: these are
# configuration mistakes that retrying cannot fix (2026: TLS required but
# not offered).
_CONFIG_CODES = frozenset({1044, 1045, 1049, 1698, 2026, 2059})
_DEADLOCK = 1213


class _MySQLSession(Session):
    def __init__(self, conn: pymysql.connections.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params | None = None) -> int:
        with self._conn.cursor() as cur:
            return int(cur.execute(sql, params))

    def one(self, sql: str, params: Params | None = None) -> Row | None:
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            row: Row | None = cur.fetchone()
            return row

    def all(self, sql: str, params: Params | None = None) -> list[Row]:
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self._conn.begin()
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self._conn.rollback()
            raise
        self._conn.commit()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


class MySQLDriver(Driver):
    name = "mysql"
    # NULL sorts first in ascending order here: never used counts as oldest.
    lru_order = "last_used_at ASC"

    def connect(self, spec: ConnectionSpec, timeout: float) -> Session:
        conn = pymysql.connect(
            host=spec.host,
            port=spec.port,
            user=spec.user,
            password=spec.password,
            database=spec.database,
            charset="utf8mb4",
            autocommit=True,
            cursorclass=pymysql.cursors.DictCursor,
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            client_flag=pymysql.constants.CLIENT.FOUND_ROWS,
            ssl=_ssl_context(spec),
            ssl_disabled=spec.ssl_mode is SslMode.DISABLE or None,
        )
        session = _MySQLSession(conn)
        try:
            _prepare(session, spec, timeout, conn.get_server_info())
        except BaseException:
            session.close()
            raise
        return session

    def translate(self, exc: BaseException) -> StorageError | None:
        if isinstance(exc, pymysql.err.OperationalError):
            code = exc.args[0] if exc.args else 0
            if code in _CONFIG_CODES:
                return StorageError(
                    f"MySQL refused the login or database ({_describe(exc)}); "
                    "check SERVER_STORAGE_URL."
                )
            return StorageUnavailable(
                f"MySQL is unavailable ({_describe(exc)}); try again later."
            )
        if isinstance(exc, pymysql.err.InterfaceError | OSError):
            return StorageUnavailable(
                f"MySQL is unavailable ({_describe(exc)}); try again later."
            )
        if isinstance(exc, pymysql.err.Error):
            return StorageError(f"MySQL failed: {_describe(exc)}")
        return None

    def is_retryable(self, exc: BaseException) -> bool:
        return (
            isinstance(exc, pymysql.err.OperationalError)
            and bool(exc.args)
            and exc.args[0] == _DEADLOCK
        )

    def migrate(self, session: Session, timeout: float) -> int:
        steps = schema_steps(
            ts="DOUBLE",
            seq="seq BIGINT NOT NULL AUTO_INCREMENT UNIQUE",
            serial_key="BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
            text_key="VARCHAR(191)",
            long_text="LONGTEXT",
            nulls_first="",
            table=" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            insert_ignore="INSERT IGNORE",
            on_conflict="",
        )
        # DDL commits implicitly here, so the lock is a named server lock
        # held by this connection, and each step is recorded as it completes;
        # the statements tolerate a step that an earlier crash half applied.
        name = f"grok2api-schema:{session.one('SELECT DATABASE() AS db')['db']}"[:64]  # type: ignore[index]
        got = session.one(
            "SELECT GET_LOCK(%(name)s, %(wait)s) AS got",
            {"name": name, "wait": max(1, int(timeout))},
        )
        if not got or got["got"] != 1:
            raise StorageUnavailable(
                "Another worker held the schema migration lock for longer than "
                f"{timeout} s; try again later."
            )
        try:
            session.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER NOT NULL PRIMARY KEY, applied_at TIMESTAMP "
                "NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB"
            )
            row = session.one("SELECT MAX(version) AS version FROM schema_version")
            found = int(row["version"] or 0) if row else 0
            check_version(found)
            for number, step in enumerate(steps[found:], start=found + 1):
                for statement in step:
                    session.execute(statement)
                session.execute(
                    "INSERT INTO schema_version (version) VALUES (%(v)s)",
                    {"v": number},
                )
        finally:
            session.one("SELECT RELEASE_LOCK(%(name)s) AS released", {"name": name})
        return found

    def ignore_duplicates(self, insert: str) -> str:
        return insert.replace("INSERT INTO", "INSERT IGNORE INTO", 1)

    def on_conflict_update(self, key: str) -> str:
        return " ON DUPLICATE KEY UPDATE "

    def inserted(self, column: str) -> str:
        return f"VALUES({column})"

    def roll_windows_sql(self, elapsed: str) -> str:
        return (
            f"UPDATE tokens{self.use_index('tokens_by_window')} "
            f"SET quota = quota_total, window_reset_at = NULL WHERE {elapsed}"
        )

    def analyze_sql(self) -> str:
        return "ANALYZE TABLE tokens"

    def use_index(self, index: str) -> str:
        # Without the hint the optimiser may take another (pool, ...) index
        # and sort the whole pool, which at 100,000 tokens costs milliseconds.
        return f" FORCE INDEX ({index})"

    def has_tag(self, params: dict[str, Any], tag: str) -> str:
        params["tag"] = json.dumps(tag)
        return "JSON_CONTAINS(tags, %(tag)s)"

    def pick_and_reserve(
        self,
        session: Session,
        *,
        eligible: str,
        order: str,
        index: str,
        reserve: str,
        params: Params,
        skip_locked: bool,
    ) -> Row | None:
        skip = " SKIP LOCKED" if skip_locked else ""
        picked = session.one(
            f"SELECT id FROM tokens{self.use_index(index)} WHERE {eligible} "
            f"ORDER BY {order} LIMIT 1 FOR UPDATE{skip}",
            params,
        )
        if picked is None:
            return None
        bound = {**params, "picked": picked["id"]}
        updated = session.execute(
            f"UPDATE tokens SET {reserve} WHERE id = %(picked)s AND {eligible}", bound
        )
        if updated != 1:
            return None
        return session.one(
            "SELECT id, secret, pool FROM tokens WHERE id = %(picked)s", bound
        )


def _ssl_context(spec: ConnectionSpec) -> ssl.SSLContext | None:
    mode = spec.ssl_mode
    if mode is None or mode is SslMode.DISABLE:
        return None
    context = ssl.create_default_context(cafile=spec.ssl_ca)
    if mode in (SslMode.PREFER, SslMode.REQUIRE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode is SslMode.VERIFY_CA:
        context.check_hostname = False
    if spec.ssl_cert:
        context.load_cert_chain(spec.ssl_cert, keyfile=spec.ssl_key)
    return context


def _prepare(
    session: Session, spec: ConnectionSpec, timeout: float, server: str
) -> None:
    session.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    lock_wait = max(1, int(timeout))
    if "mariadb" in server.lower():
        session.execute(
            "SET SESSION max_statement_time = %(s)s, "
            "innodb_lock_wait_timeout = %(lock)s",
            {"s": timeout, "lock": lock_wait},
        )
    else:
        session.execute(
            "SET SESSION max_execution_time = %(ms)s, "
            "innodb_lock_wait_timeout = %(lock)s",
            {"ms": max(1, int(timeout * 1000)), "lock": lock_wait},
        )
    if spec.ssl_mode in (SslMode.REQUIRE, SslMode.VERIFY_CA, SslMode.VERIFY_FULL):
        # PyMySQL falls back to plain text when the server offers no TLS;
        # "require" must not.
        row = session.one("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        if not row or not row.get("Value"):
            raise pymysql.err.OperationalError(
                2026, "the server does not offer TLS, which sslmode requires"
            )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, pymysql.err.Error) and len(exc.args) >= 2:
        return f"{exc.args[0]}: {exc.args[1]}"
    return str(exc) or type(exc).__name__
