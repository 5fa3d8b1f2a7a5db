"""UpstreamClient.download_asset: what it sends and how refusals read."""

from __future__ import annotations

import httpx
import pytest

from grok2api.errors import (
    EgressBlocked,
    TokenRejected,
    UpstreamError,
    UpstreamProtocolError,
)
from grok2api.upstream import HttpxTransport, UpstreamClient, UpstreamOptions
from tests.upstream.conftest import ScriptedBody

TOKEN = "tok-download-0123456789"
OPTIONS = UpstreamOptions(
    base_url="http://grok.test",
    assets_url="http://assets.grok.test",
    transport="httpx",
    request_timeout=5.0,
)


def client_answering(
    response: httpx.Response, seen: list[httpx.Request]
) -> UpstreamClient:
    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response

    return UpstreamClient(
        OPTIONS, HttpxTransport(transport=httpx.MockTransport(handler))
    )


async def download(client: UpstreamClient, url: str, max_bytes: int = 10_000) -> bytes:
    chunks: list[bytes] = []

    async def write(chunk: bytes) -> None:
        chunks.append(chunk)

    try:
        await client.download_asset(TOKEN, url, write, max_bytes=max_bytes)
    finally:
        await client.aclose()
    return b"".join(chunks)


async def test_the_download_is_a_navigation_with_the_accounts_cookie() -> None:
    seen: list[httpx.Request] = []
    client = client_answering(httpx.Response(200, content=b"bytes"), seen)
    assert await download(client, "/users/u/generated/i/image.jpg") == b"bytes"
    [request] = seen
    assert request.method == "GET"
    assert str(request.url) == "http://assets.grok.test/users/u/generated/i/image.jpg"
    headers = request.headers
    assert headers["cookie"] == f"sso={TOKEN}; sso-rw={TOKEN}"
    assert headers["sec-fetch-mode"] == "navigate"
    assert headers["sec-fetch-dest"] == "document"
    assert headers["origin"] == "http://assets.grok.test"
    assert headers["referer"] == "http://grok.test/"
    assert "content-type" not in headers


@pytest.mark.parametrize(
    "url",
    [
        "http://grok.test/users/u/image.jpg",
        "https://assets.grok.test/users/u/image.jpg",
        "http://assets.grok.test@evil.test/image.jpg",
        "http://assets.grok.test:8080/image.jpg",
        "http://assets.grok.test/a b.jpg",
    ],
)
async def test_the_cookie_goes_to_the_assets_host_only(url: str) -> None:
    seen: list[httpx.Request] = []
    client = client_answering(httpx.Response(200, content=b"x"), seen)
    with pytest.raises(UpstreamProtocolError, match="not on the assets host"):
        await download(client, url)
    assert seen == []


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (httpx.Response(403, json={"error": "nope"}), UpstreamError, "another account"),
        (httpx.Response(404), UpstreamError, "no such asset"),
        (
            httpx.Response(401, json={"error": {"message": "invalid-credentials"}}),
            TokenRejected,
            "refused the token",
        ),
        (
            httpx.Response(403, text="<html><title>Just a moment...</title></html>"),
            EgressBlocked,
            "Cloudflare",
        ),
    ],
)
async def test_refusals_keep_whose_fault_they_are(
    response: httpx.Response, error: type[UpstreamError], text: str
) -> None:
    client = client_answering(response, [])
    with pytest.raises(error, match=text) as refused:
        await download(client, "users/u/image.jpg")
    assert type(refused.value) is error
    assert TOKEN not in str(refused.value)


async def test_an_asset_over_the_cap_is_refused_declared_or_not() -> None:
    declared = httpx.Response(200, content=b"x" * 20_000)
    with pytest.raises(UpstreamProtocolError, match="larger than"):
        await download(client_answering(declared, []), "users/u/i.jpg")

    undeclared = httpx.Response(200, stream=ScriptedBody(*[b"x" * 1000] * 100))
    with pytest.raises(UpstreamProtocolError, match="larger than"):
        await download(client_answering(undeclared, []), "users/u/i.jpg")


def client_routing(
    answers: dict[str, httpx.Response], seen: list[httpx.Request]
) -> UpstreamClient:
    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[str(request.url)]

    return UpstreamClient(
        OPTIONS, HttpxTransport(transport=httpx.MockTransport(handler))
    )


def moved(location: str, status: int = 302) -> httpx.Response:
    return httpx.Response(status, headers={"location": location})


async def test_a_redirect_on_the_assets_host_keeps_the_cookie() -> None:
    seen: list[httpx.Request] = []
    client = client_routing(
        {
            "http://assets.grok.test/users/u/i/image.jpg": moved("/users/u/i/v2.jpg"),
            "http://assets.grok.test/users/u/i/v2.jpg": httpx.Response(
                200, content=b"moved bytes"
            ),
        },
        seen,
    )
    assert await download(client, "users/u/i/image.jpg") == b"moved bytes"
    assert [request.headers["cookie"] for request in seen] == [
        f"sso={TOKEN}; sso-rw={TOKEN}"
    ] * 2


async def test_a_redirect_to_a_cdn_carries_no_credential() -> None:
    seen: list[httpx.Request] = []
    cdn = "https://cdn.example.test/signed/abc?sig=1"
    client = client_routing(
        {
            "http://assets.grok.test/users/u/i/image.jpg": moved(cdn, 307),
            cdn: httpx.Response(200, content=b"cdn bytes"),
        },
        seen,
    )
    assert await download(client, "users/u/i/image.jpg") == b"cdn bytes"
    first, second = seen
    assert "cookie" in first.headers
    for name in ("cookie", "x-statsig-id", "x-xai-request-id", "origin"):
        assert name not in second.headers
    assert TOKEN not in str(second.headers)


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/image.jpg",
        "http://[::1]/image.jpg",
        "ftp://assets.grok.test/image.jpg",
        "",
    ],
)
async def test_redirects_to_internal_or_odd_addresses_are_refused(
    location: str,
) -> None:
    seen: list[httpx.Request] = []
    client = client_routing(
        {"http://assets.grok.test/users/u/image.jpg": moved(location)}, seen
    )
    with pytest.raises(UpstreamProtocolError, match="does not follow"):
        await download(client, "users/u/image.jpg")
    assert len(seen) == 1


async def test_a_redirect_loop_ends_in_an_error() -> None:
    seen: list[httpx.Request] = []
    here = "http://assets.grok.test/users/u/image.jpg"
    client = client_routing({here: moved(here)}, seen)
    with pytest.raises(UpstreamProtocolError, match="redirected more than 3"):
        await download(client, "users/u/image.jpg")
    assert len(seen) == 4
