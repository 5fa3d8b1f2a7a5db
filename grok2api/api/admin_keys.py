"""The admin REST API for managed API keys (``/v1/admin/keys``).

A key is returned in full exactly once, in the answer that created it;
listings show its hint. Limits are optional per key: requests per minute,
concurrent requests, a request quota per window, allowed models.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
from quart import Blueprint, Response

from grok2api.api.http import json_response, read_json_body
from grok2api.errors import ApiError
from grok2api.gateway import current_gateway
from grok2api.security.keys import key_digest, key_hint, new_api_key, new_key_id
from grok2api.storage import ApiKeyChanges, ApiKeyLimits, ApiKeyRecord

__all__ = ["admin_keys", "key_as_dict"]

admin_keys = Blueprint("admin_keys", __name__, url_prefix="/v1/admin/keys")

_MAX_KEYS_AT_ONCE = 100
_MAX_NAME = 100
_LIMIT_FIELDS = (
    "requests_per_minute",
    "concurrent_requests",
    "quota",
    "quota_window_seconds",
    "models",
)


def key_as_dict(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "hint": record.hint,
        "enabled": record.enabled,
        "created_at": record.created_at,
        "use_count": record.use_count,
        "last_used_at": record.last_used_at,
        "limits": attrs.asdict(record.limits, recurse=False)
        | {"models": list(record.limits.models)},
    }


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, code="invalid_value", param=param)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad("The body must be a JSON object.", "body")
    return body


def _name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > _MAX_NAME:
        raise _bad(f"'name' must be a non-empty string of at most {_MAX_NAME}.", "name")
    return raw.strip()


def _optional_count(raw: Any, param: str, low: int, high: int) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise _bad(f"'{param}' must be null or an integer from {low} to {high}.", param)
    return raw


def _limits(raw: Any) -> ApiKeyLimits:
    if raw is None:
        return ApiKeyLimits()
    if not isinstance(raw, dict):
        raise _bad("'limits' must be an object.", "limits")
    unknown = sorted(set(raw) - set(_LIMIT_FIELDS))
    if unknown:
        raise _bad(
            f"Unknown limit {unknown[0]!r}; known: {', '.join(_LIMIT_FIELDS)}.",
            f"limits.{unknown[0]}",
        )
    window = _optional_count(
        raw.get("quota_window_seconds"), "limits.quota_window_seconds", 60, 31 * 86_400
    )
    models = raw.get("models")
    if models is None:
        models = []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise _bad("'limits.models' must be a list of model ids.", "limits.models")
    catalog = current_gateway().models
    for model in models:
        if catalog.get(model) is None:
            raise _bad(f"The model {model!r} does not exist.", "limits.models")
    return ApiKeyLimits(
        requests_per_minute=_optional_count(
            raw.get("requests_per_minute"), "limits.requests_per_minute", 1, 1_000_000
        ),
        concurrent_requests=_optional_count(
            raw.get("concurrent_requests"), "limits.concurrent_requests", 1, 100_000
        ),
        quota=_optional_count(raw.get("quota"), "limits.quota", 1, 10**12),
        quota_window_seconds=window or 86_400,
        models=tuple(dict.fromkeys(models)),
    )


def _enabled(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise _bad("'enabled' must be true or false.", "enabled")
    return raw


@admin_keys.get("")
async def list_keys() -> Response:
    keys = await current_gateway().storage.list_api_keys()
    return json_response({"items": [key_as_dict(key) for key in keys]})


@admin_keys.post("")
async def create_keys() -> Response:
    raw = await read_json_body(optional=True)
    body = {} if raw is None else _object(raw)
    name = _name(body.get("name", "key"))
    count = _optional_count(body.get("count", 1), "count", 1, _MAX_KEYS_AT_ONCE) or 1
    limits = _limits(body.get("limits"))
    enabled = _enabled(body.get("enabled", True))
    now = time.time()
    created: list[tuple[ApiKeyRecord, str]] = []
    for n in range(count):
        key = new_api_key()
        record = ApiKeyRecord(
            id=new_key_id(),
            name=name if count == 1 else f"{name}-{n + 1}",
            digest=key_digest(key),
            hint=key_hint(key),
            enabled=enabled,
            created_at=now,
            limits=limits,
        )
        created.append((record, key))
    gateway = current_gateway()
    await gateway.storage.add_api_keys([record for record, _ in created])
    for record, _ in created:
        gateway.auth.keys.remember(record)
    items = [key_as_dict(record) | {"key": key} for record, key in created]
    return json_response({"items": items}, status=201)


@admin_keys.patch("/<key_id>")
async def update_key(key_id: str) -> Response:
    body = _object(await read_json_body())
    unknown = sorted(set(body) - {"name", "enabled", "limits"})
    if unknown:
        raise _bad(f"Unknown field {unknown[0]!r}.", unknown[0])
    changes = ApiKeyChanges(
        name=_name(body["name"]) if "name" in body else None,
        enabled=_enabled(body["enabled"]) if "enabled" in body else None,
        limits=_limits(body["limits"]) if "limits" in body else None,
    )
    gateway = current_gateway()
    record = await gateway.storage.update_api_key(key_id, changes)
    if record is None:
        raise _missing(key_id)
    gateway.auth.keys.remember(record)
    return json_response(key_as_dict(record))


@admin_keys.delete("/<key_id>")
async def delete_key(key_id: str) -> Response:
    gateway = current_gateway()
    if not await gateway.storage.remove_api_keys([key_id]):
        raise _missing(key_id)
    gateway.auth.keys.forget(key_id)
    return json_response({"deleted": 1})


def _missing(key_id: str) -> ApiError:
    return ApiError(
        404,
        f"There is no API key {key_id!r}.",
        type="not_found_error",
        code="key_not_found",
    )
