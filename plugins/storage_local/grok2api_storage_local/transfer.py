"""Moving tokens with their whole ledger state in and out of the SQLite file.

Used by ``grok2api storage migrate`` and ``grok2api import-reference``.
An import compares each token with what is stored inside the write
transaction and writes only what differs, so importing the same tokens twice
changes nothing, the change counter included.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Sequence
from typing import Any

from grok2api import ExportedToken

from .database import immediate
from .tokens import RECORD_COLUMNS, bump_change_version, record_from_row

__all__ = ["export_tokens", "import_tokens"]

#: The columns an import writes; ``reserved`` and ``rand_key`` are the
#: target's own.
_LEDGER_COLUMNS = ExportedToken.ledger_fields()

_INSERT = (
    f"INSERT INTO tokens (id, secret, rand_key, {', '.join(_LEDGER_COLUMNS)}) "
    f"VALUES (:id, :secret, :rand_key, "
    f"{', '.join(':' + column for column in _LEDGER_COLUMNS)})"
)
_UPDATE = (
    "UPDATE tokens SET "
    f"{', '.join(f'{column} = :{column}' for column in _LEDGER_COLUMNS)} "
    "WHERE id = :id"
)


def _exported(row: sqlite3.Row) -> ExportedToken:
    return ExportedToken.from_record(record_from_row(row), row["secret"])


def _values(token: ExportedToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "secret": token.secret,
        "pool": token.pool,
        "status": token.status.value,
        "quota": token.quota,
        "quota_total": token.quota_total,
        "window_seconds": token.window_seconds,
        "window_reset_at": token.window_reset_at,
        "cooldown_until": token.cooldown_until,
        "cooldown_reason": token.cooldown_reason,
        "fail_count": token.fail_count,
        "last_fail_at": token.last_fail_at,
        "last_fail_reason": token.last_fail_reason,
        "last_used_at": token.last_used_at,
        "use_count": token.use_count,
        "created_at": token.created_at,
        "last_sync_at": token.last_sync_at,
        "stale": int(token.stale),
        "tags": json.dumps(list(token.tags)),
        "note": token.note,
    }


def export_tokens(
    conn: sqlite3.Connection, offset: int, limit: int
) -> list[ExportedToken]:
    rows = conn.execute(
        f"SELECT secret, {RECORD_COLUMNS} FROM tokens "
        "ORDER BY pool, created_at, rowid LIMIT ? OFFSET ?",
        (max(0, limit), max(0, offset)),
    ).fetchall()
    return [_exported(row) for row in rows]


def import_tokens(
    conn: sqlite3.Connection, tokens: Sequence[ExportedToken], now: float
) -> int:
    # The last of several imports of one secret wins, as if applied in turn.
    latest = {token.id: token for token in tokens}
    added = written = 0
    with immediate(conn):
        rows = conn.execute(
            f"SELECT secret, {RECORD_COLUMNS} FROM tokens "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(latest)),),
        ).fetchall()
        stored = {row["id"]: _exported(row) for row in rows}
        for token_id, token in latest.items():
            old = stored.get(token_id)
            if old == token:
                continue
            if old is None:
                conn.execute(_INSERT, _values(token) | {"rand_key": random.random()})
                added += 1
            else:
                conn.execute(_UPDATE, _values(token))
            written += 1
        if written:
            bump_change_version(conn)
    return added
