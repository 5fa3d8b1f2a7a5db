"""The Trio-native transport, on ``httpx.AsyncClient``.

httpx speaks plain Python TLS, which Cloudflare tells apart from a browser,
so this transport is for plain-HTTP targets (the emulator, a local relay) and
for tests, where ``transport=httpx.MockTransport(...)`` replaces the network.
It cannot decode brotli or zstd here, so it asks only for gzip and deflate.

httpx binds a proxy to a client when the client is created, while the proxy
is chosen per request (:mod:`grok2api.proxies`), so the transport keeps one
client per proxy URL in a small least-recently-used cache.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import attrs
import httpx
import trio

from grok2api.errors import (
    EgressBlocked,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from grok2api.upstream.transport import TransportStatistics, encode_body, read_limited

__all__ = ["HttpxTransport"]

log = logging.getLogger(__name__)

#: Cleanup after a cancelled exchange gets this long, shielded.
CLOSE_GRACE = 2.0
#: Clients (one per proxy URL) kept open at once; a pool that rotates keeps
#: the few latest, and a sticky pool the ones its tokens are bound to.
MAX_PROXY_CLIENTS = 8

_DECODABLE_ENCODINGS = "gzip, deflate"
_DRAIN_STEPS = 8


def _translate(exc: httpx.HTTPError, *, started: bool) -> UpstreamError:
    """The one place httpx exceptions become grok2api errors.

    ``started`` is true once the response headers arrived: from then on the
    upstream may have counted the request.
    """
    what = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError):
        return EgressBlocked(
            f"Could not connect to Grok ({what}); check the network, proxy and DNS."
        )
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(
            f"Grok stalled past the transport timeout ({what}).", charged=started
        )
    # Unlike the Trio transport, httpcore does not send a request again when
    # a kept-alive connection closes as it is reused: that race lands here.
    if not started and isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return EgressBlocked(
            f"The connection to Grok dropped before any answer ({what})."
        )
    return UpstreamProtocolError(
        f"The connection to Grok broke mid-answer ({what}).",
        status=200 if started else None,
        charged=started,
    )


@contextmanager
def _translating(*, started: bool) -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError as exc:
        raise _translate(exc, started=started) from exc


class _Chunks:
    """An async iterator over body chunks that translates errors."""

    def __init__(self, response: httpx.Response) -> None:
        self._inner = response.aiter_bytes()
        self._finished = False

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            with _translating(started=True):
                return await self._inner.__anext__()
        except BaseException:
            self._finished = True
            raise

    async def drain(self) -> None:
        """Let the body's generator chain finish after the response closed.

        httpx builds a body from nested async generators. Closing only the
        outermost one leaves the inner ones suspended, and Trio warns when
        the garbage collector finds them (a known httpx issue, #3686). Once
        the network stream is closed, a few more steps make every layer run
        to its end on its own.
        """
        if self._finished:
            return
        self._finished = True
        for _ in range(_DRAIN_STEPS):
            try:
                await self._inner.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                # Any error from the closed stream ends the chain just as well.
                log.debug("httpx drain_ended error=%s", type(exc).__name__)
                return
        await self._inner.aclose()


class _HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks: _Chunks | None = None
        self._closed = False
        self.status = response.status_code
        self.headers = {k.lower(): v for k, v in response.headers.items()}

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        if self._chunks is None:
            self._chunks = _Chunks(self._response)
        return self._chunks

    async def aread(self, limit: int | None = None) -> bytes:
        return await read_limited(self.aiter_bytes(), limit)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Shielded: a cancelled request must still hand its connection back.
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            try:
                await self._response.aclose()
            except httpx.HTTPError as exc:
                log.debug("httpx close_failed error=%s", type(exc).__name__)
            if self._chunks is not None:
                await self._chunks.drain()


@attrs.define(eq=False)
class _PooledClient:
    client: httpx.AsyncClient
    users: int = 0
    evicted: bool = False


class _ClientCache:
    """One ``httpx.AsyncClient`` per proxy URL, the least recently used
    evicted beyond ``limit``.

    An evicted client may still carry open streams; it is closed when the
    last of them ends rather than under their feet. Everything here runs on
    the Trio thread, and each method changes the bookkeeping before its first
    checkpoint, so no lock is needed.
    """

    def __init__(self, create: Callable[[str], httpx.AsyncClient], limit: int) -> None:
        self._create = create
        self._limit = limit
        self._clients: OrderedDict[str, _PooledClient] = OrderedDict()
        self._draining: set[_PooledClient] = set()
        self._closed = False

    def __len__(self) -> int:
        """Open clients, the evicted ones still draining included."""
        return len(self._clients) + len(self._draining)

    async def acquire(self, proxy_url: str) -> _PooledClient:
        if self._closed:
            raise RuntimeError("transport is closed")
        pooled = self._clients.get(proxy_url)
        if pooled is None:
            pooled = _PooledClient(self._create(proxy_url))
            self._clients[proxy_url] = pooled
        self._clients.move_to_end(proxy_url)
        pooled.users += 1
        idle: list[_PooledClient] = []
        while len(self._clients) > self._limit:
            _, oldest = self._clients.popitem(last=False)
            oldest.evicted = True
            if oldest.users:
                self._draining.add(oldest)
            else:
                idle.append(oldest)
        for evicted in idle:
            await _close_client(evicted.client)
        return pooled

    async def release(self, pooled: _PooledClient) -> None:
        pooled.users -= 1
        if pooled.evicted and not pooled.users:
            self._draining.discard(pooled)
            await _close_client(pooled.client)

    async def aclose(self) -> None:
        self._closed = True
        every = [*self._clients.values(), *self._draining]
        self._clients.clear()
        self._draining.clear()
        for pooled in every:
            await _close_client(pooled.client)


async def _close_client(client: httpx.AsyncClient) -> None:
    with trio.move_on_after(CLOSE_GRACE, shield=True):
        await client.aclose()


def _unusable_proxy(proxy_url: str) -> EgressBlocked:
    scheme = proxy_url.partition("://")[0] if "://" in proxy_url else "none"
    return EgressBlocked(
        f"The httpx transport cannot use the configured proxy (scheme {scheme!r}); "
        "use an http, https, socks5 or socks5h proxy, or the curl_cffi transport."
    )


class HttpxTransport:
    """One pooled ``httpx.AsyncClient`` per proxy, behind the transport interface.

    Args:
        max_connections: the connection limit of each proxy's pool.
        connect_timeout: seconds allowed to open a connection (through the
            proxy, when there is one).
        transport: an httpx transport to use instead of the network
            (``httpx.MockTransport`` in tests).
        max_proxy_clients: how many proxies keep an open client at once.
    """

    name = "httpx"

    def __init__(
        self,
        *,
        max_connections: int = 200,
        connect_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_proxy_clients: int = MAX_PROXY_CLIENTS,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._mock = transport
        self._open_streams = 0
        self._clients = _ClientCache(self._create_client, max_proxy_clients)

    def _create_client(self, proxy_url: str) -> httpx.AsyncClient:
        try:
            return httpx.AsyncClient(
                proxy=proxy_url or None,
                limits=httpx.Limits(
                    max_connections=self._max_connections,
                    max_keepalive_connections=self._max_connections,
                ),
                transport=self._mock,
                trust_env=False,
                follow_redirects=False,
            )
        except (ValueError, httpx.InvalidURL):
            # httpx's message repeats the URL, credentials and all.
            raise _unusable_proxy(proxy_url) from None

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        json: Any = None,
        read_timeout: float,
        proxy_url: str = "",
    ) -> AsyncIterator[_HttpxResponse]:
        """Send one request; see :meth:`Transport.stream`."""
        sent = {k: v for k, v in headers.items() if k.lower() != "accept-encoding"}
        sent["Accept-Encoding"] = _DECODABLE_ENCODINGS
        pooled = await self._clients.acquire(proxy_url)
        try:
            request = pooled.client.build_request(
                method,
                url,
                headers=sent,
                content=encode_body(content, json),
                timeout=httpx.Timeout(read_timeout, connect=self._connect_timeout),
            )
            with _translating(started=False):
                raw = await pooled.client.send(request, stream=True)
            response = _HttpxResponse(raw)
            self._open_streams += 1
            try:
                yield response
            finally:
                self._open_streams -= 1
                await response.aclose()
        finally:
            await self._clients.release(pooled)

    def statistics(self) -> TransportStatistics:
        """Open streams and open per-proxy clients right now."""
        return TransportStatistics(
            self.name, self._open_streams, proxy_clients=len(self._clients)
        )

    async def aclose(self) -> None:
        """Close every client and its pool."""
        await self._clients.aclose()
