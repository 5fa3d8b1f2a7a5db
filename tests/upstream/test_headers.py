from __future__ import annotations

import base64
import random
import re
import uuid

import pytest

from grok2api.errors import TokenRejected
from grok2api.upstream import UpstreamOptions, fixed_statsig_id, random_statsig_id
from grok2api.upstream.headers import client_hints, rest_headers, sso_cookie

from .conftest import TOKEN

_TYPE_ERROR = re.compile(
    r"(x1|e):TypeError: Cannot read properties of "
    r"(null \(reading 'children\['[a-z0-9]{5}'\]'\)"
    r"|undefined \(reading '[a-z]{10}'\))"
)


def test_headers_token_appears_only_in_cookie() -> None:
    headers = rest_headers(TOKEN, UpstreamOptions(cf_clearance="cf-123"))

    assert headers["Cookie"] == f"sso={TOKEN}; sso-rw={TOKEN}; cf_clearance=cf-123"
    others = {name: value for name, value in headers.items() if name != "Cookie"}
    assert not any("secret-payload" in value for value in others.values())
    assert "cf-123" not in repr(UpstreamOptions(cf_clearance="cf-123"))


def test_headers_strip_pasted_sso_prefix_and_whitespace() -> None:
    assert sso_cookie(f"  sso={TOKEN}\n") == f"sso={TOKEN}; sso-rw={TOKEN}"


@pytest.mark.parametrize("bad", ["", "a;b", "a b", "tök", 'a"b', "a\r\nX-Evil: 1"])
def test_headers_refuse_tokens_a_cookie_cannot_carry(bad: str) -> None:
    with pytest.raises(TokenRejected):
        rest_headers(bad, UpstreamOptions())


def test_headers_carry_browser_set_and_fresh_request_id() -> None:
    first = rest_headers(TOKEN, UpstreamOptions())
    second = rest_headers(TOKEN, UpstreamOptions())

    assert first["Origin"] == "https://grok.com"
    assert first["Referer"] == "https://grok.com/"
    assert first["Sec-Fetch-Site"] == "same-origin"
    assert first["Sec-Ch-Ua-Platform"] == '"macOS"'
    assert '"Google Chrome";v="136"' in first["Sec-Ch-Ua"]
    assert uuid.UUID(first["x-xai-request-id"]).version == 4
    assert first["x-xai-request-id"] != second["x-xai-request-id"]


def test_headers_cross_host_referer_is_same_site() -> None:
    headers = rest_headers(
        TOKEN,
        UpstreamOptions(),
        origin="https://assets.grok.com",
        referer="https://grok.com/",
    )
    assert headers["Sec-Fetch-Site"] == "same-site"


def test_client_hints_follow_the_user_agent() -> None:
    hints = client_hints(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/137.0.0.0 Safari/537.36"
    )
    assert hints["Sec-Ch-Ua-Platform"] == '"Windows"'
    assert '"Chromium";v="137"' in hints["Sec-Ch-Ua"]
    assert hints["Sec-Ch-Ua-Mobile"] == "?0"


def test_statsig_dynamic_values_decode_to_x1_type_errors() -> None:
    rng = random.Random(7)
    decoded = {
        base64.b64decode(random_statsig_id(rng=rng)).decode() for _ in range(200)
    }
    assert all(_TYPE_ERROR.fullmatch(text) for text in decoded)
    assert all(text.startswith("x1:") for text in decoded)
    # Both forms occur, and values differ from call to call.
    assert any("null" in text for text in decoded)
    assert any("undefined" in text for text in decoded)
    assert len(decoded) > 150


def test_statsig_prefix_and_fixed_mode_follow_options() -> None:
    legacy = rest_headers(TOKEN, UpstreamOptions(statsig_prefix="e:"))
    fixed = rest_headers(TOKEN, UpstreamOptions(dynamic_statsig=False))

    assert base64.b64decode(legacy["x-statsig-id"]).decode().startswith("e:TypeError")
    assert fixed["x-statsig-id"] == fixed_statsig_id("x1:")
    assert base64.b64decode(fixed["x-statsig-id"]).decode() == (
        "x1:TypeError: Cannot read properties of undefined (reading 'childNodes')"
    )
