"""What each kind of job does with one token.

Every operation takes the worker's gateway, a token id and its secret, and
returns a :class:`~grok2api.jobs.store.TokenResult`; an upstream failure
becomes a failed result, and a token fault (the upstream refused the token)
counts against the token exactly as a failed quota refresh does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import trio

from grok2api.errors import (
    EgressBlocked,
    Grok2APIError,
    StorageUnavailable,
    TokenRejected,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from grok2api.gateway import Gateway
from grok2api.jobs.birth_dates import BirthDates
from grok2api.jobs.store import TokenResult
from grok2api.pool.refresh import refresh_tokens
from grok2api.storage import TokenChanges
from grok2api.upstream.account import (
    accept_terms,
    enable_nsfw_content,
    set_birth_date,
)
from grok2api.upstream.client import UpstreamAsset

__all__ = [
    "NSFW_TAG",
    "Operation",
    "clear_assets",
    "enable_nsfw",
    "failed_result",
    "refresh_quota",
]

log = logging.getLogger(__name__)

NSFW_TAG = "nsfw"

#: One token's work in a job: (gateway, token id, secret) -> its result.
Operation = Callable[[Gateway, str, str], Awaitable[TokenResult]]

_STATUS_OF = (
    (TokenRejected, "token_rejected"),
    (EgressBlocked, "egress_blocked"),
    (UpstreamRateLimited, "rate_limited"),
    (UpstreamTimeout, "timeout"),
    (UpstreamError, "upstream_error"),
    (StorageUnavailable, "storage_unavailable"),
)


async def failed_result(
    gateway: Gateway, token_id: str, error: Grok2APIError, step: str = ""
) -> TokenResult:
    """The result for ``error``; a token fault is recorded on the token."""
    status = next((s for cls, s in _STATUS_OF if isinstance(error, cls)), "failed")
    http_status = error.status if isinstance(error, UpstreamError) else None
    if isinstance(error, TokenRejected):
        threshold = 1 if error.blocked else gateway.settings.token.fail_threshold
        reason = f"{error.kind.value} {error.status or ''}".strip()
        await gateway.storage.record_failure(
            token_id, time.time(), reason=reason, invalidate_after=threshold
        )
    detail = {"step": step} if step else {}
    return TokenResult(token_id, False, status, str(error), http_status, detail)


async def enable_nsfw(gateway: Gateway, token_id: str, secret: str) -> TokenResult:
    """Terms, then the recorded birth date, then the NSFW flag; on success
    the token gains the ``nsfw`` tag. Nothing is sent for a token whose birth
    date is not recorded."""
    born = await BirthDates(gateway.storage).get(token_id)
    if born is None:
        return TokenResult(
            token_id,
            False,
            "needs_birth_date",
            "No birth date is recorded for this token; record the account "
            f"holder's own with PUT /v1/admin/tokens/{token_id}/birth-date.",
        )
    client = gateway.upstream
    step = "terms"
    try:
        await accept_terms(client, secret, gateway.settings.network.accounts_url)
        step = "birth_date"
        newly_set = await set_birth_date(client, secret, born)
        step = "nsfw"
        await enable_nsfw_content(client, secret)
    except UpstreamError as exc:
        return await failed_result(gateway, token_id, exc, step)
    await add_tag(gateway, token_id, NSFW_TAG)
    return TokenResult(token_id, True, "enabled", detail={"birth_date_set": newly_set})


async def add_tag(gateway: Gateway, token_id: str, tag: str) -> None:
    # TODO: read then write; an operator editing the tags at the same moment
    # may lose this tag or the edit. Storage has no "add a tag" step.
    record = await gateway.storage.get_token(token_id)
    if record is None or tag in record.tags:
        return
    await gateway.storage.update_token(
        token_id, TokenChanges(tags=(*record.tags, tag)), time.time()
    )


async def refresh_quota(gateway: Gateway, token_id: str, secret: str) -> TokenResult:
    """Read the token's quota upstream (as the background refresher does)."""
    del secret  # refresh_tokens looks the secret up itself
    [result] = await refresh_tokens(
        gateway.storage,
        gateway.read_quota,
        [token_id],
        concurrency=1,
        fail_threshold=gateway.settings.token.fail_threshold,
    )
    return TokenResult(
        token_id,
        result.ok,
        "refreshed" if result.ok else "failed",
        result.error,
        detail={"remaining": result.remaining},
    )


def clear_assets(limiter: trio.CapacityLimiter) -> Operation:
    """Delete every upstream asset of a token, ``limiter`` bounding the
    upstream calls of the whole job."""

    async def clear(gateway: Gateway, token_id: str, secret: str) -> TokenResult:
        try:
            deleted, failed = await _clear_assets(gateway, secret, limiter)
        except UpstreamError as exc:
            return await failed_result(gateway, token_id, exc, "assets")
        detail = {"deleted": deleted, "failed_deletes": failed}
        if failed:
            return TokenResult(
                token_id,
                False,
                "partly_cleared",
                f"{failed} asset(s) could not be deleted; run the job again.",
                detail=detail,
            )
        return TokenResult(token_id, True, "cleared", detail=detail)

    return clear


async def _clear_assets(
    gateway: Gateway, secret: str, limiter: trio.CapacityLimiter
) -> tuple[int, int]:
    """List a page, delete it, list again, until the list is empty.

    Always the first page: deleting shifts the pages, so a page token would
    skip assets. An asset that could not be deleted is seen again on the next
    listing; once a page holds nothing new the loop stops.
    """
    client = gateway.upstream
    page_size = gateway.settings.performance.assets_delete_batch_size
    deleted = 0
    failed: set[str] = set()
    fatal: list[UpstreamError] = []
    while True:
        async with limiter:
            page = await client.list_assets(secret, page_size=page_size)
        fresh = [a for a in page.assets if a.asset_id not in failed]
        if not fresh:
            return deleted, len(failed)

        async def delete(asset: UpstreamAsset, nursery: trio.Nursery) -> None:
            nonlocal deleted
            try:
                async with limiter:
                    await client.delete_asset(secret, asset.asset_id)
            except (TokenRejected, EgressBlocked) as exc:
                # Every further call with this token or egress fails alike.
                fatal.append(exc)
                nursery.cancel_scope.cancel()
            except UpstreamError as exc:
                if exc.status == 404:
                    deleted += 1  # gone already, which is what we want
                else:
                    log.info("asset delete failed: %s", exc)
                    failed.add(asset.asset_id)
            else:
                deleted += 1

        async with trio.open_nursery() as nursery:
            for asset in fresh:
                nursery.start_soon(delete, asset, nursery)
        if fatal:
            raise fatal[0]
