"""The transport abstraction: one streamed HTTP exchange, whatever the library.

Three implementations exist.
:class:`~grok2api.upstream.transport_curl.CurlCffiTransport` impersonates
Chrome at the TLS and HTTP/2 level, which grok.com's Cloudflare front
requires. :class:`~grok2api.upstream.transport_trio.TrioTransport`
speaks HTTP/1.1 on Trio sockets at a fraction of httpx's CPU cost and is what
plain-HTTP targets (the emulator, a local relay) use.
:class:`~grok2api.upstream.transport_httpx.HttpxTransport` carries proxied
requests for it and serves tests, where ``httpx.MockTransport`` replaces the
network. All raise only :class:`~grok2api.errors.UpstreamError` subclasses:
each library's exceptions are translated in its own module, at one place.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    from grok2api.upstream.options import UpstreamOptions

__all__ = [
    "Response",
    "Transport",
    "TransportStatistics",
    "create_transport",
    "encode_body",
    "read_limited",
]


@attrs.frozen
class TransportStatistics:
    """What a transport holds right now.

    ``worker_threads`` counts OS threads pinned by open exchanges (always 0
    for a Trio-native transport); ``proxy_clients`` the clients held open
    for different proxies (httpx binds one proxy per client; 0 for curl,
    which sets the proxy per request).
    """

    name: str
    open_streams: int
    worker_threads: int = 0
    proxy_clients: int = 0


class Response(Protocol):
    """The answer to one request, its body still unread."""

    @property
    def status(self) -> int:
        """The HTTP status."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers, names in lower case."""
        ...

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Iterate over the (decompressed) body in chunks as they arrive.

        Raises:
            UpstreamError: the connection broke or stalled mid-body.
        """
        ...

    async def aread(self, limit: int | None = None) -> bytes:
        """Read the body, or its first ``limit`` bytes, and return it."""
        ...

    async def aclose(self) -> None:
        """Stop reading and release the connection; safe to call twice."""
        ...


class Transport(Protocol):
    """Sends requests and hands back streamed responses."""

    name: str

    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        json: Any = None,
        read_timeout: float,
        proxy_url: str = "",
    ) -> AbstractAsyncContextManager[Response]:
        """Send one request; the context manager owns the response.

        Args:
            method: the HTTP method.
            url: the absolute URL.
            headers: the request headers, sent as given.
            content: raw body bytes, or
            json: a value sent as compact UTF-8 JSON.
            read_timeout: the longest silence tolerated while waiting for the
                headers or for any later piece of the body.
            proxy_url: the proxy this request goes through (``http``,
                ``https``, ``socks5``, ``socks5h``); empty for a direct
                connection. Environment proxy variables are always ignored,
                so the configuration is the only source of truth.

        Raises:
            UpstreamError: connecting failed (``EgressBlocked``) or the
                headers did not come in time (``UpstreamTimeout``).
        """
        ...

    def statistics(self) -> TransportStatistics:
        """Counters for introspection."""
        ...

    async def aclose(self) -> None:
        """Close pooled connections; open streams must be closed first."""
        ...


def encode_body(content: bytes | None, json: Any) -> bytes:
    """The bytes to send for a ``content``/``json`` pair."""
    if content is not None and json is not None:
        raise ValueError("pass content or json, not both")
    if json is not None:
        text = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8")
    return content or b""


async def read_limited(chunks: AsyncIterator[bytes], limit: int | None) -> bytes:
    """Collect ``chunks``, stopping once ``limit`` bytes are in hand."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if limit is not None and len(body) >= limit:
            del body[limit:]
            break
    return bytes(body)


def create_transport(options: UpstreamOptions) -> Transport:
    """Build the transport ``options.transport`` asks for.

    ``auto`` picks curl_cffi (browser TLS) for an ``https`` base URL and the
    lean Trio transport for plain ``http``, where there is no TLS fingerprint
    to imitate.
    """
    # Imported here because the implementations import this module.
    from grok2api.upstream.transport_curl import CurlCffiTransport
    from grok2api.upstream.transport_httpx import HttpxTransport
    from grok2api.upstream.transport_trio import TrioTransport

    kind = options.transport
    if kind == "auto":
        kind = "curl_cffi" if options.base_url.startswith("https:") else "trio"
    if kind == "trio":
        return TrioTransport(
            max_connections=options.max_connections,
            connect_timeout=options.connect_timeout,
        )
    if kind == "curl_cffi":
        return CurlCffiTransport(
            browser=options.browser,
            max_connections=options.max_connections,
            connect_timeout=options.connect_timeout,
        )
    return HttpxTransport(
        max_connections=options.max_connections,
        connect_timeout=options.connect_timeout,
    )
