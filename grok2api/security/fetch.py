"""The one function that fetches a URL on a user's behalf.

A user's ``image_url`` must never become a way into the gateway's own network.
Every hop of a fetch passes the same guard:

- Only http and https. A host written as a number must be a plain dotted quad:
  ``2130706433``, ``0177.0.0.1``, ``127.1`` and hex forms are refused rather
  than interpreted, because resolvers disagree on what they mean.
- The host is resolved once and every address is checked. Loopback, private,
  link-local, shared (CGNAT), multicast, reserved, unspecified and cloud
  metadata addresses are refused, also when an IPv4 address travels inside
  IPv6 (mapped, NAT64, 6to4); Teredo is refused outright.
- The request goes to a checked address, never to whatever the name resolves
  to a moment later: the URL is rewritten to the address, while the Host
  header, TLS SNI and the certificate check keep the original name. A DNS
  answer that changes after the check (rebinding) is never used.

Redirects are followed by hand, each hop checked anew, up to a small cap. The
body is asked for uncompressed (a compressed one is refused, not inflated),
streamed and capped in size; the whole fetch is capped in time. The client is
separate from the upstream one and keeps no cookies, so neither an upstream
credential nor anything one hop sets reaches another. Hosts named in
``security.media_fetch_allow_hosts`` skip the address check but are still
pinned. A refused URL gets the same error as an unreachable one, so the error
cannot be used to map a network; the reason is logged for the operator.

TODO: through an HTTP proxy the request names the host and the proxy resolves
it again, so rebinding between our check and the proxy's lookup is not caught
(httpcore's CONNECT tunnel verifies TLS against the URL's host, which rules
out sending it the address). A SOCKS proxy is given the checked address.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Collection, Sequence

import attrs
import httpx
import trio

from grok2api.errors import MediaFetchError

__all__ = [
    "FetchedMedia",
    "Resolver",
    "fetch_user_url",
    "is_public_address",
    "resolve_host",
]

logger = logging.getLogger(__name__)

_MAX_REDIRECTS = 3

#: Given a host name and a port, the addresses to try, best first.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Most of these already fall in a refused range; they are named so that a
# change in Python's address tables cannot reopen them. Azure's wire server
# sits in public space and is caught only here.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# WHATWG URL parsing treats a host whose last label is a number as IPv4; so do
# inet_aton-based resolvers, each with its own idea of octal and short forms.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


@attrs.frozen
class FetchedMedia:
    content: bytes
    mime_type: str
    filename: str


def is_public_address(address: str) -> bool:
    """Whether ``address`` may be fetched from without an allow-list entry."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        # Traffic to these reaches the embedded IPv4 address, so that is the
        # one to judge; Python files the prefixes themselves under reserved.
        if ip.ipv4_mapped is not None:
            return _is_public(ip.ipv4_mapped)
        if ip in _NAT64:
            return _is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and not _is_public(ip.sixtofour):
            return False
    return _is_public(ip)


def _is_public(ip: _IPAddress) -> bool:
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in _METADATA_ADDRESSES
    )


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host``, in its order."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def fetch_user_url(
    url: str,
    *,
    param: str,
    max_bytes: int,
    timeout: float,
    allow_hosts: Collection[str] = (),
    proxy: str | None = None,
    resolver: Resolver = resolve_host,
    ssl_context: ssl.SSLContext | None = None,
) -> FetchedMedia:
    """Fetch a user-supplied http(s) URL under the guard.

    Args:
        url: the URL as the user gave it.
        param: where the URL sits in the request, for error messages.
        max_bytes: the largest body accepted.
        timeout: seconds for the whole fetch, resolution and redirects included.
        allow_hosts: host names fetched from whatever they resolve to.
        proxy: an http(s) or socks5 proxy URL to fetch through.
        resolver: turns a host name into addresses; the system's by default.
        ssl_context: the trust for https; httpx's default (certifi) when None.

    Raises:
        MediaFetchError: the URL is refused, unreachable, not a success, too
            large or too slow. The message names ``param`` and nothing about
            the target, so the error cannot be used to probe a network.
    """
    try:
        guard = _Guard(
            param=param,
            allowed=frozenset(_host_key(host) for host in allow_hosts),
            resolver=resolver,
            pin=proxy is None or httpx.URL(proxy).scheme.startswith("socks"),
        )
        with trio.fail_after(timeout):
            async with _open_client(proxy, ssl_context) as client:
                return await guard.follow(client, url, max_bytes)
    except trio.TooSlowError as exc:
        raise MediaFetchError(
            f"The URL at {param} took too long to fetch.", param=param
        ) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        logger.debug("media fetch failed param=%s error=%r", param, exc)
        raise _unfetchable(param) from exc


