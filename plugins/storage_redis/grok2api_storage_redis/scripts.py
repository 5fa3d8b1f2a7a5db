"""The Lua scripts that make every ledger change one atomic round trip.

Redis runs a script to completion before it serves another command, so a
script's reads and writes can never interleave with another worker's: the
check "is there quota left" and the write "reserve it" are one step, which is
what :class:`~grok2api.storage.Storage` demands. Every script starts with the
shared :data:`PRELUDE` (key names, number formatting, the placement rule) and
takes the key prefix as ``ARGV[1]``.

**Indexes and placement.** A pool's leasable tokens (status ``active`` or
``cooling``) are either *ready*, in the ``quota``, ``lru`` and ``random``
sorted sets (and ``window`` when a quota window is running), or *parked* in
``parked`` under the time they may become usable again. :func:`place` decides
from the token's hash as seen at some ``now``; every script that changes a
token places it again. Because callers pass ``now`` in, the indexes are only
a hint: every walk re-checks each token against its hash at the caller's
``now`` (so tokens a walk meets are never wrongly offered), and additionally
looks at the parked tokens that are due at ``now`` and, for ``MOST_QUOTA``,
the ready tokens whose window ended since they were placed (their stored
quota understates them). Those due lists are bounded by :data:`DUE_SCAN`; the
lease script and the reservation sweeper re-place what they find there, which
keeps them short.

Numbers computed in Lua are written with ``%.17g`` so that a float survives
the trip to Python exactly; numbers that arrive from Python are stored as the
strings Python wrote.
"""

from __future__ import annotations

__all__ = [
    "ADD_TOKENS",
    "CANDIDATES",
    "COMMIT",
    "DUE_SCAN",
    "EXPIRE",
    "LEASE",
    "POOL_COUNTS",
    "RECORD_FAILURE",
    "RECORD_FIELDS",
    "RECORD_SYNC",
    "RELEASE",
    "REMOVE_TOKENS",
    "RESERVE",
    "SCAN_LIMIT",
    "UPDATE_TOKEN",
]

