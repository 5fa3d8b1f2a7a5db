"""Managed API keys in SQL: adding, listing, editing, removing, counting use.

Only a key's digest and hint are stored, never the key. Edits bump the change
counter in their transaction, so every worker's key cache reloads; use counts
do not, since no worker caches them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grok2api import ApiKeyChanges, ApiKeyLimits, ApiKeyRecord

from .database import Row, Session
from .tokens import bump_change_version, in_list

__all__ = [
    "add_api_keys",
    "list_api_keys",
    "record_api_key_use",
    "remove_api_keys",
    "update_api_key",
]

_COLUMNS = (
    "id",
    "name",
    "digest",
    "hint",
    "enabled",
    "created_at",
    "requests_per_minute",
    "concurrent_requests",
    "quota",
    "quota_window_seconds",
    "models",
    "use_count",
    "last_used_at",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM api_keys"


def _limit_values(limits: ApiKeyLimits) -> dict[str, Any]:
    return {
        "requests_per_minute": limits.requests_per_minute,
        "concurrent_requests": limits.concurrent_requests,
        "quota": limits.quota,
        "quota_window_seconds": limits.quota_window_seconds,
        "models": json.dumps(list(limits.models)),
    }


def _values(key: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "digest": key.digest,
        "hint": key.hint,
        "enabled": int(key.enabled),
        "created_at": key.created_at,
        **_limit_values(key.limits),
        "use_count": key.use_count,
        "last_used_at": key.last_used_at,
    }


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _record(row: Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        name=row["name"],
        digest=row["digest"],
        hint=row["hint"],
        enabled=bool(row["enabled"]),
        created_at=float(row["created_at"]),
        limits=ApiKeyLimits(
            requests_per_minute=_optional_int(row["requests_per_minute"]),
            concurrent_requests=_optional_int(row["concurrent_requests"]),
            quota=_optional_int(row["quota"]),
            quota_window_seconds=int(row["quota_window_seconds"]),
            models=tuple(json.loads(row["models"])),
        ),
        use_count=int(row["use_count"]),
        last_used_at=None
        if row["last_used_at"] is None
        else float(row["last_used_at"]),
    )


def add_api_keys(session: Session, keys: Sequence[ApiKeyRecord]) -> None:
    if not keys:
        return
    params: dict[str, Any] = {}
    rows = []
    for number, key in enumerate(keys):
        params.update({f"{k}_{number}": v for k, v in _values(key).items()})
        rows.append("(" + ", ".join(f"%({k}_{number})s" for k in _COLUMNS) + ")")
    # A plain INSERT: a reused id or digest is the caller's mistake and fails
    # the whole call rather than being skipped.
    with session.transaction():
        session.execute(
            f"INSERT INTO api_keys ({', '.join(_COLUMNS)}) VALUES {', '.join(rows)}",
            params,
        )
        bump_change_version(session)


def list_api_keys(session: Session) -> list[ApiKeyRecord]:
    return [_record(row) for row in session.all(f"{_SELECT} ORDER BY created_at, seq")]


def update_api_key(
    session: Session, key_id: str, changes: ApiKeyChanges
) -> ApiKeyRecord | None:
    values: dict[str, Any] = {}
    if changes.name is not None:
        values["name"] = changes.name
    if changes.enabled is not None:
        values["enabled"] = int(changes.enabled)
    if changes.limits is not None:
        values |= _limit_values(changes.limits)
    if not values:
        row = session.one(f"{_SELECT} WHERE id = %(id)s", {"id": key_id})
        return None if row is None else _record(row)
    assignments = ", ".join(f"{column} = %({column})s" for column in values)
    params = values | {"id": key_id}
    with session.transaction():
        if not session.execute(
            f"UPDATE api_keys SET {assignments} WHERE id = %(id)s", params
        ):
            return None
        row = session.one(f"{_SELECT} WHERE id = %(id)s", params)
        bump_change_version(session)
    return None if row is None else _record(row)


def remove_api_keys(session: Session, key_ids: Sequence[str]) -> int:
    if not key_ids:
        return 0
    params: dict[str, Any] = {}
    ids = in_list(params, "id", key_ids)
    with session.transaction():
        removed = session.execute(f"DELETE FROM api_keys WHERE id IN {ids}", params)
        if removed:
            bump_change_version(session)
    return removed


def record_api_key_use(session: Session, uses: dict[str, tuple[int, float]]) -> None:
    if not uses:
        return
    # One UPDATE for the whole batch: each key picks its own count and time
    # out of CASE lists. Ids in a fixed order keep two batches from locking
    # the same rows in opposite orders.
    params: dict[str, Any] = {}
    counts = []
    times = []
    for number, key_id in enumerate(sorted(uses)):
        count, at = uses[key_id]
        params |= {f"id{number}": key_id, f"n{number}": count, f"at{number}": at}
        counts.append(f"WHEN %(id{number})s THEN %(n{number})s")
        times.append(f"WHEN %(id{number})s THEN %(at{number})s")
    ids = ", ".join(f"%(id{number})s" for number in range(len(uses)))
    at = f"(CASE id {' '.join(times)} END)"
    session.execute(
        f"""
        UPDATE api_keys SET
            use_count = use_count + (CASE id {" ".join(counts)} ELSE 0 END),
            last_used_at =
                CASE WHEN last_used_at >= {at} THEN last_used_at ELSE {at} END
        WHERE id IN ({ids})
        """,
        params,
    )
