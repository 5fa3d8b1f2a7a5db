"""Limiters shared by every worker on every host: token buckets, fixed
windows and concurrent slots, in SQL.

Each take is a single upsert that decides and writes at once: the ``INSERT``
creates a bucket not seen before, and on a conflict the assignments compute
the new state from the stored row, which the upsert holds locked. The
statement also stores its answer in the row's ``wait`` column (0 when it
granted) and hands it back with ``RETURNING``, so no decision is ever made in
Python between a read and a write. MySQL applies the assignments left to
right, so ``wait`` is computed first, from the old values, and no assignment
reads a column written before it.

Token buckets are stored as the time the bucket is full again (``full_at``):
each unit taken moves it one refill interval later, and a take is refused
when that would put it more than ``capacity`` intervals ahead of ``now``.
That is a token bucket exactly, with one column, and a row whose ``full_at``
has passed describes a full bucket, the same as no row at all.

Concurrent slots are one row per holder. A slot is taken in one short
transaction of two upserts: the first locks the bucket's row in
``slot_buckets``, so that takers of one bucket queue there; the second
inserts or renews the holder's row only while fewer than ``limit`` other
holders are unexpired. Expired holders are only skipped there; the sweeper
deletes them.

Rows that no longer matter (a full bucket, a window that ended, an expired
holder) are deleted by :func:`expire_limiters`, which runs with the
reservation sweeper, so idle buckets do not accumulate.
"""

from __future__ import annotations

from typing import Any

from .database import Driver, Session

__all__ = [
    "acquire_slot",
    "expire_limiters",
    "release_slot",
    "take_rate",
    "take_window",
]


def _rate_step(full_at: str) -> tuple[str, str]:
    """The (wait, new ``full_at``) expressions of one take from a bucket
    whose full time is ``full_at``."""
    start = f"GREATEST({full_at}, %(now)s)"
    ahead = f"{start} + %(interval)s - %(now)s"
    wait = f"GREATEST(0, {ahead} - %(burst)s)"
    new_full_at = (
        f"CASE WHEN {ahead} <= %(burst)s THEN {start} + %(interval)s ELSE {full_at} END"
    )
    return wait, new_full_at


def take_rate(
    session: Session,
    driver: Driver,
    bucket: str,
    capacity: float,
    per_second: float,
    now: float,
) -> float:
    interval = 1.0 / per_second
    params = {
        "bucket": bucket,
        "now": now,
        "interval": interval,
        "burst": capacity * interval,
    }
    # A new bucket is a full one: the same step from ``full_at = now``.
    first_wait, first_full_at = _rate_step("%(now)s")
    wait, full_at = _rate_step("rate_buckets.full_at")
    row = session.one(
        "INSERT INTO rate_buckets (bucket, full_at, wait) "
        f"VALUES (%(bucket)s, {first_full_at}, {first_wait})"
        f"{driver.on_conflict_update('bucket')}"
        f"wait = {wait}, full_at = {full_at} RETURNING wait",
        params,
    )
    assert row is not None  # an upsert always returns its row
    return float(row["wait"])


def _window_step(used: str, window_end: str) -> tuple[str, str, str]:
    """The (wait, new ``used``, new ``window_end``) expressions of one use
    counted in a window of ``used`` uses that ends at ``window_end``."""
    # A stored window that ended before this one starts afresh. One that
    # ends later (a worker whose clock runs ahead) is counted into as it is.
    current = f"(CASE WHEN {window_end} < %(end)s THEN 0 ELSE {used} END)"
    end = f"GREATEST({window_end}, %(end)s)"
    wait = f"CASE WHEN {current} < %(limit)s THEN 0 ELSE {end} - %(now)s END"
    new_used = f"CASE WHEN {current} < %(limit)s THEN {current} + 1 ELSE {current} END"
    return wait, new_used, end


def take_window(
    session: Session,
    driver: Driver,
    bucket: str,
    limit: int,
    window_seconds: int,
    now: float,
) -> float:
    params = {
        "bucket": bucket,
        "now": now,
        "limit": limit,
        "end": (now // window_seconds + 1) * window_seconds,
    }
    first_wait, first_used, first_end = _window_step("0", "%(end)s")
    wait, used, end = _window_step("window_counters.used", "window_counters.window_end")
    row = session.one(
        "INSERT INTO window_counters (bucket, window_end, used, wait) "
        f"VALUES (%(bucket)s, {first_end}, {first_used}, {first_wait})"
        f"{driver.on_conflict_update('bucket')}"
        f"wait = {wait}, used = {used}, window_end = {end} RETURNING wait",
        params,
    )
    assert row is not None  # an upsert always returns its row
    return float(row["wait"])


def acquire_slot(
    session: Session,
    driver: Driver,
    bucket: str,
    limit: int,
    holder: str,
    now: float,
    expires_at: float,
) -> bool:
    params: dict[str, Any] = {
        "bucket": bucket,
        "limit": limit,
        "holder": holder,
        "now": now,
        "expires": expires_at,
    }
    with session.transaction():
        # The bucket row outlives its holders, so the sweeper can drop both
        # once it has expired.
        session.execute(
            "INSERT INTO slot_buckets (bucket, expires_at) "
            "VALUES (%(bucket)s, %(expires)s)"
            f"{driver.on_conflict_update('bucket')}expires_at = GREATEST("
            f"slot_buckets.expires_at, {driver.inserted('expires_at')})",
            params,
        )
        # The bucket row is locked by this transaction, so no other taker
        # can add a holder between the count and this write.
        held = session.execute(
            "INSERT INTO slot_holders (bucket, holder, expires_at) "
            "SELECT bucket, %(holder)s, %(expires)s FROM slot_buckets "
            "WHERE bucket = %(bucket)s AND (SELECT COUNT(*) FROM slot_holders "
            "WHERE bucket = %(bucket)s AND holder <> %(holder)s "
            "AND expires_at > %(now)s) < %(limit)s"
            f"{driver.on_conflict_update('bucket, holder')}"
            f"expires_at = {driver.inserted('expires_at')}",
            params,
        )
    return held > 0


def release_slot(session: Session, bucket: str, holder: str) -> None:
    session.execute(
        "DELETE FROM slot_holders WHERE bucket = %(bucket)s AND holder = %(holder)s",
        {"bucket": bucket, "holder": holder},
    )


def expire_limiters(session: Session, now: float) -> None:
    """Delete limiter rows that say nothing a missing row would not: full
    token buckets, ended windows, expired holders and their buckets."""
    params = {"now": now}
    # Each DELETE commits on its own: none holds locks while waiting for
    # another table, so the sweep cannot deadlock with a take.
    session.execute("DELETE FROM rate_buckets WHERE full_at <= %(now)s", params)
    session.execute("DELETE FROM window_counters WHERE window_end <= %(now)s", params)
    session.execute("DELETE FROM slot_holders WHERE expires_at <= %(now)s", params)
    session.execute("DELETE FROM slot_buckets WHERE expires_at <= %(now)s", params)
