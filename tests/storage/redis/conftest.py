"""A real Redis server for the whole session, and a fresh keyspace per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from grok2api_storage_redis import RedisStorage, create_redis_storage

from grok2api.testing.redis_server import RedisServer, run_redis_server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One ``redis-server`` shared by the tests that do not restart it."""
    with run_redis_server() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The shared server's URL, its db emptied before the test."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
    finally:
        client.close()
    yield redis_server.url


@pytest.fixture
async def redis_storage(redis_url: str, tmp_path: Path) -> AsyncIterator[RedisStorage]:
    """An open Redis backend over an empty keyspace."""
    storage = create_redis_storage(redis_url, tmp_path)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.aclose()


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test's keyspace, to look at the keys."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def second_worker(
    redis_storage: RedisStorage, redis_url: str, tmp_path: Path
) -> AsyncIterator[RedisStorage]:
    """Another backend on the same keyspace, with connections of its own."""
    storage = create_redis_storage(redis_url, tmp_path)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.aclose()
