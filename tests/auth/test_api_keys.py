"""Managed API keys through a running gateway: lifecycle and per-key limits."""

from __future__ import annotations

import concurrent.futures
import time
from functools import partial
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import API_KEY, Emulator, Gateway, GatewayFactory

CHAT = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}

# A busy machine can take longer than httpx's default of 5 s.
get = partial(httpx.get, timeout=30)
post = partial(httpx.post, timeout=30)


def create_keys(gateway: Gateway, **body: Any) -> list[dict[str, Any]]:
    with gateway.admin() as admin:
        response = admin.post("/v1/admin/keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def chat(gateway: Gateway, key: str, **changes: Any) -> httpx.Response:
    return post(
        f"{gateway.api}/chat/completions",
        json=CHAT | changes,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_key_lifecycle(gateway: Gateway) -> None:
    [created] = create_keys(gateway, name="ci")
    key = created["key"]
    assert key.startswith("g2a-") and len(key) > 40
    assert created["hint"] in (f"{key[:8]}…{key[-4:]}",)

    with gateway.admin() as admin:
        listing = admin.get("/v1/admin/keys").json()["items"]
    assert [item["name"] for item in listing] == ["ci"]
    assert key not in str(listing), "a key is shown in full only when created"

    sdk = openai.OpenAI(base_url=gateway.api, api_key=key)
    answer = sdk.chat.completions.create(
        model="grok-4", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content
    assert post(
        f"{gateway.api}/chat/completions", json=CHAT, headers={"x-api-key": key}
    ).is_success
    # The master key keeps working beside managed keys.
    assert chat(gateway, API_KEY).status_code == 200

    with gateway.admin() as admin:
        patched = admin.patch(
            f"/v1/admin/keys/{created['id']}", json={"enabled": False}
        )
    assert patched.json()["enabled"] is False
    refused = chat(gateway, key)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"

    with gateway.admin() as admin:
        admin.patch(f"/v1/admin/keys/{created['id']}", json={"enabled": True})
        assert chat(gateway, key).status_code == 200
        assert admin.delete(f"/v1/admin/keys/{created['id']}").status_code == 200
        assert admin.delete(f"/v1/admin/keys/{created['id']}").status_code == 404
    assert chat(gateway, key).status_code == 401


def test_many_keys_at_once_and_bad_input(gateway: Gateway) -> None:
    created = create_keys(gateway, name="batch", count=3)
    assert [item["name"] for item in created] == ["batch-1", "batch-2", "batch-3"]
    assert len({item["key"] for item in created}) == 3

    with gateway.admin() as admin:
        for body, param in [
            ({"count": 0}, "count"),
            ({"count": 101}, "count"),
            ({"name": ""}, "name"),
            ({"limits": {"quota": -1}}, "limits.quota"),
            ({"limits": {"models": ["no-such-model"]}}, "limits.models"),
            ({"limits": {"burst": 3}}, "limits.burst"),
            ({"enabled": "yes"}, "enabled"),
        ]:
            response = admin.post("/v1/admin/keys", json=body)
            assert response.status_code == 400, body
            assert response.json()["error"]["param"] == param
        assert admin.patch("/v1/admin/keys/key_nope", json={}).status_code == 404


def test_requests_per_minute(gateway: Gateway) -> None:
    [created] = create_keys(gateway, limits={"requests_per_minute": 3})

    statuses = [chat(gateway, created["key"]).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    refused = chat(gateway, created["key"])
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    # Limits are per key: the master key is not affected.
    assert chat(gateway, API_KEY).status_code == 200


def test_quota_per_window(gateway: Gateway) -> None:
    [created] = create_keys(gateway, limits={"quota": 2, "quota_window_seconds": 3600})

    statuses = [chat(gateway, created["key"]).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    refused = chat(gateway, created["key"])
    assert refused.json()["error"]["code"] == "key_quota_exceeded"
    assert int(refused.headers["Retry-After"]) <= 3600


def test_allowed_models(gateway: Gateway) -> None:
    [created] = create_keys(gateway, limits={"models": ["grok-3"]})

    assert chat(gateway, created["key"], model="grok-3").status_code == 200
    refused = chat(gateway, created["key"], model="grok-4")

    assert refused.status_code == 403
    assert refused.json()["error"]["param"] == "model"
    listed = get(
        f"{gateway.api}/models", headers={"Authorization": f"Bearer {created['key']}"}
    ).json()["data"]
    assert [model["id"] for model in listed] == ["grok-3"]


def test_concurrent_requests(gateway: Gateway, emulator: Emulator) -> None:
    [created] = create_keys(gateway, limits={"concurrent_requests": 1})
    emulator.control.configure(line_delay=0.1, answer_tokens=10)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(chat, gateway, created["key"])
        until(lambda: len(emulator.control.requests()) >= 1)
        time.sleep(0.2)
        second = chat(gateway, created["key"])
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "key_concurrency_exceeded"
        assert slow.result().status_code == 200
    # The slot is given back when the answer is done, streamed or not.
    emulator.control.configure(line_delay=0.0)
    with httpx.stream(
        "POST",
        f"{gateway.api}/chat/completions",
        json=CHAT | {"stream": True},
        headers={"Authorization": f"Bearer {created['key']}"},
    ) as stream:
        assert stream.status_code == 200
        stream.read()
    assert chat(gateway, created["key"]).status_code == 200


@pytest.mark.slow
def test_limits_hold_across_workers(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a", quota=10_000)
    gateway = gateway_factory(["tok-a"], SERVER_WORKERS="2")
    [created] = create_keys(gateway, limits={"quota": 7, "quota_window_seconds": 3600})
    time.sleep(1.5)  # both workers have reloaded their key cache

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(
            pool.map(lambda _: chat(gateway, created["key"]).status_code, range(40))
        )

    assert statuses.count(200) == 7
    assert statuses.count(429) == 33
