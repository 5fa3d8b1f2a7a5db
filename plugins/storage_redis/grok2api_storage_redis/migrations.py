"""Bringing a keyspace to the current key layout, :data:`SCHEMA_VERSION`.

The layout version lives under ``{prefix}schema``. A keyspace without one is new
and is stamped with the current version at once. An older one is upgraded one
step at a time: each step is one script that checks the version it starts from,
converts what it must and stamps the next version, so when several workers open
the same keyspace at once every step runs exactly once and the others find it
done. A keyspace newer than this code is refused, because scripts that do not
know its keys would leave them inconsistent.
"""

from __future__ import annotations

import redis

from grok2api.errors import StorageError

from .keys import Keys

__all__ = ["SCHEMA_VERSION", "migrate"]

#: Step ``n`` (counting from 1) upgrades a keyspace from version ``n`` to
#: ``n + 1``: Lua that runs after the version check, with the prefix in ``P``.
_STEPS: tuple[str, ...] = (
    # Version 2 keeps API keys, limiters, statistics, the audit log and named
    # values under keys of their own; nothing stored at version 1 changes form.
    # Its stamp is what stops a grok2api that knows none of them from opening
    # the keyspace and serving without API keys or shared limits.
    "",
    # Short-lived values (``expiring:{name}``) came later without a step: a
    # grok2api that does not know them only misses a conversation binding, and
    # their TTLs clear them away, so rolling upgrades and rollbacks stay open.
)

#: The key layout version this code reads and writes.
SCHEMA_VERSION = len(_STEPS) + 1

# A step's body runs between these, so that it runs once or not at all.
_CHECK = """
local P, start, finish = ARGV[1], ARGV[2], ARGV[3]
if redis.call('GET', P .. 'schema') ~= start then return 0 end
"""
_STAMP = """
redis.call('SET', P .. 'schema', finish)
return 1
"""


def migrate(r: redis.Redis, keys: Keys) -> int:
    """Stamp or upgrade the keyspace under ``keys``; returns the version found
    (the current one for a new keyspace).

    Raises:
        StorageError: the keyspace is newer than :data:`SCHEMA_VERSION`.
    """
    r.set(keys.schema, SCHEMA_VERSION, nx=True)
    found = int(r.get(keys.schema) or SCHEMA_VERSION)
    if found > SCHEMA_VERSION:
        raise StorageError(
            f"The Redis key layout version {found} under {keys.prefix!r} is "
            f"newer than this grok2api understands ({SCHEMA_VERSION}); upgrade "
            "grok2api-storage-redis."
        )
    for start in range(found, SCHEMA_VERSION):
        script = _CHECK + _STEPS[start - 1] + _STAMP
        r.eval(script, 0, keys.prefix, str(start), str(start + 1))
    return found
