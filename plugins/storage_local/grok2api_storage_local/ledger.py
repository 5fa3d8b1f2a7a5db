"""The quota ledger in SQL: candidates, reservations and what ends them.

The rule that makes several worker processes safe: **the check and the write
are one statement.** :func:`reserve` is a single conditional ``UPDATE`` inside
a ``BEGIN IMMEDIATE`` transaction; when the token no longer has the quota the
update matches no row and the caller gets ``None``. Nothing here reads a value
into Python and writes a value computed from it.

Commits are made idempotent with a ``spent_leases`` table: a commit records
its lease id there (a second commit of the same lease finds it and stops),
deletes the open reservation if there is one (giving back the reserved
units) and spends the cost from the quota, all in one transaction. So a
commit of a lease that already expired still spends once. Lease ids are kept
for :data:`SPENT_LEASE_RETENTION` seconds, far beyond any retry of a commit,
and pruned by the periodic reservation sweep.

Changes here do not bump the change counter: they are the ledger, which every
worker reads fresh, not configuration that workers cache.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterable, Sequence

from grok2api import CandidateOrder, Lease, TokenRecord

from .database import first, immediate
from .schema import LEASABLE
from .tokens import QUOTA_NOW, RECORD_COLUMNS, record_from_row

__all__ = [
    "CANDIDATE_QUERIES",
    "SPENT_LEASE_RETENTION",
    "candidates",
    "commit",
    "expire_reservations",
    "record_failure",
    "record_sync",
    "release",
    "reserve",
]

#: Seconds a committed lease id is remembered so that a repeat is a no-op.
SPENT_LEASE_RETENTION = 24 * 3600.0

# The filter every candidate walk applies while it follows its index.
_ELIGIBLE = f"""
    pool = :pool AND {LEASABLE}
    AND (cooldown_until IS NULL OR cooldown_until <= :now)
"""
# Most walks exclude nothing; the JSON subquery would cost them a quarter
# of their time for an empty list.
_NOT_EXCLUDED = "AND id NOT IN (SELECT value FROM json_each(:exclude))"

# Two walks make up MOST_QUOTA: tokens inside their window, by stored quota
# (the range on the index skips exhausted ones), and tokens whose window ran
# out, which count as full whatever they store.
_WALKS = {
    "most_quota": """INDEXED BY tokens_by_quota WHERE {eligible}
    AND quota - reserved >= :cost
    AND (window_reset_at IS NULL OR window_reset_at > :now)
    ORDER BY quota - reserved DESC LIMIT :limit""",
    "refilled": """INDEXED BY tokens_by_window WHERE {eligible}
    AND window_reset_at <= :now AND quota_total - reserved >= :cost
    ORDER BY window_reset_at LIMIT :limit""",
    "least_recently_used": """INDEXED BY tokens_by_use WHERE {eligible}
    AND {quota_now} - reserved >= :cost
    ORDER BY last_used_at LIMIT :limit""",
    "random_from": """INDEXED BY tokens_by_rand WHERE {eligible}
    AND {quota_now} - reserved >= :cost AND rand_key >= :start
    ORDER BY rand_key LIMIT :limit""",
    "random_before": """INDEXED BY tokens_by_rand WHERE {eligible}
    AND {quota_now} - reserved >= :cost AND rand_key < :start
    ORDER BY rand_key LIMIT :limit""",
}


def _walk_queries(columns: str) -> dict[tuple[str, bool], str]:
    """Every walk by its name and whether it leaves out excluded ids."""
    return {
        (name, excluding): f"SELECT {columns} FROM tokens "
        + walk.format(
            eligible=_ELIGIBLE + (_NOT_EXCLUDED if excluding else ""),
            quota_now=QUOTA_NOW,
        )
        for name, walk in _WALKS.items()
        for excluding in (False, True)
    }


#: Every candidate walk, for tests that check they follow an index.
CANDIDATE_QUERIES = _walk_queries(RECORD_COLUMNS)
# A lease needs only the order of the candidates, which these columns decide;
# a whole record per candidate (tags JSON, status enum) would cost more than
# the walk itself.
_LEASE_QUERIES = _walk_queries("id, quota, quota_total, reserved, window_reset_at")

# Every UPDATE below that writes status, rand_key or window_reset_at makes
# SQLite rewrite the entries of the indexes over them (the partial ones all
# depend on status), and each rewritten page goes to the WAL at commit. So
# the ledger first tries a statement that leaves those columns alone, which
# fits an active token inside its quota window, and takes the whole
# statement only when that one matches no row.

# A reservation of an active token whose window has not run out: only
# ``reserved`` changes, and ``rand_key`` when asked (by RANDOM walks, whose
# fairness it serves, and by reservations of one named token).
_RESERVE_OPEN = {
    shuffle: f"""
    UPDATE tokens SET reserved = reserved + :cost
        {", rand_key = :rand_key" if shuffle else ""}
    WHERE id = :id AND status = 'active' AND cooldown_until IS NULL
        AND cooldown_reason = ''
        AND (window_reset_at IS NULL OR window_reset_at > :now)
        AND quota - reserved >= :cost
    RETURNING secret, pool
