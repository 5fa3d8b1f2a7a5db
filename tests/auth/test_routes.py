"""Every registered route refuses callers without the right credential."""

from __future__ import annotations

import re
from functools import partial

import httpx

from grok2api.api.cors import is_admin_path
from grok2api.app import create_app
from grok2api.config import server_options_from_env
from tests.conftest import API_KEY, Gateway

PUBLIC = {
    "/health",
    "/ready",
    "/v1/admin/login",
    "/openapi.json",
    "/v1/files/some-kind/some-name",
}

request = partial(httpx.request, timeout=30)


def routes(gateway: Gateway) -> list[tuple[str, str]]:
    app = create_app(server_options_from_env(gateway.env))
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"some-\1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, path))
    return found


def test_every_route_needs_its_credential(gateway: Gateway) -> None:
    found = routes(gateway)
    public = {path for _, path in found if path in PUBLIC}
    admin = [(m, p) for m, p in found if is_admin_path(p) and p not in PUBLIC]
    api = [
        (m, p)
        for m, p in found
        if p.startswith("/v1/") and not is_admin_path(p) and p not in PUBLIC
    ]
    assert public <= PUBLIC
    assert len(admin) >= 10 and len(api) >= 2, found
    assert {
        ("GET", "/v1/public/voice/token"),
        ("POST", "/v1/public/voice/token"),
    } <= set(api)
    assert {
        ("GET", "/v1/admin/tokens/some-token_id/assets"),
        ("DELETE", "/v1/admin/tokens/some-token_id/assets/some-asset_id"),
        ("POST", "/v1/admin/tokens/some-token_id/assets/delete"),
    } <= set(admin)
    assert {
        ("POST", "/v1/admin/jobs"),
        ("GET", "/v1/admin/jobs"),
        ("GET", "/v1/admin/jobs/some-job_id"),
        ("GET", "/v1/admin/jobs/some-job_id/events"),
        ("POST", "/v1/admin/jobs/some-job_id/cancel"),
        ("PUT", "/v1/admin/tokens/some-token_id/birth-date"),
        ("DELETE", "/v1/admin/tokens/some-token_id/birth-date"),
        ("POST", "/v1/admin/tokens/some-token_id/nsfw"),
    } <= set(admin)
    assert {path for _, path in found} == public | {p for _, p in admin + api}, (
        "a route is neither public, admin nor API"
    )

    for method, path in admin:
        url = gateway.url + path
        anonymous = request(method, url, json={})
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.json()["error"]["type"] == "authentication_error"
        with_api_key = request(
            method, url, json={}, headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert with_api_key.status_code == 403, (method, path)
        with_cookie = request(
            method, url, json={}, cookies={"grok2api_session": "forged.value"}
        )
        assert with_cookie.status_code == 401, (method, path)

    for method, path in api:
        anonymous = request(method, gateway.url + path, json={})
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.json()["error"]["code"] == "invalid_api_key"
