"""A lean HTTP/1.1 transport straight on Trio sockets.

The httpx stack (client, httpcore pool, h11 state machine) spends about two
milliseconds of CPU on one chat call, which on the benchmark is more than the
whole budget of a gateway request. This transport does the same exchange with
a keep-alive pool, one write per request and a parser for exactly the
framings a response can have (``Content-Length``, chunked, read to close).

It speaks plain HTTP and TLS to the target directly. A request that must go
through a proxy is handed to an :class:`HttpxTransport`, which knows the
proxy protocols. Python's TLS is not a browser's, so for grok.com itself
the curl_cffi transport stays the default (``network.transport = "auto"``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from grok2api.errors import (
    EgressBlocked,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from grok2api.upstream.transport import TransportStatistics, encode_body, read_limited
from grok2api.upstream.transport_httpx import HttpxTransport

__all__ = ["TrioTransport"]

log = logging.getLogger(__name__)

#: An idle connection older than this is closed rather than reused. Servers
#: that end idle connections (Hypercorn after 5 s, most fronts after a
#: minute or more) send a FIN, which the readability check before reuse
#: sees; this limit is for paths that drop silently (NAT, firewalls).
KEEPALIVE_EXPIRY = 60.0
#: The most bytes a response head (status line and headers) may take.
MAX_HEAD_BYTES = 64 * 1024
_MAX_CHUNK_LINE = 4096
_HEX_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
#: Decoded bytes handed out per piece: a small compressed body may expand
#: enormously, and a reader with a limit must be able to stop early.
_DECODED_PIECE = 256 * 1024
_RECEIVE_SIZE = 64 * 1024
#: Bodies above this are written on their own rather than copied behind the head.
_JOIN_LIMIT = 64 * 1024
_DECODABLE_ENCODINGS = "gzip, deflate"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_BODY_STATUSES = frozenset({204, 304})

Origin = tuple[str, str, int]


class _Connection:
    """One open connection and the bytes read past the last response."""

    __slots__ = ("buffer", "idle_since", "origin", "socket", "stream")

    def __init__(self, stream: trio.abc.Stream, socket: Any, origin: Origin) -> None:
        self.stream = stream
        self.socket = socket
        self.origin = origin
        self.buffer = bytearray()
        self.idle_since = 0.0

    def still_open(self, now: float) -> bool:
        # An idle keep-alive socket that turned readable has either been
        # closed by the server or carries bytes nobody asked for; neither
        # can take another request.
        return (
            now - self.idle_since < KEEPALIVE_EXPIRY
            and not self.buffer
            and not self.socket.is_readable()
        )

    async def close(self) -> None:
        await trio.aclose_forcefully(self.stream)


class _Pool:
    """Idle connections per origin, and the cap on all open connections."""

    def __init__(
        self,
        max_connections: int,
        connect_timeout: float,
        tls_context: ssl.SSLContext | None,
    ) -> None:
        self.slots = trio.Semaphore(max_connections)
        self._max = max_connections
        self._connect_timeout = connect_timeout
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._tls = tls_context
        self.closed = False

    def take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = trio.current_time()
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if connection.still_open(now):
                return connection
            _forget(connection)
        return None

    def give_back(self, connection: _Connection) -> None:
        if self.closed or self._idle_count >= self._max:
            _forget(connection)
            return
        connection.idle_since = trio.current_time()
        self._idle.setdefault(connection.origin, []).append(connection)
        self._idle_count += 1

    async def make_room(self) -> None:
        """Close the oldest idle connection when the open ones reach the cap."""
        in_use = self._max - self.slots.value
        if in_use + self._idle_count <= self._max:
            return
        oldest = min(
            (c for idle in self._idle.values() for c in idle),
            key=lambda c: c.idle_since,
            default=None,
        )
        if oldest is not None:
            self._idle[oldest.origin].remove(oldest)
            self._idle_count -= 1
            await oldest.close()

    async def connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        await self.make_room()
        what = "ConnectTimeout"
        tcp: trio.SocketStream | None = None
        try:
            with trio.fail_after(self._connect_timeout):
                tcp = await trio.open_tcp_stream(host, port)
                if scheme != "https":
                    return _Connection(tcp, tcp.socket, origin)
                tls = trio.SSLStream(
                    tcp,
                    self._tls or _default_tls_context(),
                    server_hostname=host,
                    https_compatible=True,
                )
                await tls.do_handshake()
                return _Connection(tls, tcp.socket, origin)
        except trio.TooSlowError:
            pass
        except (OSError, trio.BrokenResourceError) as exc:
            what = _first_cause_name(exc)
        except BaseException:
            # Cancelled mid-handshake: the socket must not wait for the
            # garbage collector.
            if tcp is not None:
                await trio.aclose_forcefully(tcp)
            raise
        if tcp is not None:
            await trio.aclose_forcefully(tcp)
        raise EgressBlocked(
            f"Could not connect to Grok ({what}); check the network, proxy and DNS."
        )

    async def aclose(self) -> None:
        self.closed = True
        every = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        self._idle_count = 0
        for connection in every:
            await connection.close()


def _first_cause_name(exc: BaseException) -> str:
    # open_tcp_stream wraps the failures of every address it tried in one
    # group; the first says more than the group's name.
    cause = exc.__cause__ or exc
    while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[0]
    return type(cause).__name__


def _forget(connection: _Connection) -> None:
    # Closing the socket itself is synchronous; a TLS close_notify is not
    # worth a wait for a connection nobody will use again.
    connection.socket.close()


_tls_context: ssl.SSLContext | None = None


def _default_tls_context() -> ssl.SSLContext:
    # The same trust store httpx uses, built once per process.
    global _tls_context
    if _tls_context is None:
        _tls_context = httpx.create_ssl_context()
        _tls_context.set_alpn_protocols(["http/1.1"])
    return _tls_context


def _split_url(url: str) -> tuple[Origin, str, str]:
    """The origin, the request target and the ``Host`` header of ``url``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    port = parts.port or _DEFAULT_PORTS[scheme]
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    name = f"[{host}]" if ":" in host else host
    host_header = name if port == _DEFAULT_PORTS[scheme] else f"{name}:{port}"
    return (scheme, host, port), target, host_header


