"""PostgreSQL through psycopg 3: connecting, translating its errors, and the
dialect's own SQL.

Statements are bound on the client side (:class:`psycopg.ClientCursor`), as
PyMySQL does, so one text of SQL with ``%(name)s`` placeholders serves both
dialects, and a ``NULL`` parameter needs no type for the server to infer.

Pick-and-reserve is one statement: an ``UPDATE ... RETURNING`` whose scalar
subquery locks the first eligible row in the walk's order with ``FOR UPDATE
SKIP LOCKED``; the update reserves on that row and returns its secret. Under
READ COMMITTED a row that another transaction changed is re-checked against
the condition before it is locked, so the reservation can never overdraw.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.errors
from psycopg.rows import dict_row

from grok2api.errors import StorageError, StorageUnavailable

from .database import Driver, Params, Row, Session
from .schema import check_version, schema_steps
from .urls import ConnectionSpec, SslMode

__all__ = ["PostgresDriver"]

# Any fixed number will do; it only has to be ours within the database.
_SCHEMA_LOCK = 0x67726F6B32617069  # "grok2api"

# SQLSTATE classes that mean "the server is not answering right now".
_OUTAGE_CLASSES = ("08", "53", "57", "58")
# Classes that mean "this login can never work": configuration, not outage.
_CONFIG_CLASSES = ("28", "3D")
_LOGIN_REFUSED = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "no password supplied",
)


class _PostgresSession(Session):
    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params | None = None) -> int:
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount

    def one(self, sql: str, params: Params | None = None) -> Row | None:
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def all(self, sql: str, params: Params | None = None) -> list[Row]:
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._conn.transaction():
            yield

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


class PostgresDriver(Driver):
    name = "postgresql"
    lru_order = "last_used_at ASC NULLS FIRST"

    def connect(self, spec: ConnectionSpec, timeout: float) -> Session:
        millis = max(1, int(timeout * 1000))
        options: dict[str, Any] = {
            "host": spec.host,
            "port": spec.port,
            "user": spec.user or None,
            "password": spec.password or None,
            "dbname": spec.database,
            # libpq takes whole seconds and treats 1 as 2.
            "connect_timeout": max(2, math.ceil(timeout)),
            # A server that stops acknowledging (a dead host, not a restart)
            # breaks the connection instead of hanging the thread.
            "tcp_user_timeout": millis,
            "keepalives": 1,
            "keepalives_idle": max(1, math.ceil(timeout)),
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "options": (
                f"-c statement_timeout={millis} -c lock_timeout={millis} "
                f"-c idle_in_transaction_session_timeout={millis * 4}"
            ),
            "application_name": "grok2api",
        }
        if spec.ssl_mode is not None:
            options["sslmode"] = spec.ssl_mode.value
        if spec.ssl_ca:
            options["sslrootcert"] = spec.ssl_ca
        if spec.ssl_cert:
            options["sslcert"] = spec.ssl_cert
        if spec.ssl_key:
            options["sslkey"] = spec.ssl_key
        if spec.ssl_mode is SslMode.DISABLE:
            options.pop("sslrootcert", None)
        conn = psycopg.connect(
            autocommit=True,
            row_factory=dict_row,
            cursor_factory=psycopg.ClientCursor,
            **{k: v for k, v in options.items() if v is not None},
        )
        return _PostgresSession(conn)

    def translate(self, exc: BaseException) -> StorageError | None:
        if isinstance(exc, psycopg.Error):
            state = exc.sqlstate or ""
            if state.startswith(_CONFIG_CLASSES) or (not state and _refused_login(exc)):
                return StorageError(
                    f"PostgreSQL refused the login or database ({exc}); check "
                    "SERVER_STORAGE_URL."
                )
            outage = isinstance(
                exc, (psycopg.OperationalError, psycopg.InterfaceError)
            ) or state.startswith(_OUTAGE_CLASSES)
            if outage:
                return StorageUnavailable(
                    f"PostgreSQL is unavailable ({_first_line(exc)}); try again later."
                )
            return StorageError(f"PostgreSQL failed: {_first_line(exc)}")
        if isinstance(exc, OSError):
            return StorageUnavailable(
                f"PostgreSQL is unavailable ({exc}); try again later."
            )
        return None

    def is_retryable(self, exc: BaseException) -> bool:
        return isinstance(
            exc, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
        )

    def migrate(self, session: Session, timeout: float) -> int:
        steps = schema_steps(
            ts="DOUBLE PRECISION",
            seq="seq BIGINT GENERATED ALWAYS AS IDENTITY",
            serial_key="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            text_key="VARCHAR(191)",
            long_text="TEXT",
            nulls_first=" NULLS FIRST",
            table="",
            insert_ignore="INSERT",
            on_conflict=" ON CONFLICT DO NOTHING",
        )
        # DDL is transactional here: the lock, the steps and their record
        # commit together, and a worker that waited finds them all done.
        with session.transaction():
            session.execute("SELECT pg_advisory_xact_lock(%(key)s)", {"key": _lock()})
            session.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER NOT NULL PRIMARY KEY, applied_at TIMESTAMPTZ "
                "NOT NULL DEFAULT now())"
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
        return found

    def ignore_duplicates(self, insert: str) -> str:
        return f"{insert} ON CONFLICT DO NOTHING"

    def on_conflict_update(self, key: str) -> str:
        return f" ON CONFLICT ({key}) DO UPDATE SET "

    def inserted(self, column: str) -> str:
        return f"EXCLUDED.{column}"

    def roll_windows_sql(self, elapsed: str) -> str:
        # A row another worker holds is left for later. The planner walks the
        # window index only with fresh statistics, which bulk writes refresh
        # (see SqlStorage._after_bulk_write).
        return (
            "UPDATE tokens SET quota = quota_total, window_reset_at = NULL "
            f"WHERE id IN (SELECT id FROM tokens WHERE {elapsed} "
            "ORDER BY window_reset_at LIMIT 1000 FOR UPDATE SKIP LOCKED)"
        )

    def analyze_sql(self) -> str:
        return "ANALYZE tokens"

    def use_index(self, index: str) -> str:
        # The planner picks the walk's index from ORDER BY ... LIMIT.
        return ""

    def has_tag(self, params: dict[str, Any], tag: str) -> str:
        params["tag"] = tag
        return "(tags::jsonb ? %(tag)s)"

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
        return session.one(
            f"""
            UPDATE tokens SET {reserve}
            WHERE id = (
                SELECT id FROM tokens WHERE {eligible}
                ORDER BY {order} LIMIT 1 FOR UPDATE{skip}
            ) AND {eligible}
            RETURNING id, secret, pool
            """,
            params,
        )


def _lock() -> int:
    # pg_advisory_xact_lock takes a signed 64-bit key.
    return _SCHEMA_LOCK - (1 << 64) if _SCHEMA_LOCK >= 1 << 63 else _SCHEMA_LOCK


def _refused_login(exc: psycopg.Error) -> bool:
    # libpq reports a failed login while connecting, before any SQLSTATE
    # reaches psycopg; its message is the only thing that tells it apart
    # from a server that is down.
    text = str(exc)
    return any(marker in text for marker in _LOGIN_REFUSED)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
