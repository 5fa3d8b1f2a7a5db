"""Serving cached files from a running gateway: no credentials, byte ranges,
and nothing outside the cache whatever the path says."""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from grok2api.emulator.assets import EmulatorAssets
from tests.conftest import Gateway, GatewayFactory
from tests.media.conftest import OWNER, OpenWorker, mp4, png

VIDEO_NAME = "0123456789abcdef0123456789abcdef.mp4"
IMAGE_NAME = "fedcba9876543210fedcba9876543210.png"


@pytest.fixture
def served(gateway_factory: GatewayFactory) -> Gateway:
    return gateway_factory()


def put_file(gateway: Gateway, kind: str, name: str, data: bytes) -> Path:
    folder = gateway.data_dir / "media" / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


def raw_get(gateway: Gateway, target: str) -> tuple[int, bytes]:
    """Send ``target`` exactly as written (httpx would normalise it)."""
    address = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(
        address.hostname or "", address.port, timeout=10
    )
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


async def test_a_fetched_file_opens_from_its_url_without_credentials(
    served: Gateway, assets: EmulatorAssets, open_worker: OpenWorker
) -> None:
    data = png(50_000)
    assets.put(OWNER, "users/u-9/generated/i-9/image.png", data, "image/png")
    async with open_worker(data_dir=served.data_dir, app_url=served.url) as worker:
        url = await worker.cache.fetch(
            "users/u-9/generated/i-9/image.png", OWNER, "image"
        )

    assert url.startswith(f"{served.url}/v1/files/image/")
    async with httpx.AsyncClient(timeout=10) as anonymous:
        response = await anonymous.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_without_app_url_the_link_uses_the_requests_address(
    served: Gateway,
) -> None:
    put_file(served, "image", IMAGE_NAME, png())
    forged = {"X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "https"}
    with served.admin() as admin:
        listed = admin.get("/v1/admin/cache/image", headers=forged).json()
    # The peer (loopback) is no trusted proxy: its forwarded headers are ignored.
    assert listed["items"][0]["url"] == f"{served.url}/v1/files/image/{IMAGE_NAME}"


def test_range_requests_on_a_video(served: Gateway) -> None:
    data = mp4(300_000)
    put_file(served, "video", VIDEO_NAME, data)
    url = f"{served.url}/v1/files/video/{VIDEO_NAME}"
    size = len(data)

    whole = httpx.get(url)
    assert whole.status_code == 200
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.content == data

    for header, first, last in [
        ("bytes=0-99", 0, 99),
        ("bytes=-500", size - 500, size - 1),
        ("bytes=1000-", 1000, size - 1),
        ("bytes=299990-400000", 299_990, size - 1),
    ]:
        part = httpx.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert part.headers["content-length"] == str(last - first + 1)
        assert part.content == data[first : last + 1], header

    beyond = httpx.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    assert beyond.json()["error"]["code"] == "range_not_satisfiable"


def test_if_range_and_etags(served: Gateway) -> None:
    data = mp4(10_000)
    put_file(served, "video", VIDEO_NAME, data)
    url = f"{served.url}/v1/files/video/{VIDEO_NAME}"
    etag = httpx.get(url).headers["etag"]

    same = httpx.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206 and same.content == data[:10]
    changed = httpx.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert changed.status_code == 200 and changed.content == data
    cached = httpx.get(url, headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""


def test_head_answers_the_headers_only(served: Gateway) -> None:
    data = mp4(10_000)
    put_file(served, "video", VIDEO_NAME, data)
    response = httpx.head(f"{served.url}/v1/files/video/{VIDEO_NAME}")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(data))
    assert response.content == b""


def test_serving_touches_the_file(served: Gateway) -> None:
    path = put_file(served, "image", IMAGE_NAME, png())
    os.utime(path, (time.time() - 86_400, time.time() - 86_400))
    assert httpx.get(f"{served.url}/v1/files/image/{IMAGE_NAME}").status_code == 200
    assert time.time() - path.stat().st_mtime < 60


def test_paths_outside_the_cache_are_404(served: Gateway, tmp_path: Path) -> None:
    put_file(served, "image", IMAGE_NAME, png())
    secret = tmp_path / "secret.png"
    secret.write_bytes(png(100, seed=7))
    folder = served.data_dir / "media" / "image"
    planted = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.png"
    (folder / planted).symlink_to(secret)
    fifo = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.png"
    os.mkfifo(folder / fifo)
    part = f".{IMAGE_NAME[:32]}.0011223344556677.part"
    (folder / part).write_bytes(png())

    assert raw_get(served, f"/v1/files/image/{IMAGE_NAME}")[0] == 200
    for target in [
        "/v1/files/image/../../../etc/passwd",
        "/v1/files/image/..%2f..%2f..%2fetc%2fpasswd",
        "/v1/files/image/%2e%2e/%2e%2e/data.db",
        "/v1/files/image/%2e%2e%2f%2e%2e%2fdata.db",
        f"/v1/files/image/..%2fimage%2f{IMAGE_NAME}",
        f"/v1/files/%2e%2e/image/{IMAGE_NAME}",
        f"/v1/files/video/{IMAGE_NAME}",
        f"/v1/files/image/{IMAGE_NAME}%00",
        f"/v1/files/image/{IMAGE_NAME}%00.png",
        f"/v1/files/image/%2f{folder}/{IMAGE_NAME}",
        f"/v1/files/image/{folder}/{IMAGE_NAME}",
        f"/v1/files/image//{folder}/{IMAGE_NAME}",
        f"/v1/files/image/{IMAGE_NAME.upper()}",
        f"/v1/files/image/{planted}",
        f"/v1/files/image/{fifo}",
        f"/v1/files/image/{part}",
        "/v1/files/image/",
        "/v1/files/config/config.toml",
    ]:
        status, body = raw_get(served, target)
        assert status == 404, target
        assert b'"not_found_error"' in body, target
        assert b"\x89PNG" not in body, target