def _request_head(
    method: str,
    target: str,
    host_header: str,
    headers: Mapping[str, str],
    length: int,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}"]
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in ("host", "content-length", "accept-encoding", "connection"):
            continue
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    lines.append(f"Accept-Encoding: {_DECODABLE_ENCODINGS}")
    if length or method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {length}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def _decoder(encoding: str) -> _Decoder | None:
    if encoding == "gzip":
        return _Decoder(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return _Decoder(None)
    return None


class _Decoder:
    """Decompresses a gzip or deflate body a bounded piece at a time.

    ``deflate`` is zlib-wrapped by the standard and raw from some servers;
    the first two bytes say which (a zlib header is a multiple of 31).
    """

    def __init__(self, wbits: int | None) -> None:
        self._wbits = wbits
        self._inner: Any = None
        self._head = b""

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            data = self._head + data
            if self._wbits is None and len(data) < 2:
                self._head = data
                return b""
            wbits = self._wbits
            if wbits is None:
                zlib_wrapped = (data[0] & 0x0F) == 8 and (
                    data[0] * 256 + data[1]
                ) % 31 == 0
                wbits = zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS
            self._inner = zlib.decompressobj(wbits)
        return self._inner.decompress(data, _DECODED_PIECE)

    def pending(self) -> bytes:
        """Decoded bytes held back by the piece size, if any."""
        tail = self._inner.unconsumed_tail if self._inner is not None else b""
        return self._inner.decompress(tail, _DECODED_PIECE) if tail else b""

    def finish(self) -> bytes:
        """The rest of the body, checking that the compressed stream ended.

        Raises:
            zlib.error: the body stopped before its compressed stream did.
        """
        if self._inner is None:
            if self._head:
                raise zlib.error("compressed body cut short")
            return b""
        rest = self._inner.flush()
        if not self._inner.eof:
            raise zlib.error("compressed body cut short")
        return rest


class _Cut(Exception):
    """The connection ended or broke where the response was not finished."""


class _Unanswered(Exception):
    """The connection ended or broke before a single byte of an answer."""


def _dropped() -> EgressBlocked:
    return EgressBlocked("The connection to Grok dropped before any answer.")


class _TrioResponse:
    """A response read from one connection; hands the connection back once
    the body was read to its end."""

    def __init__(
        self, connection: _Connection, pool: _Pool, method: str, read_timeout: float
    ) -> None:
        self._connection = connection
        self._pool = pool
        self._method = method
        self._read_timeout = read_timeout
        self.status = 0
        self.headers: dict[str, str] = {}
        self._keep_alive = True
        self._length = -1  # bytes left under Content-Length; -1 otherwise
        self._chunked = False
        self._chunk_left = -1  # -1: a size line is due; -2: the CRLF after data
        self._decoder: _Decoder | None = None
        self._complete = False
        self._closed = False

    # -- reading -----------------------------------------------------------

    async def _receive(self, *, started: bool) -> bytes:
        with trio.move_on_after(self._read_timeout):
            try:
                data = await self._connection.stream.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise _Cut from None
            if not data:
                raise _Cut
            return data
        raise UpstreamTimeout(
            f"Grok stalled past the transport timeout ({self._read_timeout:g}s).",
            charged=started,
        )

    async def start(self, head: bytes, body: bytes) -> None:
        """Send the request and read the response head."""
        stream = self._connection.stream
        send_broke = False
        try:
            with trio.move_on_after(self._read_timeout) as scope:
                try:
                    if body and len(body) <= _JOIN_LIMIT:
                        await stream.send_all(head + body)
                    else:
                        await stream.send_all(head)
                        if body:
                            await stream.send_all(body)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    # A server may answer and close before it takes a whole
                    # large body (a 413): its answer can still be read.
                    send_broke = True
            if scope.cancelled_caught:
                raise UpstreamTimeout(
                    "Grok did not take the request within the transport timeout.",
                    charged=False,
                )
            while True:
                await self._read_head()
                if not 100 <= self.status < 200:
                    break
        except (_Cut, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            if not self.status and not self._connection.buffer:
                raise _Unanswered from None
            raise _dropped() from None
        if send_broke:
            self._keep_alive = False
        self._choose_framing()

    async def _read_head(self) -> None:
        buffer = self._connection.buffer
        searched = 0
        while (end := buffer.find(b"\r\n\r\n", searched)) < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise _bad_head("a response head longer than 64 KiB")
            searched = max(0, len(buffer) - 3)
            buffer += await self._receive(started=False)
        if end > MAX_HEAD_BYTES:
            raise _bad_head("a response head longer than 64 KiB")
        head = buffer[:end].decode("latin-1")
        del buffer[: end + 4]
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not _is_decimal(code):
            raise _bad_head("no HTTP/1.x status line")
        self.status = int(code)
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise _bad_head("a malformed header line")
            name = name.lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers
        self._keep_alive = (
            version == "HTTP/1.1"
            and "close" not in headers.get("connection", "").lower()
        )

    def _choose_framing(self) -> None:
        headers = self.headers
        transfer = headers.get("transfer-encoding", "").strip().lower()
        if self._method == "HEAD" or self.status in _NO_BODY_STATUSES:
            self._length = 0
        elif transfer == "chunked":
            self._chunked = True
        elif transfer:
            raise self._unreadable(f"a transfer coding this client lacks ({transfer})")
        elif (declared := headers.get("content-length")) is not None:
            if not _is_decimal(declared):
                raise self._unreadable("an unreadable Content-Length")
            self._length = int(declared)
        else:
            self._keep_alive = False  # the body runs until the server closes
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding and encoding != "identity":
            self._decoder = _decoder(encoding)
            if self._decoder is None:
                raise self._unreadable(
                    f"a content coding it was not offered ({encoding})"
                )

    def _unreadable(self, what: str) -> UpstreamProtocolError:
        # The upstream answered, so it may have counted the request.
        return UpstreamProtocolError(
            f"Grok answered with {what}.", status=self.status, charged=True
        )

    async def _next_raw(self) -> bytes:
        """The next piece of the (still encoded) body; ``b""`` at its end."""
        buffer = self._connection.buffer
        if self._chunked:
            return await self._next_chunked(buffer)
        if self._length >= 0:
            if self._length == 0:
                return b""
            if not buffer:
                buffer += await self._receive(started=True)
            piece = bytes(buffer[: self._length])
            del buffer[: len(piece)]
            self._length -= len(piece)
            return piece
        if buffer:
            piece = bytes(buffer)
            buffer.clear()
            return piece
        try:
            return await self._receive(started=True)
        except _Cut:
            return b""  # a read-to-close body ends with the connection

    async def _next_chunked(self, buffer: bytearray) -> bytes:
        # Everything already buffered is returned as one piece: a streamed
        # answer arrives as one chunk per line, many lines per network read.
        pieces: list[bytes] = []
        while True:
            if self._chunk_left > 0:
                if not buffer:
                    if pieces:
                        break
                    buffer += await self._receive(started=True)
                piece = bytes(buffer[: self._chunk_left])
                del buffer[: len(piece)]
                pieces.append(piece)
                self._chunk_left -= len(piece)
                if self._chunk_left == 0:
                    self._chunk_left = -2
                continue
            if self._chunk_left == -2:
                if len(buffer) < 2:
                    if pieces:
                        break
                    buffer += await self._receive(started=True)
                    continue
                if buffer[:2] != b"\r\n":
                    raise _Cut
                del buffer[:2]
                self._chunk_left = -1
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                if len(buffer) > _MAX_CHUNK_LINE:
                    raise _Cut
                if pieces:
                    break
                buffer += await self._receive(started=True)
                continue
            size_text = buffer[:line_end].split(b";", 1)[0].strip()
            if not _HEX_SIZE.fullmatch(size_text):
                raise _Cut
            size = int(size_text, 16)
            del buffer[: line_end + 2]
            if size == 0:
                await self._skip_trailers(buffer)
                self._chunked = False
                self._length = 0
                break
            self._chunk_left = size
        return b"".join(pieces)

    async def _skip_trailers(self, buffer: bytearray) -> None:
        while True:
            if buffer[:2] == b"\r\n":
                del buffer[:2]
                return
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                del buffer[: end + 4]
                return
            if len(buffer) > MAX_HEAD_BYTES:
                raise _Cut
            buffer += await self._receive(started=True)

    # -- the Response interface ---------------------------------------------

    def aiter_bytes(self) -> _Body:
        return _Body(self)

    async def next_piece(self) -> bytes:
        """The next piece of the decoded body; ``b""`` once it is all read."""
        decoder = self._decoder
        try:
            if decoder is not None and (held := decoder.pending()):
                return held
            while not self._complete:
                try:
                    raw = await self._next_raw()
                except _Cut:
                    raise UpstreamProtocolError(
                        "The connection to Grok broke mid-answer.",
                        status=200,
                        charged=True,
                    ) from None
                if not raw:
                    self._complete = True
                    return decoder.finish() if decoder is not None else b""
                if decoder is None:
                    return raw
                if decoded := decoder.decompress(raw):
                    return decoded
        except zlib.error:
            self._complete = False  # the connection is not fit for reuse
            self._keep_alive = False
            raise UpstreamProtocolError(
                "Grok sent a body that does not decompress.",
                status=200,
                charged=True,
            ) from None
        return b""

    async def aread(self, limit: int | None = None) -> bytes:
        return await read_limited(self.aiter_bytes(), limit)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        if self._complete and self._keep_alive and not connection.buffer:
            self._pool.give_back(connection)
        else:
            # Unread body or a broken exchange: the connection cannot be
            # trusted with another request.
            await connection.close()


class _Body:
    """Async iteration over a response's decoded body."""

    __slots__ = ("_response",)

    def __init__(self, response: _TrioResponse) -> None:
        self._response = response

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        while True:
            piece = await self._response.next_piece()
            if piece:
                return piece
            if self._response._complete:
                raise StopAsyncIteration


def _is_decimal(text: str) -> bool:
    # isdigit() alone passes "²", which int() refuses.
    return text.isascii() and text.isdigit() and len(text) <= 18


def _bad_head(what: str) -> UpstreamError:
    return EgressBlocked(f"Grok answered with {what}.")


async def _send(
    connection: _Connection,
    pool: _Pool,
    method: str,
    head: bytes,
    body: bytes,
    read_timeout: float,
) -> _TrioResponse:
    """Send the request on ``connection`` and read the response head."""
    response = _TrioResponse(connection, pool, method, read_timeout)
    try:
        await response.start(head, body)
    except BaseException:
        await response.aclose()
        raise
    return response


class _Exchange:
    """The context manager :meth:`TrioTransport.stream` returns."""

    __slots__ = ("_args", "_proxied", "_response", "_transport")

    def __init__(self, transport: TrioTransport, args: tuple[Any, ...]) -> None:
        self._transport = transport
        self._args = args
        self._response: _TrioResponse | None = None
        self._proxied: Any = None

    async def __aenter__(self) -> Any:
        transport = self._transport
        method, url, headers, content, json, read_timeout, proxy_url = self._args
        if proxy_url:
            self._proxied = transport._proxied.stream(
                method,
                url,
                headers=headers,
                content=content,
                json=json,
                read_timeout=read_timeout,
                proxy_url=proxy_url,
            )
            return await self._proxied.__aenter__()
        origin, target, host_header = _split_url(url)
        body = encode_body(content, json)
        head = _request_head(method, target, host_header, headers, len(body))
        pool = transport._pool
        if pool.closed:
            raise RuntimeError("transport is closed")
        try:
            # A free slot is taken without a pass of the scheduler.
            pool.slots.acquire_nowait()
        except trio.WouldBlock:
            with trio.move_on_after(read_timeout) as scope:
                await pool.slots.acquire()
            if scope.cancelled_caught:
                raise UpstreamTimeout(
                    "No upstream connection came free within the transport timeout.",
                    charged=False,
                ) from None
        try:
            response = None
            if (idle := pool.take_idle(origin)) is not None:
                # A server may close a kept-alive connection just as the
                # request goes out (its idle timeout racing our reuse). As
                # browsers and libcurl do, for any method, the request is
                # sent again on a new connection; a server that took it and
                # died without one byte of answer would see it twice.
                with contextlib.suppress(_Unanswered):
                    response = await _send(idle, pool, method, head, body, read_timeout)
            if response is None:
                fresh = await pool.connect(origin)
                try:
                    response = await _send(
                        fresh, pool, method, head, body, read_timeout
                    )
                except _Unanswered:
                    raise _dropped() from None
        except BaseException:
            pool.slots.release()
            raise
        self._response = response
        transport._open_streams += 1
        return response

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._proxied is not None:
            await self._proxied.__aexit__(*exc_info)
            return
        response = self._response
        if response is None:
            return
        self._transport._open_streams -= 1
        try:
            await response.aclose()
        finally:
            self._transport._pool.slots.release()


class TrioTransport:
    """HTTP/1.1 on Trio sockets with a keep-alive pool, behind the transport
    interface; proxied requests go through httpx.

    Args:
        max_connections: the most connections open at once (idle ones
            included); a request past it waits for one, up to its
            ``read_timeout``.
        connect_timeout: seconds allowed to connect and finish TLS.
        tls_context: the TLS trust for https targets; httpx's default trust
            store when None.
    """

    name = "trio"

    def __init__(
        self,
        *,
        max_connections: int = 200,
        connect_timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._pool = _Pool(max_connections, connect_timeout, tls_context)
        self._proxied = HttpxTransport(
            max_connections=max_connections, connect_timeout=connect_timeout
        )
        self._open_streams = 0

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
    ) -> _Exchange:
        """Send one request; see :meth:`Transport.stream`."""
        return _Exchange(
            self, (method, url, headers, content, json, read_timeout, proxy_url)
        )

    def statistics(self) -> TransportStatistics:
        """Open streams (proxied ones included) and open proxy clients."""
        proxied = self._proxied.statistics()
        return TransportStatistics(
            self.name,
            self._open_streams + proxied.open_streams,
            proxy_clients=proxied.proxy_clients,
        )

    async def aclose(self) -> None:
        """Close idle connections and the proxy clients."""
        await self._pool.aclose()
        await self._proxied.aclose()
