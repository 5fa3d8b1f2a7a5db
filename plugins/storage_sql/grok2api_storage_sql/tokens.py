"""Token administration in SQL: adding, removing, listing, editing, counting.

Every function here runs in a worker thread with a
:class:`~grok2api_storage_sql.database.Session`, in SQL both dialects accept;
what they spell differently comes from the
:class:`~grok2api_storage_sql.database.Driver`. Changes an operator makes bump
the change counter in the same transaction, so workers polling
:func:`change_version` reload exactly when there is something new.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable, Sequence
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

from .database import Driver, Row, Session

__all__ = [
    "QUOTA_NOW",
    "RECORD_COLUMNS",
    "add_tokens",
    "bump_change_version",
    "change_version",
    "get_token",
    "in_list",
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

#: The quota at ``now``: a window that has run out counts as refilled.
QUOTA_NOW = "(CASE WHEN window_reset_at <= %(now)s THEN quota_total ELSE quota END)"

_STATES = ("active", "cooling", "exhausted", "invalid", "disabled")
# Rows per multi-row INSERT when adding tokens in bulk.
_INSERT_BATCH = 500
_NEW_COLUMNS = (
    "id",
    "secret",
    "pool",
    "status",
    "quota",
    "quota_total",
    "window_seconds",
    "created_at",
    "tags",
    "note",
    "rand_key",
)


def in_list(params: dict[str, Any], name: str, values: Iterable[Any]) -> str:
    """``(%(name0)s, %(name1)s, …)`` with the values bound in ``params``.

    Callers handle the empty case: ``IN ()`` is not SQL.
    """
    keys = []
    for number, value in enumerate(values):
        params[f"{name}{number}"] = value
        keys.append(f"%({name}{number})s")
    return f"({', '.join(keys)})"


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def record_from_row(row: Row) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        pool=row["pool"],
        status=TokenStatus(row["status"]),
        quota=int(row["quota"]),
        quota_total=int(row["quota_total"]),
        window_seconds=int(row["window_seconds"]),
        reserved=int(row["reserved"]),
        window_reset_at=_opt_float(row["window_reset_at"]),
        cooldown_until=_opt_float(row["cooldown_until"]),
        cooldown_reason=row["cooldown_reason"],
        fail_count=int(row["fail_count"]),
        last_fail_at=_opt_float(row["last_fail_at"]),
        last_fail_reason=row["last_fail_reason"],
        last_used_at=_opt_float(row["last_used_at"]),
        use_count=int(row["use_count"]),
        created_at=float(row["created_at"]),
        last_sync_at=_opt_float(row["last_sync_at"]),
        stale=bool(row["stale"]),
        tags=tuple(json.loads(row["tags"])),
        note=row["note"],
    )


def bump_change_version(session: Session) -> None:
    session.execute("UPDATE change_counter SET version = version + 1 WHERE id = 1")


def change_version(session: Session) -> int:
    row = session.one("SELECT version FROM change_counter WHERE id = 1")
    return 0 if row is None else int(row["version"])


def add_tokens(
    session: Session, driver: Driver, tokens: Sequence[NewToken], now: float
) -> int:
    added = changed = 0
    with session.transaction():
        # Consecutive tokens of one pool go in one multi-row INSERT that skips
        # known ids; the known ones then keep their record and only move pool.
        for pool, group in itertools.groupby(tokens, key=lambda token: token.pool):
            batch = list(group)
            for start in range(0, len(batch), _INSERT_BATCH):
                chunk = batch[start : start + _INSERT_BATCH]
                added += session.execute(*_insert_sql(driver, chunk, now))
                params: dict[str, Any] = {"pool": pool}
                ids = in_list(params, "id", (t.id for t in chunk))
                changed += session.execute(
                    f"UPDATE tokens SET pool = %(pool)s WHERE id IN {ids} "
                    "AND pool <> %(pool)s",
                    params,
                )
        if added or changed:
            bump_change_version(session)
    return added


def _insert_sql(
    driver: Driver, chunk: Sequence[NewToken], now: float
) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {}
    rows = []
    for number, token in enumerate(chunk):
        values = {
            "id": token.id,
            "secret": token.secret,
            "pool": token.pool,
            "status": TokenStatus.ACTIVE.value,
            "quota": token.quota,
            "quota_total": token.quota_total,
            "window_seconds": token.window_seconds,
            "created_at": now,
            "tags": json.dumps(list(token.tags)),
            "note": token.note,
            "rand_key": random.random(),
        }
        params.update({f"{key}_{number}": value for key, value in values.items()})
        rows.append(
            "(" + ", ".join(f"%({key}_{number})s" for key in _NEW_COLUMNS) + ")"
        )
    insert = f"INSERT INTO tokens ({', '.join(_NEW_COLUMNS)}) VALUES {', '.join(rows)}"
    return driver.ignore_duplicates(insert), params


def remove_tokens(session: Session, token_ids: Sequence[str]) -> int:
    if not token_ids:
        return 0
    params: dict[str, Any] = {}
    ids = in_list(params, "id", token_ids)
    with session.transaction():
        session.execute(f"DELETE FROM reservations WHERE token_id IN {ids}", params)
        removed = session.execute(f"DELETE FROM tokens WHERE id IN {ids}", params)
        if removed:
            bump_change_version(session)
    return removed


def get_token(session: Session, token_id: str) -> TokenRecord | None:
    row = session.one(
        f"SELECT {RECORD_COLUMNS} FROM tokens WHERE id = %(id)s", {"id": token_id}
    )
    return None if row is None else record_from_row(row)


def list_tokens(session: Session, driver: Driver, query: TokenQuery) -> TokenPage:
    terms: list[str] = []
    params: dict[str, Any] = {
        "limit": max(0, query.limit),
        "offset": max(0, query.offset),
    }
    if query.pool is not None:
        terms.append("pool = %(pool)s")
        params["pool"] = query.pool
    if query.status is not None:
        terms.append("status = %(status)s")
        params["status"] = query.status.value
    if query.tag is not None:
        terms.append(driver.has_tag(params, query.tag))
    if query.search:
        # Part of the id, note or a tag, in any case; a pasted raw secret finds
        # its token through the id it hashes to, without secrets being searched.
        terms.append(
            "(LOWER(id) LIKE %(like)s ESCAPE '!' OR LOWER(note) LIKE %(like)s "
            "ESCAPE '!' OR LOWER(tags) LIKE %(like)s ESCAPE '!' OR id = %(hashed)s)"
        )
        params["like"] = f"%{_escape_like(query.search.lower())}%"
        params["hashed"] = token_id_for(query.search)
    where = f"WHERE {' AND '.join(terms)}" if terms else ""
    with session.transaction():
        total = session.one(f"SELECT COUNT(*) AS n FROM tokens {where}", params)
        rows = session.all(
            f"SELECT {RECORD_COLUMNS} FROM tokens {where} "
            "ORDER BY pool, created_at, seq LIMIT %(limit)s OFFSET %(offset)s",
            params,
        )
    count = 0 if total is None else int(total["n"])
    return TokenPage(items=[record_from_row(row) for row in rows], total=count)


def token_secrets(session: Session, token_ids: Sequence[str]) -> dict[str, str]:
    if not token_ids:
        return {}
    params: dict[str, Any] = {}
    ids = in_list(params, "id", token_ids)
    rows = session.all(f"SELECT id, secret FROM tokens WHERE id IN {ids}", params)
    return {row["id"]: row["secret"] for row in rows}


def update_token(
    session: Session, token_id: str, changes: TokenChanges, now: float
) -> TokenRecord | None:
    # Later entries override earlier ones, which gives ``reset`` its
    # documented "before the other fields apply" meaning in one UPDATE. No
    # assignment reads a column another assigns: MySQL applies them in order.
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
        sets["status"] = "%(status)s"
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
        sets["tags"] = "%(tags)s"
        params["tags"] = json.dumps(list(changes.tags))
    if changes.note is not None:
        sets["note"] = "%(note)s"
        params["note"] = changes.note
    if changes.quota is not None:
        sets["quota"] = "GREATEST(%(quota)s, 0)"
        params["quota"] = changes.quota
    if not sets:
        return get_token(session, token_id)
    assignments = ", ".join(f"{column} = {value}" for column, value in sets.items())
    with session.transaction():
        if not session.execute(
            f"UPDATE tokens SET {assignments} WHERE id = %(id)s", params
        ):
            return None
        record = get_token(session, token_id)
        bump_change_version(session)
    return record


def pool_counts(
    session: Session, pools: Sequence[str], cost: int, now: float
) -> PoolCounts:
    counts = dict.fromkeys(_STATES, 0)
    if not pools:
        return PoolCounts(counts=counts, earliest_reset=None)
    params: dict[str, Any] = {"cost": cost, "now": now}
    names = in_list(params, "pool", pools)
    # ``usable_at`` is when a cooling or exhausted token can next be leased,
    # when that is known: the cooldown's end, the quota window's end, or the
    # first open reservation's expiry when only reservations are in the way.
    rows = session.all(
        f"""
        WITH states AS (
            SELECT
                CASE
                    WHEN status = 'disabled' THEN 'disabled'
                    WHEN status = 'invalid' THEN 'invalid'
                    WHEN cooldown_until > %(now)s THEN 'cooling'
                    WHEN {QUOTA_NOW} - reserved < %(cost)s THEN 'exhausted'
                    ELSE 'active'
                END AS state,
                CASE
                    WHEN status IN ('disabled', 'invalid') THEN NULL
                    WHEN cooldown_until > %(now)s THEN cooldown_until
                    WHEN {QUOTA_NOW} >= %(cost)s THEN (
                        SELECT MIN(r.expires_at) FROM reservations r
                        WHERE r.token_id = tokens.id
                    )
                    WHEN window_reset_at > %(now)s THEN window_reset_at
                END AS usable_at
            FROM tokens
            WHERE pool IN {names}
        )
        SELECT state, COUNT(*) AS n, MIN(usable_at) AS earliest
        FROM states GROUP BY state
        """,
        params,
    )
    earliest: float | None = None
    for row in rows:
        counts[row["state"]] = int(row["n"])
        if row["state"] in ("cooling", "exhausted") and row["earliest"] is not None:
            value = float(row["earliest"])
            earliest = value if earliest is None else min(earliest, value)
    return PoolCounts(counts=counts, earliest_reset=earliest)


def _escape_like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
