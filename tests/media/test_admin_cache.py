"""The admin API of the media cache: summary, listing, delete one, clear."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.conftest import Gateway, GatewayFactory
from tests.media.conftest import mp4, png

MB = 1024 * 1024


@pytest.fixture
def cached(gateway_factory: GatewayFactory) -> Gateway:
    """A gateway whose cache holds three images, one video and one file
    still being written."""
    gateway = gateway_factory(
        GROK2API_CACHE_IMAGE_LIMIT_MB="3", GROK2API_CACHE_CLEANUP_TARGET_RATIO="0.5"
    )
    images = gateway.data_dir / "media" / "image"
    videos = gateway.data_dir / "media" / "video"
    images.mkdir(parents=True)
    videos.mkdir(parents=True)
    now = time.time()
    for index, size in enumerate((1000, 2000, 3000)):
        path = images / f"{index:032x}.png"
        path.write_bytes(png(size))
        os.utime(path, (now - 100 * index, now - 100 * index))
    (videos / f"{'a' * 32}.mp4").write_bytes(mp4(5000))
    (images / f".{'b' * 32}.0011223344556677.part").write_bytes(png(700))
    return gateway


def test_summary_counts_each_kind_against_its_limit(cached: Gateway) -> None:
    with cached.admin() as admin:
        summary = admin.get("/v1/admin/cache").json()
    assert summary["image"] == {
        "count": 3,
        "bytes": 6000,
        "partial_bytes": 700,
        "limit_bytes": 3 * MB,
        "target_bytes": int(1.5 * MB),
    }
    assert summary["video"]["count"] == 1
    assert summary["video"]["bytes"] == 5000
    assert summary["video"]["limit_bytes"] == 4096 * MB
    assert summary["auto_clean"] is True
    assert summary["grace_seconds"] == 300


def test_listing_pages_newest_first_with_working_urls(cached: Gateway) -> None:
    with cached.admin() as admin:
        first = admin.get("/v1/admin/cache/image", params={"limit": 2}).json()
        rest = admin.get(
            "/v1/admin/cache/image", params={"limit": 2, "offset": 2}
        ).json()
    assert first["total"] == rest["total"] == 3
    names = [item["name"] for item in first["items"] + rest["items"]]
    assert names == [f"{index:032x}.png" for index in range(3)]
    assert [item["size"] for item in first["items"]] == [1000, 2000]
    item = first["items"][1]
    assert item["url"] == f"{cached.url}/v1/files/image/{item['name']}"
    opened = httpx.get(item["url"])
    assert opened.status_code == 200 and len(opened.content) == 2000


def test_delete_one_file(cached: Gateway) -> None:
    name = f"{1:032x}.png"
    with cached.admin() as admin:
        deleted = admin.delete(f"/v1/admin/cache/image/{name}")
        again = admin.delete(f"/v1/admin/cache/image/{name}")
        listed = admin.get("/v1/admin/cache/image").json()
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": 1, "bytes": 2000}
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "file_not_found"
    assert name not in [item["name"] for item in listed["items"]]
    assert httpx.get(f"{cached.url}/v1/files/image/{name}").status_code == 404


def test_clear_a_kind_spares_files_being_written(cached: Gateway) -> None:
    with cached.admin() as admin:
        cleared = admin.delete("/v1/admin/cache/image")
        summary = admin.get("/v1/admin/cache").json()
    assert cleared.json() == {"deleted": 3, "bytes": 6000}
    assert summary["image"]["count"] == 0
    assert summary["image"]["partial_bytes"] == 700
    assert summary["video"]["count"] == 1


BAD_REQUESTS = [
    ("GET", "/v1/admin/cache/audio", "kind"),
    ("DELETE", "/v1/admin/cache/audio", "kind"),
    ("DELETE", f"/v1/admin/cache/audio/{'0' * 32}.png", "kind"),
    ("GET", "/v1/admin/cache/image?limit=0", "limit"),
    ("GET", "/v1/admin/cache/image?limit=abc", "limit"),
    ("GET", "/v1/admin/cache/image?offset=-1", "offset"),
    # A digit to str.isdigit() that int() refuses.
    ("GET", "/v1/admin/cache/image?offset=²", "offset"),
    ("DELETE", "/v1/admin/cache/image/..%2f..%2fdata.db", "name"),
    ("DELETE", f"/v1/admin/cache/video/{'0' * 32}.png", "name"),
    ("DELETE", f"/v1/admin/cache/image/.{'b' * 32}.0011223344556677.part", "name"),
]


def test_bad_parameters_are_400_naming_the_parameter(cached: Gateway) -> None:
    with cached.admin() as admin:
        for method, path, param in BAD_REQUESTS:
            response = admin.request(method, path)
            assert response.status_code == 400, (path, response.text)
            error = response.json()["error"]
            assert error["param"] == param, path
            assert error["type"] == "invalid_request_error"
    assert len(os.listdir(cached.data_dir / "media" / "image")) == 4


def test_the_cache_api_needs_the_admin_credential(cached: Gateway) -> None:
    with cached.client() as api_client:
        assert api_client.get("/v1/admin/cache").status_code == 403
    assert httpx.delete(f"{cached.url}/v1/admin/cache/image").status_code == 401
    assert len(os.listdir(cached.data_dir / "media" / "image")) == 4
