"""API keys and named values: what operators manage besides tokens.

Both change rarely and are cached by every worker, which reloads them when the
change version moves, so each change is one script or ``MULTI`` block that
bumps the version in the same step. Counting a key's uses is the exception: it
follows every request (batched by the gateway), so it leaves the version alone
rather than make every worker reload.

A key is a hash of :data:`API_KEY_FIELDS` (its limits as JSON) plus an entry in
the ``api-keys`` sorted set, which orders keys by ``created_at``. Named values
share one hash. The scripts here take the key prefix as ``ARGV[1]`` and run
after :data:`~.scripts.PRELUDE`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis

from grok2api import ApiKeyChanges, ApiKeyLimits, ApiKeyRecord

from .keys import Keys

__all__ = [
    "API_KEY_FIELDS",
    "LIST_API_KEYS",
    "PUT_VALUE_IF_ABSENT",
    "RECORD_API_KEY_USE",
    "REMOVE_API_KEYS",
    "UPDATE_API_KEY",
    "add_api_keys",
    "api_key_from_fields",
    "change_args",
    "put_value",
    "use_args",
]

#: The hash fields of a key, in the order scripts return them.
API_KEY_FIELDS = (
    "id",
    "name",
    "digest",
    "hint",
    "enabled",
    "created_at",
    "limits",
    "use_count",
    "last_used_at",
)

_NAMES = f"""
local API_KEYS = P .. 'api-keys'
local VALUES = P .. 'values'
local API_KEY_FIELDS = {{{", ".join(f"'{name}'" for name in API_KEY_FIELDS)}}}
local function api_key(id) return P .. 'api-key:' .. id end
"""

#: ARGV: prefix. Returns every key's fields, oldest key first. Read-only.
LIST_API_KEYS = (
    _NAMES
    + """
local found = {}
for _, id in ipairs(redis.call('ZRANGE', API_KEYS, 0, -1)) do
  local values = redis.call('HMGET', api_key(id), unpack(API_KEY_FIELDS))
  if values[1] then found[#found + 1] = values end
end
return found
"""
)

#: ARGV: prefix, key id, then field, value pairs to set. Returns the key's
#: fields, or nil when the key is gone.
UPDATE_API_KEY = (
    _NAMES
    + """
local key = api_key(ARGV[2])
if redis.call('EXISTS', key) == 0 then return false end
redis.call('HSET', key, unpack(ARGV, 3))
redis.call('INCR', VERSION)
return redis.call('HMGET', key, unpack(API_KEY_FIELDS))
"""
)

#: ARGV: prefix, key ids... Returns how many existed.
REMOVE_API_KEYS = (
    _NAMES
    + """
local removed = 0
for i = 2, #ARGV do
  removed = removed + redis.call('DEL', api_key(ARGV[i]))
  redis.call('ZREM', API_KEYS, ARGV[i])
end
if removed > 0 then redis.call('INCR', VERSION) end
return removed
"""
)

#: ARGV: prefix, then per key: id, count, at. Unknown ids are skipped, so a
#: key removed meanwhile is not brought back as a husk.
RECORD_API_KEY_USE = (
    _NAMES
    + """
for i = 2, #ARGV, 3 do
  local key = api_key(ARGV[i])
  if redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBY', key, 'use_count', ARGV[i + 1])
    local last = tonumber(redis.call('HGET', key, 'last_used_at'))
    if not last or tonumber(ARGV[i + 2]) > last then
      redis.call('HSET', key, 'last_used_at', ARGV[i + 2])
    end
  end
end
return 0
"""
)

#: ARGV: prefix, name, value. Returns the value stored afterwards.
PUT_VALUE_IF_ABSENT = (
    _NAMES
    + """
if redis.call('HSETNX', VALUES, ARGV[2], ARGV[3]) == 1 then
  redis.call('INCR', VERSION)
end
return redis.call('HGET', VALUES, ARGV[2])
"""
)


def _limits_text(limits: ApiKeyLimits) -> str:
    return json.dumps(
        {
            "requests_per_minute": limits.requests_per_minute,
            "concurrent_requests": limits.concurrent_requests,
            "quota": limits.quota,
            "quota_window_seconds": limits.quota_window_seconds,
            "models": list(limits.models),
        }
    )


def _limits_from_text(text: str | None) -> ApiKeyLimits:
    data = json.loads(text or "{}")
    return ApiKeyLimits(
        requests_per_minute=data.get("requests_per_minute"),
        concurrent_requests=data.get("concurrent_requests"),
        quota=data.get("quota"),
        quota_window_seconds=data.get("quota_window_seconds", 86_400),
        models=tuple(data.get("models", ())),
    )


def api_key_from_fields(values: Sequence[str | None]) -> ApiKeyRecord | None:
    """The key from hash values in :data:`API_KEY_FIELDS` order, or None when
    it does not exist."""
    fields = dict(zip(API_KEY_FIELDS, values, strict=True))
    if fields["id"] is None:
        return None
    last_used_at = fields["last_used_at"]
    return ApiKeyRecord(
        id=fields["id"],
        name=fields["name"] or "",
        digest=fields["digest"] or "",
        hint=fields["hint"] or "",
        enabled=fields["enabled"] == "1",
        created_at=float(fields["created_at"] or 0),
        limits=_limits_from_text(fields["limits"]),
        use_count=int(fields["use_count"] or 0),
        last_used_at=None if last_used_at is None else float(last_used_at),
    )


def _fields(key: ApiKeyRecord) -> dict[str, str]:
    fields = {
        "id": key.id,
        "name": key.name,
        "digest": key.digest,
        "hint": key.hint,
        "enabled": "1" if key.enabled else "0",
        "created_at": repr(float(key.created_at)),
        "limits": _limits_text(key.limits),
        "use_count": str(key.use_count),
    }
    if key.last_used_at is not None:
        fields["last_used_at"] = repr(float(key.last_used_at))
    return fields


def add_api_keys(r: redis.Redis, keys: Keys, records: Sequence[ApiKeyRecord]) -> None:
    """Store new keys and bump the change version in one ``MULTI`` block."""
    pipe = r.pipeline(transaction=True)
    for record in records:
        name = keys.api_key(record.id)
        pipe.delete(name)
        pipe.hset(name, mapping=_fields(record))
        pipe.zadd(keys.api_keys, {record.id: record.created_at})
    pipe.incr(keys.change_version)
    pipe.execute()


def change_args(changes: ApiKeyChanges) -> list[str]:
    """The field, value pairs :data:`UPDATE_API_KEY` sets for an edit."""
    args: list[str] = []
    if changes.name is not None:
        args += ["name", changes.name]
    if changes.enabled is not None:
        args += ["enabled", "1" if changes.enabled else "0"]
    if changes.limits is not None:
        args += ["limits", _limits_text(changes.limits)]
    return args


def use_args(uses: dict[str, tuple[int, float]]) -> list[str]:
    """The arguments of :data:`RECORD_API_KEY_USE`, after the prefix."""
    args: list[str] = []
    for key_id, (count, at) in uses.items():
        args += [key_id, str(int(count)), repr(float(at))]
    return args


def put_value(r: redis.Redis, keys: Keys, name: str, value: str) -> None:
    """Store a named value and bump the change version in one ``MULTI`` block."""
    pipe = r.pipeline(transaction=True)
    pipe.hset(keys.values, name, value)
    pipe.incr(keys.change_version)
    pipe.execute()
