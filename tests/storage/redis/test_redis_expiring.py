"""Short-lived values in Redis, beyond the conformance suite: each is a hash
under the prefix whose TTL is its remaining life, so Redis clears it by itself,
and every worker sees it while its own clock says it has not expired."""

from __future__ import annotations

import redis
from grok2api_storage_redis import RedisStorage

NOW = 1_700_000_000.0
KEY = "grok2api:expiring:conv:a"


async def test_redis_expiring_value_lives_as_long_as_its_ttl(
    redis_storage: RedisStorage, admin: redis.Redis
) -> None:
    await redis_storage.put_expiring("conv:a", "token-1", NOW, NOW + 60)

    assert admin.hgetall(KEY) == {"value": "token-1", "expires_at": repr(NOW + 60)}
    assert 59_000 < admin.pttl(KEY) <= 60_000

    await redis_storage.put_expiring("conv:a", "token-2", NOW + 50, NOW + 55)
    assert admin.hget(KEY, "value") == "token-2"
    assert 4_000 < admin.pttl(KEY) <= 5_000


async def test_redis_expiring_value_already_expired_is_not_kept(
    redis_storage: RedisStorage, admin: redis.Redis
) -> None:
    await redis_storage.put_expiring("conv:a", "token-1", NOW, NOW)
    assert admin.exists(KEY) == 0

    await redis_storage.put_expiring("conv:a", "token-1", NOW, NOW + 60)
    await redis_storage.put_expiring("conv:a", "token-2", NOW + 61, NOW + 60)

    assert admin.exists(KEY) == 0
    assert await redis_storage.get_expiring("conv:a", NOW) is None


async def test_redis_expiring_value_without_end_is_kept_for_decades(
    redis_storage: RedisStorage, admin: redis.Redis
) -> None:
    await redis_storage.put_expiring("conv:a", "token-1", NOW, float("inf"))

    assert admin.pttl(KEY) > 20 * 365 * 86_400 * 1000
    assert await redis_storage.get_expiring("conv:a", NOW + 10**9) == "token-1"


async def test_redis_expiring_values_are_shared_by_workers(
    redis_storage: RedisStorage, second_worker: RedisStorage
) -> None:
    await redis_storage.put_expiring("conv:a", "token-1", NOW, NOW + 60)

    assert await second_worker.get_expiring("conv:a", NOW + 1) == "token-1"
    # A worker whose clock runs ahead sees it gone before Redis drops it.
    assert await second_worker.get_expiring("conv:a", NOW + 60) is None

    await second_worker.delete_expiring("conv:a")
    assert await redis_storage.get_expiring("conv:a", NOW) is None
