"""The quota ledger in SQL: candidates, reservations and what ends them.

The rule that makes many workers on many hosts safe: **the check and the write
are one statement.** A reservation is a conditional ``UPDATE`` whose ``WHERE``
repeats every eligibility rule (status, cooldown, ``quota - reserved >=
cost`` after rolling an elapsed window); when another worker got there first
the update matches no row and the caller gets ``None``. :func:`lease` picks
the first eligible token in the walk's order and reserves on it in one
transaction, with the row locked from the pick to the commit (see
:meth:`Driver.pick_and_reserve <grok2api_storage_sql.database.Driver>`).

Commits are idempotent through ``spent_leases``: the commit inserts its lease
id there first, skipping a duplicate, and stops when nothing was inserted; the
primary key makes a concurrent second commit wait for the first and then stop.
Otherwise it deletes the open reservation if there is one (giving back the
reserved units) and spends the cost, all in one transaction. Lease ids are
kept for :data:`SPENT_LEASE_RETENTION` seconds and pruned by the reservation
sweeper (:func:`expire_reservations`).

Changes here do not bump the change counter: they are the ledger, which every
worker reads fresh, not configuration that workers cache.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Iterable, Sequence
from typing import Any

from grok2api import CandidateOrder, Lease, TokenRecord

from .database import Driver, Row, Session
from .tokens import QUOTA_NOW, RECORD_COLUMNS, in_list, record_from_row

__all__ = [
    "SPENT_LEASE_RETENTION",
    "candidates",
    "commit",
    "expire_reservations",
    "lease",
    "record_failure",
    "record_sync",
    "release",
    "reserve",
]

#: Seconds a committed lease id is remembered so that a repeat is a no-op.
SPENT_LEASE_RETENTION = 24 * 3600.0

_SELECT = f"SELECT {RECORD_COLUMNS} FROM tokens"
_QUOTA_LEFT = f"{QUOTA_NOW} - reserved >= %(cost)s"
_NOT_COOLING = "(cooldown_until IS NULL OR cooldown_until <= %(now)s)"

# The assignments of a reservation. No assignment reads a column that an
# earlier one writes, because MySQL applies them left to right. A new random
# key on every reservation keeps RANDOM fair: the gap in front of a token,
# which decides how often a random start lands on it, keeps changing.
_RESERVE = f"""
    quota = {QUOTA_NOW},
    window_reset_at =
        CASE WHEN window_reset_at <= %(now)s THEN NULL ELSE window_reset_at END,
    reserved = reserved + %(cost)s,
    status = 'active',
    cooldown_until = NULL,
    cooldown_reason = '',
    rand_key = %(rand_key)s
"""

_SPEND = f"""
    UPDATE tokens SET
        quota = GREATEST(0, {QUOTA_NOW} - %(cost)s),
        window_reset_at = CASE
            WHEN window_reset_at IS NULL OR window_reset_at <= %(now)s
            THEN %(now)s + window_seconds ELSE window_reset_at END,
        reserved = GREATEST(0, reserved - %(held)s),
        use_count = use_count + 1,
        last_used_at = %(now)s,
        fail_count = 0
    WHERE id = %(id)s
"""

# ``status`` comes first: it reads the failure count before it grows.
_FAILURE = """
    UPDATE tokens SET
        status = CASE
            WHEN %(threshold)s IS NOT NULL AND fail_count + 1 >= %(threshold)s
                AND status <> 'disabled' THEN 'invalid'
            WHEN %(cooldown)s IS NOT NULL AND status IN ('active', 'cooling')
                THEN 'cooling'
            ELSE status END,
        fail_count = fail_count + %(counted)s,
        last_fail_at = %(now)s,
        last_fail_reason = %(reason)s,
        cooldown_until = COALESCE(%(cooldown)s, cooldown_until),
        cooldown_reason =
            CASE WHEN %(cooldown)s IS NOT NULL THEN %(reason)s
            ELSE cooldown_reason END,
        quota = CASE WHEN %(quota)s IS NULL THEN quota
            ELSE GREATEST(%(quota)s, 0) END,
        window_reset_at = CASE
            WHEN %(quota)s IS NOT NULL
                AND (window_reset_at IS NULL OR window_reset_at <= %(now)s)
            THEN COALESCE(%(cooldown)s, %(now)s + window_seconds)
            ELSE window_reset_at END
    WHERE id = %(id)s
