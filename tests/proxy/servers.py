"""Small proxies and a pool API for the proxy tests, all on 127.0.0.1.

:class:`HttpProxy` speaks both ways an HTTP proxy is used: ``CONNECT``
tunnels (curl always tunnels) and absolute-form forwarding (httpx forwards
plain-HTTP requests). :class:`Socks5Proxy` speaks SOCKS5 with or without
user/password authentication. Each counts the connections it accepted and
the targets it reached, and refuses to reach anything but loopback.
:class:`PoolApi` answers every GET with a scripted body. Each runs inside a
test's nursery (``await nursery.start(server.serve)``) or, for code that
blocks, in a thread of its own (:func:`serving_in_thread`).
"""

from __future__ import annotations

import base64
import contextlib
import queue
import struct
import threading
from collections.abc import Iterator
from functools import partial
from typing import Protocol
from urllib.parse import quote, urlsplit

import attrs
import trio

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class _Server(Protocol):
    port: int

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...


class _Buffered:
    """Exact-length reads over a socket stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.pending = b""

    async def exactly(self, count: int) -> bytes:
        while len(self.pending) < count:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError("peer closed mid-message")
            self.pending += chunk
        data, self.pending = self.pending[:count], self.pending[count:]
        return data

    async def head(self) -> bytes:
        while b"\r\n\r\n" not in self.pending:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError("peer closed before the end of the head")
            self.pending += chunk
        head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        return head


async def _relay(
    client: trio.SocketStream, upstream: trio.SocketStream, first: bytes
) -> None:
    """Send ``first`` on, then copy both ways until either side closes."""

    async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        nursery.cancel_scope.cancel()

    try:
        if first:
            await upstream.send_all(first)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, upstream)
            nursery.start_soon(pump, upstream, client)
    finally:
        await trio.aclose_forcefully(upstream)


@attrs.define
class _Listening:
    """What every server shares: a port, counters and a stop switch."""

    port: int = 0
    connections: int = 0
    targets: list[str] = attrs.Factory(list)
    _scope: trio.CancelScope | None = None

    async def _serve_with(
        self,
        handler: object,
        task_status: trio.TaskStatus[None],
    ) -> None:
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(
                    partial(trio.serve_tcp, handler, self.port, host="127.0.0.1")
                )
                self.port = listeners[0].socket.getsockname()[1]
                task_status.started()

    def stop(self) -> None:
        """Close the listener: from now on connections are refused."""
        assert self._scope is not None
        self._scope.cancel()


@attrs.define
class HttpProxy(_Listening):
    """An HTTP proxy; with ``credentials`` it wants Basic proxy auth."""

    credentials: tuple[str, str] | None = None

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self._userinfo()}127.0.0.1:{self.port}"

    def _userinfo(self) -> str:
        if self.credentials is None:
            return ""
        user, password = self.credentials
        return f"{quote(user, safe='')}:{quote(password, safe='')}@"

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self._serve_with(self._handle, task_status)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        reader = _Buffered(client)
        try:
            head = await reader.head()
        except EOFError:
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
        headers = [line.split(":", 1) for line in lines]
        auth = next(
            (v.strip() for k, v in headers if k.lower() == "proxy-authorization"), ""
        )
        if self.credentials is not None and auth != self._expected_auth():
            await client.send_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await client.aclose()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = await self._open(host.strip("[]"), int(port), client)
            if upstream is None:
                return
            first = reader.pending
            await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            # Absolute form: pass one request on in origin form, then let the
            # server close, so each connection carries exactly one exchange.
            parts = urlsplit(target)
            upstream = await self._open(parts.hostname or "", parts.port or 80, client)
            if upstream is None:
                return
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            kept = [
                f"{k}:{v}"
                for k, v in headers
                if k.lower()
                not in ("proxy-authorization", "proxy-connection", "connection")
            ]
            head = "\r\n".join([f"{method} {path} {version}", *kept])
            first = head.encode("latin-1") + b"\r\nConnection: close\r\n\r\n"
            first += reader.pending
        await _relay(client, upstream, first)

    def _expected_auth(self) -> str:
        assert self.credentials is not None
        token = base64.b64encode(":".join(self.credentials).encode()).decode()
        return f"Basic {token}"

    async def _open(
        self, host: str, port: int, client: trio.SocketStream
    ) -> trio.SocketStream | None:
        try:
            if host not in LOOPBACK:
                raise OSError(f"{host} is not loopback")
            upstream = await trio.open_tcp_stream(host, port)
        except OSError:
            await client.send_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
            )
            await client.aclose()
            return None
        self.targets.append(f"{host}:{port}")
        return upstream


@attrs.define
class Socks5Proxy(_Listening):
    """A SOCKS5 proxy (CONNECT only); with ``credentials`` it wants RFC 1929
    user/password authentication."""

    credentials: tuple[str, str] | None = None

    def url(self, scheme: str = "socks5") -> str:
        userinfo = ""
        if self.credentials is not None:
            user, password = self.credentials
            userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}"

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self._serve_with(self._handle, task_status)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        reader = _Buffered(client)
        try:
            if not await self._greet(reader):
                await client.aclose()
                return
            upstream = await self._connect(reader)
        except EOFError:
            return
        if upstream is None:
            await client.aclose()
            return
        await _relay(client, upstream, reader.pending)

    async def _greet(self, reader: _Buffered) -> bool:
        version, count = await reader.exactly(2)
        methods = await reader.exactly(count)
        wanted = 0x00 if self.credentials is None else 0x02
        if version != 5 or wanted not in methods:
            await reader.stream.send_all(b"\x05\xff")
            return False
        await reader.stream.send_all(bytes([5, wanted]))
        if self.credentials is None:
            return True
        _, user_length = await reader.exactly(2)
        user = (await reader.exactly(user_length)).decode()
        (password_length,) = await reader.exactly(1)
        password = (await reader.exactly(password_length)).decode()
        accepted = (user, password) == self.credentials
        await reader.stream.send_all(b"\x01\x00" if accepted else b"\x01\x01")
        return accepted

    async def _connect(self, reader: _Buffered) -> trio.SocketStream | None:
        _, command, _, address_type = await reader.exactly(4)
        if address_type == 1:
            host = ".".join(str(b) for b in await reader.exactly(4))
        elif address_type == 3:
            (length,) = await reader.exactly(1)
            host = (await reader.exactly(length)).decode()
        else:
            raw = await reader.exactly(16)
            host = ":".join(raw[i : i + 2].hex() for i in range(0, 16, 2))
            host = "::1" if host == "0000:0000:0000:0000:0000:0000:0000:0001" else host
        (port,) = struct.unpack("!H", await reader.exactly(2))
        if command != 1 or host not in LOOPBACK:
            await reader.stream.send_all(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")
            return None
        try:
            upstream = await trio.open_tcp_stream(host, port)
        except OSError:
            await reader.stream.send_all(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
            return None
        self.targets.append(f"{host}:{port}")
        await reader.stream.send_all(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        return upstream


@attrs.define
class PoolApi(_Listening):
    """A proxy pool API: every GET gets ``status`` and ``body``; ``stall``
    makes it accept and never answer."""

    status: int = 200
    content_type: str = "text/plain"
    body: bytes = b""
    stall: bool = False

    @property
    def requests(self) -> int:
        return self.connections

    def url(self, path: str = "/get?key=pool-api-secret") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, body: str | bytes, content_type: str = "text/plain") -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.status = 200

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self._serve_with(self._handle, task_status)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        try:
            await _Buffered(client).head()
        except EOFError:
            return
        if self.stall:
            await trio.sleep_forever()
        await client.send_all(
            f"HTTP/1.1 {self.status} X\r\nContent-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n".encode()
            + self.body
        )
        await client.aclose()


@contextlib.contextmanager
def serving_in_thread(*servers: _Server) -> Iterator[None]:
    """Run ``servers`` on a Trio loop in a thread of their own for a block,
    for tests whose own code blocks (a gateway subprocess, a sync client)."""
    ready: queue.Queue[tuple[trio.lowlevel.TrioToken, trio.CancelScope]] = queue.Queue()
    failures: list[BaseException] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for server in servers:
                    await nursery.start(server.serve)
                ready.put((trio.lowlevel.current_trio_token(), scope))

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # re-raised on the caller's thread
            failures.append(exc)
            ready.put_nowait(None)  # type: ignore[arg-type]

    thread = threading.Thread(target=target, name="proxy-test-servers", daemon=True)
    thread.start()
    started = ready.get(timeout=10)
    if started is None:
        raise RuntimeError("the test servers failed to start") from failures[0]
    token, scope = started
    try:
        yield
    finally:
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(10)
