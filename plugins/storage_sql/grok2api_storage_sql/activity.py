"""What the gateway records about the requests it served, in SQL: request
statistics and the audit log.

Statistics rows are added with one multi-row upsert per batch: a row not seen
before is inserted, a stored one has the batch's counters added to it by the
statement itself, so workers flushing the same bucket at once lose nothing.
The batch is merged and sorted first, because PostgreSQL refuses an upsert
that touches one row twice, and rows taken in one order everywhere keep two
flushes from deadlocking.

The audit log is a ring: every append trims it to the newest ``keep``
entries in the same transaction. The trim finds the newest entry that falls
outside the ring and deletes it and everything older. It deletes only
entries that have ``keep`` newer ones committed, which no trim deletes, so
appends racing each other never drop an entry that belongs in the ring; at
worst the log holds a few extra entries until the next append.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grok2api import AuditEntry, StatsRow

from .database import Driver, Row, Session

__all__ = ["add_stats", "append_audit", "list_audit", "prune_stats", "read_stats"]

_STATS_KEY = ("period", "dimension", "period_start", "dimension_value")
_STATS_COUNTERS = ("requests", "successes", "failures", "latency_ms")
_STATS_COLUMNS = _STATS_KEY + _STATS_COUNTERS

_AUDIT_COLUMNS = (
    "finished_at",
    "request_id",
    "client",
    "key_name",
    "method",
    "path",
    "model",
    "status",
    "duration_ms",
    "stream",
    "token_id",
    "error",
)
_NEWEST_FIRST = "ORDER BY finished_at DESC, seq DESC"


def _merged(rows: Sequence[StatsRow]) -> list[tuple[Any, ...]]:
    """One tuple of column values per stored row, in key order."""
    merged: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        key = (row.period, row.dimension, row.start, row.value)
        counters = merged.setdefault(key, [0, 0, 0, 0.0])
        counters[0] += row.requests
        counters[1] += row.successes
        counters[2] += row.failures
        counters[3] += row.latency_ms
    return [key + tuple(counters) for key, counters in sorted(merged.items())]


def add_stats(session: Session, driver: Driver, rows: Sequence[StatsRow]) -> None:
    if not rows:
        return
    params: dict[str, Any] = {}
    values = []
    for number, row in enumerate(_merged(rows)):
        names = [f"{column}_{number}" for column in _STATS_COLUMNS]
        params.update(zip(names, row, strict=True))
        values.append("(" + ", ".join(f"%({name})s" for name in names) + ")")
    additions = ", ".join(
        f"{column} = request_stats.{column} + {driver.inserted(column)}"
        for column in _STATS_COUNTERS
    )
    session.execute(
        f"INSERT INTO request_stats ({', '.join(_STATS_COLUMNS)}) "
        f"VALUES {', '.join(values)}"
        f"{driver.on_conflict_update(', '.join(_STATS_KEY))}{additions}",
        params,
    )


def _stats_row(row: Row) -> StatsRow:
    return StatsRow(
        period=row["period"],
        start=float(row["period_start"]),
        dimension=row["dimension"],
        value=row["dimension_value"],
        requests=int(row["requests"]),
        successes=int(row["successes"]),
        failures=int(row["failures"]),
        latency_ms=float(row["latency_ms"]),
    )


def read_stats(
    session: Session, period: str, dimension: str, since: float
) -> list[StatsRow]:
    rows = session.all(
        f"SELECT {', '.join(_STATS_COLUMNS)} FROM request_stats "
        "WHERE period = %(period)s AND dimension = %(dimension)s "
        "AND period_start >= %(since)s ORDER BY period_start, dimension_value",
        {"period": period, "dimension": dimension, "since": since},
    )
    return [_stats_row(row) for row in rows]


def prune_stats(session: Session, period: str, before: float) -> int:
    return session.execute(
        "DELETE FROM request_stats WHERE period = %(period)s "
        "AND period_start < %(before)s",
        {"period": period, "before": before},
    )


def _audit_values(entry: AuditEntry) -> tuple[Any, ...]:
    return (
        entry.at,
        entry.request_id,
        entry.client,
        entry.key_name,
        entry.method,
        entry.path,
        entry.model,
        entry.status,
        entry.duration_ms,
        int(entry.stream),
        entry.token_id,
        entry.error,
    )


def append_audit(session: Session, entries: Sequence[AuditEntry], keep: int) -> None:
    keep = max(0, keep)
    # Entries older than the batch's newest ``keep`` would be trimmed at once.
    kept = sorted(entries, key=lambda entry: entry.at)[-keep:] if keep else []
    with session.transaction():
        if kept:
            params: dict[str, Any] = {}
            values = []
            for number, entry in enumerate(kept):
                names = [f"{column}_{number}" for column in _AUDIT_COLUMNS]
                params.update(zip(names, _audit_values(entry), strict=True))
                values.append("(" + ", ".join(f"%({name})s" for name in names) + ")")
            session.execute(
                f"INSERT INTO audit_log ({', '.join(_AUDIT_COLUMNS)}) "
                f"VALUES {', '.join(values)}",
                params,
            )
        cut = session.one(
            f"SELECT finished_at, seq FROM audit_log {_NEWEST_FIRST} "
            "LIMIT 1 OFFSET %(keep)s",
            {"keep": keep},
        )
        if cut is not None:
            session.execute(
                "DELETE FROM audit_log WHERE finished_at <= %(at)s "
                "AND (finished_at < %(at)s OR seq <= %(seq)s)",
                {"at": cut["finished_at"], "seq": cut["seq"]},
            )


def list_audit(session: Session, limit: int, offset: int) -> list[AuditEntry]:
    rows = session.all(
        f"SELECT {', '.join(_AUDIT_COLUMNS)} FROM audit_log {_NEWEST_FIRST} "
        "LIMIT %(limit)s OFFSET %(offset)s",
        {"limit": max(0, limit), "offset": max(0, offset)},
    )
    return [
        AuditEntry(
            at=float(row["finished_at"]),
            request_id=row["request_id"],
            client=row["client"],
            key_name=row["key_name"],
            method=row["method"],
            path=row["path"],
            model=row["model"],
            status=int(row["status"]),
            duration_ms=float(row["duration_ms"]),
            stream=bool(row["stream"]),
            token_id=row["token_id"],
            error=row["error"],
        )
        for row in rows
    ]