"""

# ``window_reset_at`` comes before ``window_seconds`` so that both dialects
# read the old window length there.
_SYNCED = """
    UPDATE tokens SET
        stale = 0,
        last_sync_at = %(now)s,
        window_reset_at = CASE
            WHEN window_reset_at > %(now)s THEN window_reset_at
            WHEN %(remaining)s <= 0
                THEN %(now)s + COALESCE(%(window)s, window_seconds)
            ELSE NULL END,
        quota = GREATEST(%(remaining)s, 0),
        quota_total = COALESCE(%(total)s, quota_total),
        window_seconds = COALESCE(%(window)s, window_seconds),
        status = CASE
            WHEN status = 'cooling' AND %(remaining)s > 0 THEN 'active'
            ELSE status END,
        cooldown_until =
            CASE WHEN %(remaining)s > 0 THEN NULL ELSE cooldown_until END,
        cooldown_reason =
            CASE WHEN %(remaining)s > 0 THEN '' ELSE cooldown_reason END
    WHERE id = %(id)s
"""


def _leasable(params: dict[str, Any], exclude: Iterable[str]) -> str:
    # ``pool`` and ``leasable`` are the prefix of every selection index.
    terms = ["pool = %(pool)s", "leasable = 1", _NOT_COOLING]
    excluded = sorted(exclude)
    if excluded:
        terms.append(f"id NOT IN {in_list(params, 'ex', excluded)}")
    return " AND ".join(terms)


def _walks(
    driver: Driver, order: CandidateOrder, params: dict[str, Any]
) -> list[tuple[str, str, str]]:
    """The (extra condition, ORDER BY, index) walks that make up ``order``,
    for picking the first eligible token."""
    if order is CandidateOrder.MOST_QUOTA:
        return [(_QUOTA_LEFT, "avail DESC", "tokens_by_quota")]
    if order is CandidateOrder.LEAST_RECENTLY_USED:
        return [(_QUOTA_LEFT, driver.lru_order, "tokens_by_use")]
    # RANDOM: walk up from a random point of the key space, then wrap around.
    params["start"] = random.random()
    return [
        (f"{_QUOTA_LEFT} AND rand_key >= %(start)s", "rand_key", "tokens_by_rand"),
        (f"{_QUOTA_LEFT} AND rand_key < %(start)s", "rand_key", "tokens_by_rand"),
    ]


def candidates(
    session: Session,
    driver: Driver,
    pool: str,
    order: CandidateOrder,
    limit: int,
    cost: int,
    exclude: Iterable[str],
    now: float,
) -> list[TokenRecord]:
    params: dict[str, Any] = {
        "pool": pool,
        "limit": max(0, limit),
        "cost": cost,
        "now": now,
    }
    base = _leasable(params, exclude)
    if order is CandidateOrder.MOST_QUOTA:
        return _most_quota(session, driver, base, params, now, limit)
    rows: list[Row] = []
    for condition, order_by, index in _walks(driver, order, params):
        params["limit"] = max(0, limit - len(rows))
        if params["limit"] == 0:
            break
        rows += session.all(
            f"{_SELECT}{driver.use_index(index)} WHERE {base} AND {condition} "
            f"ORDER BY {order_by} LIMIT %(limit)s",
            params,
        )
    return [record_from_row(row) for row in rows]


def _most_quota(
    session: Session,
    driver: Driver,
    base: str,
    params: dict[str, Any],
    now: float,
    limit: int,
) -> list[TokenRecord]:
    # Two walks: tokens inside their window by stored quota (the index range
    # skips exhausted ones), and tokens whose window ran out, which count as
    # full whatever they store.
    by_quota = driver.use_index("tokens_by_quota")
    by_window = driver.use_index("tokens_by_window")
    walks = (
        f"{_SELECT}{by_quota} WHERE {base} AND avail >= %(cost)s "
        "AND (window_reset_at IS NULL OR window_reset_at > %(now)s) "
        "ORDER BY avail DESC LIMIT %(limit)s",
        f"{_SELECT}{by_window} WHERE {base} AND window_reset_at <= %(now)s "
        "AND quota_total - reserved >= %(cost)s "
        "ORDER BY window_reset_at LIMIT %(limit)s",
    )
    found: dict[str, TokenRecord] = {}
    with session.transaction():
        for sql in walks:
            for row in session.all(sql, params):
                found.setdefault(row["id"], record_from_row(row))

    def available_now(record: TokenRecord) -> int:
        refilled = record.window_reset_at is not None and record.window_reset_at <= now
        return (record.quota_total if refilled else record.quota) - record.reserved

    # sorted() is stable, so ties keep the order the indexes gave them.
    return sorted(found.values(), key=available_now, reverse=True)[:limit]


def lease(
    session: Session,
    driver: Driver,
    pools: Sequence[str],
    order: CandidateOrder,
    cost: int,
    exclude: Iterable[str],
    now: float,
    expires_at: float,
    lease_id: str,
) -> Lease | None:
    """The first eligible token of the first pool that has one, reserved.

    Each attempt is one transaction: pick with a row lock and reserve. A row
    another worker is reserving is skipped rather than waited for; only when
    that leaves nothing does a second pass wait for the locks, so a pool whose
    last token is busy for a moment is not reported empty.
    """
    for pool in pools:
        params: dict[str, Any] = {
            "pool": pool,
            "cost": cost,
            "now": now,
            "rand_key": random.random(),
        }
        base = _leasable(params, exclude)
        if order is CandidateOrder.MOST_QUOTA:
            _roll_elapsed_windows(session, driver, params)
        walks = _walks(driver, order, params)
        for skip_locked in (True, False):
            for condition, order_by, index in walks:
                with session.transaction():
                    row = driver.pick_and_reserve(
                        session,
                        eligible=f"{base} AND {condition}",
                        order=order_by,
                        index=index,
                        reserve=_RESERVE,
                        params=params,
                        skip_locked=skip_locked,
                    )
                    if row is not None:
                        return _open_reservation(
                            session, row, lease_id, cost, expires_at
                        )
    return None


def _roll_elapsed_windows(
    session: Session, driver: Driver, params: dict[str, Any]
) -> None:
    # The quota index orders by stored quota; a token whose window ran out
    # stores a stale quota. Rolling those windows first (what a reservation
    # would do to them anyway, so no token's state changes) makes the index
    # order exact. The range on (pool, leasable, window_reset_at) is empty
    # unless windows ended since the last lease.
    session.execute(driver.roll_windows_sql(_ELAPSED), params)


_ELAPSED = "pool = %(pool)s AND leasable = 1 AND window_reset_at <= %(now)s"


def _open_reservation(
    session: Session, row: Row, lease_id: str, cost: int, expires_at: float
) -> Lease:
    session.execute(
        "INSERT INTO reservations (lease_id, token_id, cost, expires_at) "
        "VALUES (%(lease)s, %(id)s, %(cost)s, %(expires)s)",
        {"lease": lease_id, "id": row["id"], "cost": cost, "expires": expires_at},
    )
    return Lease(
        lease_id=lease_id,
        token_id=row["id"],
        secret=row["secret"],
        pool=row["pool"],
        cost=cost,
        expires_at=expires_at,
    )


def reserve(
    session: Session,
    token_id: str,
    lease_id: str,
    cost: int,
    now: float,
    expires_at: float,
) -> Lease | None:
    params = {"id": token_id, "cost": cost, "now": now, "rand_key": random.random()}
    with session.transaction():
        reserved = session.execute(
            f"UPDATE tokens SET {_RESERVE} WHERE id = %(id)s AND leasable = 1 "
            f"AND {_NOT_COOLING} AND {_QUOTA_LEFT}",
            params,
        )
        if not reserved:
            return None
        row = session.one(
            "SELECT id, secret, pool FROM tokens WHERE id = %(id)s", params
        )
        assert row is not None  # the row is locked by our UPDATE
        return _open_reservation(session, row, lease_id, cost, expires_at)


def commit(session: Session, driver: Driver, lease: Lease, now: float) -> None:
    params: dict[str, Any] = {
        "lease": lease.lease_id,
        "id": lease.token_id,
        "cost": lease.cost,
        "now": now,
    }
    with session.transaction():
        first_time = session.execute(
            driver.ignore_duplicates(
                "INSERT INTO spent_leases (lease_id, spent_at) "
                "VALUES (%(lease)s, %(now)s)"
            ),
            params,
        )
        if not first_time:
            return
        held = session.one(
            "DELETE FROM reservations WHERE lease_id = %(lease)s RETURNING cost",
            params,
        )
        params["held"] = 0 if held is None else int(held["cost"])
        session.execute(_SPEND, params)


def release(session: Session, lease: Lease) -> None:
    with session.transaction():
        held = session.one(
            "DELETE FROM reservations WHERE lease_id = %(lease)s "
            "RETURNING token_id, cost",
            {"lease": lease.lease_id},
        )
        if held is not None:
            session.execute(
                "UPDATE tokens SET reserved = GREATEST(0, reserved - %(cost)s) "
                "WHERE id = %(id)s",
                {"cost": int(held["cost"]), "id": held["token_id"]},
            )


def expire_reservations(session: Session, now: float) -> int:
    # The reservations are deleted first and their costs given back from what
    # the DELETE returned: a concurrent release of the same lease then finds
    # nothing to give back, so no unit is returned twice.
    with session.transaction():
        expired = session.all(
            "DELETE FROM reservations WHERE expires_at <= %(now)s "
            "RETURNING token_id, cost",
            {"now": now},
        )
        held: collections.Counter[str] = collections.Counter()
        for row in expired:
            held[row["token_id"]] += int(row["cost"])
        # A fixed order, so that two sweepers cannot deadlock on the rows.
        for token_id in sorted(held):
            session.execute(
                "UPDATE tokens SET reserved = GREATEST(0, reserved - %(cost)s) "
                "WHERE id = %(id)s",
                {"cost": held[token_id], "id": token_id},
            )
        session.execute(
            "DELETE FROM spent_leases WHERE spent_at < %(cutoff)s",
            {"cutoff": now - SPENT_LEASE_RETENTION},
        )
    return len(expired)


def record_failure(
    session: Session,
    token_id: str,
    now: float,
    *,
    reason: str,
    invalidate_after: int | None,
    cooldown_until: float | None,
    quota: int | None,
) -> TokenRecord | None:
    # When the upstream overwrites the quota and no window is running, the
    # overwritten value must not be undone at once by a window that already
    # ran out: a new window starts, ending with the cooldown when there is one.
    params = {
        "id": token_id,
        "now": now,
        "reason": reason,
        "counted": 0 if invalidate_after is None else 1,
        "threshold": invalidate_after,
        "cooldown": cooldown_until,
        "quota": quota,
    }
    return _update_and_read(session, _FAILURE, params)


def record_sync(
    session: Session,
    token_id: str,
    now: float,
    *,
    remaining: int | None,
    total: int | None,
    window_seconds: int | None,
) -> TokenRecord | None:
    if remaining is None:
        sql = "UPDATE tokens SET stale = 1 WHERE id = %(id)s"
    else:
        sql = _SYNCED
    params = {
        "id": token_id,
        "now": now,
        "remaining": remaining,
        "total": total,
        "window": window_seconds,
    }
    return _update_and_read(session, sql, params)


def _update_and_read(
    session: Session, sql: str, params: dict[str, Any]
) -> TokenRecord | None:
    # MariaDB has no UPDATE ... RETURNING; the row stays locked by the UPDATE
    # until the commit, so the SELECT reads exactly what it wrote.
    with session.transaction():
        if not session.execute(sql, params):
            return None
        row = session.one(f"{_SELECT} WHERE id = %(id)s", params)
    return None if row is None else record_from_row(row)
