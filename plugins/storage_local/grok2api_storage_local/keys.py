"""Managed API keys in SQL: adding, listing, editing, removing, counting uses.

A key is stored as its digest and hint, never the key itself. Adding, editing
and removing keys bump the change counter in the same transaction, so every
worker's key cache reloads; counting uses does not, since use counts are
statistics that nobody caches.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from grok2api import ApiKeyChanges, ApiKeyLimits, ApiKeyRecord

from .database import first, immediate
from .tokens import bump_change_version

__all__ = [
    "add_api_keys",
    "list_api_keys",
    "record_api_key_use",
    "remove_api_keys",
    "update_api_key",
]

_KEY_COLUMNS = (
    "id, name, digest, hint, enabled, created_at, requests_per_minute, "
    "concurrent_requests, quota, quota_window_seconds, models, use_count, "
    "last_used_at"
)

# ``last_used_at`` only moves forward: batches from several workers arrive in
# any order.
_RECORD_USE = """
    UPDATE api_keys SET
        use_count = use_count + :count,
        last_used_at = MAX(COALESCE(last_used_at, :at), :at)
    WHERE id = :id
"""


def _key_from_row(row: sqlite3.Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        name=row["name"],
        digest=row["digest"],
        hint=row["hint"],
        enabled=bool(row["enabled"]),
        created_at=row["created_at"],
        limits=ApiKeyLimits(
            requests_per_minute=row["requests_per_minute"],
            concurrent_requests=row["concurrent_requests"],
            quota=row["quota"],
            quota_window_seconds=row["quota_window_seconds"],
            models=tuple(json.loads(row["models"])),
        ),
        use_count=row["use_count"],
        last_used_at=row["last_used_at"],
    )


def _limit_values(limits: ApiKeyLimits) -> dict[str, Any]:
    return {
        "requests_per_minute": limits.requests_per_minute,
        "concurrent_requests": limits.concurrent_requests,
        "quota": limits.quota,
        "quota_window_seconds": limits.quota_window_seconds,
        "models": json.dumps(list(limits.models)),
    }


def add_api_keys(conn: sqlite3.Connection, keys: Sequence[ApiKeyRecord]) -> None:
    rows = [
        {
            "id": key.id,
            "name": key.name,
            "digest": key.digest,
            "hint": key.hint,
            "enabled": int(key.enabled),
            "created_at": key.created_at,
            "use_count": key.use_count,
            "last_used_at": key.last_used_at,
        }
        | _limit_values(key.limits)
        for key in keys
    ]
    placeholders = ", ".join(f":{column}" for column in _KEY_COLUMNS.split(", "))
    with immediate(conn):
        conn.executemany(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ({placeholders})", rows
        )
        if rows:
            bump_change_version(conn)


def list_api_keys(conn: sqlite3.Connection) -> list[ApiKeyRecord]:
    rows = conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, rowid"
    ).fetchall()
    return [_key_from_row(row) for row in rows]


def update_api_key(
    conn: sqlite3.Connection, key_id: str, changes: ApiKeyChanges
) -> ApiKeyRecord | None:
    values: dict[str, Any] = {}
    if changes.name is not None:
        values["name"] = changes.name
    if changes.enabled is not None:
        values["enabled"] = int(changes.enabled)
    if changes.limits is not None:
        values |= _limit_values(changes.limits)
    with immediate(conn):
        if not values:
            row = first(
                conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
                )
            )
            return None if row is None else _key_from_row(row)
        assignments = ", ".join(f"{column} = :{column}" for column in values)
        row = first(
            conn.execute(
                f"UPDATE api_keys SET {assignments} WHERE id = :id "
                f"RETURNING {_KEY_COLUMNS}",
                values | {"id": key_id},
            )
        )
        if row is None:
            return None
        bump_change_version(conn)
    return _key_from_row(row)


def remove_api_keys(conn: sqlite3.Connection, key_ids: Sequence[str]) -> int:
    with immediate(conn):
        removed = conn.execute(
            "DELETE FROM api_keys WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(key_ids)),),
        ).rowcount
        if removed:
            bump_change_version(conn)
    return removed


def record_api_key_use(
    conn: sqlite3.Connection, uses: Mapping[str, tuple[int, float]]
) -> None:
    rows = [
        {"id": key_id, "count": count, "at": at} for key_id, (count, at) in uses.items()
    ]
    with immediate(conn):
        conn.executemany(_RECORD_USE, rows)
