"""The fetch guard: what it refuses, where it connects and what it sends.

Every server here listens on 127.0.0.1. Names are answered by a scripted
resolver, and the ``outbound`` guard fails a test whose fetch tries to connect
anywhere but loopback, so a refusal is told apart from a failed connection.
"""

from __future__ import annotations

import gzip
import logging
from typing import Any

import pytest
import trio

from grok2api.errors import MediaFetchError
from grok2api.security.fetch import FetchedMedia, fetch_user_url, is_public_address
from tests.security.conftest import (
    TLS_HOST,
    CertificateAuthority,
    MediaServer,
    OutboundGuard,
    Reply,
    ScriptedResolver,
    SocksProxy,
    redirect,
)

PARAM = "messages[0].content[1]"
UNFETCHABLE = f"The URL at {PARAM} could not be fetched."
PUBLIC = "93.184.215.14"
IMAGE = b"\x89PNG\r\n\x1a\n" + b"pixels" * 50


async def fetch(url: str, **options: Any) -> FetchedMedia:
    options.setdefault("max_bytes", 1 << 20)
    options.setdefault("timeout", 10)
    return await fetch_user_url(url, param=PARAM, **options)


async def refusal(url: str, **options: Any) -> str:
    with pytest.raises(MediaFetchError) as info:
        await fetch(url, **options)
    assert info.value.param == PARAM
    return str(info.value)


def image_reply() -> Reply:
    return Reply(200, [("Content-Type", "image/png; charset=binary")], IMAGE)


# -- refused before any connection ----------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/x.png",
        "http://localhost:{port}/x.png",
        "http://0.0.0.0:{port}/x.png",
        "http://[::1]:{port}/x.png",
        "http://[::]:{port}/x.png",
        "http://[::ffff:127.0.0.1]:{port}/x.png",
        "http://[::ffff:7f00:1]:{port}/x.png",
        "http://[64:ff9b::7f00:1]:{port}/x.png",
        "http://[2002:7f00:1::]:{port}/x.png",
        "http://10.0.0.1/x.png",
        "http://172.16.5.4/x.png",
        "http://192.168.1.1/x.png",
        "http://100.64.0.1/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://168.63.129.16/machine",
        "http://[fe80::1]/x.png",
        "http://224.0.0.1/x.png",
        "http://255.255.255.255/x.png",
    ],
)
async def test_fetch_refuses_addresses_that_are_not_public(
    media_server: MediaServer, url: str
) -> None:
    media_server.routes["/x.png"] = image_reply()
    assert await refusal(url.format(port=media_server.port)) == UNFETCHABLE
    assert media_server.received == []


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "017700000001",
        "0x7f000001",
        "0x7F.0.0.1",
        "0177.0.0.1",
        "127.1",
        "127.0.1",
        "127.0.0.1.",
        "1.2.3.4.5",
    ],
)
async def test_fetch_refuses_numeric_hosts_that_are_not_dotted_quads(
    media_server: MediaServer, resolver: ScriptedResolver, host: str
) -> None:
    # Were the host treated as a name, it would resolve somewhere public and
    # the guard would see the attempt.
    resolver.script(host, [PUBLIC])
    url = f"http://{host}:{media_server.port}/x.png"
    assert await refusal(url, resolver=resolver) == UNFETCHABLE
    assert resolver.lookups == []
    assert media_server.received == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "gopher://127.0.0.1:70/_stats",
        "dict://127.0.0.1:11211/stat",
        "data:image/png;base64,AAAA",
        "javascript:alert(1)",
        "//example.com/a.png",
    ],
)
async def test_fetch_refuses_schemes_other_than_http_and_https(
    resolver: ScriptedResolver, url: str
) -> None:
    message = await refusal(url, resolver=resolver)
    assert message == f"The URL at {PARAM} must be http or https."
    assert resolver.lookups == []


