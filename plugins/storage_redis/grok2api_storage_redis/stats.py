"""Request statistics: counters per time bucket, added to by every worker.

One hash holds one time bucket of one period and dimension, with four
counters per value (``requests:{value}``, ``successes:{value}``,
``failures:{value}``, ``latency_ms:{value}``), so a flush is a batch of
``HINCRBY`` / ``HINCRBYFLOAT`` in one ``MULTI`` block: Redis adds, so workers
flushing at once lose nothing. A sorted set per period and dimension lists the
buckets by start, for reading a range and for pruning. Every flush writes all
four counters of a value, so a bucket holds ``HLEN / 4`` rows.

Reads are pipelined commands rather than a script, as listings are (see
:mod:`.listing`): a month of per-token rows is too much to read while holding
up every other worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from grok2api import StatsRow

from .keys import Keys

__all__ = ["PRUNE_STATS", "add_stats", "read_stats"]

_COUNTERS = ("requests", "successes", "failures", "latency_ms")

#: ARGV: prefix, period, before. Deletes the buckets of every dimension of the
#: period that start before ``before``; returns how many rows they held.
PRUNE_STATS = f"""
local period, before = ARGV[2], '(' .. ARGV[3]
local dimensions = P .. 'stats-dimensions:' .. period
local removed = 0
for _, dimension in ipairs(redis.call('SMEMBERS', dimensions)) do
  local buckets = P .. 'stats-buckets:' .. period .. ':' .. dimension
  for _, start in ipairs(redis.call('ZRANGEBYSCORE', buckets, '-inf', before)) do
    local key = P .. 'stats:' .. period .. ':' .. dimension .. ':' .. start
    removed = removed + redis.call('HLEN', key) / {len(_COUNTERS)}
    redis.call('DEL', key)
  end
  redis.call('ZREMRANGEBYSCORE', buckets, '-inf', before)
  if redis.call('EXISTS', buckets) == 0 then
    redis.call('SREM', dimensions, dimension)
  end
end
return removed
"""


def _start_text(start: float) -> str:
    """A bucket start as it appears in key names, the same for equal floats."""
    start = float(start)
    return str(int(start)) if start.is_integer() else repr(start)


def add_stats(r: redis.Redis, keys: Keys, rows: Sequence[StatsRow]) -> None:
    """Add each row's counters to its stored row, in one ``MULTI`` block."""
    pipe = r.pipeline(transaction=True)
    for row in rows:
        start = _start_text(row.start)
        bucket = keys.stats(row.period, row.dimension, start)
        pipe.hincrby(bucket, f"requests:{row.value}", row.requests)
        pipe.hincrby(bucket, f"successes:{row.value}", row.successes)
        pipe.hincrby(bucket, f"failures:{row.value}", row.failures)
        pipe.hincrbyfloat(bucket, f"latency_ms:{row.value}", row.latency_ms)
        pipe.zadd(keys.stats_buckets(row.period, row.dimension), {start: row.start})
        pipe.sadd(keys.stats_dimensions(row.period), row.dimension)
    pipe.execute()


def read_stats(
    r: redis.Redis, keys: Keys, period: str, dimension: str, since: float
) -> list[StatsRow]:
    """Rows of one period and dimension from ``since`` on, by start then value."""
    starts: list[str] = r.zrangebyscore(
        keys.stats_buckets(period, dimension), since, "+inf"
    )
    pipe = r.pipeline(transaction=False)
    for start in starts:
        pipe.hgetall(keys.stats(period, dimension, start))
    rows: list[StatsRow] = []
    for start, counters in zip(starts, pipe.execute(), strict=True):
        by_value: dict[str, dict[str, str]] = {}
        for field, number in counters.items():
            counter, _, value = field.partition(":")
            by_value.setdefault(value, {})[counter] = number
        for value, numbers in by_value.items():
            rows.append(
                StatsRow(
                    period=period,
                    start=float(start),
                    dimension=dimension,
                    value=value,
                    requests=int(numbers.get("requests", 0)),
                    successes=int(numbers.get("successes", 0)),
                    failures=int(numbers.get("failures", 0)),
                    latency_ms=float(numbers.get("latency_ms", 0.0)),
                )
            )
    rows.sort(key=lambda row: (row.start, row.value))
    return rows
