"""Fetching an asset into the cache: the owner's cookie, one download per
asset however many ask at once, one file however many workers ask."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio

import grok2api.media.cache as cache_module
from grok2api.emulator.assets import EmulatorAssets
from grok2api.errors import UpstreamError, UpstreamProtocolError
from grok2api.media import MediaCache, MediaKind
from grok2api.upstream import UpstreamClient
from tests.conftest import Emulator
from tests.media.conftest import (
    APP_URL,
    OTHER,
    OWNER,
    OpenWorker,
    files_in,
    mp4,
    png,
)

IMAGE_PATH = "users/u-1/generated/img-1/image.png"
LINK = re.compile(re.escape(APP_URL) + r"/v1/files/image/([0-9a-f]{32})\.png")


async def test_fetch_downloads_with_the_owners_cookie_and_links_the_file(
    assets: EmulatorAssets, emulator: Emulator, open_worker: OpenWorker
) -> None:
    data = png(5000)
    assets.put(OWNER, IMAGE_PATH, data, "image/png")
    async with open_worker() as worker:
        url = await worker.cache.fetch(IMAGE_PATH, OWNER, "image")

    match = LINK.fullmatch(url)
    assert match, url
    name = f"{match.group(1)}.png"
    assert files_in(worker.folder()) == [name]
    assert (worker.folder() / name).read_bytes() == data
    [download] = emulator.control.requests(path="/" + IMAGE_PATH)
    assert download["status"] == 200
    assert download["cookie_names"] == ["sso", "sso-rw"]
    assert download["token_id"] == emulator.control.account(OWNER)["token_id"]


async def test_absolute_and_relative_asset_urls_name_the_same_file(
    assets: EmulatorAssets, emulator: Emulator, open_worker: OpenWorker
) -> None:
    assets.put(OWNER, IMAGE_PATH, png(), "image/png")
    async with open_worker() as worker:
        relative = await worker.cache.fetch(IMAGE_PATH, OWNER, MediaKind.IMAGE)
        absolute = await worker.cache.fetch(
            f"{emulator.url}/{IMAGE_PATH}", OWNER, MediaKind.IMAGE
        )
    assert relative == absolute
    assert len(emulator.control.requests(path="/" + IMAGE_PATH)) == 1


async def test_another_accounts_asset_is_a_clear_error_and_leaves_no_file(
    assets: EmulatorAssets, emulator: Emulator, open_worker: OpenWorker
) -> None:
    assets.put(OWNER, IMAGE_PATH, png(), "image/png")
    async with open_worker() as worker:
        with pytest.raises(UpstreamError) as refused:
            await worker.cache.fetch(IMAGE_PATH, OTHER, "image")
    assert refused.value.status == 403
    assert "belongs to another account" in str(refused.value)
    assert OTHER not in str(refused.value)
    assert files_in(worker.folder()) == []
    [download] = emulator.control.requests(path="/" + IMAGE_PATH)
    assert download["status"] == 403


async def test_an_unknown_asset_is_a_clear_error(
    assets: EmulatorAssets, open_worker: OpenWorker
) -> None:
    async with open_worker() as worker:
        with pytest.raises(UpstreamError) as missing:
            await worker.cache.fetch("users/u-1/nothing/image.png", OWNER, "image")
    assert missing.value.status == 404
    assert "no such asset" in str(missing.value)


async def test_the_cookie_goes_to_no_host_but_the_assets_host(
    assets: EmulatorAssets, emulator: Emulator, open_worker: OpenWorker
) -> None:
    elsewhere = emulator.url.replace("127.0.0.1", "localhost") + "/" + IMAGE_PATH
    assets.put(OWNER, IMAGE_PATH, png(), "image/png")
    async with open_worker() as worker:
        for url in (elsewhere, f"{emulator.url}@evil.test/{IMAGE_PATH}"):
            with pytest.raises(UpstreamProtocolError, match="not on the assets host"):
                await worker.cache.fetch(url, OWNER, "image")
    assert emulator.control.requests(path="/" + IMAGE_PATH) == []


async def test_bytes_that_are_not_media_are_refused(
    assets: EmulatorAssets, open_worker: OpenWorker
) -> None:
    assets.put(OWNER, IMAGE_PATH, b"<html><script>alert(1)</script>", "image/png")
    assets.put(OWNER, "users/u-1/v/generated_video.mp4", png(), "video/mp4")
    async with open_worker() as worker:
        with pytest.raises(UpstreamProtocolError, match="not an image"):
            await worker.cache.fetch(IMAGE_PATH, OWNER, "image")
        with pytest.raises(UpstreamProtocolError, match="not a video"):
            await worker.cache.fetch("users/u-1/v/generated_video.mp4", OWNER, "video")
    assert files_in(worker.folder(MediaKind.IMAGE)) == []
    assert files_in(worker.folder(MediaKind.VIDEO)) == []


async def test_an_asset_over_the_size_cap_is_refused(
    assets: EmulatorAssets, open_worker: OpenWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(cache_module.MAX_BYTES, MediaKind.IMAGE, 1000)
    assets.put(OWNER, IMAGE_PATH, png(5000), "image/png")
    async with open_worker() as worker:
        with pytest.raises(UpstreamProtocolError, match="larger than"):
            await worker.cache.fetch(IMAGE_PATH, OWNER, "image")
    assert files_in(worker.folder()) == []


async def test_a_video_gets_a_video_link(
    assets: EmulatorAssets, open_worker: OpenWorker
) -> None:
    data = mp4()
    assets.put(OWNER, "users/u-1/generated/v-1/generated_video.mp4", data, "video/mp4")
    async with open_worker() as worker:
        url = await worker.cache.fetch(
            "users/u-1/generated/v-1/generated_video.mp4", OWNER, "video"
        )
    name = url.rpartition("/")[2]
    assert url == f"{APP_URL}/v1/files/video/{name}"
    assert re.fullmatch(r"[0-9a-f]{32}\.mp4", name)
    assert (worker.folder(MediaKind.VIDEO) / name).read_bytes() == data


async def test_twenty_concurrent_fetches_download_the_asset_once(
    assets: EmulatorAssets, emulator: Emulator, open_worker: OpenWorker
) -> None:
    assets.put(OWNER, IMAGE_PATH, png(300_000), "image/png")
    urls: list[str] = []
    async with open_worker() as worker:

        async def fetch() -> None:
            urls.append(await worker.cache.fetch(IMAGE_PATH, OWNER, "image"))

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(fetch)

    assert len(urls) == 20 and len(set(urls)) == 1
    assert len(emulator.control.requests(path="/" + IMAGE_PATH)) == 1
    statistics = worker.cache.statistics()
    assert statistics.downloads == 1
    assert statistics.reused == 19


async def test_concurrent_fetches_share_one_failure(
    assets: EmulatorAssets, emulator: Emulator, open_worker: OpenWorker
) -> None:
    assets.put(OWNER, IMAGE_PATH, png(), "image/png")
    failures: list[UpstreamError] = []
    async with open_worker() as worker:

        async def fetch() -> None:
            try:
                await worker.cache.fetch(IMAGE_PATH, OTHER, "image")
            except UpstreamError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(fetch)

    assert len(failures) == 8
    assert {failure.status for failure in failures} == {403}
    assert len(emulator.control.requests(path="/" + IMAGE_PATH)) == 1


async def test_two_workers_fetching_one_asset_leave_one_file(
    assets: EmulatorAssets, open_worker: OpenWorker
) -> None:
    data = png(400_000)
    assets.put(OWNER, IMAGE_PATH, data, "image/png")
    urls: set[str] = set()
    async with open_worker() as first, open_worker() as second:

        async def fetch(cache: MediaCache) -> None:
            urls.add(await cache.fetch(IMAGE_PATH, OWNER, "image"))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(fetch, first.cache)
                nursery.start_soon(fetch, second.cache)

    [url] = urls
    name = url.rpartition("/")[2]
    assert files_in(first.folder()) == [name]
    assert (first.folder() / name).read_bytes() == data
    downloads = first.cache.statistics().downloads + second.cache.statistics().downloads
    assert 1 <= downloads <= 2


async def test_a_cached_file_is_handed_out_without_a_new_download(
    assets: EmulatorAssets, emulator: Emulator, open_worker: OpenWorker
) -> None:
    assets.put(OWNER, IMAGE_PATH, png(), "image/png")
    async with open_worker() as first:
        url = await first.cache.fetch(IMAGE_PATH, OWNER, "image")
    async with open_worker() as second:
        assert await second.cache.fetch(IMAGE_PATH, OWNER, "image") == url
    assert len(emulator.control.requests(path="/" + IMAGE_PATH)) == 1


async def test_an_unknown_kind_is_refused(open_worker: OpenWorker) -> None:
    async with open_worker() as worker:
        with pytest.raises(ValueError):
            await worker.cache.fetch(IMAGE_PATH, OWNER, "audio")


async def test_a_failure_with_one_token_is_not_shared_with_another(
    assets: EmulatorAssets,
    emulator: Emulator,
    open_worker: OpenWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assets.put(OWNER, IMAGE_PATH, png(), "image/png")
    release = trio.Event()
    download_asset = UpstreamClient.download_asset

    async def held(self: UpstreamClient, secret: str, *args: Any, **kw: Any) -> str:
        if secret == OTHER:
            await release.wait()
        return await download_asset(self, secret, *args, **kw)

    monkeypatch.setattr(UpstreamClient, "download_asset", held)
    outcomes: dict[str, object] = {}
    async with open_worker() as worker:

        async def fetch(token: str) -> None:
            try:
                outcomes[token] = await worker.cache.fetch(IMAGE_PATH, token, "image")
            except UpstreamError as exc:
                outcomes[token] = exc.status

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch, OTHER)
            await trio.sleep(0.2)
            nursery.start_soon(fetch, OWNER)
            # The owner's fetch now waits for the other token's download.
            await trio.sleep(0.2)
            release.set()

    assert outcomes[OTHER] == 403
    assert str(outcomes[OWNER]).startswith(APP_URL)
    statuses = [r["status"] for r in emulator.control.requests(path="/" + IMAGE_PATH)]
    assert statuses == [403, 200]