async def test_fetch_refuses_a_name_resolving_to_loopback_and_logs_why(
    media_server: MediaServer,
    resolver: ScriptedResolver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    media_server.routes["/x.png"] = image_reply()
    resolver.script("evil.test", ["127.0.0.1"])
    with caplog.at_level(logging.INFO, logger="grok2api.security.fetch"):
        message = await refusal(
            f"http://evil.test:{media_server.port}/x.png", resolver=resolver
        )
    assert message == UNFETCHABLE
    assert media_server.received == []
    assert "host=evil.test" in caplog.text and "127.0.0.1" in caplog.text


async def test_fetch_refuses_a_name_when_any_address_is_not_public(
    resolver: ScriptedResolver,
) -> None:
    resolver.script("mixed.test", [PUBLIC, "10.0.0.7"])
    assert await refusal("http://mixed.test/x.png", resolver=resolver) == UNFETCHABLE


async def test_fetch_error_is_the_same_for_refused_missing_and_unresolvable(
    media_server: MediaServer, resolver: ScriptedResolver
) -> None:
    # A different answer for "private" and "does not exist" would let a
    # client map internal names and addresses.
    resolver.script("internal.test", ["10.0.0.7"])
    messages = {
        await refusal(media_server.url("/missing.png"), allow_hosts=["127.0.0.1"]),
        await refusal("http://internal.test/x.png", resolver=resolver),
        await refusal("http://nowhere.test/x.png", resolver=resolver),
        await refusal(media_server.url("/x.png")),
    }
    assert messages == {UNFETCHABLE}


# -- redirects ------------------------------------------------------------------


async def test_fetch_follows_redirects_within_the_cap_for_an_allowed_host(
    media_server: MediaServer, resolver: ScriptedResolver
) -> None:
    port = media_server.port
    media_server.routes.update(
        {
            "/a": redirect("/b"),
            "/b": redirect(f"http://media.internal:{port}/c", 301),
            "/c": redirect("image.png", 307),
            "/image.png": image_reply(),
        }
    )
    resolver.script("media.internal", ["127.0.0.1"])
    fetched = await fetch(
        f"http://media.internal:{port}/a",
        resolver=resolver,
        allow_hosts=["Media.Internal."],
    )
    assert fetched == FetchedMedia(IMAGE, "image/png", "image.png")
    assert media_server.paths() == ["/a", "/b", "/c", "/image.png"]
    assert {r.headers["host"] for r in media_server.received} == {
        f"media.internal:{port}"
    }
    assert resolver.lookups == ["media.internal"] * 4


async def test_fetch_refuses_more_redirects_than_the_cap(
    media_server: MediaServer,
) -> None:
    media_server.routes["/loop"] = redirect("/loop")
    message = await refusal(media_server.url("/loop"), allow_hosts=["127.0.0.1"])
    assert message == f"The URL at {PARAM} redirected too many times."
    assert media_server.paths() == ["/loop"] * 4


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("http://10.1.2.3/x.png", UNFETCHABLE),
        ("http://127.0.0.1:{port}/x.png", UNFETCHABLE),
        ("http://[::ffff:10.0.0.1]/x.png", UNFETCHABLE),
        ("http://internal.test/x.png", UNFETCHABLE),
        ("http://2130706433:{port}/x.png", UNFETCHABLE),
        ("file:///etc/passwd", f"The URL at {PARAM} must be http or https."),
    ],
)
async def test_fetch_checks_every_redirect_hop_again(
    media_server: MediaServer, resolver: ScriptedResolver, location: str, expected: str
) -> None:
    port = media_server.port
    media_server.routes["/hop"] = redirect(location.format(port=port))
    media_server.routes["/x.png"] = image_reply()
    resolver.script("cdn.test", ["127.0.0.1"])
    resolver.script("internal.test", ["10.0.0.7"])
    message = await refusal(
        f"http://cdn.test:{port}/hop", resolver=resolver, allow_hosts=["cdn.test"]
    )
    assert message == expected
    assert media_server.paths() == ["/hop"]


async def test_fetch_sends_no_cookie_a_previous_hop_set(
    media_server: MediaServer,
) -> None:
    media_server.routes["/login"] = redirect(
        "/image.png", 302, ("Set-Cookie", "session=s3cret; Path=/")
    )
    media_server.routes["/image.png"] = image_reply()
    fetched = await fetch(media_server.url("/login"), allow_hosts=["127.0.0.1"])
    assert fetched.content == IMAGE
    assert media_server.paths() == ["/login", "/image.png"]
    for request in media_server.received:
        assert "cookie" not in request.headers
        assert "authorization" not in request.headers


# -- DNS pinning ----------------------------------------------------------------


