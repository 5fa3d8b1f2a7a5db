"""Fixtures for the fetch guard: small HTTP(S) servers on 127.0.0.1 that record
what they receive, a resolver the test controls, and a guard that turns any
connection attempt away from loopback into a test failure instead of traffic."""

from __future__ import annotations

import functools
import ipaddress
import ssl
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import pytest
import trio

from tests.tls_authority import CertificateAuthority, make_authority

TLS_HOST = "media.test"


@attrs.define
class OutboundGuard:
    """Connection attempts to anything but a loopback address, refused."""

    attempts: list[tuple[str, int]] = attrs.Factory(list)

    def take(self) -> list[tuple[str, int]]:
        taken, self.attempts = self.attempts, []
        return taken


@pytest.fixture(autouse=True)
def outbound(monkeypatch: pytest.MonkeyPatch) -> Iterator[OutboundGuard]:
    """Every TCP connection httpcore opens under Trio goes through here; one
    aimed at a non-loopback address or at a name fails instead of leaving the
    machine, and the test fails unless it takes the attempt on purpose."""
    guard = OutboundGuard()
    connect = trio.open_tcp_stream

    async def loopback_only(host: str, port: int, **options: Any) -> trio.SocketStream:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            guard.attempts.append((host, port))
            raise OSError(f"the test guard refused a connection to {host}:{port}")
        return await connect(host, port, **options)

    monkeypatch.setattr(trio, "open_tcp_stream", loopback_only)
    yield guard
    assert guard.attempts == [], "a connection left loopback"


@attrs.frozen
class Received:
    path: str
    headers: dict[str, str]


@attrs.frozen
class Reply:
    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    #: Declare no length and send chunks until the client goes away.
    endless: bool = False
    #: Accept the request and never answer.
    stall: bool = False

    async def send(self, stream: trio.abc.Stream, keep_alive: bool) -> None:
        if self.stall:
            await trio.sleep_forever()
        connection = "keep-alive" if keep_alive and not self.endless else "close"
        head = [f"HTTP/1.1 {self.status} Whatever", f"Connection: {connection}"]
        head += [f"{name}: {value}" for name, value in self.headers]
        if not self.endless:
            head.append(f"Content-Length: {len(self.body)}")
        await stream.send_all("\r\n".join([*head, "", ""]).encode("latin-1"))
        if not self.endless:
            await stream.send_all(self.body)
            return
        while True:
            await stream.send_all(b"x" * 65536)


def redirect(location: str, status: int = 302, *extra: tuple[str, str]) -> Reply:
    return Reply(status, [("Location", location), *extra])


@attrs.define
class MediaServer:
    """Answers GET requests by path from ``routes``; 404 for anything else."""

    scheme: str = "http"
    port: int = 0
    #: Serve further requests on a connection instead of closing it.
    keep_alive: bool = False
    routes: dict[str, Reply] = attrs.Factory(dict)
    received: list[Received] = attrs.Factory(list)
    server_names: list[str | None] = attrs.Factory(list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [request.path for request in self.received]

    async def handle(self, stream: trio.abc.Stream) -> None:
        try:
            while (request := await _read_request(stream)) is not None:
                self.received.append(request)
                reply = self.routes.get(request.path, Reply(404))
                await reply.send(stream, self.keep_alive)
                if not self.keep_alive or reply.endless:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


async def _read_request(stream: trio.abc.Stream) -> Received | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        data += chunk
    request_line, *lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Received(request_line.split(" ")[1], headers)


@pytest.fixture
async def media_server(nursery: trio.Nursery) -> MediaServer:
    """A plain HTTP server on 127.0.0.1."""
    server = MediaServer()
    serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
    listeners = await nursery.start(serve, server.handle, 0)
    server.port = listeners[0].socket.getsockname()[1]
    return server


@attrs.define
class SocksProxy:
    """A SOCKS5 relay (no authentication, CONNECT only) that records the
    target each client asked for and relays to loopback targets only."""

    port: int = 0
    targets: list[str] = attrs.Factory(list)

    def url(self) -> str:
        return f"socks5://127.0.0.1:{self.port}"

    async def handle(self, client: trio.SocketStream) -> None:
        try:
            _, methods = await _receive_exactly(client, 2)
            await _receive_exactly(client, methods)
            await client.send_all(b"\x05\x00")
            _, _, _, kind = await _receive_exactly(client, 4)
            if kind == 1:
                host = str(ipaddress.IPv4Address(await _receive_exactly(client, 4)))
            elif kind == 4:
                host = str(ipaddress.IPv6Address(await _receive_exactly(client, 16)))
            else:
                (length,) = await _receive_exactly(client, 1)
                host = (await _receive_exactly(client, length)).decode("ascii")
            port = int.from_bytes(await _receive_exactly(client, 2), "big")
            self.targets.append(host)
            target = await trio.open_tcp_stream(host, port)
            await client.send_all(b"\x05\x00\x00\x01" + bytes(6))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pipe, client, target)
                nursery.start_soon(_pipe, target, client)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(client)


async def _receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise trio.BrokenResourceError("the client hung up")
        data += chunk
    return data


async def _pipe(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
    try:
        while chunk := await source.receive_some(65536):
            await sink.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(sink)


@pytest.fixture
async def socks_proxy(nursery: trio.Nursery) -> SocksProxy:
    """A SOCKS5 relay on 127.0.0.1."""
    proxy = SocksProxy()
    serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
    listeners = await nursery.start(serve, proxy.handle, 0)
    proxy.port = listeners[0].socket.getsockname()[1]
    return proxy


@pytest.fixture(scope="session")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return make_authority(tmp_path_factory.mktemp("tls"), TLS_HOST)


@pytest.fixture
async def tls_server(
    nursery: trio.Nursery, authority: CertificateAuthority
) -> MediaServer:
    """An HTTPS server on 127.0.0.1 with a certificate for :data:`TLS_HOST`,
    recording the server name (SNI) each handshake asked for."""
    server = MediaServer(scheme="https")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(authority.cert_path, authority.key_path)

    def record_server_name(
        connection: ssl.SSLObject, name: str | None, _: ssl.SSLContext
    ) -> None:
        server.server_names.append(name)

    context.sni_callback = record_server_name  # type: ignore[assignment]
    serve = functools.partial(trio.serve_ssl_over_tcp, host="127.0.0.1")
    listeners = await nursery.start(serve, server.handle, 0, context)
    server.port = listeners[0].transport_listener.socket.getsockname()[1]
    return server


@attrs.define
class ScriptedResolver:
    """Answers each lookup of a name with the next answer scripted for it,
    repeating the last; records every lookup."""

    answers: dict[str, list[list[str]]] = attrs.Factory(dict)
    lookups: list[str] = attrs.Factory(list)

    def script(self, host: str, *answers: list[str]) -> None:
        self.answers[host] = list(answers)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        scripted = self.answers.get(host)
        if not scripted:
            raise OSError(f"no scripted answer for {host}")
        return scripted.pop(0) if len(scripted) > 1 else scripted[0]


@pytest.fixture
def resolver() -> ScriptedResolver:
    return ScriptedResolver()
