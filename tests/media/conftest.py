"""Fixtures for the media cache: assets on the emulator, caches ("workers")
sharing one data folder, and media bytes of each format."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from grok2api.config import ServerOptions, Settings
from grok2api.config.schema import AppSettings, CacheSettings, NetworkSettings
from grok2api.emulator.assets import EmulatorAssets
from grok2api.gateway import open_storage, upstream_options
from grok2api.media import MediaCache, MediaKind
from grok2api.security.client_address import TrustedProxies
from grok2api.upstream import UpstreamClient
from tests.conftest import Emulator

OWNER = "owner-token-0123456789"
OTHER = "other-token-0123456789"
APP_URL = "http://media.gateway.test"


def png(size: int = 2048, seed: int = 0) -> bytes:
    """Bytes that start like a PNG, padded to ``size``."""
    head = b"\x89PNG\r\n\x1a\n"
    body = (seed.to_bytes(4, "big") + os.urandom(16)) * (size // 20 + 1)
    return (head + body)[:size]


def mp4(size: int = 64 * 1024) -> bytes:
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00"
    return (head + os.urandom(size))[:size]


def files_in(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.fixture
def assets(emulator: Emulator) -> Iterator[EmulatorAssets]:
    """The emulator's assets host, with an owner and another account."""
    emulator.control.add_account(OWNER)
    emulator.control.add_account(OTHER)
    with EmulatorAssets(emulator.url) as client:
        yield client


def cache_settings(emulator_url: str, app_url: str, **cache: Any) -> Settings:
    return Settings(
        app=AppSettings(app_url=app_url),
        network=NetworkSettings(
            base_url=emulator_url, assets_url=emulator_url, transport="httpx"
        ),
        cache=CacheSettings(**cache),
    )


@attrs.define
class Worker:
    """One worker's cache, with its own storage connection and client."""

    cache: MediaCache
    settings: Settings

    def folder(self, kind: MediaKind = MediaKind.IMAGE) -> Path:
        return self.cache.folders[kind].path


OpenWorker = Callable[..., Any]


@pytest.fixture
def open_worker(tmp_path: Path, emulator: Emulator) -> OpenWorker:
    """Opens a cache on a shared data folder (``tmp_path / "data"`` unless
    told), as a worker would; ``cache`` settings are ``[cache]`` keys."""

    @asynccontextmanager
    async def open_one(
        *,
        data_dir: Path | None = None,
        app_url: str = APP_URL,
        grace_seconds: float | None = None,
        **cache: Any,
    ) -> AsyncIterator[Worker]:
        settings = cache_settings(emulator.url, app_url, **cache)
        data_dir = data_dir or tmp_path / "data"
        options = ServerOptions(data_dir=data_dir)
        async with open_storage(options, settings) as (storage, _plugins):
            client = UpstreamClient(upstream_options(settings))
            extra = {} if grace_seconds is None else {"grace_seconds": grace_seconds}
            media = MediaCache(
                data_dir / "media",
                storage,
                upstream=lambda: client,
                settings=lambda: settings,
                proxies=lambda: TrustedProxies(()),
                **extra,
            )
            try:
                yield Worker(media, settings)
            finally:
                await client.aclose()

    return open_one