async def test_fetch_connects_to_the_address_it_checked_not_a_later_answer(
    media_server: MediaServer, resolver: ScriptedResolver, outbound: OutboundGuard
) -> None:
    # Rebinding: the first answer is public and passes; any later lookup
    # would say loopback. The one connection attempt must go to the public
    # address (the guard stops it there), never to the media server.
    media_server.routes["/x.png"] = image_reply()
    resolver.script("rebind.test", [PUBLIC], ["127.0.0.1"])
    url = f"http://rebind.test:{media_server.port}/x.png"
    assert await refusal(url, resolver=resolver) == UNFETCHABLE
    assert outbound.take() == [(PUBLIC, media_server.port)]
    assert resolver.lookups == ["rebind.test"]
    assert media_server.received == []


async def test_fetch_pinned_to_loopback_keeps_the_host_name(
    media_server: MediaServer, resolver: ScriptedResolver
) -> None:
    # The later answer points away from loopback; using it would trip the
    # outbound guard, and a lookup by the system resolver would find nothing.
    media_server.routes["/x.png"] = image_reply()
    resolver.script("rebind.test", ["127.0.0.1"], [PUBLIC])
    fetched = await fetch(
        f"http://rebind.test:{media_server.port}/x.png",
        resolver=resolver,
        allow_hosts=["rebind.test"],
    )
    assert fetched.content == IMAGE
    assert resolver.lookups == ["rebind.test"]
    [request] = media_server.received
    assert request.headers["host"] == f"rebind.test:{media_server.port}"


async def test_fetch_tries_the_next_checked_address_when_one_refuses(
    media_server: MediaServer, resolver: ScriptedResolver
) -> None:
    # Nothing listens on [::1] at the media server's port.
    media_server.routes["/x.png"] = image_reply()
    resolver.script("dual.test", ["::1", "127.0.0.1"])
    fetched = await fetch(
        f"http://dual.test:{media_server.port}/x.png",
        resolver=resolver,
        allow_hosts=["dual.test"],
    )
    assert fetched.content == IMAGE


async def test_fetch_through_a_socks_proxy_names_the_checked_address(
    media_server: MediaServer, resolver: ScriptedResolver, socks_proxy: SocksProxy
) -> None:
    media_server.routes["/x.png"] = image_reply()
    resolver.script("media.internal", ["127.0.0.1"], [PUBLIC])
    fetched = await fetch(
        f"http://media.internal:{media_server.port}/x.png",
        resolver=resolver,
        allow_hosts=["media.internal"],
        proxy=socks_proxy.url(),
    )
    assert fetched.content == IMAGE
    assert socks_proxy.targets == ["127.0.0.1"]
    [request] = media_server.received
    assert request.headers["host"] == f"media.internal:{media_server.port}"


async def test_fetch_through_an_http_proxy_checks_first_then_names_the_host(
    media_server: MediaServer, resolver: ScriptedResolver
) -> None:
    # The media server plays the proxy: it sees the absolute URL. The proxy
    # resolves the name itself (see the module's TODO); the check still runs.
    port = media_server.port
    proxied = f"http://media.internal:{port}/x.png"
    media_server.routes[proxied] = image_reply()
    resolver.script("media.internal", ["127.0.0.1"])
    message = await refusal(proxied, resolver=resolver, proxy=media_server.url(""))
    assert message == UNFETCHABLE
    assert media_server.received == []

    fetched = await fetch(
        proxied,
        resolver=resolver,
        allow_hosts=["media.internal"],
        proxy=media_server.url(""),
    )
    assert fetched.content == IMAGE
    assert media_server.paths() == [proxied]


async def test_fetch_https_is_pinned_and_verified_for_the_original_name(
    tls_server: MediaServer,
    resolver: ScriptedResolver,
    authority: CertificateAuthority,
) -> None:
    tls_server.routes["/image.png"] = image_reply()
    resolver.script(TLS_HOST, ["127.0.0.1"])
    fetched = await fetch(
        tls_server.url("/image.png", host=TLS_HOST),
        resolver=resolver,
        allow_hosts=[TLS_HOST],
        ssl_context=authority.client_context,
    )
    assert fetched.content == IMAGE
    assert tls_server.server_names == [TLS_HOST]
    [request] = tls_server.received
    assert request.headers["host"] == f"{TLS_HOST}:{tls_server.port}"


