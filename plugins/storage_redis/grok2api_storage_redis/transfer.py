"""Moving tokens with their whole ledger state in and out of Redis.

Used by ``grok2api storage migrate`` and ``grok2api import-reference``. An
import is one script call per batch: it compares every token with its hash,
rewrites only those that differ and places them again with the shared
``place`` helper, so the pool indexes stay exactly as the other scripts keep
them. Importing the same tokens twice changes nothing, the change counter
included. An export reads pages the way the admin listing does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import redis

from grok2api import ExportedToken, TokenQuery

from .keys import Keys
from .listing import list_tokens

__all__ = ["IMPORT_FIELDS", "IMPORT_TOKENS", "export_page", "import_args"]

#: The hash fields an import writes, in the order of its arguments; the
#: random key follows them. ``reserved`` and ``rand`` of a known token stay.
IMPORT_FIELDS = (
    "id",
    "secret",
    "pool",
    "status",
    "quota",
    "quota_total",
    "window_seconds",
    "window_reset_at",
    "cooldown_until",
    "cooldown_reason",
    "fail_count",
    "last_fail_at",
    "last_fail_reason",
    "last_used_at",
    "use_count",
    "created_at",
    "last_sync_at",
    "stale",
    "tags",
    "note",
)
# Absent from the hash when None (sent as '').
_NULLABLE = (
    "window_reset_at",
    "cooldown_until",
    "last_fail_at",
    "last_used_at",
    "last_sync_at",
)
# Compared as numbers: Lua writes 5 where Python wrote 5.0.
_NUMERIC = (
    *_NULLABLE,
    "quota",
    "quota_total",
    "window_seconds",
    "fail_count",
    "use_count",
    "created_at",
    "stale",
)


def _lua_list(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _lua_set(names: Sequence[str]) -> str:
    return ", ".join(f"{name} = true" for name in names)


#: ARGV: prefix, now, then per token the :data:`IMPORT_FIELDS` values ('' for
#: None) and a random key. Returns how many tokens were new.
IMPORT_TOKENS = f"""
local NAMES = {{{_lua_list(IMPORT_FIELDS)}}}
local NULLABLE = {{{_lua_set(_NULLABLE)}}}
local NUMERIC = {{{_lua_set(_NUMERIC)}}}
local WIDTH = #NAMES + 1
local POS = {{}}
for k, name in ipairs(NAMES) do POS[name] = k - 1 end

local function same(name, old, new)
  if not old or old == '' then return new == '' end
  if old == new then return true end
  return NUMERIC[name] and tonumber(old) == tonumber(new) or false
end

local now = tonumber(ARGV[2])
local added, written = 0, 0
for i = 3, #ARGV, WIDTH do
  local id, pool = ARGV[i], ARGV[i + POS.pool]
  local key = token_key(id)
  local old = redis.call('HMGET', key, unpack(NAMES))
  local changed = false
  for k, name in ipairs(NAMES) do
    if not same(name, old[k], ARGV[i + k - 1]) then
      changed = true
      break
    end
  end
  if changed then
    local old_pool = old[POS.pool + 1]
    if old_pool and old_pool ~= pool then
      unindex(id, old_pool)
      redis.call('ZREM', pool_key(old_pool, 'tokens'), id)
    end
    local sets, dels = {{}}, {{}}
    for k, name in ipairs(NAMES) do
      local value = ARGV[i + k - 1]
      if NULLABLE[name] and value == '' then
        dels[#dels + 1] = name
      else
        sets[#sets + 1] = name
        sets[#sets + 1] = value
      end
    end
    if not old[POS.status + 1] then
      sets[#sets + 1] = 'reserved'
      sets[#sets + 1] = '0'
      sets[#sets + 1] = 'rand'
      sets[#sets + 1] = ARGV[i + WIDTH - 1]
      added = added + 1
    end
    redis.call('HSET', key, unpack(sets))
    if #dels > 0 then redis.call('HDEL', key, unpack(dels)) end
    redis.call('ZADD', pool_key(pool, 'tokens'), ARGV[i + POS.created_at], id)
    redis.call('SADD', POOLS, pool)
    place(id, now)
    written = written + 1
  end
end
if written > 0 then redis.call('INCR', VERSION) end
return added
"""


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)


def import_args(tokens: Sequence[ExportedToken]) -> list[str]:
    """The script arguments for some tokens, after the prefix and ``now``."""
    args: list[str] = []
    for token in tokens:
        args += [
            token.id,
            token.secret,
            token.pool,
            token.status.value,
            str(token.quota),
            str(token.quota_total),
            str(token.window_seconds),
            _number(token.window_reset_at),
            _number(token.cooldown_until),
            token.cooldown_reason,
            str(token.fail_count),
            _number(token.last_fail_at),
            token.last_fail_reason,
            _number(token.last_used_at),
            str(token.use_count),
            repr(float(token.created_at)),
            _number(token.last_sync_at),
            "1" if token.stale else "0",
            json.dumps(list(token.tags)),
            token.note,
            repr(random.random()),
        ]
    return args


def export_page(
    r: redis.Redis, keys: Keys, offset: int, limit: int
) -> list[ExportedToken]:
    """A page of tokens with their secrets, in listing order."""
    page = list_tokens(r, keys, TokenQuery(offset=offset, limit=limit))
    pipe = r.pipeline(transaction=False)
    for record in page.items:
        pipe.hget(keys.token(record.id), "secret")
    secrets: list[str | None] = pipe.execute()
    return [
        ExportedToken.from_record(record, secret)
        for record, secret in zip(page.items, secrets, strict=True)
        if secret is not None
    ]
