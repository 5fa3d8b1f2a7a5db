"""Client addresses, the per-address rate limit, the body cap and CORS."""

from __future__ import annotations

import socket
import time
from functools import partial

import httpx
import openai
import pytest

from tests.conftest import API_KEY, Gateway, GatewayFactory

CHAT = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"Authorization": f"Bearer {API_KEY}"}

get = partial(httpx.get, timeout=30)
post = partial(httpx.post, timeout=30)
options = partial(httpx.options, timeout=30)


def models(gateway: Gateway, **headers: str) -> int:
    return get(f"{gateway.api}/models", headers=AUTH | headers).status_code


def test_rate_limit_per_address(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(
        GROK2API_SECURITY_RATE_LIMIT_PER_MINUTE="6",
        GROK2API_SECURITY_RATE_LIMIT_BURST="3",
    )
    statuses = [models(gateway) for _ in range(4)]
    assert statuses == [200, 200, 200, 429]

    refused = get(f"{gateway.api}/models", headers=AUTH)
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    # Refilled at 6 per minute: one more after ten seconds is too slow for a
    # test, so only the health probe (never limited) is checked here.
    assert get(f"{gateway.url}/health").status_code == 200


def test_forged_forwarded_for_does_not_escape_the_limiter(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(
        GROK2API_SECURITY_RATE_LIMIT_PER_MINUTE="6",
        GROK2API_SECURITY_RATE_LIMIT_BURST="3",
    )
    statuses = [
        models(gateway, **{"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]


def test_a_trusted_proxy_separates_its_clients(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(
        GROK2API_SECURITY_RATE_LIMIT_PER_MINUTE="6",
        GROK2API_SECURITY_RATE_LIMIT_BURST="2",
        GROK2API_SECURITY_TRUSTED_PROXIES='["127.0.0.0/8"]',
    )

    def via_proxy(chain: str) -> int:
        return models(gateway, **{"X-Forwarded-For": chain})

    assert [via_proxy("203.0.113.1") for _ in range(3)] == [200, 200, 429]
    assert via_proxy("203.0.113.2") == 200
    # The client cannot pick its own address by prepending entries.
    assert via_proxy("9.9.9.9, 203.0.113.1") == 429


def test_no_key_refuses_clients_that_are_not_local(
    gateway_factory: GatewayFactory,
) -> None:
    # The trusted-proxy path makes the server see a remote client without
    # this test binding anything but loopback.
    gateway = gateway_factory(
        GROK2API_APP_API_KEY="",
        GROK2API_SECURITY_TRUSTED_PROXIES='["127.0.0.1/32"]',
    )
    assert "the API answers loopback clients only" in gateway.log()
    remote = {"X-Forwarded-For": "203.0.113.50"}

    refused = get(f"{gateway.api}/models", headers=remote)
    assert refused.status_code == 401
    assert "app.api_key" in refused.json()["error"]["message"]
    assert get(f"{gateway.api}/models").status_code == 200, "loopback is let in"
    # ...but not a web page in the local browser, nor one reached through a
    # rebound DNS name: both could spend the tokens without any key.
    page = post(
        f"{gateway.api}/chat/completions",
        content=b'{"model": "grok-4", "messages": [{"role": "user", "content": "x"}]}',
        headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
    )
    assert page.status_code == 403
    assert page.json()["error"]["code"] == "anonymous_browser_refused"
    rebound = get(f"{gateway.api}/models", headers={"Host": "rebind.evil.example"})
    assert rebound.status_code == 403
    assert get(f"{gateway.api}/models", headers={"Host": "localhost:1"}).is_success

    opened = gateway_factory(
        GROK2API_APP_API_KEY="",
        GROK2API_SECURITY_ALLOW_ANONYMOUS_API="true",
        GROK2API_SECURITY_TRUSTED_PROXIES='["127.0.0.1/32"]',
    )
    assert get(f"{opened.api}/models", headers=remote).status_code == 200
    assert "allow_anonymous_api is on" in opened.log()


def test_a_body_over_the_cap_is_refused_before_it_is_read(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(GROK2API_SECURITY_MAX_BODY_SIZE_MB="1")
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # Announce a gigabyte, send a few bytes, and wait: the answer must
        # come without the server waiting for the rest.
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\n"
            + f"Host: {host}\r\nAuthorization: Bearer {API_KEY}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
            + b'{"model": "grok-4"'
        )
        started = time.monotonic()
        answer = b""
        while b"request_too_large" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        assert time.monotonic() - started < 5
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b'"request_too_large"' in body

    # A chunked body has no length to check up front: it is cut off once it
    # passes the cap, with the same answer.
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(64):
            yield b"x" * 65536

    response = post(f"{gateway.api}/chat/completions", content=chunks(), headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_cors(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(
        GROK2API_SECURITY_CORS_ALLOW_ORIGINS='["https://chat.example"]'
    )
    preflight = options(
        f"{gateway.api}/chat/completions",
        headers={
            "Origin": "https://chat.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-api-key",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://chat.example"
    allowed = preflight.headers["access-control-allow-headers"]
    assert {"authorization", "content-type", "x-api-key"} <= {
        h.strip() for h in allowed.split(",")
    }

    answer = get(
        f"{gateway.api}/models", headers=AUTH | {"Origin": "https://chat.example"}
    )
    assert answer.headers["access-control-allow-origin"] == "https://chat.example"
    assert "x-request-id" in answer.headers["access-control-expose-headers"]

    stranger = get(
        f"{gateway.api}/models", headers=AUTH | {"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in stranger.headers

    admin_preflight = options(
        f"{gateway.url}/v1/admin/tokens",
        headers={
            "Origin": "https://chat.example",
            "Access-Control-Request-Method": "DELETE",
        },
    )
    assert "access-control-allow-origin" not in admin_preflight.headers
    admin = get(
        f"{gateway.url}/v1/admin/tokens", headers={"Origin": "https://chat.example"}
    )
    assert "access-control-allow-origin" not in admin.headers


def test_a_refusal_before_the_body_is_read_leaves_the_client_working(
    gateway: Gateway,
) -> None:
    # The SDK sends the body right after the headers; a 401 answered before
    # it arrived must not leave the kept-alive connection stuck.
    client = openai.OpenAI(
        base_url=gateway.api, api_key="wrong", max_retries=0, timeout=5
    )
    big = [{"role": "user", "content": "x" * 20_000}]
    for _ in range(3):
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="grok-4", messages=big)


def test_clients_cannot_forge_log_lines(gateway: Gateway) -> None:
    forged = "2026-01-01 00:00:00,000 1 INFO grok2api.security.auth: admin login"
    path = "/v1/x%0d%0a" + forged.replace(" ", "%20") + "%00"
    get(f"{gateway.url}{path}", headers=AUTH)

    # The access line is written once the response has gone out.
    deadline = time.monotonic() + 10
    while "\\x0d\\x0a2026-01-01" not in gateway.log():
        assert time.monotonic() < deadline, "the request was never logged"
        time.sleep(0.05)
    lines = gateway.log().splitlines()
    assert not [line for line in lines if line.startswith("2026-01-01")]
