"""The admin REST API for the media cache (``/v1/admin/cache``).

``GET`` the summary (files, bytes and limits per kind), ``GET /{kind}`` a page
of that kind's files, newest first, ``DELETE /{kind}/{name}`` one file and
``DELETE /{kind}`` every file of a kind. Files still being written are never
listed or deleted here. The admin key or session is checked by the app.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from grok2api.api.http import json_response, query_int
from grok2api.errors import ApiError
from grok2api.gateway import current_gateway
from grok2api.media import MediaKind, file_path, is_cached_name

__all__ = ["admin_cache"]

admin_cache = Blueprint("admin_cache", __name__, url_prefix="/v1/admin/cache")

_MAX_PAGE = 500
_KINDS = ", ".join(kind.value for kind in MediaKind)


def _kind(raw: str) -> MediaKind:
    try:
        return MediaKind(raw)
    except ValueError:
        raise ApiError(
            400, f"'kind' must be one of {_KINDS}.", code="invalid_value", param="kind"
        ) from None


@admin_cache.get("")
async def cache_summary() -> Response:
    gateway = current_gateway()
    cache = gateway.settings.cache
    body: dict[str, Any] = {
        "auto_clean": cache.enable_auto_clean,
        "cleanup_interval_sec": cache.cleanup_interval_sec,
        "grace_seconds": gateway.media.grace_seconds,
    }
    for kind, summary in (await gateway.media.summary()).items():
        body[kind.value] = {
            "count": summary.count,
            "bytes": summary.cached_bytes,
            "partial_bytes": summary.partial_bytes,
            "limit_bytes": summary.limit_bytes,
            "target_bytes": summary.target_bytes,
        }
    return json_response(body)


@admin_cache.get("/<kind>")
async def list_files(kind: str) -> Response:
    media_kind = _kind(kind)
    offset = query_int("offset", 0, 0, 10**9)
    limit = query_int("limit", 50, 1, _MAX_PAGE)
    media = current_gateway().media
    files = await media.files(media_kind)
    page = files[offset : offset + limit]
    base = media.base_url() if page else ""
    items = [
        {
            "name": cached.name,
            "size": cached.size,
            "mtime": cached.mtime,
            "url": base + file_path(media_kind, cached.name),
        }
        for cached in page
    ]
    return json_response(
        {"items": items, "total": len(files), "offset": offset, "limit": limit}
    )


@admin_cache.delete("/<kind>")
async def clear_files(kind: str) -> Response:
    media_kind = _kind(kind)
    count, size = await current_gateway().media.clear(media_kind)
    return json_response({"deleted": count, "bytes": size})


@admin_cache.delete("/<kind>/<path:name>")
async def delete_file(kind: str, name: str) -> Response:
    media_kind = _kind(kind)
    if not is_cached_name(media_kind, name):
        raise ApiError(
            400,
            f"'name' is not the name of a cached {media_kind.value} file.",
            code="invalid_value",
            param="name",
        )
    size = await current_gateway().media.delete(media_kind, name)
    if size is None:
        raise ApiError(
            404,
            f"There is no cached {media_kind.value} file {name!r}.",
            type="not_found_error",
            code="file_not_found",
        )
    return json_response({"deleted": 1, "bytes": size})
