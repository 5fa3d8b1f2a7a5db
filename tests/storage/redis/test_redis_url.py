"""``SERVER_STORAGE_URL`` for the Redis backend, and its plugin registration."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from grok2api_storage_redis import (
    DEFAULT_PREFIX,
    create_redis_storage,
    hooks,
    redis_settings,
)

from grok2api.errors import ConfigError
from grok2api.storage import NewToken, token_id_for
from grok2api.testing.redis_server import RedisServer


def test_redis_url_password_db_and_default_prefix(tmp_path: Path) -> None:
    storage = create_redis_storage("redis://:pa%40ss@cache.internal:6380/3", tmp_path)
    kwargs = storage.pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.internal", 6380, 3)
    assert kwargs["password"] == "pa@ss"
    assert storage.pool.connection_class is redis.Connection
    assert storage.keys.prefix == DEFAULT_PREFIX == "grok2api:"
    assert "pa@ss" not in repr(storage)


def test_redis_url_tls_and_prefix(tmp_path: Path) -> None:
    storage = create_redis_storage(
        "rediss://user:pw@redis.example:6390/1?prefix=team-a:&ssl_cert_reqs=none",
        tmp_path,
    )
    kwargs = storage.pool.connection_kwargs
    assert storage.pool.connection_class is redis.SSLConnection
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("user", "pw", 1)
    assert kwargs["ssl_cert_reqs"] == "none"
    assert "prefix" not in kwargs
    assert storage.keys.prefix == "team-a:"


def test_redis_url_empty_means_local_default(tmp_path: Path) -> None:
    settings = redis_settings("  ")
    assert (settings.url, settings.prefix) == ("redis://127.0.0.1:6379/0", "grok2api:")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///x.db",
        "postgresql://db/x",
        "redis://host/0?prefix=",
        "redis://host/0?max_connections=50",
        "redis://host/not-a-db",
    ],
)
def test_redis_url_rejects_what_it_cannot_use(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SERVER_STORAGE_URL"):
        create_redis_storage(url, tmp_path)


def test_redis_hook_registers_the_factory() -> None:
    backends = hooks.register_storage_backends(host=None)  # type: ignore[arg-type]
    assert backends == {"redis": create_redis_storage}


async def test_redis_prefixes_keep_deployments_apart(
    redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    first = create_redis_storage(f"{redis_url}?prefix=one:", tmp_path)
    second = create_redis_storage(f"{redis_url}?prefix=two:", tmp_path)
    await first.open()
    await second.open()
    try:
        await first.add_tokens([NewToken("a", "basic", 1, 1, 60)], 1.0)
        assert await first.get_token(token_id_for("a")) is not None
        assert await second.get_token(token_id_for("a")) is None
        assert await second.change_version() == 0 < await first.change_version()
        await first.put_expiring("conv:a", "a", 1.0, 61.0)
        assert await second.get_expiring("conv:a", 1.0) is None
        admin = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            assert f"one:token:{token_id_for('a')}" in admin.keys("one:*")
            assert "one:expiring:conv:a" in admin.keys("one:*")
            assert admin.keys("two:*") == ["two:schema"]
            assert admin.keys("grok2api:*") == []
        finally:
            admin.close()
    finally:
        await first.aclose()
        await second.aclose()


async def test_redis_db_in_url_is_used(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url.replace("/0", "/5")
    admin = redis.Redis.from_url(url)
    admin.flushdb()
    storage = create_redis_storage(url, tmp_path)
    await storage.open()
    try:
        await storage.save_config_overrides({"app": {"x": 1}})
        assert admin.get("grok2api:config_overrides") == b'{"app": {"x": 1}}'
    finally:
        await storage.aclose()
        admin.flushdb()
        admin.close()
