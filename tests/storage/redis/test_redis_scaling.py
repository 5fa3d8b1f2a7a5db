"""Leasing stays cheap as the pool grows: the scripts walk indexes, not pools."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from grok2api_storage_redis import RedisStorage, create_redis_storage

from grok2api.storage import CandidateOrder, NewToken

NOW = 1_700_000_000.0
LEASES = 300


async def _fill(storage: RedisStorage, size: int) -> None:
    for start in range(0, size, 5000):
        batch = range(start, min(size, start + 5000))
        await storage.add_tokens(
            [NewToken(f"scale-{i}", "basic", 50, 50, 3600) for i in batch], NOW
        )


async def _lease_and_release(storage: RedisStorage, order: CandidateOrder) -> float:
    started = time.perf_counter()
    for n in range(LEASES):
        lease = await storage.lease(
            ["basic"], order, None, 1, frozenset(), NOW, NOW + 60, f"{order}-{n}"
        )
        assert lease is not None
        await storage.release(lease)
    return time.perf_counter() - started


@pytest.mark.slow
async def test_redis_lease_cost_does_not_grow_with_the_pool(
    redis_url: str, tmp_path: Path
) -> None:
    small = create_redis_storage(f"{redis_url}?prefix=small:", tmp_path)
    large = create_redis_storage(f"{redis_url}?prefix=large:", tmp_path)
    await small.open()
    await large.open()
    try:
        await _fill(small, 1_000)
        await _fill(large, 100_000)
        for order in CandidateOrder:
            at_1k = await _lease_and_release(small, order)
            at_100k = await _lease_and_release(large, order)
            print(f"{order.value}: 1k {at_1k:.3f}s, 100k {at_100k:.3f}s")
            # A scan of the pool would make this a hundred times slower.
            assert at_100k < 4 * at_1k, (order, at_1k, at_100k)
    finally:
        await small.aclose()
        await large.aclose()
