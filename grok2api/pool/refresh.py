"""Quota refresh from the upstream's rate-limits endpoint.

Never on the request path: a background service refreshes tokens whose last
sync is older than their pool's interval, and operators can refresh on demand
(CLI, admin API). Calls run with bounded concurrency; a token whose refresh
fails is marked stale and keeps its ledger, it is not reported as synced.

Several workers run this service; they do not coordinate through a lock.
Each picks only tokens whose ``last_sync_at`` is old, and a worker's sync
moves it, so a token is refreshed again by another worker only when two
workers look at the same moment. TODO: a storage lock (issue 3) would make
that impossible rather than unlikely.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from grok2api.config import Settings
from grok2api.errors import (
    Grok2APIError,
    StorageError,
    StorageUnavailable,
    TokenRejected,
)
from grok2api.models import SUPER
from grok2api.storage import Storage, TokenQuery, TokenRecord, TokenStatus

__all__ = ["QuotaReading", "RefreshResult", "refresh_tokens", "serve_refresher"]

log = logging.getLogger(__name__)

#: Reads one token's quota from the upstream: (remaining, total, window seconds).
QuotaReading = Callable[[str], Awaitable["tuple[int, int | None, int | None]"]]

_PAGE = 500


@attrs.frozen
class RefreshResult:
    token_id: str
    ok: bool
    remaining: int | None = None
    error: str = ""


async def refresh_tokens(
    storage: Storage,
    read_quota: QuotaReading,
    token_ids: Sequence[str],
    *,
    concurrency: int,
    fail_threshold: int,
    clock: Callable[[], float] = time.time,
) -> list[RefreshResult]:
    """Refresh some tokens now, at most ``concurrency`` at a time."""
    secrets = await storage.token_secrets(token_ids)
    limiter = trio.CapacityLimiter(max(1, concurrency))
    results: list[RefreshResult] = []

    async def refresh_one(token_id: str, secret: str) -> None:
        async with limiter:
            results.append(
                await _refresh_one(
                    storage, read_quota, token_id, secret, fail_threshold, clock
                )
            )

    async with trio.open_nursery() as nursery:
        for token_id in token_ids:
            if token_id in secrets:
                nursery.start_soon(refresh_one, token_id, secrets[token_id])
            else:
                results.append(RefreshResult(token_id, False, error="no such token"))
    return results


async def _refresh_one(
    storage: Storage,
    read_quota: QuotaReading,
    token_id: str,
    secret: str,
    fail_threshold: int,
    clock: Callable[[], float],
) -> RefreshResult:
    try:
        remaining, total, window = await read_quota(secret)
    except TokenRejected as exc:
        threshold = 1 if exc.blocked else fail_threshold
        await storage.record_failure(
            token_id, clock(), reason="token refresh", invalidate_after=threshold
        )
        await storage.record_sync(
            token_id, clock(), remaining=None, total=None, window_seconds=None
        )
        return RefreshResult(token_id, False, error=str(exc))
    except Grok2APIError as exc:
        await storage.record_sync(
            token_id, clock(), remaining=None, total=None, window_seconds=None
        )
        return RefreshResult(token_id, False, error=str(exc))
    await storage.record_sync(
        token_id, clock(), remaining=remaining, total=total, window_seconds=window
    )
    return RefreshResult(token_id, True, remaining=remaining)


async def due_tokens(
    storage: Storage, now: float, basic_hours: float, super_hours: float
) -> list[str]:
    """Tokens whose last sync is older than their pool's refresh interval."""
    due: list[str] = []
    offset = 0
    while True:
        page = await storage.list_tokens(TokenQuery(offset=offset, limit=_PAGE))
        due.extend(
            t.id for t in page.items if _is_due(t, now, basic_hours, super_hours)
        )
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return due


def _is_due(
    token: TokenRecord, now: float, basic_hours: float, super_hours: float
) -> bool:
    if token.status in (TokenStatus.DISABLED, TokenStatus.INVALID):
        return False
    hours = super_hours if token.pool == SUPER else basic_hours
    return token.last_sync_at is None or now - token.last_sync_at >= hours * 3600


def _check_period(settings: Settings) -> float:
    """How often to look for due tokens: a quarter of the shorter refresh
    interval, so a token is refreshed at most a quarter-interval late, but
    never more often than every second nor less often than every 5 minutes."""
    hours = min(
        settings.token.refresh_interval_hours,
        settings.token.super_refresh_interval_hours,
    )
    return min(max(hours * 3600 / 4, 1.0), 300.0)


async def serve_refresher(
    storage: Storage,
    read_quota: QuotaReading,
    settings: Callable[[], Settings],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Refresh due tokens forever; a round that meets a storage outage backs
    off (doubling, up to an hour) and tries again."""
    task_status.started()
    # Workers start together; spreading their first look avoids a burst of
    # identical refreshes against the upstream.
    await trio.sleep(random.uniform(0.0, min(10.0, _check_period(settings()))))
    backoff = 0.0
    while True:
        current = settings()
        token_settings = current.token
        period = _check_period(current)
        if token_settings.auto_refresh:
            try:
                due = await due_tokens(
                    storage,
                    time.time(),
                    token_settings.refresh_interval_hours,
                    token_settings.super_refresh_interval_hours,
                )
                if due:
                    results = await refresh_tokens(
                        storage,
                        read_quota,
                        due,
                        concurrency=current.performance.usage_max_concurrent,
                        fail_threshold=token_settings.fail_threshold,
                    )
                    ok = sum(r.ok for r in results)
                    log.info(
                        "quota refresh done tokens=%d ok=%d failed=%d",
                        len(results),
                        ok,
                        len(results) - ok,
                    )
                backoff = 0.0
            except StorageUnavailable:
                backoff = min(max(backoff * 2, period), 3600.0)
                log.warning(
                    "quota refresh skipped: storage unavailable; next try in %.0fs",
                    backoff,
                )
            except StorageError as exc:
                # Bad stored data (a token sealed with another key): a
                # background task must not take the worker down with it.
                backoff = min(max(backoff * 2, period), 3600.0)
                log.error("quota refresh skipped: %s; next try in %.0fs", exc, backoff)
        await trio.sleep(backoff or period)
