"""The Redis backend through a Redis restart: clear errors in the gap, then
recovery without reopening, and nothing committed lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from grok2api_storage_redis import create_redis_storage

from grok2api.errors import StorageError, StorageUnavailable
from grok2api.storage import CandidateOrder, NewToken, token_id_for
from grok2api.testing.redis_server import RedisServer, RedisServerMissing

NOW = 1_700_000_000.0


async def test_redis_restart_mid_use_recovers_and_keeps_commits(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", appendonly=True) as server:
        storage = create_redis_storage(server.url, tmp_path, timeout=2.0)
        await storage.open()
        try:
            await storage.add_tokens([NewToken("a", "basic", 10, 10, 3600)], NOW)
            token_id = token_id_for("a")
            lease = await storage.lease(
                ["basic"], CandidateOrder.MOST_QUOTA, None, 3, frozenset(),
                NOW, NOW + 60, "before",
            )  # fmt: skip
            assert lease is not None
            await storage.commit(lease, NOW)
            open_lease = await storage.reserve(token_id, "open", 2, NOW, NOW + 60)
            assert open_lease is not None

            server.stop()
            with pytest.raises(StorageUnavailable):
                await storage.get_token(token_id)
            with pytest.raises(StorageUnavailable):
                await storage.reserve(token_id, "in-the-gap", 1, NOW, NOW + 60)
            with pytest.raises(StorageUnavailable):
                await storage.commit(open_lease, NOW)

            server.start()
            # The same storage object, never reopened; the scripts are gone
            # from the new server's cache and load again on first use.
            record = await storage.get_token(token_id)
            assert record is not None
            assert (record.quota, record.reserved, record.use_count) == (7, 2, 1)
            await storage.commit(open_lease, NOW + 1)
            again = await storage.lease(
                ["basic"], CandidateOrder.RANDOM, None, 1, frozenset(),
                NOW + 2, NOW + 62, "after",
            )  # fmt: skip
            assert again is not None
            await storage.commit(again, NOW + 2)
            record = await storage.get_token(token_id)
            assert record is not None
            assert (record.quota, record.reserved, record.use_count) == (4, 0, 3)
        finally:
            await storage.aclose()


async def test_redis_unreachable_at_open_is_unavailable(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "never-started")
    storage = create_redis_storage(server.url, tmp_path, timeout=1.0)
    with pytest.raises(StorageUnavailable):
        await storage.open()
    await storage.aclose()


async def test_redis_closed_storage_is_unavailable(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        storage = create_redis_storage(server.url, tmp_path)
        await storage.open()
        await storage.aclose()
        await storage.aclose()
        with pytest.raises(StorageUnavailable, match="closed"):
            await storage.change_version()


async def test_redis_wrong_password_is_a_storage_error(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", password="s3cret-pass") as server:
        good = create_redis_storage(server.url, tmp_path)
        await good.open()
        try:
            assert await good.change_version() == 0
        finally:
            await good.aclose()

        bad_url = server.url.replace("s3cret-pass", "wrong")
        bad = create_redis_storage(bad_url, tmp_path)
        with pytest.raises(StorageError) as caught:
            await bad.open()
        assert not isinstance(caught.value, StorageUnavailable)
        assert "wrong" not in str(caught.value)
        await bad.aclose()


def test_redis_server_missing_binary_is_loud(tmp_path: Path) -> None:
    with pytest.raises(RedisServerMissing, match="apt-get install redis-server"):
        RedisServer(tmp_path, binary="redis-server-that-is-not-installed")