"""
    for shuffle in (False, True)
}

# A new random key on every reservation keeps RANDOM sampling fair: the gap
# in front of a token, which decides how often a random start lands on it,
# does not stay the same for ever.
_RESERVE = f"""
    UPDATE tokens SET
        quota = {QUOTA_NOW},
        window_reset_at =
            CASE WHEN window_reset_at <= :now THEN NULL ELSE window_reset_at END,
        reserved = reserved + :cost,
        status = 'active',
        cooldown_until = NULL,
        cooldown_reason = '',
        rand_key = :rand_key
    WHERE id = :id AND {LEASABLE}
        AND (cooldown_until IS NULL OR cooldown_until <= :now)
        AND {QUOTA_NOW} - reserved >= :cost
    RETURNING secret, pool
"""

# A spend inside a running window: the window itself stays as it is.
_SPEND_OPEN = """
    UPDATE tokens SET
        quota = MAX(0, quota - :cost),
        reserved = MAX(0, reserved - :held),
        use_count = use_count + 1,
        last_used_at = :now,
        fail_count = 0
    WHERE id = :id AND window_reset_at > :now
"""

_SPEND = f"""
    UPDATE tokens SET
        quota = MAX(0, {QUOTA_NOW} - :cost),
        window_reset_at = CASE
            WHEN window_reset_at IS NULL OR window_reset_at <= :now
            THEN :now + window_seconds ELSE window_reset_at END,
        reserved = MAX(0, reserved - :held),
        use_count = use_count + 1,
        last_used_at = :now,
        fail_count = 0
    WHERE id = :id
"""

_FAILURE = f"""
    UPDATE tokens SET
        fail_count = fail_count + :counted,
        last_fail_at = :now,
        last_fail_reason = :reason,
        status = CASE
            WHEN :threshold IS NOT NULL AND fail_count + 1 >= :threshold
                AND status != 'disabled' THEN 'invalid'
            WHEN :cooldown IS NOT NULL AND {LEASABLE} THEN 'cooling'
            ELSE status END,
        cooldown_until = COALESCE(:cooldown, cooldown_until),
        cooldown_reason =
            CASE WHEN :cooldown IS NOT NULL THEN :reason ELSE cooldown_reason END,
        quota = COALESCE(MAX(:quota, 0), quota),
        window_reset_at = CASE
            WHEN :quota IS NOT NULL
                AND (window_reset_at IS NULL OR window_reset_at <= :now)
            THEN COALESCE(:cooldown, :now + window_seconds)
            ELSE window_reset_at END
    WHERE id = :id
    RETURNING {RECORD_COLUMNS}
