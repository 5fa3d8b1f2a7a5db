"""The limiters every worker of a host shares, in SQL: token buckets, fixed
windows and concurrent slots.

As in :mod:`.ledger`, **the check and the write are one statement**: each step
is an upsert whose ``WHERE`` refuses the write when the limit is reached, run
inside ``BEGIN IMMEDIATE``. Whether a row changed is the answer; the only read
is of a refused bucket, to say how long to wait.

A token bucket is stored as the single time ``full_at`` at which it will be
full again (a "theoretical arrival time"): at ``now`` it holds
``capacity - (full_at - now) * per_second`` units, taking one moves ``full_at``
on by ``1 / per_second``, and a unit is there while ``full_at - now`` is at
most ``(capacity - 1) / per_second``. A bucket whose ``full_at`` has passed is
exactly as good as no row, which is what lets :func:`prune_idle` delete it.
Fixed windows are one row per bucket and window; slots one row per holder.

Nothing here bumps the change counter: limiter state is read fresh by every
call, never cached.
"""

from __future__ import annotations

import sqlite3

from .database import immediate

__all__ = ["acquire_slot", "prune_idle", "release_slot", "take_rate", "take_window"]

# Float timestamps near 1.7e9 carry about 2e-7 s of rounding, so a take that
# should land exactly on the boundary may miss it by a hair; a microsecond of
# slack lets it through without admitting anything a client could notice.
_SLACK_SECONDS = 1e-6

_TAKE_RATE = """
    INSERT INTO rate_buckets (bucket, full_at) VALUES (:bucket, :now + :interval)
    ON CONFLICT (bucket) DO UPDATE SET full_at = MAX(full_at, :now) + :interval
    WHERE full_at - :now <= :burst + :slack
"""

# ``WHERE :limit > 0`` also keeps a zero limit from creating a counted row; an
# upsert on INSERT ... SELECT needs a WHERE clause anyway to parse.
_TAKE_WINDOW = """
    INSERT INTO window_counts (bucket, window_start, window_end, used)
    SELECT :bucket, :start, :end, 1 WHERE :limit > 0
    ON CONFLICT (bucket, window_start) DO UPDATE SET used = used + 1
    WHERE used < :limit
"""

# Counting the other holders makes a renewal the same statement as a first
# acquisition: a holder fits when the others leave it room.
_ACQUIRE_SLOT = """
    INSERT INTO slots (bucket, holder, expires_at)
    SELECT :bucket, :holder, :expires_at
    WHERE (
        SELECT COUNT(*) FROM slots WHERE bucket = :bucket AND holder != :holder
    ) < :limit
    ON CONFLICT (bucket, holder) DO UPDATE SET expires_at = excluded.expires_at
"""


def take_rate(
    conn: sqlite3.Connection,
    bucket: str,
    capacity: float,
    per_second: float,
    now: float,
) -> float:
    burst = (capacity - 1) / per_second
    params = {
        "bucket": bucket,
        "now": now,
        "interval": 1 / per_second,
        "burst": burst,
        "slack": _SLACK_SECONDS,
    }
    with immediate(conn):
        if conn.execute(_TAKE_RATE, params).rowcount:
            return 0.0
        # Only an existing bucket can refuse, so the row is there.
        full_at = conn.execute(
            "SELECT full_at FROM rate_buckets WHERE bucket = ?", (bucket,)
        ).fetchone()[0]
    return float(full_at - now - burst)


def take_window(
    conn: sqlite3.Connection, bucket: str, limit: int, window_seconds: int, now: float
) -> float:
    start = now // window_seconds * window_seconds
    end = start + window_seconds
    params = {"bucket": bucket, "start": start, "end": end, "limit": limit}
    with immediate(conn):
        taken = conn.execute(_TAKE_WINDOW, params).rowcount
    return 0.0 if taken else end - now


def acquire_slot(
    conn: sqlite3.Connection,
    bucket: str,
    limit: int,
    holder: str,
    now: float,
    expires_at: float,
) -> bool:
    with immediate(conn):
        conn.execute(
            "DELETE FROM slots WHERE bucket = ? AND expires_at <= ?", (bucket, now)
        )
        acquired = conn.execute(
            _ACQUIRE_SLOT,
            {
                "bucket": bucket,
                "holder": holder,
                "limit": limit,
                "expires_at": expires_at,
            },
        ).rowcount
    return bool(acquired)


def release_slot(conn: sqlite3.Connection, bucket: str, holder: str) -> None:
    with immediate(conn):
        conn.execute(
            "DELETE FROM slots WHERE bucket = ? AND holder = ?", (bucket, holder)
        )


def prune_idle(conn: sqlite3.Connection, now: float) -> int:
    """Delete limiter rows that no longer limit anything at ``now``: refilled
    buckets, ended windows and expired slots. Returns how many went."""
    with immediate(conn):
        return sum(
            conn.execute(sql, (now,)).rowcount
            for sql in (
                "DELETE FROM rate_buckets WHERE full_at <= ?",
                "DELETE FROM window_counts WHERE window_end <= ?",
                "DELETE FROM slots WHERE expires_at <= ?",
            )
        )
