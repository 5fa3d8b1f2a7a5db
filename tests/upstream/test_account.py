"""The account settings calls on the wire: URLs, headers, exact bodies, and
how each kind of refusal is classified."""

from __future__ import annotations

import datetime
import json

import httpx
import pytest

from grok2api.errors import EgressBlocked, TokenRejected, UpstreamRequestRejected
from grok2api.upstream.account import (
    accept_terms,
    enable_nsfw_content,
    set_birth_date,
)
from grok2api.upstream.grpc_web import data_frame, trailer_frame
from tests.upstream.conftest import TOKEN, MakeClient

ACCOUNTS = "http://accounts.test"
GRPC_OK = data_frame(b"") + trailer_frame({"grpc-status": "0"})
CLOUDFLARE = b"<!DOCTYPE html><html><title>Just a moment...</title></html>"


def grpc_answer(body: bytes = GRPC_OK, **headers: str) -> httpx.Response:
    return httpx.Response(
        200,
        content=body,
        headers={"content-type": "application/grpc-web+proto", **headers},
    )


async def test_account_terms_go_to_the_accounts_host_as_grpc_web(
    make_client: MakeClient,
) -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return grpc_answer(b"", **{"grpc-status": "0"})

    client = make_client(handler)
    await accept_terms(client, TOKEN, ACCOUNTS + "/")
    [request] = seen
    assert str(request.url) == (
        ACCOUNTS + "/auth_mgmt.AuthManagement/SetTosAcceptedVersion"
    )
    assert request.content == bytes.fromhex("00000000021001")
    headers = request.headers
    assert headers["content-type"] == "application/grpc-web+proto"
    assert headers["x-grpc-web"] == "1"
    assert headers["x-user-agent"] == "connect-es/2.1.1"
    assert headers["origin"] == ACCOUNTS
    assert headers["referer"] == ACCOUNTS + "/accept-tos"
    assert f"sso={TOKEN}" in headers["cookie"]
    assert "x-statsig-id" in headers


async def test_account_nsfw_flag_goes_to_grok_with_the_37_byte_body(
    make_client: MakeClient,
) -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return grpc_answer()

    await enable_nsfw_content(make_client(handler), TOKEN)
    [request] = seen
    assert str(request.url) == (
        "http://grok.test/auth_mgmt.AuthManagement/UpdateUserFeatureControls"
    )
    assert len(request.content) == 37
    assert request.content.endswith(b"always_show_nsfw_content")
    assert request.headers["referer"] == "http://grok.test/?_s=data"


async def test_account_grpc_status_in_trailer_is_an_error(
    make_client: MakeClient,
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        trailer = trailer_frame({"grpc-status": "9", "grpc-message": "no%20date"})
        return grpc_answer(data_frame(b"") + trailer)

    with pytest.raises(UpstreamRequestRejected, match="gRPC status 9: no date"):
        await enable_nsfw_content(make_client(handler), TOKEN)


async def test_account_birth_date_is_sent_at_noon_utc(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    born = datetime.date(1990, 2, 28)
    assert await set_birth_date(make_client(handler), TOKEN, born) is True
    [request] = seen
    assert str(request.url) == "http://grok.test/rest/auth/set-birth-date"
    assert json.loads(request.content) == {"birthDate": "1990-02-28T12:00:00.000Z"}


async def test_account_birth_date_change_limit_means_already_set(
    make_client: MakeClient,
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        message = "[WKE=account:birth-date-change-limit-reached] no more changes"
        return httpx.Response(429, json={"error": {"code": 8, "message": message}})

    born = datetime.date(1990, 2, 28)
    assert await set_birth_date(make_client(handler), TOKEN, born) is False


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, b'{"error":{"code":16,"message":"invalid-credentials"}}', TokenRejected),
        (403, CLOUDFLARE, EgressBlocked),
    ],
)
async def test_account_http_refusals_are_classified(
    make_client: MakeClient, status: int, body: bytes, error: type[Exception]
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    client = make_client(handler)
    with pytest.raises(error):
        await accept_terms(client, TOKEN, ACCOUNTS)
    with pytest.raises(error):
        await set_birth_date(client, TOKEN, datetime.date(1990, 1, 1))
    with pytest.raises(error):
        await enable_nsfw_content(client, TOKEN)
