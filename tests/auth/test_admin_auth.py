"""Admin authentication: generated password, login sessions, CSRF, throttling."""

from __future__ import annotations

import re
import time
from functools import partial

import httpx

from tests.conftest import ADMIN_KEY, API_KEY, Gateway, GatewayFactory, start_gateway

GENERATED = re.compile(r"one was generated:\s+(\S+)")

# A busy machine can take longer than httpx's default of 5 s.
get = partial(httpx.get, timeout=30)
post = partial(httpx.post, timeout=30)


def login(gateway: Gateway, password: str, **headers: str) -> httpx.Response:
    return post(
        f"{gateway.url}/v1/admin/login",
        json={"username": "admin", "password": password},
        headers=headers,
    )


def test_first_start_generates_a_password_shown_once(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(GROK2API_APP_APP_PASSWORD="")
    [password] = GENERATED.findall(gateway.log())
    assert get(f"{gateway.url}/v1/admin/tokens").status_code == 401
    for well_known in ("admin", "password", "grok2api", ""):
        assert login(gateway, well_known).status_code in (400, 401)

    bearer = {"Authorization": f"Bearer {password}"}
    assert get(f"{gateway.url}/v1/admin/tokens", headers=bearer).is_success
    session = get(f"{gateway.url}/v1/admin/session", headers=bearer).json()
    assert session["password_source"] == "stored"
    assert gateway.cli("admin", "password-source").stdout.strip() == "stored"

    # A restart keeps the stored hash and prints nothing new.
    gateway.stop()
    again = start_gateway(gateway.env, gateway.log_path)
    try:
        assert GENERATED.findall(again.log()) == [password]
        assert get(f"{again.url}/v1/admin/tokens", headers=bearer).is_success
        assert password not in (gateway.data_dir / "config.toml").read_text()
    finally:
        again.stop()


def test_set_password_replaces_the_stored_one_and_ends_sessions(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(GROK2API_APP_APP_PASSWORD="")
    [old] = GENERATED.findall(gateway.log())
    logged_in = login(gateway, old)
    assert logged_in.status_code == 200

    result = gateway.cli("admin", "set-password", input="a-new-password-42\n")
    assert result.returncode == 0, result.stderr
    assert gateway.cli("admin", "set-password", input="short\n").returncode == 2

    def admin_with(password: str) -> int:
        headers = {"Authorization": f"Bearer {password}"}
        return get(f"{gateway.url}/v1/admin/tokens", headers=headers).status_code

    deadline = time.monotonic() + 5
    while admin_with("a-new-password-42") != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert admin_with(old) == 401
    stale = get(f"{gateway.url}/v1/admin/tokens", cookies=dict(logged_in.cookies))
    assert stale.status_code == 401


def test_session_cookie_and_csrf(gateway: Gateway) -> None:
    response = login(gateway, ADMIN_KEY)
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie, "plain http from an untrusted peer"
    csrf = response.json()["csrf_token"]

    with httpx.Client(
        timeout=30, base_url=gateway.url, cookies=response.cookies
    ) as browser:
        assert browser.get("/v1/admin/tokens").status_code == 200
        session = browser.get("/v1/admin/session").json()
        assert (session["auth"], session["csrf_token"]) == ("session", csrf)
        assert session["password_source"] == "environment"

        body = {"tokens": ["tok-new"], "pool": "basic"}
        forged = browser.post("/v1/admin/tokens", json=body)
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "csrf_failed"
        wrong = browser.post(
            "/v1/admin/tokens", json=body, headers={"X-CSRF-Token": "x" * 32}
        )
        assert wrong.status_code == 403
        made = browser.post(
            "/v1/admin/tokens", json=body, headers={"X-CSRF-Token": csrf}
        )
        assert made.status_code == 201

        assert browser.post("/v1/admin/logout").status_code == 403
        out = browser.post("/v1/admin/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 200
        assert browser.get("/v1/admin/tokens").status_code == 401


def test_secure_cookie_behind_a_trusted_https_proxy(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(GROK2API_SECURITY_TRUSTED_PROXIES='["127.0.0.1/32"]')
    response = login(gateway, ADMIN_KEY, **{"X-Forwarded-Proto": "https"})
    assert "Secure" in response.headers["set-cookie"]


def test_wrong_logins_are_throttled_per_address(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(
        GROK2API_SECURITY_LOGIN_ATTEMPTS_PER_MINUTE="3",
        GROK2API_SECURITY_TRUSTED_PROXIES='["127.0.0.1/32"]',
    )
    me = {"X-Forwarded-For": "203.0.113.10"}
    statuses = [login(gateway, "wrong", **me).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    throttled = login(gateway, ADMIN_KEY, **me)
    assert throttled.status_code == 429, "even the right password waits"
    assert int(throttled.headers["Retry-After"]) >= 1
    # A locked-out address waits even with the right bearer key.
    right = {"Authorization": f"Bearer {ADMIN_KEY}", **me}
    assert get(f"{gateway.url}/v1/admin/tokens", headers=right).status_code == 429
    bearer = {"Authorization": "Bearer guess", **me}
    assert get(f"{gateway.url}/v1/admin/tokens", headers=bearer).status_code == 429
    # Another address is not affected.
    other = {"X-Forwarded-For": "203.0.113.11"}
    assert login(gateway, ADMIN_KEY, **other).status_code == 200

    # Guessing with bearer keys alone locks an address out the same way.
    guesser = {"X-Forwarded-For": "203.0.113.12"}

    def tokens_with(password: str) -> int:
        headers = {"Authorization": f"Bearer {password}", **guesser}
        return get(f"{gateway.url}/v1/admin/tokens", headers=headers).status_code

    assert [tokens_with(f"guess-{n}") for n in range(4)] == [401, 401, 401, 429]
    assert tokens_with(ADMIN_KEY) == 429


def test_api_keys_never_reach_admin_routes(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        created = admin.post("/v1/admin/keys", json={"name": "app"}).json()["items"]
    for key in (API_KEY, created[0]["key"]):
        for headers in ({"Authorization": f"Bearer {key}"}, {"x-api-key": key}):
            response = get(f"{gateway.url}/v1/admin/keys", headers=headers)
            assert response.status_code == 403, headers
            assert response.json()["error"]["type"] == "permission_error"
    assert login(gateway, API_KEY).status_code == 401


def test_anonymous_admin_is_possible_but_loud(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(GROK2API_SECURITY_ALLOW_ANONYMOUS_ADMIN="true")
    assert get(f"{gateway.url}/v1/admin/tokens").status_code == 200
    assert "allow_anonymous_admin is on" in gateway.log()
