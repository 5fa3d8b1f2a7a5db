"""The admin REST API for one account's upstream assets
(``/v1/admin/tokens/{token_id}/assets``).

``GET`` one page of the files Grok keeps for the token's account (generated
images and videos, uploads), paged by the upstream itself: ``page_token`` is
the ``next_page_token`` of the previous page. ``DELETE /{asset_id}`` removes
one asset; ``POST /delete`` removes several, in batches of
``performance.assets_delete_batch_size`` with at most
``performance.assets_max_concurrent`` calls in flight, and answers a result
per asset.

These calls spend no quota, so they take no lease. A refusal of the token
itself still counts against it, as it would while serving a request
(:meth:`TokenPool.record_token_fault
<grok2api.pool.pool.TokenPool.record_token_fault>`), once per admin request.
The admin key or session, and a session's CSRF token, are checked by the app.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
from quart import Blueprint, Response, request

from grok2api.api.admin_tokens import token_not_found
from grok2api.api.errors import as_api_error
from grok2api.api.http import json_response, query_int, read_json_body
from grok2api.errors import (
    ApiError,
    FailureKind,
    TokenRejected,
    UpstreamError,
)
from grok2api.gateway import Gateway, current_gateway
from grok2api.upstream.client import UpstreamAsset

__all__ = [
    "ASSET_ID_PATTERN",
    "MAX_DELETE_IDS",
    "MAX_PAGE_SIZE",
    "MAX_PAGE_TOKEN",
    "PAGE_TOKEN_PATTERN",
    "admin_assets",
]

admin_assets = Blueprint("admin_assets", __name__, url_prefix="/v1/admin/tokens")

#: The largest page the upstream's asset list serves.
MAX_PAGE_SIZE = 100
#: The most asset ids one batch delete request may name.
MAX_DELETE_IDS = 1000
# Upstream asset ids are UUIDs; anything that could change the upstream URL
# (a slash, a dot segment, a query) is refused before it is sent.
ASSET_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
#: The longest ``page_token`` passed on; its characters are printable ASCII.
MAX_PAGE_TOKEN = 1024
PAGE_TOKEN_PATTERN = r"[\x21-\x7e]*"
_ASSET_ID = re.compile(ASSET_ID_PATTERN)
_PAGE_TOKEN = re.compile(PAGE_TOKEN_PATTERN)

_T = TypeVar("_T")


@admin_assets.get("/<token_id>/assets")
async def list_assets(token_id: str) -> Response:
    page_size = _page_size()
    page_token = _page_token()
    gateway = current_gateway()
    secret = await _secret(gateway, token_id)
    page = await _on_account(
        gateway,
        token_id,
        lambda: gateway.upstream.list_assets(
            secret, page_token=page_token, page_size=page_size
        ),
    )
    # The upstream ends its listing with an empty token; one that repeats
    # would page forever.
    following = page.next_page_token
    if not following or following == page_token:
        following = None
    return json_response(
        {
            "token_id": token_id,
            "items": [_asset_view(asset) for asset in page.assets],
            "next_page_token": following,
            "page_size": page_size,
        }
    )


@admin_assets.delete("/<token_id>/assets/<asset_id>")
async def delete_asset(token_id: str, asset_id: str) -> Response:
    _check_asset_id(asset_id, "asset_id")
    gateway = current_gateway()
    secret = await _secret(gateway, token_id)
    try:
        await _on_account(
            gateway, token_id, lambda: gateway.upstream.delete_asset(secret, asset_id)
        )
    except UpstreamError as exc:
        if exc.status == 404:
            raise ApiError(
                404,
                f"The account of token {token_id!r} has no asset {asset_id!r}.",
                type="not_found_error",
                code="asset_not_found",
                param="asset_id",
            ) from exc
        raise
    return json_response({"token_id": token_id, "asset_id": asset_id, "deleted": True})


@admin_assets.post("/<token_id>/assets/delete")
async def delete_assets(token_id: str) -> Response:
    """Delete ``{"asset_ids": [...]}``; every id gets its own result."""
    asset_ids = _asset_ids(await read_json_body())
    gateway = current_gateway()
    secret = await _secret(gateway, token_id)
    performance = gateway.settings.performance
    deletion = _BatchDeletion(gateway, secret)
    limiter = trio.CapacityLimiter(performance.assets_max_concurrent)
    size = performance.assets_delete_batch_size
    for start in range(0, len(asset_ids), size):
        if deletion.stopped is not None:
            break
        async with trio.open_nursery() as nursery:
            for asset_id in asset_ids[start : start + size]:
                nursery.start_soon(deletion.delete, asset_id, limiter)
    # Calls in flight beside the first refusal may be refused too; the
    # token's record counts one fault per admin request, not one per asset.
    if isinstance(deletion.stopped, TokenRejected):
        await gateway.pool.record_token_fault(token_id, deletion.stopped)
    results = [deletion.result(asset_id) for asset_id in asset_ids]
    deleted = sum(1 for result in results if result["deleted"])
    return json_response(
        {
            "token_id": token_id,
            "total": len(results),
            "deleted": deleted,
            "failed": len(results) - deleted,
            "results": results,
        }
    )


class _BatchDeletion:
    """The results of one batch delete; it stops starting calls once the
    upstream refuses the token or rate-limits it, since every later call
    would be refused too."""

    def __init__(self, gateway: Gateway, secret: str) -> None:
        self._gateway = gateway
        self._secret = secret
        self._results: dict[str, dict[str, Any]] = {}
        self.stopped: UpstreamError | None = None

    async def delete(self, asset_id: str, limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            if self.stopped is not None:
                return
            try:
                await self._gateway.upstream.delete_asset(self._secret, asset_id)
            except UpstreamError as exc:
                self._results[asset_id] = _failed(asset_id, exc)
                if exc.kind in (FailureKind.TOKEN, FailureKind.RATE_LIMIT):
                    self.stopped = self.stopped or exc
                return
            self._results[asset_id] = {"asset_id": asset_id, "deleted": True}

    def result(self, asset_id: str) -> dict[str, Any]:
        if asset_id in self._results:
            return self._results[asset_id]
        # Only a stopped deletion leaves ids without a result.
        limited = self.stopped is not None and (
            self.stopped.kind is FailureKind.RATE_LIMIT
        )
        reason = "rate-limited the token" if limited else "refused the token"
        return {
            "asset_id": asset_id,
            "deleted": False,
            "error": {
                "code": "not_attempted",
                "message": f"Not tried: Grok {reason} for an earlier asset of "
                "this request.",
                "status": None,
            },
        }


def _failed(asset_id: str, error: UpstreamError) -> dict[str, Any]:
    if error.status == 404:
        code, message = "asset_not_found", "The account has no such asset."
    else:
        api = as_api_error(error)
        code = "token_rejected" if isinstance(error, TokenRejected) else api.code
        message = str(error)
    return {
        "asset_id": asset_id,
        "deleted": False,
        "error": {"code": code, "message": message, "status": error.status},
    }


async def _on_account(
    gateway: Gateway, token_id: str, call: Callable[[], Awaitable[_T]]
) -> _T:
    """Run one upstream call for the token; a refusal of the token counts
    against it and becomes a 502 that names the token."""
    try:
        return await call()
    except TokenRejected as exc:
        await gateway.pool.record_token_fault(token_id, exc)
        raise ApiError(
            502,
            f"Grok refused token {token_id!r}: {exc} The failure counts against "
            "the token (token.fail_threshold).",
            type="server_error",
            code="token_rejected",
        ) from exc


async def _secret(gateway: Gateway, token_id: str) -> str:
    secrets = await gateway.storage.token_secrets([token_id])
    if token_id not in secrets:
        raise token_not_found(token_id)
    return secrets[token_id]


def _asset_view(asset: UpstreamAsset) -> dict[str, Any]:
    details = asset.details
    size = details.get("sizeBytes")
    if isinstance(size, str) and size.isascii() and size.isdigit():
        size = int(size)
    return {
        "asset_id": asset.asset_id,
        "name": _text(details.get("name")),
        "mime_type": _text(details.get("mimeType")),
        "size_bytes": size if isinstance(size, int) and size >= 0 else None,
        "created_at": _text(details.get("createTime")),
        "details": details,
    }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _page_size() -> int:
    return query_int("page_size", 50, 1, MAX_PAGE_SIZE)


def _page_token() -> str | None:
    raw = request.args.get("page_token")
    if not raw:
        return None
    if len(raw) > MAX_PAGE_TOKEN or not _PAGE_TOKEN.fullmatch(raw):
        raise ApiError(
            400,
            "'page_token' must be the next_page_token of the previous page.",
            code="invalid_value",
            param="page_token",
        )
    return raw


def _check_asset_id(value: Any, param: str) -> str:
    if not isinstance(value, str) or not _ASSET_ID.fullmatch(value):
        raise ApiError(
            400,
            f"'{param}' must be an upstream asset id (letters, digits, '-', "
            "'_' and '.', at most 128).",
            code="invalid_value",
            param=param,
        )
    return value


def _asset_ids(body: Any) -> list[str]:
    ids = body.get("asset_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or len(ids) > MAX_DELETE_IDS:
        raise ApiError(
            400,
            f'Send {{"asset_ids": [...]}} with 1 to {MAX_DELETE_IDS} asset ids.',
            code="invalid_value",
            param="asset_ids",
        )
    for index, asset_id in enumerate(ids):
        _check_asset_id(asset_id, f"asset_ids[{index}]")
    return list(dict.fromkeys(ids))
