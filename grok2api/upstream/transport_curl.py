"""The browser-TLS transport: curl_cffi, bridged into Trio with worker threads.

grok.com sits behind Cloudflare, which refuses clients whose TLS and HTTP/2
fingerprints are not a browser's; curl_cffi's impersonation is what passes.
curl_cffi has no Trio support (its async layer drives libcurl's multi
interface from asyncio's event loop), so each exchange runs a blocking
``Curl.perform()`` on a worker thread started with
:func:`trio.lowlevel.start_thread_soon`. libcurl calls back on that thread
for every header line and body chunk; the callbacks hand the data to Trio
with :func:`trio.from_thread.run` over a small memory channel. A full channel
blocks the callback, so a slow reader slows libcurl down instead of piling up
memory.

**Each open stream pins one OS thread for its whole life.** A chat answer
that streams for two minutes holds its thread for two minutes, because
``perform()`` only returns when the transfer ends. A
:class:`trio.CapacityLimiter` of ``max_connections`` bounds the threads;
further requests wait for a slot. Finished transfers leave their curl handle
(and the connection it keeps alive) in a small pool for the next request.

Closing a response (leaving the ``stream()`` block, which is what a client
disconnect does through cancellation) marks the exchange abandoned and closes
the channel; the Trio side never waits for the thread. The worker notices at
its next callback, normally the next chunk from Grok a few milliseconds
later, and aborts the transfer, which closes the connection. A cancelled
stream whose upstream has gone silent keeps its thread until the next byte
or until libcurl's low-speed check gives up (the read timeout plus the few
seconds its speed average needs to decay).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

import attrs
import outcome
import trio
from curl_cffi import Curl, CurlECode, CurlError, CurlHttpVersion, CurlInfo, CurlOpt
from curl_cffi.curl import CURL_WRITEFUNC_ERROR

from grok2api.errors import (
    EgressBlocked,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from grok2api.upstream.transport import TransportStatistics, encode_body, read_limited

__all__ = ["CurlCffiTransport"]

log = logging.getLogger(__name__)

#: Chunks buffered between the curl thread and the Trio reader.
CHANNEL_DEPTH = 16

_CONNECT_FAILURES = frozenset(
    {
        CurlECode.COULDNT_RESOLVE_PROXY,
        CurlECode.COULDNT_RESOLVE_HOST,
        CurlECode.COULDNT_CONNECT,
        CurlECode.SSL_CONNECT_ERROR,
        CurlECode.PEER_FAILED_VERIFICATION,
        CurlECode.PROXY,
    }
)
_DROPPED = frozenset(
    {CurlECode.GOT_NOTHING, CurlECode.RECV_ERROR, CurlECode.SEND_ERROR}
)


@attrs.frozen
class _Head:
    status: int
    headers: dict[str, str]


@attrs.frozen
class _Failure:
    error: CurlError
    started: bool
    connected: bool


class _End:
    """The body ended cleanly."""


_END = _End()
_Item = _Head | bytes | _Failure | _End


def _translate(failure: _Failure) -> UpstreamError:
    """The one place curl_cffi errors become grok2api errors."""
    code = failure.error.code
    what = f"curl error {int(code)}"
    timed_out = code == CurlECode.OPERATION_TIMEDOUT
    if code in _CONNECT_FAILURES or (timed_out and not failure.connected):
        return EgressBlocked(
            f"Could not connect to Grok ({what}); check the network, proxy and DNS."
        )
    if timed_out:
        return UpstreamTimeout(
            f"Grok stalled past the transport timeout ({what}).",
            charged=failure.started,
        )
    if not failure.started and code in _DROPPED:
        return EgressBlocked(
            f"The connection to Grok dropped before any answer ({what})."
        )
    return UpstreamProtocolError(
        f"The connection to Grok broke mid-answer ({what}).",
        status=200 if failure.started else None,
        charged=failure.started,
    )


class _HandlePool:
    """Idle curl handles; a handle keeps its connections alive between uses."""

    def __init__(self, limit: int) -> None:
        self._idle: list[Curl] = []
        self._limit = limit
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> Curl:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Curl()

    def give_back(self, handle: Curl, *, reusable: bool) -> None:
        if reusable:
            handle.reset()
            with self._lock:
                if not self._closed and len(self._idle) < self._limit:
                    self._idle.append(handle)
                    return
        handle.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for handle in idle:
            handle.close()


@attrs.define
class _Request:
    method: str
    url: str
    header_lines: list[bytes]
    body: bytes
    read_timeout: float
    accept_encoding: str
    proxy_url: str = attrs.field(default="", repr=False)


class _Exchange:
    """One transfer. ``run`` executes on the worker thread; ``abandon`` on Trio's."""

    def __init__(
        self,
        transport: CurlCffiTransport,
        request: _Request,
        send: trio.MemorySendChannel[_Item],
        token: trio.lowlevel.TrioToken,
    ) -> None:
        self._transport = transport
        self._request = request
        self._send = send
        self._token = token
        self._abandoned = threading.Event()
        self._status = 0
        self._header_lines: list[str] = []
        self._head_sent = False

    def abandon(self) -> None:
        self._abandoned.set()

    # -- worker thread ---------------------------------------------------

    def run(self) -> None:
        handle = self._transport._handles.take()
        reusable = False
        try:
            reusable = self._perform(handle)
        finally:
            self._transport._handles.give_back(handle, reusable=reusable)
            with suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._send.close, trio_token=self._token)

    def _perform(self, handle: Curl) -> bool:
        self._transport._configure(handle, self._request)
        handle.setopt(CurlOpt.HEADERFUNCTION, self._on_header)
        handle.setopt(CurlOpt.WRITEFUNCTION, self._on_body)
        try:
            handle.perform()
        except CurlError as exc:
            if not self._abandoned.is_set():
                connected = float(handle.getinfo(CurlInfo.CONNECT_TIME)) > 0  # type: ignore[arg-type]
                self._put(_Failure(exc, self._head_sent, connected))
            return False
        if not self._head_sent:
            self._head_sent = True
            if not self._put(self._head(handle)):
                return False
        return self._put(_END)

    def _put(self, item: _Item) -> bool:
        """Hand ``item`` to Trio; false once the reader has gone away."""
        if self._abandoned.is_set():
            return False
        try:
            trio.from_thread.run(self._send.send, item, trio_token=self._token)
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.RunFinishedError,
            # The send ran as a system task; Trio cancels those at shutdown.
            trio.Cancelled,
        ):
            self._abandoned.set()
            return False
        return True

    def _head(self, handle: Curl | None = None) -> _Head:
        status = self._status
        if not status and handle is not None:
            status = int(handle.getinfo(CurlInfo.RESPONSE_CODE))  # type: ignore[arg-type]
        headers: dict[str, str] = {}
        for line in self._header_lines:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return _Head(status, headers)

    def _on_header(self, raw: bytes) -> int:
        line = raw.decode("latin-1").rstrip("\r\n")
        if line.startswith("HTTP/"):
            # A new status line starts a new block (an informational 1xx).
            parts = line.split()
            self._status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self._header_lines = []
        elif line:
            self._header_lines.append(line)
        elif self._status >= 200 and not self._head_sent:
            # The blank line ends the final header block: the answer has
            # started, even if its body is slow to follow.
            self._head_sent = True
            if not self._put(self._head()):
                return CURL_WRITEFUNC_ERROR
        return len(raw)

    def _on_body(self, chunk: bytes) -> int:
        if not self._head_sent:
            self._head_sent = True
            if not self._put(self._head()):
                return CURL_WRITEFUNC_ERROR
        if not self._put(chunk):
            return CURL_WRITEFUNC_ERROR
        return len(chunk)