"""

_SYNCED = f"""
    UPDATE tokens SET
        stale = 0,
        last_sync_at = :now,
        quota = MAX(:remaining, 0),
        quota_total = COALESCE(:total, quota_total),
        window_seconds = COALESCE(:window, window_seconds),
        window_reset_at = CASE
            WHEN window_reset_at > :now THEN window_reset_at
            WHEN :remaining <= 0 THEN :now + COALESCE(:window, window_seconds)
            ELSE NULL END,
        status = CASE
            WHEN status = 'cooling' AND :remaining > 0 THEN 'active' ELSE status END,
        cooldown_until =
            CASE WHEN :remaining > 0 THEN NULL ELSE cooldown_until END,
        cooldown_reason =
            CASE WHEN :remaining > 0 THEN '' ELSE cooldown_reason END
    WHERE id = :id
    RETURNING {RECORD_COLUMNS}
"""


def candidates(
    conn: sqlite3.Connection,
    pool: str,
    order: CandidateOrder,
    limit: int,
    cost: int,
    exclude: Iterable[str],
    now: float,
) -> list[TokenRecord]:
    rows = _walk(conn, CANDIDATE_QUERIES, pool, order, limit, cost, exclude, now)
    return [record_from_row(row) for row in rows]


def _walk(
    conn: sqlite3.Connection,
    walks: dict[tuple[str, bool], str],
    pool: str,
    order: CandidateOrder,
    limit: int,
    cost: int,
    exclude: Iterable[str],
    now: float,
) -> list[sqlite3.Row]:
    """The first ``limit`` eligible rows of ``pool`` in ``order``."""
    excluded = sorted(exclude)
    params = {
        "pool": pool,
        "limit": max(0, limit),
        "cost": cost,
        "now": now,
        "exclude": json.dumps(excluded),
    }
    excluding = bool(excluded)
    if order is CandidateOrder.MOST_QUOTA:
        found: dict[str, sqlite3.Row] = {}
        for name in ("most_quota", "refilled"):
            for row in conn.execute(walks[name, excluding], params):
                found.setdefault(row["id"], row)

        def available_now(row: sqlite3.Row) -> int:
            reset_at = row["window_reset_at"]
            refilled = reset_at is not None and reset_at <= now
            return (row["quota_total"] if refilled else row["quota"]) - row["reserved"]

        # sorted() is stable, so ties keep the order the indexes gave them.
        return sorted(found.values(), key=available_now, reverse=True)[:limit]
    if order is CandidateOrder.LEAST_RECENTLY_USED:
        return conn.execute(walks["least_recently_used", excluding], params).fetchall()
    # RANDOM: walk up from a random point of the key space and wrap around.
    params["start"] = random.random()
    rows = conn.execute(walks["random_from", excluding], params).fetchall()
    if len(rows) < limit:
        params["limit"] = limit - len(rows)
        rows += conn.execute(walks["random_before", excluding], params).fetchall()
    return rows


def lease_first(
    conn: sqlite3.Connection,
    pools: Sequence[str],
    order: CandidateOrder,
    cost: int,
    exclude: Iterable[str],
    now: float,
    expires_at: float,
    lease_id: str,
) -> Lease | None:
    """Pick the first eligible token in ``order`` and reserve it, in one
    write transaction: holding the write lock, the first candidate cannot be
    taken by anyone else, so one thread hop settles the whole lease."""
    with immediate(conn):
        for pool in pools:
            # A few spares only guard against a candidate that the refill
            # arithmetic offers but the conditional update still refuses.
            rows = _walk(conn, _LEASE_QUERIES, pool, order, 4, cost, exclude, now)
            for row in rows:
                lease = _reserve_held(
                    conn,
                    row["id"],
                    lease_id,
                    cost,
                    now,
                    expires_at,
                    shuffle=order is CandidateOrder.RANDOM,
                )
                if lease is not None:
                    return lease
    return None


def reserve(
    conn: sqlite3.Connection,
    token_id: str,
    lease_id: str,
    cost: int,
    now: float,
    expires_at: float,
) -> Lease | None:
    with immediate(conn):
        return _reserve_held(
            conn, token_id, lease_id, cost, now, expires_at, shuffle=True
        )


def _reserve_held(
    conn: sqlite3.Connection,
    token_id: str,
    lease_id: str,
    cost: int,
    now: float,
    expires_at: float,
    *,
    shuffle: bool,
) -> Lease | None:
    """The conditional reservation; the caller holds the write transaction."""
    params = {"id": token_id, "cost": cost, "now": now, "rand_key": random.random()}
    row = first(conn.execute(_RESERVE_OPEN[shuffle], params)) or first(
        conn.execute(_RESERVE, params)
    )
    if row is None:
        return None
    conn.execute(
        "INSERT INTO reservations (lease_id, token_id, cost, expires_at) "
        "VALUES (?, ?, ?, ?)",
        (lease_id, token_id, cost, expires_at),
    )
    return Lease(
        lease_id=lease_id,
        token_id=token_id,
        secret=row["secret"],
        pool=row["pool"],
        cost=cost,
        expires_at=expires_at,
    )


def commit(conn: sqlite3.Connection, lease: Lease, now: float) -> None:
    with immediate(conn):
        first_time = conn.execute(
            "INSERT INTO spent_leases (lease_id, spent_at) VALUES (?, ?) "
            "ON CONFLICT (lease_id) DO NOTHING",
            (lease.lease_id, now),
        ).rowcount
        if not first_time:
            return
        held = first(
            conn.execute(
                "DELETE FROM reservations WHERE lease_id = ? RETURNING cost",
                (lease.lease_id,),
            )
        )
        params = {
            "id": lease.token_id,
            "cost": lease.cost,
            "held": 0 if held is None else held["cost"],
            "now": now,
        }
        if not conn.execute(_SPEND_OPEN, params).rowcount:
            conn.execute(_SPEND, params)


def release(conn: sqlite3.Connection, lease: Lease) -> None:
    with immediate(conn):
        held = first(
            conn.execute(
                "DELETE FROM reservations WHERE lease_id = ? RETURNING token_id, cost",
                (lease.lease_id,),
            )
        )
        if held is not None:
            conn.execute(
                "UPDATE tokens SET reserved = MAX(0, reserved - ?) WHERE id = ?",
                (held["cost"], held["token_id"]),
            )


def expire_reservations(conn: sqlite3.Connection, now: float) -> int:
    with immediate(conn):
        conn.execute(
            """
            UPDATE tokens SET reserved = MAX(0, reserved - (
                SELECT SUM(cost) FROM reservations AS r
                WHERE r.token_id = tokens.id AND r.expires_at <= :now
            ))
            WHERE id IN (SELECT token_id FROM reservations WHERE expires_at <= :now)
            """,
            {"now": now},
        )
        expired = conn.execute(
            "DELETE FROM reservations WHERE expires_at <= ?", (now,)
        ).rowcount
        conn.execute(
            "DELETE FROM spent_leases WHERE spent_at < ?",
            (now - SPENT_LEASE_RETENTION,),
        )
    return expired


def record_failure(
    conn: sqlite3.Connection,
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
    with immediate(conn):
        row = first(
            conn.execute(
                _FAILURE,
                {
                    "id": token_id,
                    "now": now,
                    "reason": reason,
                    "counted": 0 if invalidate_after is None else 1,
                    "threshold": invalidate_after,
                    "cooldown": cooldown_until,
                    "quota": quota,
                },
            )
        )
    return None if row is None else record_from_row(row)


def record_sync(
    conn: sqlite3.Connection,
    token_id: str,
    now: float,
    *,
    remaining: int | None,
    total: int | None,
    window_seconds: int | None,
) -> TokenRecord | None:
    with immediate(conn):
        if remaining is None:
            row = first(
                conn.execute(
                    "UPDATE tokens SET stale = 1 WHERE id = ? "
                    f"RETURNING {RECORD_COLUMNS}",
                    (token_id,),
                )
            )
        else:
            row = first(
                conn.execute(
                    _SYNCED,
                    {
                        "id": token_id,
                        "now": now,
                        "remaining": remaining,
                        "total": total,
                        "window": window_seconds,
                    },
                )
            )
    return None if row is None else record_from_row(row)
