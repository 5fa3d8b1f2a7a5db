"""grok2api's ``redis`` storage backend: one Redis server shared by every
worker and host, with the ledger and the shared limiters kept atomic by Lua
scripts."""

from __future__ import annotations

from .backend import SPENT_LEASE_RETENTION, RedisStorage
from .factory import (
    DEFAULT_URL,
    RedisSettings,
    connection_pool,
    create_redis_storage,
    redis_settings,
)
from .keys import DEFAULT_PREFIX, Keys

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_URL",
    "SPENT_LEASE_RETENTION",
    "Keys",
    "RedisSettings",
    "RedisStorage",
    "connection_pool",
    "create_redis_storage",
    "redis_settings",
]
