"""Reading ``SERVER_STORAGE_URL`` into a Redis connection pool and a prefix."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from grok2api.errors import ConfigError

from .backend import RedisStorage
from .keys import DEFAULT_PREFIX

__all__ = [
    "DEFAULT_URL",
    "RedisSettings",
    "connection_pool",
    "create_redis_storage",
    "redis_settings",
]

#: The server used when no URL is given.
DEFAULT_URL = "redis://127.0.0.1:6379/0"

_SCHEMES = ("redis", "rediss", "unix")
# Query options we own; redis-py must not see them (it would pass them on to
# its connections) or must not override them (the pool is sized to match the
# thread limiter).
_OURS = ("prefix",)
_FORBIDDEN = ("max_connections", "retry_on_timeout", "retry_on_error")


@attrs.frozen
class RedisSettings:
    """What a storage URL says: the URL redis-py reads, and our key prefix."""

    url: str
    prefix: str = DEFAULT_PREFIX


def redis_settings(url: str) -> RedisSettings:
    """Split a storage URL into redis-py's part and ours.

    ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS) are
    read by redis-py's ``ConnectionPool.from_url``; ``?prefix=`` (default
    ``grok2api:``) puts every key under that prefix. An empty URL means
    :data:`DEFAULT_URL`.

    Raises:
        ConfigError: another scheme, an empty prefix, or an option this
            backend sets itself.
    """
    url = url.strip() or DEFAULT_URL
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigError(
            [
                "SERVER_STORAGE_URL: the redis storage takes redis://, rediss:// "
                f"or unix:// URLs, got {parts.scheme or 'no scheme'}://…"
            ]
        )
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        # redis-py would quietly fall back to db 0.
        raise ConfigError(
            [f"SERVER_STORAGE_URL: the Redis db must be a number, got {db!r}"]
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = DEFAULT_PREFIX
    rest: list[tuple[str, str]] = []
    for key, value in query:
        if key == "prefix":
            prefix = value
        elif key in _FORBIDDEN:
            raise ConfigError(
                [f"SERVER_STORAGE_URL: the redis storage sets {key} itself"]
            )
        else:
            rest.append((key, value))
    if not prefix:
        raise ConfigError(["SERVER_STORAGE_URL: ?prefix= must not be empty"])
    return RedisSettings(urlunsplit(parts._replace(query=urlencode(rest))), prefix)


def connection_pool(
    url: str, *, timeout: float = 5.0, connections: int = 8
) -> redis.ConnectionPool:
    """redis-py's pool for a URL (without our options), sized and bounded.

    Raises:
        ConfigError: redis-py cannot read the URL.
    """
    try:
        return redis.ConnectionPool.from_url(
            url,
            max_connections=connections,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            # See grok2api_storage_redis.client: a re-sent script could apply twice.
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        raise ConfigError([f"SERVER_STORAGE_URL: {exc}"]) from exc


def create_redis_storage(
    url: str, data_dir: Path, *, timeout: float = 5.0, connections: int = 8
) -> RedisStorage:
    """The factory registered as the ``redis`` backend; returns it unopened.

    ``data_dir`` is not used: everything lives in Redis.
    """
    settings = redis_settings(url)
    pool = connection_pool(settings.url, timeout=timeout, connections=connections)
    return RedisStorage(
        pool, prefix=settings.prefix, timeout=timeout, connections=connections
    )
