"""The address links to cached files carry: app.app_url, else the request's
own, believing forwarded headers only from trusted proxies."""

from __future__ import annotations

from functools import partial

import pytest

from grok2api.errors import ApiError
from grok2api.media import public_base_url
from grok2api.security.client_address import TrustedProxies

PROXY = "10.0.0.5"
base = partial(public_base_url, "", proxies=TrustedProxies(["10.0.0.0/8"]))


def test_app_url_wins_over_every_header() -> None:
    url = public_base_url(
        "https://media.example.com/",
        scheme="http",
        host="internal:8000",
        peer=PROXY,
        forwarded_host=["evil.test"],
        proxies=TrustedProxies(["10.0.0.0/8"]),
    )
    assert url == "https://media.example.com"


def test_without_app_url_the_request_host_is_used() -> None:
    assert base(scheme="http", host="gw.local:8000", peer="203.0.113.9") == (
        "http://gw.local:8000"
    )
    assert base(scheme="https", host="[::1]:8443", peer="::1") == "https://[::1]:8443"


def test_forwarded_headers_from_an_untrusted_peer_are_ignored() -> None:
    url = base(
        scheme="http",
        host="gw.local",
        peer="203.0.113.9",
        forwarded_proto=["https"],
        forwarded_host=["evil.test"],
    )
    assert url == "http://gw.local"


def test_forwarded_headers_from_a_trusted_proxy_are_believed() -> None:
    url = base(
        scheme="http",
        host="backend:8000",
        peer=PROXY,
        forwarded_proto=["http, https"],
        forwarded_host=["spoofed.test, media.example.com"],
    )
    assert url == "https://media.example.com"


def test_a_malformed_forwarded_host_falls_back_to_the_host_header() -> None:
    url = base(
        scheme="http",
        host="backend:8000",
        peer=PROXY,
        forwarded_host=["evil.test/path?x=1"],
    )
    assert url == "http://backend:8000"


@pytest.mark.parametrize("host", [None, "", "a b", "evil.test/x", "user@evil.test"])
def test_no_usable_host_is_a_400(host: str | None) -> None:
    with pytest.raises(ApiError) as refused:
        base(scheme="http", host=host, peer="203.0.113.9")
    assert refused.value.status == 400
    assert "app.app_url" in refused.value.message
