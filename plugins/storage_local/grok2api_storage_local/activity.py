"""Request statistics and the audit log in SQL.

Workers flush counters in batches. Each row is added with an upsert that sums
into the stored row (``requests = requests + excluded.requests``), so two
workers flushing the same hour at once both count. The audit log is a ring:
every append trims it to the newest entries in the same transaction, so it
never outgrows what the operator asked to keep.

Nothing here bumps the change counter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import attrs

from grok2api import AuditEntry, StatsRow

from .database import immediate

__all__ = ["add_stats", "append_audit", "list_audit", "prune_stats", "read_stats"]

_STATS_COLUMNS = (
    "period, start, dimension, value, requests, successes, failures, latency_ms"
)

_ADD_STATS = f"""
    INSERT INTO stats ({_STATS_COLUMNS})
    VALUES (:period, :start, :dimension, :value,
        :requests, :successes, :failures, :latency_ms)
    ON CONFLICT (period, dimension, start, value) DO UPDATE SET
        requests = requests + excluded.requests,
        successes = successes + excluded.successes,
        failures = failures + excluded.failures,
        latency_ms = latency_ms + excluded.latency_ms
"""

_AUDIT_COLUMNS = tuple(field.name for field in attrs.fields(AuditEntry))

_APPEND_AUDIT = (
    f"INSERT INTO audit_log ({', '.join(_AUDIT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + column for column in _AUDIT_COLUMNS)})"
)

# Newest first, by time and then by the order of appending. The trim walks the
# time index from the newest end past the ``keep`` it retains.
_NEWEST_FIRST = "ORDER BY at DESC, id DESC"
_TRIM_AUDIT = f"""
    DELETE FROM audit_log WHERE id IN (
        SELECT id FROM audit_log {_NEWEST_FIRST} LIMIT -1 OFFSET :keep
    )
"""


def add_stats(conn: sqlite3.Connection, rows: Sequence[StatsRow]) -> None:
    with immediate(conn):
        conn.executemany(_ADD_STATS, [attrs.asdict(row, recurse=False) for row in rows])


def read_stats(
    conn: sqlite3.Connection, period: str, dimension: str, since: float
) -> list[StatsRow]:
    rows = conn.execute(
        f"SELECT {_STATS_COLUMNS} FROM stats "
        "WHERE period = ? AND dimension = ? AND start >= ? ORDER BY start, value",
        (period, dimension, since),
    ).fetchall()
    return [StatsRow(**dict(row)) for row in rows]


def prune_stats(conn: sqlite3.Connection, period: str, before: float) -> int:
    with immediate(conn):
        return conn.execute(
            "DELETE FROM stats WHERE period = ? AND start < ?", (period, before)
        ).rowcount


def append_audit(
    conn: sqlite3.Connection, entries: Sequence[AuditEntry], keep: int
) -> None:
    values = [
        attrs.asdict(entry, recurse=False) | {"stream": int(entry.stream)}
        for entry in entries
    ]
    with immediate(conn):
        conn.executemany(_APPEND_AUDIT, values)
        conn.execute(_TRIM_AUDIT, {"keep": keep})


def list_audit(conn: sqlite3.Connection, limit: int, offset: int) -> list[AuditEntry]:
    rows = conn.execute(
        f"SELECT {', '.join(_AUDIT_COLUMNS)} FROM audit_log {_NEWEST_FIRST} "
        "LIMIT ? OFFSET ?",
        (max(0, limit), max(0, offset)),
    ).fetchall()
    return [AuditEntry(**dict(row) | {"stream": bool(row["stream"])}) for row in rows]
