"""Token administration in SQL: adding, removing, listing, editing, counting.

Every function here runs in a worker thread with a connection from
:class:`~grok2api_storage_local.database.Database`. Changes an operator makes
bump the change counter in the same transaction, so other workers polling
:func:`change_version` reload exactly when there is something new.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Sequence
from typing import Any

from grok2api import (
    NewToken,
    PoolCounts,
    TokenChanges,
    TokenPage,
    TokenQuery,
    TokenRecord,
    TokenStatus,
    token_id_for,
)

from .database import first, immediate, snapshot

__all__ = [
    "QUOTA_NOW",
    "RECORD_COLUMNS",
    "add_tokens",
    "bump_change_version",
    "change_version",
    "get_token",
    "list_tokens",
    "pool_counts",
    "record_from_row",
    "remove_tokens",
    "token_secrets",
    "update_token",
]

#: Every column of a :class:`TokenRecord`; the secret is deliberately absent.
RECORD_COLUMNS = (
    "id, pool, status, quota, quota_total, window_seconds, reserved, "
    "window_reset_at, cooldown_until, cooldown_reason, fail_count, last_fail_at, "
    "last_fail_reason, last_used_at, use_count, created_at, last_sync_at, stale, "
    "tags, note"
)

#: The quota at ``:now``: a window that has run out counts as refilled.
QUOTA_NOW = "(CASE WHEN window_reset_at <= :now THEN quota_total ELSE quota END)"

_STATES = ("active", "cooling", "exhausted", "invalid", "disabled")


def record_from_row(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        pool=row["pool"],
        status=TokenStatus(row["status"]),
        quota=row["quota"],
        quota_total=row["quota_total"],
        window_seconds=row["window_seconds"],
        reserved=row["reserved"],
        window_reset_at=row["window_reset_at"],
        cooldown_until=row["cooldown_until"],
        cooldown_reason=row["cooldown_reason"],
        fail_count=row["fail_count"],
        last_fail_at=row["last_fail_at"],
        last_fail_reason=row["last_fail_reason"],
        last_used_at=row["last_used_at"],
        use_count=row["use_count"],
        created_at=row["created_at"],
        last_sync_at=row["last_sync_at"],
        stale=bool(row["stale"]),
        tags=tuple(json.loads(row["tags"])),
        note=row["note"],
    )


def bump_change_version(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE change_counter SET version = version + 1 WHERE id = 1")


def change_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT version FROM change_counter").fetchone()[0])


def add_tokens(conn: sqlite3.Connection, tokens: Sequence[NewToken], now: float) -> int:
    added = changed = 0
    with immediate(conn):
        for token in tokens:
            token_id = token.id
            inserted = conn.execute(
                "INSERT INTO tokens (id, secret, pool, status, quota, quota_total, "
                "window_seconds, created_at, tags, note, rand_key) "
                "VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (
                    token_id,
                    token.secret,
                    token.pool,
                    token.quota,
                    token.quota_total,
                    token.window_seconds,
                    now,
                    json.dumps(list(token.tags)),
                    token.note,
                    random.random(),
                ),
            ).rowcount
            if inserted:
                added += 1
                continue
            # A known secret keeps its record and its ledger; only its pool moves.
            changed += conn.execute(
                "UPDATE tokens SET pool = ? WHERE id = ? AND pool != ?",
                (token.pool, token_id, token.pool),
            ).rowcount
        if added or changed:
            bump_change_version(conn)
    return added


def remove_tokens(conn: sqlite3.Connection, token_ids: Sequence[str]) -> int:
    ids = json.dumps(list(token_ids))
    with immediate(conn):
        conn.execute(
            "DELETE FROM reservations "
            "WHERE token_id IN (SELECT value FROM json_each(?))",
            (ids,),
        )
        removed = conn.execute(
            "DELETE FROM tokens WHERE id IN (SELECT value FROM json_each(?))", (ids,)
        ).rowcount
        if removed:
            bump_change_version(conn)
    return removed


def get_token(conn: sqlite3.Connection, token_id: str) -> TokenRecord | None:
    row = conn.execute(
        f"SELECT {RECORD_COLUMNS} FROM tokens WHERE id = ?", (token_id,)
    ).fetchone()
    return None if row is None else record_from_row(row)


def list_tokens(conn: sqlite3.Connection, query: TokenQuery) -> TokenPage:
    terms: list[str] = []
    params: dict[str, Any] = {
        "limit": max(0, query.limit),
        "offset": max(0, query.offset),
    }
    if query.pool is not None:
        terms.append("pool = :pool")
        params["pool"] = query.pool
    if query.status is not None:
        terms.append("status = :status")
        params["status"] = query.status.value
    if query.tag is not None:
        terms.append("EXISTS (SELECT 1 FROM json_each(tokens.tags) WHERE value = :tag)")
        params["tag"] = query.tag
    if query.search:
        # Matches part of the id, note or a tag; a pasted raw secret finds its
        # token through the id it hashes to, without secrets being searched.
        terms.append(
            "(id LIKE :like ESCAPE '\\' OR note LIKE :like ESCAPE '\\' "
            "OR tags LIKE :like ESCAPE '\\' OR id = :hashed)"
        )
        params["like"] = f"%{_escape_like(query.search)}%"
        params["hashed"] = token_id_for(query.search)
    where = f"WHERE {' AND '.join(terms)}" if terms else ""
    with snapshot(conn):
        total = conn.execute(f"SELECT COUNT(*) FROM tokens {where}", params).fetchone()
        rows = conn.execute(
            f"SELECT {RECORD_COLUMNS} FROM tokens {where} "
            "ORDER BY pool, created_at, rowid LIMIT :limit OFFSET :offset",
            params,
        ).fetchall()
    return TokenPage(items=[record_from_row(row) for row in rows], total=total[0])


def token_secrets(conn: sqlite3.Connection, token_ids: Sequence[str]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT id, secret FROM tokens WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(token_ids)),),
    ).fetchall()
    return {row["id"]: row["secret"] for row in rows}


def update_token(
    conn: sqlite3.Connection, token_id: str, changes: TokenChanges, now: float
) -> TokenRecord | None:
    # Later assignments override earlier ones, which gives ``reset`` its
    # documented "before the other fields apply" meaning in one UPDATE.
    sets: dict[str, str] = {}
    params: dict[str, Any] = {"id": token_id, "now": now}
    if changes.reset:
        sets |= {
            "status": "'active'",
            "fail_count": "0",
            "cooldown_until": "NULL",
            "cooldown_reason": "''",
            "quota": "quota_total",
            "window_reset_at": "NULL",
        }
    if changes.status is not None:
        sets["status"] = ":status"
        params["status"] = changes.status.value
        if changes.status is TokenStatus.ACTIVE:
            # An operator reviving a token means "usable now", not "one more
            # failure from invalid again".
            sets |= {
                "fail_count": "0",
                "cooldown_until": "NULL",
                "cooldown_reason": "''",
            }
    if changes.tags is not None:
        sets["tags"] = ":tags"
        params["tags"] = json.dumps(list(changes.tags))
    if changes.note is not None:
        sets["note"] = ":note"
        params["note"] = changes.note
    if changes.quota is not None:
        sets["quota"] = "MAX(:quota, 0)"
        params["quota"] = changes.quota
    with immediate(conn):
        if not sets:
            return get_token(conn, token_id)
        assignments = ", ".join(f"{column} = {value}" for column, value in sets.items())
        row = first(
            conn.execute(
                f"UPDATE tokens SET {assignments} "
                f"WHERE id = :id RETURNING {RECORD_COLUMNS}",
                params,
            )
        )
        if row is None:
            return None
        record = record_from_row(row)
        bump_change_version(conn)
    return record


def pool_counts(
    conn: sqlite3.Connection, pools: Sequence[str], cost: int, now: float
) -> PoolCounts:
    # ``usable_at`` is when a cooling or exhausted token can next be leased,
    # when that is known: the cooldown's end, the quota window's end, or the
    # first open reservation's expiry when only reservations are in the way.
    rows = conn.execute(
        f"""
        WITH states AS (
            SELECT
                CASE
                    WHEN status = 'disabled' THEN 'disabled'
                    WHEN status = 'invalid' THEN 'invalid'
                    WHEN cooldown_until > :now THEN 'cooling'
                    WHEN {QUOTA_NOW} - reserved < :cost THEN 'exhausted'
                    ELSE 'active'
                END AS state,
                CASE
                    WHEN status IN ('disabled', 'invalid') THEN NULL
                    WHEN cooldown_until > :now THEN cooldown_until
                    WHEN {QUOTA_NOW} >= :cost THEN (
                        SELECT MIN(expires_at) FROM reservations AS r
                        WHERE r.token_id = tokens.id
                    )
                    WHEN window_reset_at > :now THEN window_reset_at
                END AS usable_at
            FROM tokens
            WHERE pool IN (SELECT value FROM json_each(:pools))
        )
        SELECT state, COUNT(*) AS n, MIN(usable_at) AS earliest
        FROM states GROUP BY state
        """,
        {"pools": json.dumps(list(pools)), "cost": cost, "now": now},
    ).fetchall()
    counts = dict.fromkeys(_STATES, 0)
    earliest: float | None = None
    for row in rows:
        counts[row["state"]] = row["n"]
        if row["state"] in ("cooling", "exhausted") and row["earliest"] is not None:
            earliest = (
                row["earliest"] if earliest is None else min(earliest, row["earliest"])
            )
    return PoolCounts(counts=counts, earliest_reset=earliest)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