async def test_fetch_https_redirect_to_another_name_gets_its_own_handshake(
    tls_server: MediaServer,
    resolver: ScriptedResolver,
    authority: CertificateAuthority,
) -> None:
    # Both names are pinned to the same address; reusing the connection
    # verified for the first would skip the certificate check for the second.
    tls_server.keep_alive = True
    tls_server.routes["/hop"] = redirect(
        tls_server.url("/image.png", host="other.test")
    )
    tls_server.routes["/image.png"] = image_reply()
    resolver.script(TLS_HOST, ["127.0.0.1"])
    resolver.script("other.test", ["127.0.0.1"])
    message = await refusal(
        tls_server.url("/hop", host=TLS_HOST),
        resolver=resolver,
        allow_hosts=[TLS_HOST, "other.test"],
        ssl_context=authority.client_context,
    )
    assert message == UNFETCHABLE
    assert tls_server.server_names == [TLS_HOST, "other.test"]
    assert tls_server.paths() == ["/hop"]


async def test_fetch_https_refuses_a_certificate_for_another_name(
    tls_server: MediaServer,
    resolver: ScriptedResolver,
    authority: CertificateAuthority,
) -> None:
    tls_server.routes["/image.png"] = image_reply()
    resolver.script("other.test", ["127.0.0.1"])
    message = await refusal(
        tls_server.url("/image.png", host="other.test"),
        resolver=resolver,
        allow_hosts=["other.test"],
        ssl_context=authority.client_context,
    )
    assert message == UNFETCHABLE
    assert tls_server.server_names == ["other.test"]
    assert tls_server.received == []


# -- size and time --------------------------------------------------------------


async def test_fetch_accepts_a_body_exactly_at_the_cap(
    media_server: MediaServer,
) -> None:
    media_server.routes["/x.png"] = image_reply()
    fetched = await fetch(
        media_server.url("/x.png"), max_bytes=len(IMAGE), allow_hosts=["127.0.0.1"]
    )
    assert fetched.content == IMAGE


async def test_fetch_refuses_a_declared_length_past_the_size_cap(
    media_server: MediaServer,
) -> None:
    media_server.routes["/big.png"] = Reply(200, [], b"x" * 1001)
    message = await refusal(
        media_server.url("/big.png"), max_bytes=1000, allow_hosts=["127.0.0.1"]
    )
    assert message == f"The file at {PARAM} is larger than 1000 bytes."


# httpx and httpcore leave their nested body generators open when a reader
# stops early (encode/httpx#3686); Trio closes them when collected, and warns.
@pytest.mark.filterwarnings(
    "ignore:Async generator '(httpx|httpcore)\\.:ResourceWarning"
)
async def test_fetch_stops_reading_an_endless_body_at_the_size_cap(
    media_server: MediaServer,
) -> None:
    media_server.routes["/big.png"] = Reply(200, [], endless=True)
    message = await refusal(
        media_server.url("/big.png"), max_bytes=1000, allow_hosts=["127.0.0.1"]
    )
    assert message == f"The file at {PARAM} is larger than 1000 bytes."


async def test_fetch_asks_for_identity_and_refuses_a_compressed_body(
    media_server: MediaServer,
) -> None:
    # Decompressing would let a small body on the wire outgrow the cap unseen.
    media_server.routes["/x.png"] = Reply(
        200, [("Content-Encoding", "gzip")], gzip.compress(b"\0" * 100_000)
    )
    message = await refusal(
        media_server.url("/x.png"), max_bytes=50_000, allow_hosts=["127.0.0.1"]
    )
    assert message == UNFETCHABLE
    assert media_server.received[0].headers["accept-encoding"] == "identity"


async def test_fetch_gives_up_at_the_deadline(media_server: MediaServer) -> None:
    media_server.routes["/slow.png"] = Reply(stall=True)
    started = trio.current_time()
    message = await refusal(
        media_server.url("/slow.png"), timeout=0.3, allow_hosts=["127.0.0.1"]
    )
    assert message == f"The URL at {PARAM} took too long to fetch."
    assert trio.current_time() - started < 5
    assert media_server.paths() == ["/slow.png"]


# -- the address table ----------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_is_public_address_accepts_global_unicast(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "0.0.0.0",
        "10.1.1.1",
        "100.100.100.200",
        "168.63.129.16",
        "169.254.169.254",
        "198.18.0.1",
        "239.1.1.1",
        "::",
        "::1",
        "::127.0.0.1",
        "::ffff:192.168.0.1",
        "64:ff9b::a00:1",
        "64:ff9b:1::1",
        "2002:c0a8:101::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "fc00::1",
        "fe80::1%eth0",
        "ff02::1",
        "not-an-address",
    ],
)
def test_is_public_address_refuses_everything_else(address: str) -> None:
    assert not is_public_address(address)