#: The hash fields a :class:`~grok2api.storage.TokenRecord` is built from, in
#: the order scripts return them. The secret is deliberately absent.
RECORD_FIELDS = (
    "id",
    "pool",
    "status",
    "quota",
    "quota_total",
    "window_seconds",
    "reserved",
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

#: How many due entries of ``parked`` / ``window`` one walk looks at.
DUE_SCAN = 128
#: How many index entries one walk may pass over looking for eligible tokens.
SCAN_LIMIT = 2048

_FIELDS_LUA = ", ".join(f"'{name}'" for name in RECORD_FIELDS)

PRELUDE = f"""
local P = ARGV[1]
local INF = math.huge
local DUE_SCAN = {DUE_SCAN}
local SCAN_LIMIT = {SCAN_LIMIT}
local BATCH = 64
local READY = {{'quota', 'lru', 'random', 'window'}}
local RECORD_FIELDS = {{{_FIELDS_LUA}}}
local LEASES = P .. 'leases'
local POOLS = P .. 'pools'
local VERSION = P .. 'change_version'

local function token_key(id) return P .. 'token:' .. id end
local function pool_key(pool, index) return P .. 'pool:' .. pool .. ':' .. index end
local function lease_key(lease_id) return P .. 'lease:' .. lease_id end
local function token_leases_key(id) return P .. 'token-leases:' .. id end

local function num(x)
  if x == INF then return '+inf' end
  if x == -INF then return '-inf' end
  if x == math.floor(x) and math.abs(x) < 1e15 then
    return string.format('%d', x)
  end
  return string.format('%.17g', x)
end

local function load(id)
  local v = redis.call('HMGET', token_key(id), 'status', 'pool', 'quota',
    'quota_total', 'reserved', 'window_reset_at', 'cooldown_until',
    'last_used_at', 'rand', 'window_seconds', 'placed_at')
  if not v[1] then return nil end
  return {{
    id = id, status = v[1], pool = v[2], quota = tonumber(v[3]),
    quota_total = tonumber(v[4]), reserved = tonumber(v[5]),
    window_reset_at = tonumber(v[6]), cooldown_until = tonumber(v[7]),
    last_used_at = tonumber(v[8]), rand = tonumber(v[9]) or 0,
    window_seconds = tonumber(v[10]), placed_at = tonumber(v[11]),
  }}
end

local function record(id)
  return redis.call('HMGET', token_key(id), unpack(RECORD_FIELDS))
end

local function leasable(t)
  return t.status == 'active' or t.status == 'cooling'
end

-- The quota at now: a window that has run out counts as refilled.
local function quota_at(t, now)
  if t.window_reset_at and t.window_reset_at <= now then return t.quota_total end
  return t.quota
end

-- What the token has available for a lease of cost at now, or nil.
local function available(t, now, cost)
  if not leasable(t) then return nil end
  if t.cooldown_until and t.cooldown_until > now then return nil end
  local left = quota_at(t, now) - t.reserved
  if left < cost then return nil end
  return left
end

local function unindex(id, pool)
  for _, index in ipairs(READY) do redis.call('ZREM', pool_key(pool, index), id) end
  redis.call('ZREM', pool_key(pool, 'parked'), id)
end

-- Put a token where the walks look for it, as seen at now (-INF when unknown).
local function place(id, now)
  local t = load(id)
  if not t then return end
  if not leasable(t) then
    unindex(id, t.pool)
    return
  end
  local key = token_key(id)
  if now == -INF then
    redis.call('HDEL', key, 'placed_at')
  else
    redis.call('HSET', key, 'placed_at', num(now))
  end
  local blocked = nil
  if t.cooldown_until and t.cooldown_until > now then blocked = t.cooldown_until end
  local left = quota_at(t, now) - t.reserved
  if left < 1 then
    local ready_at = nil
    if t.window_reset_at and t.window_reset_at > now
        and t.quota_total - t.reserved >= 1 then
      ready_at = t.window_reset_at
    end
    if t.reserved > 0 then
      local first = redis.call('ZRANGE', token_leases_key(id), 0, 0, 'WITHSCORES')
      local expiry = tonumber(first[2])
      if expiry and (not ready_at or expiry < ready_at) then ready_at = expiry end
    end
    ready_at = ready_at or INF
    if not blocked or ready_at > blocked then blocked = ready_at end
  end
  if blocked then
    for _, index in ipairs(READY) do redis.call('ZREM', pool_key(t.pool, index), id) end
    redis.call('ZADD', pool_key(t.pool, 'parked'), num(blocked), id)
    return
  end
  redis.call('ZREM', pool_key(t.pool, 'parked'), id)
  redis.call('ZADD', pool_key(t.pool, 'quota'), num(left), id)
  redis.call('ZADD', pool_key(t.pool, 'lru'), num(t.last_used_at or 0), id)
  redis.call('ZADD', pool_key(t.pool, 'random'), num(t.rand), id)
  if t.window_reset_at and t.window_reset_at > now then
    redis.call('ZADD', pool_key(t.pool, 'window'), num(t.window_reset_at), id)
  else
    redis.call('ZREM', pool_key(t.pool, 'window'), id)
  end
end

-- Remove an open reservation; returns its token id and cost.
local function take_lease(lease_id)
  local held = redis.call('HMGET', lease_key(lease_id), 'token_id', 'cost')
  if not held[1] then return nil, 0 end
  redis.call('DEL', lease_key(lease_id))
  redis.call('ZREM', LEASES, lease_id)
  redis.call('ZREM', token_leases_key(held[1]), lease_id)
  return held[1], tonumber(held[2])
end

-- Give an open reservation back unspent; returns 1 if there was one.
local function give_back(lease_id)
  local id, cost = take_lease(lease_id)
  if not id then return 0 end
  local t = load(id)
  if t then
    redis.call('HSET', token_key(id), 'reserved', num(math.max(0, t.reserved - cost)))
    place(id, t.placed_at or -INF)
  end
  return 1
end

-- Give back one token's expired reservations; returns how many.
local function expire_token_leases(id, now)
  local expired = redis.call('ZRANGEBYSCORE', token_leases_key(id), '-inf', num(now))
  for _, lease_id in ipairs(expired) do give_back(lease_id) end
  return #expired
end

-- Re-place the due tokens of a pool at now, so later walks find them ready.
local function refresh(pool, now)
  local released = 0
  local due = redis.call('ZRANGEBYSCORE', pool_key(pool, 'parked'), '-inf', num(now),
    'LIMIT', 0, DUE_SCAN)
  for _, id in ipairs(due) do
    released = released + expire_token_leases(id, now)
    place(id, now)
  end
  due = redis.call('ZRANGEBYSCORE', pool_key(pool, 'window'), '-inf', num(now),
    'LIMIT', 0, DUE_SCAN)
  for _, id in ipairs(due) do place(id, now) end
  return released
end

-- Up to limit ids of pool's eligible tokens in order at now. Read-only.
local function walk(pool, order, limit, cost, now, excluded, start)
  local found, seen, scanned = {{}}, {{}}, 0
  if limit <= 0 then return found end
  local function consider(id)
    if seen[id] or excluded[id] then return end
    seen[id] = true
    local t = load(id)
    if not t or t.pool ~= pool then return end
    local left = available(t, now, cost)
    if not left then return end
    local key
    if order == 'most_quota' then
      key = -left
    elseif order == 'least_recently_used' then
      key = t.last_used_at or 0
    else
      key = t.rand - start
      if key < 0 then key = key + 1 end
    end
    found[#found + 1] = {{id = id, key = key, seq = #found}}
  end
  local function scan(fetch)
    local offset = 0
    while #found < limit and scanned < SCAN_LIMIT do
      local ids = fetch(offset)
      for _, id in ipairs(ids) do
        scanned = scanned + 1
        consider(id)
        if #found >= limit then return end
      end
      if #ids < BATCH then return end
      offset = offset + BATCH
    end
  end
  if order == 'most_quota' then
    scan(function(offset)
      return redis.call('ZREVRANGEBYSCORE', pool_key(pool, 'quota'), '+inf', num(cost),
        'LIMIT', offset, BATCH)
    end)
  elseif order == 'least_recently_used' then
    scan(function(offset)
      return redis.call('ZRANGE', pool_key(pool, 'lru'), offset, offset + BATCH - 1)
    end)
  else
    scan(function(offset)
      return redis.call('ZRANGEBYSCORE', pool_key(pool, 'random'), num(start), '+inf',
        'LIMIT', offset, BATCH)
    end)
    scan(function(offset)
      return redis.call('ZRANGEBYSCORE', pool_key(pool, 'random'), '-inf',
        '(' .. num(start), 'LIMIT', offset, BATCH)
    end)
  end
  local main = #found
  local due = redis.call('ZRANGEBYSCORE', pool_key(pool, 'parked'), '-inf', num(now),
    'LIMIT', 0, DUE_SCAN)
  for _, id in ipairs(due) do consider(id) end
  if order == 'most_quota' then
    due = redis.call('ZRANGEBYSCORE', pool_key(pool, 'window'), '-inf', num(now),
      'LIMIT', 0, DUE_SCAN)
    for _, id in ipairs(due) do consider(id) end
  end
  if #found > main then
    table.sort(found, function(a, b)
      if a.key ~= b.key then return a.key < b.key end
      return a.seq < b.seq
    end)
  end
  local ids = {{}}
  for i = 1, math.min(limit, #found) do ids[i] = found[i].id end
  return ids
end

-- Reserve cost on a token if it is leasable at now; returns {{secret, pool}}.
local function reserve(id, lease_id, cost, now, expires_at, rand)
  local t = load(id)
  if not t or not available(t, now, cost) then return nil end
  if redis.call('EXISTS', lease_key(lease_id)) == 1 then
    error('lease id ' .. lease_id .. ' is already in use')
  end
  local key = token_key(id)
  redis.call('HSET', key, 'quota', num(quota_at(t, now)),
    'reserved', num(t.reserved + cost), 'status', 'active', 'cooldown_reason', '',
    'rand', rand)
  redis.call('HDEL', key, 'cooldown_until')
  if t.window_reset_at and t.window_reset_at <= now then
    redis.call('HDEL', key, 'window_reset_at')
  end
  redis.call('HSET', lease_key(lease_id), 'token_id', id, 'cost', num(cost),
    'expires_at', expires_at)
  redis.call('ZADD', LEASES, expires_at, lease_id)
  redis.call('ZADD', token_leases_key(id), expires_at, lease_id)
  place(id, now)
  return redis.call('HMGET', key, 'secret', 'pool')
end
"""

#: ARGV: prefix, now, then per token: id, secret, pool, quota, quota_total,
#: window_seconds, tags (JSON), note, random key. Returns how many were new.
ADD_TOKENS = """
local now = tonumber(ARGV[2])
local added, changed = 0, 0
for i = 3, #ARGV, 9 do
  local id, pool = ARGV[i], ARGV[i + 2]
  local key = token_key(id)
  local old = redis.call('HGET', key, 'pool')
  if not old then
    redis.call('HSET', key, 'id', id, 'secret', ARGV[i + 1], 'pool', pool,
      'status', 'active', 'quota', ARGV[i + 3], 'quota_total', ARGV[i + 4],
      'window_seconds', ARGV[i + 5], 'reserved', '0', 'cooldown_reason', '',
      'fail_count', '0', 'last_fail_reason', '', 'use_count', '0',
      'created_at', ARGV[2], 'stale', '0', 'tags', ARGV[i + 6],
      'note', ARGV[i + 7], 'rand', ARGV[i + 8])
    redis.call('ZADD', pool_key(pool, 'tokens'), ARGV[2], id)
    redis.call('SADD', POOLS, pool)
    place(id, now)
    added = added + 1
  elseif old ~= pool then
    -- A known secret keeps its record and its ledger; only its pool moves.
    unindex(id, old)
    redis.call('ZREM', pool_key(old, 'tokens'), id)
    redis.call('HSET', key, 'pool', pool)
    local created_at = redis.call('HGET', key, 'created_at')
    redis.call('ZADD', pool_key(pool, 'tokens'), created_at, id)
    redis.call('SADD', POOLS, pool)
    place(id, now)
    changed = changed + 1
  end
end
if added + changed > 0 then redis.call('INCR', VERSION) end
return added
"""

#: ARGV: prefix, token ids... Returns how many existed.
REMOVE_TOKENS = """
local removed = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local pool = redis.call('HGET', token_key(id), 'pool')
  if pool then
    for _, lease_id in ipairs(redis.call('ZRANGE', token_leases_key(id), 0, -1)) do
      redis.call('DEL', lease_key(lease_id))
      redis.call('ZREM', LEASES, lease_id)
    end
    redis.call('DEL', token_leases_key(id))
    unindex(id, pool)
    redis.call('ZREM', pool_key(pool, 'tokens'), id)
    redis.call('DEL', token_key(id))
    removed = removed + 1
  end
end
if removed > 0 then redis.call('INCR', VERSION) end
return removed
"""

#: ARGV: prefix, token id, now, changes as JSON (absent keys: unchanged).
#: Returns the record, or nil when the token is gone.
UPDATE_TOKEN = """
local id, now = ARGV[2], tonumber(ARGV[3])
local t = load(id)
if not t then return false end
local changes = cjson.decode(ARGV[4])
local key = token_key(id)
local function clear_faults()
  redis.call('HSET', key, 'fail_count', '0', 'cooldown_reason', '')
  redis.call('HDEL', key, 'cooldown_until')
end
-- In this order, so that reset comes "before the other fields apply".
if changes.reset then
  redis.call('HSET', key, 'status', 'active', 'quota', num(t.quota_total))
  redis.call('HDEL', key, 'window_reset_at')
  clear_faults()
end
if changes.status then
  redis.call('HSET', key, 'status', changes.status)
  -- An operator reviving a token means "usable now", not "one more failure
  -- from invalid again".
  if changes.status == 'active' then clear_faults() end
end
if changes.tags then redis.call('HSET', key, 'tags', changes.tags) end
if changes.note then redis.call('HSET', key, 'note', changes.note) end
if changes.quota then
  redis.call('HSET', key, 'quota', num(math.max(0, changes.quota)))
end
place(id, now)
redis.call('INCR', VERSION)
return record(id)
"""

#: ARGV: prefix, pool, order, limit, cost, now, random start, excluded ids...
#: Returns the records of up to ``limit`` eligible tokens. Read-only.
CANDIDATES = """
local excluded = {}
for i = 8, #ARGV do excluded[ARGV[i]] = true end
local ids = walk(ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]), excluded, tonumber(ARGV[7]))
local records = {}
for i, id in ipairs(ids) do records[i] = record(id) end
return records
"""

#: ARGV: prefix, token id, lease id, cost, now, expires_at, random key.
#: Returns {secret, pool}, or nil when the token cannot take the lease.
RESERVE = """
local got = reserve(ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6],
  ARGV[7])
return got or false
"""

#: ARGV: prefix, now, expires_at, lease id, cost, order, random start, random
#: key, number of pools, pools..., excluded ids... Walks the pools in order and
#: reserves the first eligible token. Returns {token id, secret, pool} or nil.
LEASE = """
local now, cost, order = tonumber(ARGV[2]), tonumber(ARGV[5]), ARGV[6]
local start, pools = tonumber(ARGV[7]), tonumber(ARGV[9])
local excluded = {}
for i = 10 + pools, #ARGV do excluded[ARGV[i]] = true end
for i = 10, 9 + pools do
  local pool = ARGV[i]
  refresh(pool, now)
  local ids = walk(pool, order, 1, cost, now, excluded, start)
  if ids[1] then
    local got = reserve(ids[1], ARGV[4], cost, now, ARGV[3], ARGV[8])
    if got then return {ids[1], got[1], got[2]} end
  end
end
return false
"""

#: ARGV: prefix, lease id, token id, cost, now, seconds to remember the lease.
#: Returns 1 when it spent, 0 when the lease was already committed.
COMMIT = """
local spent = P .. 'spent:' .. ARGV[2]
if redis.call('EXISTS', spent) == 1 then return 0 end
local id, cost, now = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local held_by, held = take_lease(ARGV[2])
if held_by and held_by ~= id then
  -- Not this token's reservation after all: hand it back where it belongs.
  local other = load(held_by)
  if other then
    redis.call('HSET', token_key(held_by), 'reserved',
      num(math.max(0, other.reserved - held)))
    place(held_by, other.placed_at or -INF)
  end
  held = 0
end
local t = load(id)
if t then
  local window_end = t.window_reset_at
  if not window_end or window_end <= now then window_end = now + t.window_seconds end
  local key = token_key(id)
  redis.call('HSET', key, 'quota', num(math.max(0, quota_at(t, now) - cost)),
    'window_reset_at', num(window_end), 'reserved', num(math.max(0, t.reserved - held)),
    'last_used_at', ARGV[5], 'fail_count', '0')
  redis.call('HINCRBY', key, 'use_count', 1)
  place(id, now)
end
redis.call('SET', spent, '1', 'EX', ARGV[6])
return 1
"""

#: ARGV: prefix, lease id. Returns 1 when there was a reservation to give back.
RELEASE = """
return give_back(ARGV[2])
"""

#: ARGV: prefix, now, batch size. Gives back up to a batch of expired
#: reservations, then (on the last batch) re-places due tokens of every pool.
#: Returns {reservations given back, 1 if more may be due}.
EXPIRE = """
local now, batch = tonumber(ARGV[2]), tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', LEASES, '-inf', num(now), 'LIMIT', 0, batch)
local count = 0
for _, lease_id in ipairs(due) do count = count + give_back(lease_id) end
if #due >= batch then return {count, 1} end
for _, pool in ipairs(redis.call('SMEMBERS', POOLS)) do
  count = count + refresh(pool, now)
end
return {count, 0}
"""

#: ARGV: prefix, token id, now, reason, invalidate_after, cooldown_until,
#: quota ('' for None). Returns the record, or nil when the token is gone.
RECORD_FAILURE = """
local id, now, reason = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local threshold, cooldown = tonumber(ARGV[5]), tonumber(ARGV[6])
local quota = tonumber(ARGV[7])
local t = load(id)
if not t then return false end
local key = token_key(id)
local fails = tonumber(redis.call('HGET', key, 'fail_count')) or 0
local status = t.status
if threshold and fails + 1 >= threshold and status ~= 'disabled' then
  status = 'invalid'
elseif cooldown and leasable(t) then
  status = 'cooling'
end
redis.call('HSET', key, 'status', status, 'last_fail_at', ARGV[3],
  'last_fail_reason', reason)
if threshold then redis.call('HSET', key, 'fail_count', num(fails + 1)) end
if cooldown then
  redis.call('HSET', key, 'cooldown_until', ARGV[6], 'cooldown_reason', reason)
end
if quota then
  redis.call('HSET', key, 'quota', num(math.max(0, quota)))
  -- The overwritten quota must not be undone at once by a window that already
  -- ran out: a new one starts, ending with the cooldown when there is one.
  if not t.window_reset_at or t.window_reset_at <= now then
    local window_end = cooldown or now + t.window_seconds
    redis.call('HSET', key, 'window_reset_at', num(window_end))
  end
end
place(id, now)
return record(id)
"""

#: ARGV: prefix, token id, now, remaining, total, window_seconds ('' for
#: None). Returns the record, or nil when the token is gone.
RECORD_SYNC = """
local id, now = ARGV[2], tonumber(ARGV[3])
local remaining, total, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local t = load(id)
if not t then return false end
local key = token_key(id)
if not remaining then
  redis.call('HSET', key, 'stale', '1')
  return record(id)
end
redis.call('HSET', key, 'stale', '0', 'last_sync_at', ARGV[3],
  'quota', num(math.max(0, remaining)))
if total then redis.call('HSET', key, 'quota_total', num(total)) end
if window then redis.call('HSET', key, 'window_seconds', num(window)) end
if not (t.window_reset_at and t.window_reset_at > now) then
  if remaining <= 0 then
    local window_end = now + (window or t.window_seconds)
    redis.call('HSET', key, 'window_reset_at', num(window_end))
  else
    redis.call('HDEL', key, 'window_reset_at')
  end
end
if remaining > 0 then
  -- Quota is back: a rate-limit cooldown has nothing left to protect.
  if t.status == 'cooling' then redis.call('HSET', key, 'status', 'active') end
  redis.call('HSET', key, 'cooldown_reason', '')
  redis.call('HDEL', key, 'cooldown_until')
end
place(id, now)
return record(id)
"""

#: ARGV: prefix, cost, now, pool, first rank, last rank. Counts one slice of
#: a pool's tokens by effective state. Returns the counts of active, cooling,
#: exhausted, invalid and disabled tokens, the earliest reset (or nil) and how
#: many tokens the slice held.
POOL_COUNTS = """
local cost, now = tonumber(ARGV[2]), tonumber(ARGV[3])
local counts = {active = 0, cooling = 0, exhausted = 0, invalid = 0, disabled = 0}
local earliest = nil
local ids = redis.call('ZRANGE', pool_key(ARGV[4], 'tokens'), ARGV[5], ARGV[6])
for _, id in ipairs(ids) do
  local t = load(id)
  if t then
    local state, usable_at = 'active', nil
    if t.status == 'disabled' or t.status == 'invalid' then
      state = t.status
    elseif t.cooldown_until and t.cooldown_until > now then
      state, usable_at = 'cooling', t.cooldown_until
    else
      local quota = quota_at(t, now)
      if quota - t.reserved < cost then
        state = 'exhausted'
        if quota >= cost then
          local first = redis.call('ZRANGE', token_leases_key(id), 0, 0, 'WITHSCORES')
          usable_at = tonumber(first[2])
        elseif t.window_reset_at and t.window_reset_at > now then
          usable_at = t.window_reset_at
        end
      end
    end
    counts[state] = counts[state] + 1
    if usable_at and (not earliest or usable_at < earliest) then
      earliest = usable_at
    end
  end
end
return {counts.active, counts.cooling, counts.exhausted, counts.invalid,
  counts.disabled, earliest and num(earliest) or false, #ids}
"""
