"""The key layout version: new keyspaces are stamped, older ones upgraded in
place (each step once, however many workers open at once), newer ones
refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import trio
from grok2api_storage_redis import RedisStorage, create_redis_storage, migrations

from grok2api.errors import StorageError, StorageUnavailable
from grok2api.storage import ApiKeyRecord, CandidateOrder, NewToken, token_id_for

NOW = 1_700_000_000.0


def _schema(url: str, version: int | None = None) -> str | None:
    """The stored layout version, after setting it when ``version`` is given."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        if version is not None:
            client.set("grok2api:schema", version)
        value: str | None = client.get("grok2api:schema")
        return value
    finally:
        client.close()


async def _open(url: str, tmp_path: Path) -> RedisStorage:
    storage = create_redis_storage(url, tmp_path)
    await storage.open()
    return storage


async def test_redis_new_keyspace_is_stamped_with_the_current_version(
    redis_url: str, tmp_path: Path
) -> None:
    storage = await _open(redis_url, tmp_path)
    await storage.aclose()

    assert _schema(redis_url) == str(migrations.SCHEMA_VERSION) == "2"


async def test_redis_version_1_keyspace_upgrades_in_place(
    redis_url: str, tmp_path: Path
) -> None:
    old = await _open(redis_url, tmp_path)
    await old.add_tokens([NewToken("kept", "basic", 5, 5, 3600)], NOW)
    lease = await old.reserve(token_id_for("kept"), "held", 2, NOW, NOW + 60)
    assert lease is not None
    before = await old.get_token(token_id_for("kept"))
    await old.aclose()
    # The token layout did not change between versions 1 and 2, so this is
    # what grok2api with layout 1 left behind.
    _schema(redis_url, 1)

    storage = await _open(redis_url, tmp_path)
    try:
        assert _schema(redis_url) == "2"
        assert await storage.get_token(token_id_for("kept")) == before
        await storage.commit(lease, NOW + 1)
        again = await storage.lease(
            ["basic"], CandidateOrder.MOST_QUOTA, None, 1, frozenset(),
            NOW + 1, NOW + 61, "after-upgrade",
        )  # fmt: skip
        assert again is not None
        await storage.add_api_keys([ApiKeyRecord("k", "ci", "d", "h", True, NOW)])
        assert [key.id for key in await storage.list_api_keys()] == ["k"]
    finally:
        await storage.aclose()


async def test_redis_upgrade_steps_run_once_when_workers_open_together(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A made-up third version whose step counts how often it runs.
    monkeypatch.setattr(
        migrations, "_STEPS", ("", "redis.call('INCR', P .. 'upgrades')")
    )
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", 3)
    _schema(redis_url, 1)
    opened: list[RedisStorage] = []

    async def open_one() -> None:
        opened.append(await _open(redis_url, tmp_path))

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(open_one)
    finally:
        for storage in opened:
            await storage.aclose()

    assert len(opened) == 6
    assert _schema(redis_url) == "3"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.get("grok2api:upgrades") == "1"
    finally:
        client.close()


async def test_redis_newer_keyspace_is_refused(redis_url: str, tmp_path: Path) -> None:
    _schema(redis_url, migrations.SCHEMA_VERSION + 1)
    storage = create_redis_storage(redis_url, tmp_path)

    with pytest.raises(StorageError, match="upgrade grok2api-storage-redis") as caught:
        await storage.open()

    assert not isinstance(caught.value, StorageUnavailable)
    await storage.aclose()
    assert _schema(redis_url) == str(migrations.SCHEMA_VERSION + 1)
