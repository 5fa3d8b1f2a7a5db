"""How a token is shown to operators (admin API, CLI): never with its secret."""

from __future__ import annotations

from typing import Any

from grok2api.storage import TokenRecord

__all__ = ["token_as_dict"]


def token_as_dict(token: TokenRecord, now: float) -> dict[str, Any]:
    return {
        "id": token.id,
        "pool": token.pool,
        "status": token.status.value,
        "state": token.state(now),
        "quota": token.quota,
        "quota_total": token.quota_total,
        "reserved": token.reserved,
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
        "stale": token.stale,
        "tags": list(token.tags),
        "note": token.note,
    }
