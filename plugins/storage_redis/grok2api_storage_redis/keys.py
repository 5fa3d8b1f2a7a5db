"""Where the Redis backend keeps things: every key name, under one prefix.

The same layout is spelt out for the Lua scripts in :mod:`.scripts`; a change
here must be made there too. Token ids (never secrets) appear in key names.

========================================  ===========================================
key                                       holds
========================================  ===========================================
``{p}token:{id}``                         hash: one token, its secret and its ledger
``{p}pools``                              set: every pool name ever used
``{p}pool:{pool}:tokens``                 zset: the pool's tokens by ``created_at``
``{p}pool:{pool}:quota``                  zset: ready tokens by available quota
``{p}pool:{pool}:lru``                    zset: ready tokens by ``last_used_at``
``{p}pool:{pool}:random``                 zset: ready tokens by a random key
``{p}pool:{pool}:window``                 zset: ready tokens by quota window end
``{p}pool:{pool}:parked``                 zset: unusable tokens by when they may be
                                          usable again (cooldown end, window end,
                                          first lease expiry, ``+inf``)
``{p}lease:{lease_id}``                   hash: an open reservation
``{p}leases``                             zset: open reservations by expiry
``{p}token-leases:{id}``                  zset: one token's open reservations
``{p}spent:{lease_id}``                   string with a TTL: a committed lease
``{p}config_overrides``                   string: the runtime config as JSON
``{p}change_version``                     counter: bumped on operator changes
``{p}schema``                             the layout version
========================================  ===========================================
"""

from __future__ import annotations

import attrs

__all__ = ["DEFAULT_PREFIX", "SCHEMA_VERSION", "Keys"]

#: The prefix used when the storage URL names none.
DEFAULT_PREFIX = "grok2api:"

#: The key layout version stored under ``{prefix}schema``.
SCHEMA_VERSION = 1


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
