"""Where the Redis backend keeps things: every key name, under one prefix.

The same layout is spelt out for the Lua scripts in :mod:`.scripts`,
:mod:`.admin`, :mod:`.limiters`, :mod:`.stats` and :mod:`.audit`; a change here
must be made there too. Token ids (never secrets) and limiter bucket names
appear in key names.

=========================================  ============================================
key                                        holds
=========================================  ============================================
``{p}token:{id}``                          hash: one token, its secret and its ledger
``{p}pools``                               set: every pool name ever used
``{p}pool:{pool}:tokens``                  zset: the pool's tokens by ``created_at``
``{p}pool:{pool}:quota``                   zset: ready tokens by available quota
``{p}pool:{pool}:lru``                     zset: ready tokens by ``last_used_at``
``{p}pool:{pool}:random``                  zset: ready tokens by a random key
``{p}pool:{pool}:window``                  zset: ready tokens by quota window end
``{p}pool:{pool}:parked``                  zset: unusable tokens by when they may be
                                           usable again (cooldown end, window end,
                                           first lease expiry, ``+inf``)
``{p}lease:{lease_id}``                    hash: an open reservation
``{p}leases``                              zset: open reservations by expiry
``{p}token-leases:{id}``                   zset: one token's open reservations
``{p}spent:{lease_id}``                    string with a TTL: a committed lease
``{p}config_overrides``                    string: the runtime config as JSON
``{p}change_version``                      counter: bumped on operator changes
``{p}schema``                              the layout version (see :mod:`.migrations`)
``{p}api-key:{id}``                        hash: one API key: its digest, never the key
``{p}api-keys``                            zset: API key ids by ``created_at``
``{p}values``                              hash: the named values
``{p}expiring:{name}``                     hash with a TTL: a short-lived value and
                                           its ``expires_at``
``{p}limit:rate:{bucket}``                 hash with a TTL: a token bucket's level and
                                           when it was computed
``{p}limit:window:{bucket}:{start}``       counter with a TTL: uses in one window
``{p}limit:slots:{bucket}``                zset with a TTL: slot holders by expiry
``{p}stats-buckets:{period}:{dimension}``  zset: starts of the stored time buckets
``{p}stats:{period}:{dimension}:{start}``  hash: one time bucket, four counters per
                                           value (``requests:{value}``,
                                           ``successes:…``, ``failures:…``,
                                           ``latency_ms:…``)
``{p}stats-dimensions:{period}``           set: the dimensions stored for a period
``{p}audit``                               zset: audit entries by ``at``, each a
                                           sequence number and the entry as JSON
``{p}audit-seq``                           counter: the last audit sequence number
=========================================  ============================================

Limiter keys expire by themselves once an idle bucket would be indistinguishable
from a new one (a full token bucket, an ended window, no live holder); a
short-lived value expires at its ``expires_at``; the audit log is trimmed on
every append; statistics go when the gateway prunes them.
"""

from __future__ import annotations

import attrs

__all__ = ["DEFAULT_PREFIX", "Keys"]

#: The prefix used when the storage URL names none.
DEFAULT_PREFIX = "grok2api:"


@attrs.frozen
class Keys:
    """The key names under one prefix, for the Python side."""

    prefix: str = DEFAULT_PREFIX

    def token(self, token_id: str) -> str:
        return f"{self.prefix}token:{token_id}"

    def pool_tokens(self, pool: str) -> str:
        return f"{self.prefix}pool:{pool}:tokens"

    @property
    def pools(self) -> str:
        return f"{self.prefix}pools"

    @property
    def config_overrides(self) -> str:
        return f"{self.prefix}config_overrides"

    @property
    def change_version(self) -> str:
        return f"{self.prefix}change_version"

    @property
    def schema(self) -> str:
        return f"{self.prefix}schema"

    def api_key(self, key_id: str) -> str:
        return f"{self.prefix}api-key:{key_id}"

    @property
    def api_keys(self) -> str:
        return f"{self.prefix}api-keys"

    @property
    def values(self) -> str:
        return f"{self.prefix}values"

    def expiring(self, name: str) -> str:
        return f"{self.prefix}expiring:{name}"

    def slots(self, bucket: str) -> str:
        return f"{self.prefix}limit:slots:{bucket}"

    def stats_buckets(self, period: str, dimension: str) -> str:
        return f"{self.prefix}stats-buckets:{period}:{dimension}"

    def stats(self, period: str, dimension: str, start: str) -> str:
        return f"{self.prefix}stats:{period}:{dimension}:{start}"

    def stats_dimensions(self, period: str) -> str:
        return f"{self.prefix}stats-dimensions:{period}"

    @property
    def audit(self) -> str:
        return f"{self.prefix}audit"