class _CurlResponse:
    def __init__(
        self,
        head: _Head,
        receive: trio.MemoryReceiveChannel[_Item],
        exchange: _Exchange,
    ) -> None:
        self.status = head.status
        self.headers = head.headers
        self._receive = receive
        self._exchange = exchange
        self._finished = False

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self

    def __aiter__(self) -> _CurlResponse:
        return self

    async def __anext__(self) -> bytes:
        if self._finished:
            raise StopAsyncIteration
        try:
            item = await self._receive.receive()
        except trio.EndOfChannel:
            self._finished = True
            raise UpstreamProtocolError(
                "The curl transfer thread ended without finishing the answer.",
                status=self.status,
                charged=True,
            ) from None
        if isinstance(item, _End):
            self._finished = True
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            self._finished = True
            raise _translate(item) from item.error
        assert isinstance(item, bytes), item
        return item

    async def aread(self, limit: int | None = None) -> bytes:
        return await read_limited(self.aiter_bytes(), limit)

    async def aclose(self) -> None:
        self._finished = True
        self._exchange.abandon()
        self._receive.close()


class CurlCffiTransport:
    """curl_cffi with a browser fingerprint, one worker thread per exchange.

    Args:
        browser: the curl_cffi impersonation target, e.g. ``chrome136``.
        max_connections: the most exchanges (and so threads) at once.
        connect_timeout: seconds allowed to open a connection.

    Raises:
        ValueError: curl_cffi cannot impersonate ``browser``.
    """

    name = "curl_cffi"

    def __init__(
        self,
        *,
        browser: str = "chrome136",
        max_connections: int = 200,
        connect_timeout: float = 10.0,
    ) -> None:
        probe = Curl()
        try:
            if probe.impersonate(browser, default_headers=False) != 0:
                raise ValueError(f"curl_cffi cannot impersonate {browser!r}")
        finally:
            probe.close()
        self._browser = browser
        self._connect_timeout = connect_timeout
        self._limiter = trio.CapacityLimiter(max_connections)
        self._handles = _HandlePool(max_connections)
        self._open_streams = 0

    def _configure(self, handle: Curl, request: _Request) -> None:
        """Set every option of one transfer (runs on the worker thread)."""
        handle.setopt(CurlOpt.URL, request.url.encode())
        if request.method == "POST":
            handle.setopt(CurlOpt.POST, 1)
        elif request.method != "GET":
            handle.setopt(CurlOpt.CUSTOMREQUEST, request.method.encode())
        if request.body or request.method in ("POST", "PUT", "PATCH"):
            handle.setopt(CurlOpt.POSTFIELDS, request.body)
            handle.setopt(CurlOpt.POSTFIELDSIZE, len(request.body))
        handle.setopt(CurlOpt.HTTPHEADER, request.header_lines)
        if request.accept_encoding:
            handle.setopt(CurlOpt.ACCEPT_ENCODING, request.accept_encoding.encode())
        handle.impersonate(self._browser, default_headers=False)
        if request.url.startswith("http:"):
            # Browsers never try an h2c upgrade; plain HTTP is the emulator or
            # a local relay, which should see ordinary HTTP/1.1.
            handle.setopt(CurlOpt.HTTP_VERSION, CurlHttpVersion.V1_1)
        handle.setopt(CurlOpt.NOSIGNAL, 1)
        handle.setopt(CurlOpt.FOLLOWLOCATION, 0)
        handle.setopt(CurlOpt.CONNECTTIMEOUT_MS, int(self._connect_timeout * 1000))
        # Bounds silence, not duration: abort when under 1 byte/s for this long.
        # TODO: this is also what ends an abandoned, silent transfer; libcurl's
        # progress callback would end it within a second, but curl_cffi does
        # not expose it, so such a thread lingers for the read timeout.
        handle.setopt(CurlOpt.LOW_SPEED_LIMIT, 1)
        handle.setopt(CurlOpt.LOW_SPEED_TIME, max(1, math.ceil(request.read_timeout)))
        # An empty PROXY (with an empty NOPROXY) means direct, whatever the
        # environment says. Reused handles keep their connections; libcurl
        # only reuses one that went through the same proxy.
        handle.setopt(CurlOpt.PROXY, request.proxy_url.encode())
        handle.setopt(CurlOpt.SUPPRESS_CONNECT_HEADERS, 1)
        handle.setopt(CurlOpt.NOPROXY, b"")
        if request.proxy_url and not request.proxy_url.startswith("socks"):
            handle.setopt(CurlOpt.HTTPPROXYTUNNEL, 1)

    @staticmethod
    def _header_lines(headers: Mapping[str, str]) -> tuple[list[bytes], str]:
        lines: list[bytes] = []
        accept_encoding = ""
        for name, value in headers.items():
            if name.lower() == "accept-encoding":
                # Given to curl as an option instead, so it also decodes.
                accept_encoding = value
                continue
            lines.append(f"{name}: {value}".encode())
        lines.append(b"Expect:")  # never wait for 100-continue
        return lines, accept_encoding

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
    ) -> AsyncIterator[_CurlResponse]:
        """Send one request; see :meth:`Transport.stream`."""
        header_lines, accept_encoding = self._header_lines(headers)
        request = _Request(
            method,
            url,
            header_lines,
            encode_body(content, json),
            read_timeout,
            accept_encoding,
            proxy_url,
        )
        send, receive = trio.open_memory_channel[_Item](CHANNEL_DEPTH)
        exchange = _Exchange(self, request, send, trio.lowlevel.current_trio_token())
        borrower = object()
        await self._limiter.acquire_on_behalf_of(borrower)
        try:
            trio.lowlevel.start_thread_soon(
                exchange.run,
                partial(
                    self._thread_done, trio.lowlevel.current_trio_token(), borrower
                ),
                name=f"grok2api curl {method} {url}",
            )
        except BaseException:
            self._limiter.release_on_behalf_of(borrower)
            raise
        self._open_streams += 1
        try:
            response = await self._await_head(receive, exchange)
            yield response
        finally:
            self._open_streams -= 1
            exchange.abandon()
            receive.close()

    async def _await_head(
        self, receive: trio.MemoryReceiveChannel[_Item], exchange: _Exchange
    ) -> _CurlResponse:
        try:
            item = await receive.receive()
        except trio.EndOfChannel:
            raise UpstreamProtocolError(
                "The curl transfer thread ended before any answer."
            ) from None
        if isinstance(item, _Failure):
            raise _translate(item) from item.error
        assert isinstance(item, _Head), item
        return _CurlResponse(item, receive, exchange)

    def _thread_done(
        self,
        token: trio.lowlevel.TrioToken,
        borrower: object,
        result: outcome.Outcome[None],
    ) -> None:
        # Runs on the worker thread as it exits.
        if isinstance(result, outcome.Error):
            log.error(
                "curl worker failed; its exchange was ended",
                exc_info=result.error,
            )
        with suppress(trio.RunFinishedError):
            token.run_sync_soon(self._limiter.release_on_behalf_of, borrower)

    def statistics(self) -> TransportStatistics:
        """Open streams and the worker threads they pin."""
        return TransportStatistics(
            self.name,
            self._open_streams,
            worker_threads=int(self._limiter.borrowed_tokens),
        )

    async def aclose(self) -> None:
        """Drop the idle handles and their connections."""
        self._handles.close()
