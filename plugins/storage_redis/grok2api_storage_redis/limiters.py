"""Limiters every worker shares: token buckets, fixed windows and concurrent
slots, each step one Lua script.

Two requests racing for the last unit of a limit run their scripts one after
the other in Redis, so exactly one gets it. Every time comes from the caller's
``now``, as in the ledger scripts; Redis's own clock only drives the TTLs that
make idle limiter keys vanish. A TTL is set to when forgetting the key changes
nothing (a bucket would be full again, a window has ended, every slot holder
has expired), plus :data:`IDLE_MARGIN_MS`, so callers whose clocks run a little
apart do not see state disappear early.

The scripts take the key prefix as ``ARGV[1]`` and run after
:data:`~.scripts.PRELUDE`. They return seconds as strings: Redis would cut a
Lua number down to an integer on the way out.
"""

from __future__ import annotations

__all__ = ["ACQUIRE_SLOT", "IDLE_MARGIN_MS", "TAKE_RATE", "TAKE_WINDOW"]

#: Milliseconds an idle limiter key outlives the point where it stops mattering.
IDLE_MARGIN_MS = 1000

# About thirty years: a bucket that refills slower than that is kept that long
# rather than handing PEXPIRE a number it cannot read.
_MAX_TTL_MS = 10**12

_HELPERS = f"""
local function forget_after(key, seconds)
  local ms = math.ceil(math.max(0, seconds) * 1000) + {IDLE_MARGIN_MS}
  redis.call('PEXPIRE', key, num(math.min(ms, {_MAX_TTL_MS})))
end
"""

#: ARGV: prefix, bucket, capacity, refill per second, now. Returns '0' when a
#: unit was taken, else the seconds until one will be there.
TAKE_RATE = (
    _HELPERS
    + """
local key = P .. 'limit:rate:' .. ARGV[2]
local capacity, per_second = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local stored = redis.call('HMGET', key, 'level', 'at')
local level, at = tonumber(stored[1]), tonumber(stored[2])
if not level then
  level, at = capacity, now
elseif now > at then
  level, at = level + (now - at) * per_second, now
end
-- A caller whose clock lags refills nothing, and a lowered capacity applies
-- at once.
level = math.min(capacity, level)
if level < 1 then return num((1 - level) / per_second) end
level = level - 1
redis.call('HSET', key, 'level', num(level), 'at', num(at))
forget_after(key, (capacity - level) / per_second)
return '0'
"""
)

#: ARGV: prefix, bucket, limit, window seconds, now. Returns '0' when the use
#: was counted, else the seconds until the window ends.
TAKE_WINDOW = (
    _HELPERS
    + """
local limit, length, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local start = math.floor(now / length) * length
local left = start + length - now
-- One key per window: a caller whose clock lags into the previous window
-- counts there, instead of resetting the current one.
local key = P .. 'limit:window:' .. ARGV[2] .. ':' .. num(start)
local used = tonumber(redis.call('GET', key)) or 0
if used >= limit then return num(left) end
redis.call('INCR', key)
forget_after(key, left)
return '0'
"""
)

#: ARGV: prefix, bucket, limit, holder, now, expires_at. Returns 1 when the
#: holder has a slot (a new one, or its own renewed), else 0.
ACQUIRE_SLOT = (
    _HELPERS
    + """
local key = P .. 'limit:slots:' .. ARGV[2]
local limit, holder, now = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now))
if not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= limit then
  return 0
end
redis.call('ZADD', key, ARGV[6], holder)
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
forget_after(key, tonumber(last[2]) - now)
return 1
"""
)