def _open_client(
    proxy: str | None, ssl_context: ssl.SSLContext | None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        proxy=proxy,
        verify=ssl_context if ssl_context is not None else True,
        trust_env=False,
        # The deadline around the whole fetch is the only timeout.
        timeout=None,
        cookies=_jar_that_keeps_nothing(),
        headers={"Accept-Encoding": "identity"},
        # A kept connection was verified for one host name; two names pinned
        # to the same address must not share it.
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def _jar_that_keeps_nothing() -> http.cookiejar.CookieJar:
    return http.cookiejar.CookieJar(
        policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=())
    )


def _host_key(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _unfetchable(param: str) -> MediaFetchError:
    return MediaFetchError(f"The URL at {param} could not be fetched.", param=param)


@attrs.frozen(kw_only=True)
class _Guard:
    param: str
    allowed: frozenset[str]
    resolver: Resolver
    pin: bool

    async def follow(
        self, client: httpx.AsyncClient, url: str, max_bytes: int
    ) -> FetchedMedia:
        target = self._parse(httpx.URL(url))
        for _ in range(_MAX_REDIRECTS + 1):
            addresses = await self._checked_addresses(target)
            response = await self._send(client, target, addresses)
            try:
                if response.is_redirect:
                    target = self._parse(target.join(response.headers["location"]))
                    continue
                return await _read_media(response, target, max_bytes, self.param)
            finally:
                await response.aclose()
        raise MediaFetchError(
            f"The URL at {self.param} redirected too many times.", param=self.param
        )

    def _parse(self, url: httpx.URL) -> httpx.URL:
        if url.scheme not in ("http", "https"):
            raise MediaFetchError(
                f"The URL at {self.param} must be http or https.", param=self.param
            )
        if not url.host:
            raise _unfetchable(self.param)
        return url

    async def _checked_addresses(self, url: httpx.URL) -> list[str]:
        host = url.raw_host.decode("ascii").lower()
        literal = self._address_literal(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                answers = await self.resolver(host, url.port or _default_port(url))
            except (OSError, UnicodeError) as exc:
                # An empty or over-long label fails IDNA encoding inside
                # getaddrinfo: as unresolvable as any other bad name.
                raise self._refuse(host, "no address") from exc
            addresses = list(dict.fromkeys(answers))
            if not addresses:
                raise self._refuse(host, "no address")
        if {_host_key(host), _host_key(url.host)} & self.allowed:
            return addresses
        for address in addresses:
            if not is_public_address(address):
                raise self._refuse(host, f"address {address} is not public")
        return addresses

    def _address_literal(self, host: str) -> _IPAddress | None:
        if "%" in host:
            raise self._refuse(host, "zone id or escape in the host")
        if ":" in host:
            try:
                return ipaddress.IPv6Address(host)
            except ValueError as exc:
                raise self._refuse(host, "not an IPv6 address") from exc
        if not _NUMERIC_LABEL.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
            return None
        try:
            return ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise self._refuse(host, "not a canonical IPv4 address") from exc

    async def _send(
        self, client: httpx.AsyncClient, url: httpx.URL, addresses: Sequence[str]
    ) -> httpx.Response:
        if not self.pin:
            return await client.send(client.build_request("GET", url), stream=True)
        for address in addresses[:-1]:
            try:
                return await client.send(_pinned(client, url, address), stream=True)
            except httpx.ConnectError as exc:
                logger.debug(
                    "media fetch connect failed address=%s error=%r", address, exc
                )
        return await client.send(_pinned(client, url, addresses[-1]), stream=True)

    def _refuse(self, host: str, reason: str) -> MediaFetchError:
        logger.info(
            "media fetch refused param=%s host=%s reason=%s", self.param, host, reason
        )
        return _unfetchable(self.param)


def _pinned(client: httpx.AsyncClient, url: httpx.URL, address: str) -> httpx.Request:
    return client.build_request(
        "GET",
        url.copy_with(host=address),
        headers={"Host": url.netloc.decode("ascii")},
        extensions={"sni_hostname": url.raw_host.decode("ascii")},
    )


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


async def _read_media(
    response: httpx.Response, url: httpx.URL, max_bytes: int, param: str
) -> FetchedMedia:
    if response.status_code != 200:
        raise _unfetchable(param)
    # Identity was asked for; decoding a compressed body would let a few
    # kilobytes on the wire expand past the cap before it is counted.
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise _unfetchable(param)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(param, max_bytes)

    chunks: list[bytes] = []
    size = 0
    async with contextlib.aclosing(response.aiter_raw()) as body:
        async for chunk in body:
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(param, max_bytes)
            chunks.append(chunk)
    mime = response.headers.get("content-type", "").split(";")[0].strip()
    name = url.path.rsplit("/", 1)[-1] or "file"
    return FetchedMedia(b"".join(chunks), mime or "application/octet-stream", name)


def _too_large(param: str, max_bytes: int) -> MediaFetchError:
    return MediaFetchError(
        f"The file at {param} is larger than {max_bytes} bytes.", param=param
    )
