"""The admin REST API for the token pool (``/v1/admin/tokens``).

Every route needs the admin key (checked by the app before routing). Listings
never carry secrets; only the explicit export does.
"""

from __future__ import annotations

import json
import time
from typing import Any

from quart import Blueprint, Response, request

from grok2api.api.http import json_response, read_json_body
from grok2api.errors import ApiError
from grok2api.gateway import current_gateway
from grok2api.models import BASIC
from grok2api.pool.importing import parse_token_import, pool_name
from grok2api.pool.refresh import refresh_tokens
from grok2api.pool.view import token_as_dict
from grok2api.storage import TokenChanges, TokenQuery, TokenStatus

__all__ = ["admin_tokens", "token_not_found"]

admin_tokens = Blueprint("admin_tokens", __name__, url_prefix="/v1/admin/tokens")

_MAX_PAGE = 500


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(
            400, f"'{name}' must be an integer from {low} to {high}.", param=name
        )
    return value


def _pool_arg(raw: Any, param: str) -> str:
    try:
        return pool_name(str(raw))
    except ValueError as exc:
        raise ApiError(400, f"{exc}.", param=param) from exc


def _status_arg(raw: Any, param: str) -> TokenStatus:
    try:
        return TokenStatus(raw)
    except ValueError as exc:
        names = ", ".join(s.value for s in TokenStatus)
        raise ApiError(400, f"'{param}' must be one of {names}.", param=param) from exc


def _ids(body: Any) -> list[str]:
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, 'Send {"ids": [token ids]}.', param="ids")
    return ids


@admin_tokens.get("")
async def list_tokens() -> Response:
    gateway = current_gateway()
    query = TokenQuery(
        pool=_pool_arg(request.args["pool"], "pool")
        if "pool" in request.args
        else None,
        status=_status_arg(request.args["status"], "status")
        if "status" in request.args
        else None,
        tag=request.args.get("tag") or None,
        search=request.args.get("search") or None,
        offset=_int_arg("offset", 0, 0, 10**9),
        limit=_int_arg("limit", 50, 1, _MAX_PAGE),
    )
    page = await gateway.storage.list_tokens(query)
    now = time.time()
    return json_response(
        {
            "items": [token_as_dict(t, now) for t in page.items],
            "total": page.total,
            "offset": query.offset,
            "limit": query.limit,
        }
    )


@admin_tokens.post("")
async def add_tokens() -> Response:
    """Add tokens: ``{"tokens": [...], "pool": "basic"}`` as JSON, any JSON
    import format, or plain text with one token per line (``?pool=``)."""
    gateway = current_gateway()
    default_pool = _pool_arg(request.args.get("pool", BASIC), "pool")
    if request.mimetype == "application/json":
        body = await read_json_body()
        if not isinstance(body, list | dict):
            raise ApiError(
                400, "A JSON import must be a list or an object.", param="body"
            )
        text = json.dumps(body)
    else:
        raw = await request.get_data()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(400, "A text import must be UTF-8.", param="body") from exc
    try:
        imported = parse_token_import(text, default_pool)
    except RecursionError as exc:
        # A text import is parsed as JSON when it looks like JSON, with no
        # depth limit of its own.
        raise ApiError(400, "The token import nests too deep.", param="body") from exc
    except ValueError as exc:
        raise ApiError(
            400, f"The token import is invalid: {exc}.", param="body"
        ) from exc
    if not imported:
        raise ApiError(400, "The import holds no tokens.", param="body")
    new = [
        gateway.pool.new_token(t.secret, t.pool, tags=t.tags, note=t.note)
        for t in imported
    ]
    added = await gateway.storage.add_tokens(new, time.time())
    return json_response({"received": len(new), "added": added}, status=201)


@admin_tokens.get("/export")
async def export_tokens() -> Response:
    """The explicit export: every token of the pools with its secret, in the
    format the import reads back."""
    gateway = current_gateway()
    pool = _pool_arg(request.args["pool"], "pool") if "pool" in request.args else None
    exported: dict[str, list[dict[str, Any]]] = {}
    offset = 0
    while True:
        page = await gateway.storage.list_tokens(
            TokenQuery(pool=pool, offset=offset, limit=_MAX_PAGE)
        )
        secrets = await gateway.storage.token_secrets([t.id for t in page.items])
        for token in page.items:
            if token.id in secrets:
                exported.setdefault(token.pool, []).append(
                    {
                        "token": secrets[token.id],
                        "tags": list(token.tags),
                        "note": token.note,
                    }
                )
        offset += len(page.items)
        if not page.items or offset >= page.total:
            break
    return json_response(exported, headers={"Cache-Control": "no-store"})


@admin_tokens.delete("")
async def remove_tokens() -> Response:
    gateway = current_gateway()
    removed = await gateway.storage.remove_tokens(_ids(await read_json_body()))
    return json_response({"removed": removed})


@admin_tokens.patch("/<token_id>")
async def update_token(token_id: str) -> Response:
    body = await read_json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object of changes.", param="body")
    tags = body.get("tags")
    if tags is not None and (
        not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)
    ):
        raise ApiError(400, "'tags' must be a list of strings.", param="tags")
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise ApiError(400, "'note' must be a string.", param="note")
    changes = TokenChanges(
        status=_status_arg(body["status"], "status") if "status" in body else None,
        tags=tuple(tags) if tags is not None else None,
        note=note,
    )
    return await _apply(token_id, changes)


@admin_tokens.post("/<token_id>/reset")
async def reset_token(token_id: str) -> Response:
    return await _apply(token_id, TokenChanges(reset=True))


async def _apply(token_id: str, changes: TokenChanges) -> Response:
    gateway = current_gateway()
    now = time.time()
    record = await gateway.storage.update_token(token_id, changes, now)
    if record is None:
        raise token_not_found(token_id)
    return json_response(token_as_dict(record, now))


@admin_tokens.post("/refresh")
async def refresh() -> Response:
    """Refresh quota from the upstream now: ``{"ids": [...]}``, or every
    token when ``ids`` is empty or absent."""
    gateway = current_gateway()
    body = await read_json_body(optional=True)
    if body is not None and not isinstance(body, dict):
        raise ApiError(400, 'Send {"ids": [token ids]} or no body.', param="body")
    ids = _ids(body) if body and body.get("ids") is not None else []
    ids = ids or await _all_ids()
    settings = gateway.settings
    results = await refresh_tokens(
        gateway.storage,
        gateway.read_quota,
        ids,
        concurrency=settings.performance.usage_max_concurrent,
        fail_threshold=settings.token.fail_threshold,
    )
    return json_response(
        {
            "total": len(results),
            "ok": sum(r.ok for r in results),
            "results": [
                {
                    "id": r.token_id,
                    "ok": r.ok,
                    "remaining": r.remaining,
                    "error": r.error,
                }
                for r in results
            ],
        }
    )


async def _all_ids() -> list[str]:
    gateway = current_gateway()
    ids: list[str] = []
    while True:
        page = await gateway.storage.list_tokens(
            TokenQuery(offset=len(ids), limit=_MAX_PAGE)
        )
        ids.extend(t.id for t in page.items)
        if not page.items or len(ids) >= page.total:
            return ids


def token_not_found(token_id: str) -> ApiError:
    """The 404 every admin route answers for an unknown token id."""
    return ApiError(
        404,
        f"There is no token with id {token_id!r}.",
        code="token_not_found",
        param="token_id",
    )
