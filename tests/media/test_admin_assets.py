"""The admin API of one account's upstream assets: list pages, delete one,
delete many in bounded batches, and what a refused token costs it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from grok2api.emulator.assets import EmulatorAssets
from grok2api.emulator.state import token_id as emulator_token_id
from grok2api.storage import token_id_for
from tests.conftest import ADMIN_KEY, Emulator, Gateway, GatewayFactory
from tests.media.conftest import png

OWNER = "tok-a"
NEIGHBOUR = "tok-b"
OWNER_ID = token_id_for(OWNER)
DELETE_PATH = "/rest/assets-metadata/"


def put_images(assets: EmulatorAssets, token: str, count: int) -> list[str]:
    """``count`` images in the account of ``token``; their ids, newest first."""
    made = [
        assets.put(
            token, f"users/u/generated/{token}-{i}/image.jpg", png(64), "image/jpeg"
        )
        for i in range(count)
    ]
    return [asset["asset_id"] for asset in reversed(made)]


def owned_ids(assets: EmulatorAssets, token: str) -> set[str]:
    tid = emulator_token_id(token)
    return {a["asset_id"] for a in assets.list() if a["token_id"] == tid}


def list_all(admin: httpx.Client, token_id: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page_token = None
    for _ in range(20):
        query = dict(params)
        if page_token:
            query["page_token"] = page_token
        response = admin.get(f"/v1/admin/tokens/{token_id}/assets", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        page_token = page["next_page_token"]
        if page_token is None:
            return items
    raise AssertionError("the listing never ended")


def test_listing_pages_through_the_accounts_assets_only(
    gateway: Gateway, assets: EmulatorAssets
) -> None:
    mine = put_images(assets, OWNER, 120)
    put_images(assets, NEIGHBOUR, 3)

    with gateway.admin() as admin:
        first = admin.get(f"/v1/admin/tokens/{OWNER_ID}/assets").json()
        everything = list_all(admin, OWNER_ID)
        pages_of_7 = list_all(admin, OWNER_ID, page_size=7)

    assert first["token_id"] == OWNER_ID
    assert first["page_size"] == 50 and len(first["items"]) == 50
    assert first["next_page_token"]
    assert [item["asset_id"] for item in everything] == mine
    assert [item["asset_id"] for item in pages_of_7] == mine
    item = everything[0]
    assert item["name"] == "image.jpg"
    assert item["mime_type"] == "image/jpeg"
    assert item["size_bytes"] == 64
    assert item["details"]["assetId"] == item["asset_id"]


def test_listing_spends_no_quota(gateway: Gateway, assets: EmulatorAssets) -> None:
    put_images(assets, OWNER, 2)
    before = gateway.tokens()[OWNER_ID]

    with gateway.admin() as admin:
        assert admin.get(f"/v1/admin/tokens/{OWNER_ID}/assets").status_code == 200

    after = gateway.tokens()[OWNER_ID]
    assert (after["quota"], after["reserved"]) == (before["quota"], 0)


def test_delete_one_asset(gateway: Gateway, assets: EmulatorAssets) -> None:
    doomed, kept = put_images(assets, OWNER, 2)

    with gateway.admin() as admin:
        deleted = admin.delete(f"/v1/admin/tokens/{OWNER_ID}/assets/{doomed}")
        again = admin.delete(f"/v1/admin/tokens/{OWNER_ID}/assets/{doomed}")

    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"token_id": OWNER_ID, "asset_id": doomed, "deleted": True}
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "asset_not_found"
    assert owned_ids(assets, OWNER) == {kept}


def test_another_accounts_asset_is_not_found(
    gateway: Gateway, assets: EmulatorAssets
) -> None:
    (theirs,) = put_images(assets, NEIGHBOUR, 1)

    with gateway.admin() as admin:
        response = admin.delete(f"/v1/admin/tokens/{OWNER_ID}/assets/{theirs}")

    assert response.status_code == 404
    assert owned_ids(assets, NEIGHBOUR) == {theirs}


@pytest.fixture
def batching_gateway(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> Iterator[Gateway]:
    emulator.control.add_account(OWNER)
    yield gateway_factory(
        [OWNER],
        GROK2API_PERFORMANCE_ASSETS_DELETE_BATCH_SIZE="3",
        GROK2API_PERFORMANCE_ASSETS_MAX_CONCURRENT="2",
    )


def delete_calls(emulator: Emulator) -> list[dict[str, Any]]:
    return [
        record
        for record in emulator.control.requests(token=OWNER)
        if record["path"].startswith(DELETE_PATH)
    ]


def test_batch_delete_reports_each_asset(
    batching_gateway: Gateway, emulator: Emulator, assets: EmulatorAssets
) -> None:
    existing = put_images(assets, OWNER, 7)
    missing = ["no-such-asset-1", "no-such-asset-2"]
    asked = [existing[0], missing[0], *existing[1:], missing[1], existing[0]]
    emulator.control.clear_requests()

    with batching_gateway.admin() as admin:
        response = admin.post(
            f"/v1/admin/tokens/{OWNER_ID}/assets/delete", json={"asset_ids": asked}
        )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["total"], answer["deleted"], answer["failed"]) == (9, 7, 2)
    results = answer["results"]
    assert [r["asset_id"] for r in results] == [
        existing[0],
        missing[0],
        *existing[1:],
        missing[1],
    ]
    assert {r["asset_id"] for r in results if r["deleted"]} == set(existing)
    for result in results:
        if not result["deleted"]:
            assert result["error"]["code"] == "asset_not_found"
            assert result["error"]["status"] == 404
    assert owned_ids(assets, OWNER) == set()

    calls = delete_calls(emulator)
    assert len(calls) == 9, "one call per distinct id"
    by_asset = {call["path"].removeprefix(DELETE_PATH): call for call in calls}
    distinct = list(dict.fromkeys(asked))
    batches = [distinct[start : start + 3] for start in range(0, 9, 3)]
    for earlier, later in itertools.pairwise(batches):
        done = max(by_asset[asset]["ended_at"] for asset in earlier)
        assert all(by_asset[asset]["started_at"] >= done for asset in later)
    for moment in [call["started_at"] for call in calls]:
        in_flight = [c for c in calls if c["started_at"] <= moment < c["ended_at"]]
        assert len(in_flight) <= 2


def test_refused_token_fails_the_listing_and_counts_once(
    gateway: Gateway, emulator: Emulator, assets: EmulatorAssets
) -> None:
    put_images(assets, OWNER, 3)
    emulator.control.fault("401", token=OWNER, endpoint="assets-list")

    with gateway.admin() as admin:
        response = admin.get(f"/v1/admin/tokens/{OWNER_ID}/assets")

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "token_rejected"
    assert OWNER_ID in error["message"]
    assert OWNER not in response.text.replace(OWNER_ID, "")
    record = gateway.tokens()[OWNER_ID]
    assert record["fail_count"] == 1
    assert record["last_fail_reason"].startswith("token")


def test_refused_token_stops_a_batch_and_counts_once(
    batching_gateway: Gateway, emulator: Emulator, assets: EmulatorAssets
) -> None:
    existing = put_images(assets, OWNER, 6)
    emulator.control.fault("401", token=OWNER, endpoint="assets-delete", times=None)

    with batching_gateway.admin() as admin:
        response = admin.post(
            f"/v1/admin/tokens/{OWNER_ID}/assets/delete", json={"asset_ids": existing}
        )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["deleted"] == 0 and answer["failed"] == 6
    codes = sorted(r["error"]["code"] for r in answer["results"])
    # Two calls were in flight when the first refusal came back; nothing
    # was started after it.
    assert codes == ["not_attempted"] * 4 + ["token_rejected"] * 2
    assert len(delete_calls(emulator)) == 2
    assert batching_gateway.tokens()[OWNER_ID]["fail_count"] == 1
    assert owned_ids(assets, OWNER) == set(existing)


def test_upstream_outage_is_a_502_without_penalty(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("500", token=OWNER, endpoint="assets-list")

    with gateway.admin() as admin:
        response = admin.get(f"/v1/admin/tokens/{OWNER_ID}/assets")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert gateway.tokens()[OWNER_ID]["fail_count"] == 0


def test_unknown_token_is_404_on_every_route(gateway: Gateway) -> None:
    base = "/v1/admin/tokens/no-such-token/assets"
    with gateway.admin() as admin:
        answers = [
            admin.get(base),
            admin.delete(f"{base}/some-asset"),
            admin.post(f"{base}/delete", json={"asset_ids": ["some-asset"]}),
        ]
    for response in answers:
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "token_not_found"


BAD_REQUESTS = [
    ("GET", "/assets?page_size=0", None, "page_size"),
    ("GET", "/assets?page_size=101", None, "page_size"),
    ("GET", "/assets?page_size=abc", None, "page_size"),
    ("GET", "/assets?page_token=a%20b", None, "page_token"),
    ("GET", f"/assets?page_token={'x' * 1025}", None, "page_token"),
    ("DELETE", "/assets/-dash-first", None, "asset_id"),
    ("DELETE", "/assets/a%3Fb", None, "asset_id"),
    ("POST", "/assets/delete", {}, "asset_ids"),
    ("POST", "/assets/delete", {"asset_ids": []}, "asset_ids"),
    ("POST", "/assets/delete", {"asset_ids": "abc"}, "asset_ids"),
    ("POST", "/assets/delete", {"asset_ids": ["x"] * 1001}, "asset_ids"),
    ("POST", "/assets/delete", {"asset_ids": ["ok", 5]}, "asset_ids[1]"),
    ("POST", "/assets/delete", {"asset_ids": ["ok", "a/b"]}, "asset_ids[1]"),
]


def test_bad_parameters_are_400_naming_the_parameter(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.clear_requests()
    with gateway.admin() as admin:
        for method, tail, body, param in BAD_REQUESTS:
            url = f"/v1/admin/tokens/{OWNER_ID}{tail}"
            response = admin.request(method, url, json=body)
            assert response.status_code == 400, (tail, response.text)
            assert response.json()["error"]["param"] == param, tail
    assert emulator.control.requests() == []


def test_admin_credential_is_required(gateway: Gateway) -> None:
    base = f"{gateway.url}/v1/admin/tokens/{OWNER_ID}/assets"
    assert httpx.get(base, timeout=30).status_code == 401
    assert httpx.delete(f"{base}/some-asset", timeout=30).status_code == 401
    refused = httpx.post(f"{base}/delete", json={"asset_ids": ["a"]}, timeout=30)
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"


def test_a_session_needs_its_csrf_token_to_delete(
    gateway: Gateway, assets: EmulatorAssets
) -> None:
    (asset_id,) = put_images(assets, OWNER, 1)
    login = httpx.post(
        f"{gateway.url}/v1/admin/login",
        json={"username": "admin", "password": ADMIN_KEY},
        timeout=30,
    )
    csrf = login.json()["csrf_token"]
    base = f"/v1/admin/tokens/{OWNER_ID}/assets"

    with httpx.Client(
        base_url=gateway.url, cookies=login.cookies, timeout=30
    ) as browser:
        listed = browser.get(base)
        forged_one = browser.delete(f"{base}/{asset_id}")
        forged_many = browser.post(f"{base}/delete", json={"asset_ids": [asset_id]})
        still_there = owned_ids(assets, OWNER)
        made = browser.delete(f"{base}/{asset_id}", headers={"X-CSRF-Token": csrf})

    assert listed.status_code == 200
    assert [item["asset_id"] for item in listed.json()["items"]] == [asset_id]
    for forged in (forged_one, forged_many):
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "csrf_failed"
    assert still_there == {asset_id}
    assert made.status_code == 200
    assert owned_ids(assets, OWNER) == set()
