"""Moving tokens with their whole ledger state in and out of the database.

Used by ``grok2api storage migrate`` and ``grok2api import-reference``. An
import locks the rows it is about to overwrite (``SELECT ... FOR UPDATE``),
compares them with the import in Python and writes only what differs, so
importing the same tokens twice changes nothing, the change counter included.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from grok2api import ExportedToken

from .database import Driver, Row, Session
from .tokens import RECORD_COLUMNS, bump_change_version, in_list, record_from_row

__all__ = ["export_tokens", "import_tokens"]

#: The columns an import writes; ``reserved``, ``rand_key`` and ``seq`` are
#: the target's own.
_LEDGER_COLUMNS = ExportedToken.ledger_fields()

_INSERT = (
    f"INSERT INTO tokens (id, secret, rand_key, {', '.join(_LEDGER_COLUMNS)}) "
    "VALUES (%(id)s, %(secret)s, %(rand_key)s, "
    f"{', '.join(f'%({column})s' for column in _LEDGER_COLUMNS)})"
)
_UPDATE = (
    "UPDATE tokens SET "
    f"{', '.join(f'{column} = %({column})s' for column in _LEDGER_COLUMNS)} "
    "WHERE id = %(id)s"
)


def _exported(row: Row) -> ExportedToken:
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


def export_tokens(session: Session, offset: int, limit: int) -> list[ExportedToken]:
    rows = session.all(
        f"SELECT secret, {RECORD_COLUMNS} FROM tokens "
        "ORDER BY pool, created_at, seq LIMIT %(limit)s OFFSET %(offset)s",
        {"limit": max(0, limit), "offset": max(0, offset)},
    )
    return [_exported(row) for row in rows]


def import_tokens(
    session: Session, driver: Driver, tokens: Sequence[ExportedToken], now: float
) -> int:
    # The last of several imports of one secret wins, as if applied in turn.
    latest = {token.id: token for token in tokens}
    if not latest:
        return 0
    params: dict[str, Any] = {}
    ids = in_list(params, "id", latest)
    added = written = 0
    with session.transaction():
        rows = session.all(
            f"SELECT secret, {RECORD_COLUMNS} FROM tokens WHERE id IN {ids} "
            "ORDER BY id FOR UPDATE",
            params,
        )
        stored = {row["id"]: _exported(row) for row in rows}
        for token_id, token in latest.items():
            old = stored.get(token_id)
            if old == token:
                continue
            values = _values(token)
            written += 1
            if old is None:
                # Another process may add the same secret meanwhile (a missing
                # row cannot be locked); then the import overwrites it.
                insert = driver.ignore_duplicates(_INSERT)
                if session.execute(insert, values | {"rand_key": random.random()}):
                    added += 1
                    continue
            session.execute(_UPDATE, values)
        if written:
            bump_change_version(session)
    return added
