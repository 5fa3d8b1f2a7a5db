"""The shipped storage conformance suite, run against the Redis backend."""

from __future__ import annotations

import pytest
from grok2api_storage_redis import RedisStorage

from grok2api.testing.storage_conformance import StorageConformance


class TestRedisStorageConformance(StorageConformance):
    @pytest.fixture
    def storage(self, redis_storage: RedisStorage) -> RedisStorage:
        return redis_storage
