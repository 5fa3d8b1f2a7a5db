"""Short-lived values (conversation bindings): one hash per value with a TTL.

A value lives under ``{prefix}expiring:{name}`` as the fields ``value`` and
``expires_at``. The TTL is ``expires_at - now`` on the caller's clock, so Redis
removes the key by itself and nothing needs sweeping; a read still compares its
own ``now`` with ``expires_at``, because a worker whose clock runs ahead must
not see a value that has expired for it. Writing never bumps the change
version: no worker caches these.
"""

from __future__ import annotations

import math

import redis

from .keys import Keys

__all__ = ["get_expiring", "put_expiring"]

# About thirty years: a value meant to outlive that (an infinite expires_at)
# is kept that long rather than handing PEXPIRE a number it cannot read.
_MAX_TTL_MS = 10**12


def put_expiring(
    r: redis.Redis, keys: Keys, name: str, value: str, now: float, expires_at: float
) -> None:
    """Store ``value`` until ``expires_at`` in one ``MULTI`` block; a value
    already expired at ``now`` is removed instead of stored."""
    key = keys.expiring(name)
    if expires_at <= now:
        r.delete(key)
        return
    ttl_ms = max(1, math.ceil(min((expires_at - now) * 1000, _MAX_TTL_MS)))
    pipe = r.pipeline(transaction=True)
    pipe.hset(key, mapping={"value": value, "expires_at": repr(float(expires_at))})
    pipe.pexpire(key, ttl_ms)
    pipe.execute()


def get_expiring(r: redis.Redis, keys: Keys, name: str, now: float) -> str | None:
    """The value of ``name`` if Redis still holds it and ``now < expires_at``."""
    value, expires_at = r.hmget(keys.expiring(name), ["value", "expires_at"])
    if value is None or expires_at is None or now >= float(expires_at):
        return None
    stored: str = value
    return stored
