"""API keys, limiters, statistics, the audit log and named values in Redis,
beyond the conformance suite: idle limiter state expires, pruned statistics
leave no keys behind, workers with separate connections share limits and the
log, and only operator changes move the change version."""

from __future__ import annotations

import pytest
import redis
import trio
from grok2api_storage_redis import RedisStorage

from grok2api.storage import (
    ApiKeyChanges,
    ApiKeyRecord,
    AuditEntry,
    StatsRow,
)

NOW = 1_700_000_000.0  # 20 s into a minute
HOUR = NOW - NOW % 3600


def _audit(n: int) -> AuditEntry:
    return AuditEntry(
        at=NOW + n,
        request_id=f"req-{n}",
        client="203.0.113.7",
        key_name="ci",
        method="POST",
        path="/v1/chat/completions",
        model="grok-4",
        status=200,
        duration_ms=3.0,
        stream=False,
    )


async def test_redis_rate_bucket_expires_once_it_would_be_full(
    redis_storage: RedisStorage, admin: redis.Redis
) -> None:
    key = "grok2api:limit:rate:ip:a"

    await redis_storage.take_rate("ip:a", 10, 2.0, NOW)
    # One unit short refills in 0.5 s; the margin adds a second.
    assert 1000 < admin.pttl(key) <= 1500
    for _ in range(5):
        await redis_storage.take_rate("ip:a", 10, 2.0, NOW)
    assert 3000 < admin.pttl(key) <= 4000


async def test_redis_window_counter_expires_with_its_window(
    redis_storage: RedisStorage, admin: redis.Redis
) -> None:
    await redis_storage.take_window("key:q", 5, 60, NOW)

    [name] = admin.keys("grok2api:limit:window:*")
    assert name == "grok2api:limit:window:key:q:1699999980"
    assert 39_000 < admin.pttl(name) <= 41_000
    assert admin.get(name) == "1"


async def test_redis_slots_expire_with_their_last_holder(
    redis_storage: RedisStorage, admin: redis.Redis
) -> None:
    key = "grok2api:limit:slots:key:c"

    assert await redis_storage.acquire_slot("key:c", 2, "a", NOW, NOW + 30)
    assert await redis_storage.acquire_slot("key:c", 2, "b", NOW, NOW + 5)
    assert 30_000 < admin.pttl(key) <= 31_000

    await redis_storage.release_slot("key:c", "a")
    await redis_storage.release_slot("key:c", "b")
    assert admin.exists(key) == 0


async def test_redis_refused_limiter_steps_write_nothing(
    redis_storage: RedisStorage, admin: redis.Redis
) -> None:
    assert await redis_storage.take_window("key:none", 0, 60, NOW) == 40.0
    assert not await redis_storage.acquire_slot("key:none", 0, "a", NOW, NOW + 60)
    assert admin.keys("grok2api:limit:*") == []


async def test_redis_limiters_are_shared_by_separate_clients(
    redis_storage: RedisStorage, second_worker: RedisStorage
) -> None:
    rates: list[float] = []
    windows: list[float] = []
    slots: list[bool] = []

    async def take(storage: RedisStorage, n: int) -> None:
        rates.append(await storage.take_rate("shared", 5, 0.001, NOW))
        windows.append(await storage.take_window("shared", 3, 60, NOW))
        slots.append(await storage.acquire_slot("shared", 2, f"h-{n}", NOW, NOW + 60))

    async with trio.open_nursery() as nursery:
        for n in range(10):
            worker = redis_storage if n % 2 else second_worker
            nursery.start_soon(take, worker, n)

    assert (rates.count(0.0), windows.count(0.0), slots.count(True)) == (5, 3, 2)


async def test_redis_audit_log_stays_within_keep_across_workers(
    redis_storage: RedisStorage, second_worker: RedisStorage, admin: redis.Redis
) -> None:
    async def append(storage: RedisStorage, first: int) -> None:
        await storage.append_audit([_audit(first + i) for i in range(5)], keep=12)

    async with trio.open_nursery() as nursery:
        for batch in range(8):
            worker = redis_storage if batch % 2 else second_worker
            nursery.start_soon(append, worker, batch * 5)

    assert admin.zcard("grok2api:audit") == 12
    entries = await second_worker.list_audit(20)
    assert [entry.request_id for entry in entries] == [
        f"req-{n}" for n in range(39, 27, -1)
    ]


async def test_redis_audit_keeps_identical_entries_apart(
    redis_storage: RedisStorage,
) -> None:
    await redis_storage.append_audit([_audit(1), _audit(1)], keep=10)
    await redis_storage.append_audit([_audit(1)], keep=10)

    assert await redis_storage.list_audit(10) == [_audit(1)] * 3


