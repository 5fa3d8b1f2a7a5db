"""The emulator's assets host: bytes only for the owning account's cookie."""

from __future__ import annotations

import httpx
import pytest

from grok2api.emulator.assets import EmulatorAssets
from tests.conftest import Emulator
from tests.media.conftest import OTHER, OWNER, png

PATH = "users/u-1/generated/img-1/image.png"


def cookies(token: str) -> dict[str, str]:
    return {"Cookie": f"sso={token}; sso-rw={token}"}


def test_the_owner_gets_the_bytes_and_nobody_else(
    assets: EmulatorAssets, emulator: Emulator
) -> None:
    data = png(3000)
    stored = assets.put(OWNER, PATH, data, "image/png")
    assert stored["size"] == 3000
    url = f"{emulator.url}/{PATH}"

    owner = httpx.get(url, headers=cookies(OWNER))
    assert owner.status_code == 200
    assert owner.content == data
    assert owner.headers["content-type"] == "image/png"
    assert httpx.get(url, headers=cookies(OTHER)).status_code == 403
    assert httpx.get(url).status_code == 403
    assert httpx.get(url, headers=cookies("unknown-token")).status_code == 403
    mixed = {"Cookie": f"sso={OWNER}; sso-rw={OTHER}"}
    assert httpx.get(url, headers=mixed).status_code == 403
    missing = httpx.get(f"{emulator.url}/users/u-1/other.png", headers=cookies(OWNER))
    assert missing.status_code == 404

    log = emulator.control.requests(path="/" + PATH)
    assert [r["status"] for r in log] == [200, 403, 403, 403, 403]
    assert log[1]["reason"] == "not-owner"


def test_scripted_faults_for_any_endpoint_apply(
    assets: EmulatorAssets, emulator: Emulator
) -> None:
    assets.put(OWNER, PATH, png(), "image/png")
    emulator.control.fault("500", endpoint="any")
    url = f"{emulator.url}/{PATH}"
    assert httpx.get(url, headers=cookies(OWNER)).status_code == 500
    assert httpx.get(url, headers=cookies(OWNER)).status_code == 200


def test_listing_clearing_and_reset(assets: EmulatorAssets, emulator: Emulator) -> None:
    assets.put(OWNER, PATH, png(), "image/png")
    assets.put(OTHER, "/users/u-2/x.jpg", b"\xff\xd8\xff" + b"0" * 10, "image/jpeg")
    listed = {asset["path"]: asset for asset in assets.list()}
    assert set(listed) == {PATH, "users/u-2/x.jpg"}
    assert "content" not in listed[PATH]
    emulator.control.reset()
    assert assets.list() == []
    assets.put(OWNER, PATH, png(), "image/png")
    assets.clear()
    assert assets.list() == []


@pytest.mark.parametrize(
    "body",
    [
        {"token": OWNER, "path": "rest/app-chat/x", "content": "", "content_type": "x"},
        {"token": "", "path": PATH, "content": "", "content_type": "x"},
        {"token": OWNER, "path": PATH, "content": "not base64!", "content_type": "x"},
        {"token": OWNER, "path": PATH},
        ["not", "an", "object"],
    ],
)
def test_bad_asset_bodies_are_400(emulator: Emulator, body: object) -> None:
    response = httpx.post(f"{emulator.url}/_emulator/assets", json=body)
    assert response.status_code == 400
    assert "error" in response.json()
