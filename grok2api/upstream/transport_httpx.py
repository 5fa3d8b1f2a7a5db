"""The Trio-native transport, on ``httpx.AsyncClient``.

httpx speaks plain Python TLS, which Cloudflare tells apart from a browser,
so this transport is for plain-HTTP targets (the emulator, a local relay) and
for tests, where ``transport=httpx.MockTransport(...)`` replaces the network.
It cannot decode brotli or zstd here, so it asks only for gzip and deflate.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

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


class HttpxTransport:
    """A pooled ``httpx.AsyncClient`` behind the transport interface.

    Args:
        proxy_url: send everything through this proxy (``http://``,
            ``socks5://``); empty for a direct connection. Environment proxy
            variables are ignored on purpose so the configuration is the only
            source of truth.
        max_connections: the pool's connection limit.
        connect_timeout: seconds allowed to open a connection.
        transport: an httpx transport to use instead of the network
            (``httpx.MockTransport`` in tests).
    """

    name = "httpx"

    def __init__(
        self,
        *,
        proxy_url: str = "",
        max_connections: int = 200,
        connect_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._open_streams = 0
        self._client = httpx.AsyncClient(
            proxy=proxy_url or None,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
            ),
            transport=transport,
            trust_env=False,
            follow_redirects=False,
        )

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
    ) -> AsyncIterator[_HttpxResponse]:
        """Send one request; see :meth:`Transport.stream`."""
        sent = {k: v for k, v in headers.items() if k.lower() != "accept-encoding"}
        sent["Accept-Encoding"] = _DECODABLE_ENCODINGS
        request = self._client.build_request(
            method,
            url,
            headers=sent,
            content=encode_body(content, json),
            timeout=httpx.Timeout(read_timeout, connect=self._connect_timeout),
        )
        with _translating(started=False):
            raw = await self._client.send(request, stream=True)
        response = _HttpxResponse(raw)
        self._open_streams += 1
        try:
            yield response
        finally:
            self._open_streams -= 1
            await response.aclose()

    def statistics(self) -> TransportStatistics:
        """Open streams right now."""
        return TransportStatistics(self.name, self._open_streams)

    async def aclose(self) -> None:
        """Close the pool."""
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            await self._client.aclose()
