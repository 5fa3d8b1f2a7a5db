"""The admin REST API: tokens and runtime configuration."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from grok2api.storage import token_id_for
from tests.conftest import API_KEY, Emulator, Gateway, GatewayFactory


def test_token_listing_filters_pages_and_never_shows_secrets(gateway: Gateway) -> None:
    gateway.add_tokens(["tok-s1", "tok-s2", "tok-s3"], pool="super")
    with gateway.admin() as admin:
        page = admin.get(
            "/v1/admin/tokens", params={"pool": "super", "limit": 2}
        ).json()
        assert page["total"] == 3 and len(page["items"]) == 2
        rest = admin.get(
            "/v1/admin/tokens", params={"pool": "super", "limit": 2, "offset": 2}
        ).json()
        assert len(rest["items"]) == 1
        everything = admin.get("/v1/admin/tokens").text
        assert admin.get("/v1/admin/tokens", params={"limit": 0}).status_code == 400
        assert (
            admin.get("/v1/admin/tokens", params={"status": "sleepy"}).status_code
            == 400
        )
    for secret in ("tok-a", "tok-b", "tok-s1"):
        assert secret not in everything
    assert {i["pool"] for i in page["items"] + rest["items"]} == {"super"}
    assert page["items"][0]["quota_total"] == 140


def test_import_formats_export_and_remove(gateway: Gateway) -> None:
    reference_file = {
        "ssoBasic": [{"token": "ref-b", "tags": ["nsfw"], "note": "n"}],
        "ssoSuper": ["ref-s"],
    }
    with gateway.admin() as admin:
        assert admin.post("/v1/admin/tokens", json=reference_file).json() == {
            "received": 2,
            "added": 2,
        }
        plain = admin.post(
            "/v1/admin/tokens?pool=super",
            content="line-1\nline-2\n",
            headers={"Content-Type": "text/plain"},
        )
        assert plain.json() == {"received": 2, "added": 2}
        assert (
            admin.post("/v1/admin/tokens", json={"ssoGold": ["x"]}).status_code == 400
        )
        exported = admin.get("/v1/admin/tokens/export").json()
        assert {t["token"] for t in exported["super"]} == {"ref-s", "line-1", "line-2"}
        assert {"token": "ref-b", "tags": ["nsfw"], "note": "n"} in exported["basic"]
        removed = admin.request(
            "DELETE",
            "/v1/admin/tokens",
            json={"ids": [token_id_for("line-1"), "no-such-id"]},
        )
        assert removed.json() == {"removed": 1}
    assert token_id_for("line-1") not in gateway.tokens()


def test_disable_reset_and_edit_a_token(gateway: Gateway, emulator: Emulator) -> None:
    a = token_id_for("tok-a")
    with gateway.admin() as admin:
        assert (
            admin.patch(
                f"/v1/admin/tokens/{a}", json={"status": "disabled", "tags": ["x"]}
            ).status_code
            == 200
        )
        assert (
            admin.patch("/v1/admin/tokens/nope", json={"note": "x"}).status_code == 404
        )
    with gateway.client() as client:
        for _ in range(3):
            client.post(
                "/v1/chat/completions",
                json={
                    "model": "grok-4",
                    "messages": [{"role": "user", "content": "x"}],
                },
            )
    tokens = gateway.tokens()
    assert (
        tokens[a]["use_count"] == 0
        and tokens[a]["state"] == "disabled"
        and tokens[a]["tags"] == ["x"]
    )
    assert tokens[token_id_for("tok-b")]["use_count"] == 3
    with gateway.admin() as admin:
        reset = admin.post(f"/v1/admin/tokens/{token_id_for('tok-b')}/reset").json()
    assert reset["quota"] == reset["quota_total"] and reset["state"] == "active"


def test_refresh_reads_quota_from_the_upstream(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a", quota=50, remaining=17)
    emulator.control.fault("401", token="tok-b", endpoint="rate-limits", times=1)
    with gateway.admin() as admin:
        result = admin.post("/v1/admin/tokens/refresh", json={}).json()
    assert result["total"] == 2 and result["ok"] == 1
    tokens = gateway.tokens()
    a, b = tokens[token_id_for("tok-a")], tokens[token_id_for("tok-b")]
    assert (a["quota"], a["quota_total"], a["stale"]) == (17, 50, False)
    assert a["last_sync_at"] is not None
    assert b["stale"] is True and b["fail_count"] == 1 and b["quota"] == 80


def test_config_change_reaches_every_worker_within_a_second(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(["tok-a"], SERVER_WORKERS="2")

    def alias_status() -> set[int]:
        # A fresh connection per request spreads them over both workers.
        return {
            httpx.get(
                f"{gateway.api}/models/my-gpt",
                headers={"Authorization": f"Bearer {API_KEY}"},
            ).status_code
            for _ in range(20)
        }

    assert alias_status() == {404}
    with gateway.admin() as admin:
        response = admin.patch(
            "/v1/admin/config", json={"models": {"aliases": {"my-gpt": "grok-4"}}}
        )
    assert response.status_code == 200, response.text
    time.sleep(1.5)
    assert alias_status() == {200}


def test_config_changes_are_validated_and_secrets_redacted(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        bad = admin.patch(
            "/v1/admin/config",
            json={
                "retry": {"max_retry": "lots"},
                "chat": {"thinking": 3},
                "nope": {"x": 1},
            },
        )
        assert bad.status_code == 400
        message = bad.json()["error"]["message"]
        for path in ("retry.max_retry", "chat.thinking", "nope"):
            assert path in message
        assert (
            admin.patch(
                "/v1/admin/config", json={"token": {"selection_strategy": "telepathy"}}
            ).status_code
            == 400
        )
        dangling = admin.patch(
            "/v1/admin/config", json={"models": {"aliases": {"x": "gpt-9"}}}
        )
        assert (
            dangling.status_code == 400
            and "gpt-9" in dangling.json()["error"]["message"]
        )
        shown = admin.get("/v1/admin/config").json()
    assert API_KEY not in json.dumps(shown)
    assert shown["settings"]["token"]["selection_strategy"] == "max_quota"
    assert shown["pinned_by_environment"] == []


def test_upstream_settings_changed_at_runtime_apply_to_the_next_call(
    gateway: Gateway, emulator: Emulator
) -> None:
    with gateway.admin() as admin:
        response = admin.patch(
            "/v1/admin/config",
            json={
                "security": {"cf_clearance": "cf-runtime"},
                "timeout": {"stream_first_timeout": 1},
            },
        )
        assert response.status_code == 200
    emulator.control.fault("stall", times=None, after_tokens=0)
    started = time.monotonic()
    with gateway.client() as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "grok-4", "messages": [{"role": "user", "content": "x"}]},
        )
    assert response.status_code == 504
    assert time.monotonic() - started < 10
    record = emulator.control.requests(path="/rest/app-chat/conversations/new")[-1]
    assert "cf_clearance" in record["cookie_names"]


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {"json": {"tokens": ["good-token", "a b"], "pool": "basic"}},
        {"json": {"tokens": [""]}},
        {"json": 5},
        {"json": ["x;y"]},
        {"content": b"\xff\xfe", "headers": {"Content-Type": "text/plain"}},
        {"content": "ok-1\nnot a token\n", "headers": {"Content-Type": "text/plain"}},
    ],
)
def test_junk_token_imports_are_refused_whole(
    gateway: Gateway, kwargs: dict[str, object]
) -> None:
    with gateway.admin() as admin:
        response = admin.post("/v1/admin/tokens", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 400, response.text
    assert len(gateway.tokens()) == 2