async def test_redis_pruned_stats_leave_no_keys(
    redis_storage: RedisStorage, admin: redis.Redis
) -> None:
    await redis_storage.add_stats(
        [
            StatsRow("hour", HOUR - 3600, "model", "grok-4", 1, 1, 0, 2.0),
            StatsRow("hour", HOUR - 3600, "model", "grok-3", 1, 0, 1, 2.0),
            StatsRow("hour", HOUR - 3600, "token", "0123456789abcdef", 2, 1, 1, 4.0),
            StatsRow("hour", HOUR, "model", "grok-4", 1, 1, 0, 2.5),
        ]
    )

    assert await redis_storage.prune_stats("hour", HOUR) == 3

    assert sorted(admin.keys("grok2api:stats*")) == [
        "grok2api:stats-buckets:hour:model",
        "grok2api:stats-dimensions:hour",
        f"grok2api:stats:hour:model:{int(HOUR)}",
    ]
    assert await redis_storage.read_stats("hour", "model", 0) == [
        StatsRow("hour", HOUR, "model", "grok-4", 1, 1, 0, 2.5)
    ]
    assert await redis_storage.read_stats("hour", "token", 0) == []


async def test_redis_stats_values_may_hold_colons(
    redis_storage: RedisStorage,
) -> None:
    row = StatsRow("day", HOUR, "key", "team:ci:nightly", 4, 3, 1, 9.5)

    await redis_storage.add_stats([row, row])

    assert await redis_storage.read_stats("day", "key", HOUR) == [
        StatsRow("day", HOUR, "key", "team:ci:nightly", 8, 6, 2, 19.0)
    ]


async def test_redis_only_operator_changes_move_the_change_version(
    redis_storage: RedisStorage,
) -> None:
    key = ApiKeyRecord("k1", "ci", "digest-k1", "g2a-…k1", True, NOW)
    await redis_storage.add_api_keys([key])
    await redis_storage.put_value("session.key", "first")
    version = await redis_storage.change_version()

    await redis_storage.record_api_key_use({"k1": (1, NOW)})
    await redis_storage.take_rate("ip:a", 1, 1.0, NOW)
    await redis_storage.take_window("key:q", 1, 60, NOW)
    await redis_storage.acquire_slot("key:c", 1, "a", NOW, NOW + 60)
    await redis_storage.release_slot("key:c", "a")
    await redis_storage.add_stats([StatsRow("hour", HOUR, "total", "", 1, 1, 0, 1.0)])
    await redis_storage.prune_stats("hour", NOW)
    await redis_storage.append_audit([_audit(1)], keep=5)
    assert await redis_storage.put_value_if_absent("session.key", "second") == "first"
    assert await redis_storage.update_api_key("k1", ApiKeyChanges()) is not None
    assert await redis_storage.remove_api_keys(["ghost"]) == 0
    assert await redis_storage.change_version() == version

    assert await redis_storage.put_value_if_absent("admin.password", "hash") == "hash"
    assert await redis_storage.change_version() == version + 1


async def test_redis_new_scripts_reload_after_script_flush(
    redis_storage: RedisStorage, admin: redis.Redis
) -> None:
    await redis_storage.add_api_keys(
        [ApiKeyRecord("k1", "ci", "digest-k1", "g2a-…k1", True, NOW)]
    )
    admin.script_flush()

    assert await redis_storage.take_rate("ip:a", 1, 1.0, NOW) == 0.0
    assert await redis_storage.take_window("key:q", 1, 60, NOW) == 0.0
    assert await redis_storage.acquire_slot("key:c", 1, "a", NOW, NOW + 60)
    await redis_storage.record_api_key_use({"k1": (2, NOW)})
    [key] = await redis_storage.list_api_keys()
    assert key.use_count == 2
    assert await redis_storage.put_value_if_absent("v", "x") == "x"
    await redis_storage.append_audit([_audit(1)], keep=5)
    assert await redis_storage.prune_stats("hour", NOW) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.take_rate("b", 0.5, 1.0, NOW), "capacity must be at least 1"),
        (lambda s: s.take_rate("b", 5, 0, NOW), "per_second must be positive"),
        (lambda s: s.take_window("b", 5, 0, NOW), "window_seconds must be positive"),
        (lambda s: s.append_audit([], keep=-1), "keep must be non-negative"),
    ],
)
async def test_redis_misuse_is_refused_before_redis(
    redis_storage: RedisStorage, call: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await call(redis_storage)  # type: ignore[operator]
