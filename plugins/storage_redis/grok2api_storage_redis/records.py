"""Turning the hash fields of a token into a :class:`TokenRecord`."""

from __future__ import annotations

import json
from collections.abc import Sequence

from grok2api import TokenRecord, TokenStatus

from .scripts import RECORD_FIELDS

__all__ = ["record_from_fields"]


def _float(value: str | None) -> float | None:
    return None if value is None or value == "" else float(value)


def record_from_fields(values: Sequence[str | None]) -> TokenRecord | None:
    """The record from hash values in :data:`RECORD_FIELDS` order, or None
    when the token does not exist."""
    fields = dict(zip(RECORD_FIELDS, values, strict=True))
    if fields["status"] is None:
        return None

    def text(name: str) -> str:
        return fields[name] or ""

    def integer(name: str) -> int:
        return int(float(fields[name] or 0))

    return TokenRecord(
        id=text("id"),
        pool=text("pool"),
        status=TokenStatus(fields["status"]),
        quota=integer("quota"),
        quota_total=integer("quota_total"),
        window_seconds=integer("window_seconds"),
        reserved=integer("reserved"),
        window_reset_at=_float(fields["window_reset_at"]),
        cooldown_until=_float(fields["cooldown_until"]),
        cooldown_reason=text("cooldown_reason"),
        fail_count=integer("fail_count"),
        last_fail_at=_float(fields["last_fail_at"]),
        last_fail_reason=text("last_fail_reason"),
        last_used_at=_float(fields["last_used_at"]),
        use_count=integer("use_count"),
        created_at=_float(fields["created_at"]) or 0.0,
        last_sync_at=_float(fields["last_sync_at"]),
        stale=text("stale") == "1",
        tags=tuple(json.loads(fields["tags"] or "[]")),
        note=text("note"),
    )
