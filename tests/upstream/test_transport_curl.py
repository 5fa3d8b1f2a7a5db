"""CurlCffiTransport against a real plain-HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import attrs
import pytest
import trio

from grok2api.errors import (
    EgressBlocked,
    TokenRejected,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from grok2api.upstream import (
    AnswerDelta,
    ConversationRequest,
    CurlCffiTransport,
    StreamDone,
    UpstreamClient,
    UpstreamOptions,
)

from .conftest import PLAIN_ANSWER, TOKEN

Route = Callable[[trio.SocketStream], Awaitable[None]]


@attrs.define
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@attrs.define
class LocalServer:
    """A tiny HTTP/1.1 server whose routes write raw responses."""

    port: int = 0
    routes: dict[str, Route] = attrs.Factory(dict)
    received: list[Received] = attrs.Factory(list)
    disconnected: trio.Event = attrs.Factory(trio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ")
        headers = dict(line.split(": ", 1) for line in lines)
        length = int(headers.get("Content-Length", "0"))
        while len(body) < length:
            body += await stream.receive_some(65536)
        self.received.append(Received(method, path, headers, body))
        try:
            await self.routes[path](stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.disconnected.set()
        finally:
            await stream.aclose()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _chunked(
    lines: list[bytes], stream: trio.SocketStream, pause: float = 0.0
) -> None:
    await stream.send_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
        b"X-Trace: t-1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    for line in lines:
        await stream.send_all(_chunk(line))
        await trio.sleep(pause)
    await stream.send_all(b"0\r\n\r\n")


async def _endless(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:
        await stream.send_all(_chunk(b'{"result":{"response":{"token":"x"}}}\n'))
        await trio.sleep(0.005)


async def _cut(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")


async def _stall(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    await trio.sleep(30)


async def _refuse(status: str, body: bytes, stream: trio.SocketStream) -> None:
    await stream.send_all(
        f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[LocalServer]:
    """A local server with the routes the tests use, on a free port."""
    local = LocalServer()
    local.routes = {
        "/stream": partial(_chunked, PLAIN_ANSWER, pause=0.01),
        "/endless": _endless,
        "/cut": _cut,
        "/stall": _stall,
        "/challenge": partial(
            _refuse, "403 Forbidden", b"<title>Just a moment...</title>"
        ),
        "/rest/app-chat/conversations/new": partial(_chunked, PLAIN_ANSWER),
        "/rest/rate-limits": partial(
            _refuse, "401 Unauthorized", b'{"error":"invalid-credentials"}'
        ),
    }
    listeners = await nursery.start(
        partial(trio.serve_tcp, local.handle, 0, host="127.0.0.1")
    )
    local.port = listeners[0].socket.getsockname()[1]
    yield local


@pytest.fixture
async def transport() -> AsyncIterator[CurlCffiTransport]:
    """A curl transport, closed after the test."""
    curl = CurlCffiTransport(max_connections=4, connect_timeout=2.0)
    yield curl
    await curl.aclose()


async def _threads_released(transport: CurlCffiTransport) -> None:
    # Worker threads end on their own and nothing signals it; poll the limiter.
    with trio.fail_after(5):
        while transport.statistics().worker_threads:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_curl_streams_chunks_as_they_arrive(
    server: LocalServer, transport: CurlCffiTransport
) -> None:
    async with transport.stream(
        "POST",
        server.url("/stream"),
        headers={"Cookie": "sso=t", "Accept-Encoding": "gzip, deflate, br, zstd"},
        json={"message": "héllo"},
        read_timeout=5,
    ) as response:
        assert response.status == 200
        assert response.headers["x-trace"] == "t-1"
        assert transport.statistics().worker_threads == 1
        chunks = [chunk async for chunk in response.aiter_bytes()]

    assert b"".join(chunks) == b"".join(PLAIN_ANSWER)
    assert len(chunks) > 1
    sent = server.received[0]
    assert (sent.method, sent.headers["Cookie"]) == ("POST", "sso=t")
    assert sent.headers["Accept-Encoding"] == "gzip, deflate, br, zstd"
    assert sent.body == '{"message":"héllo"}'.encode()
    await _threads_released(transport)


async def test_curl_cancel_mid_stream_closes_connection(
    server: LocalServer, transport: CurlCffiTransport
) -> None:
    with trio.move_on_after(10) as give_up:
        async with transport.stream(
            "GET", server.url("/endless"), headers={}, read_timeout=5
        ) as response:
            async for _ in response.aiter_bytes():
                give_up.cancel()  # stands in for a client disconnect
    assert give_up.cancelled_caught
    with trio.fail_after(5):
        await server.disconnected.wait()
    await _threads_released(transport)
    assert transport.statistics().open_streams == 0


async def test_curl_cut_body_is_charged_protocol_error(
    server: LocalServer, transport: CurlCffiTransport
) -> None:
    with pytest.raises(UpstreamProtocolError) as caught:
        async with transport.stream(
            "GET", server.url("/cut"), headers={}, read_timeout=5
        ) as response:
            await response.aread()
    assert caught.value.charged is True
    await _threads_released(transport)


async def test_curl_silence_past_read_timeout_is_a_timeout(
    server: LocalServer, transport: CurlCffiTransport
) -> None:
    with pytest.raises(UpstreamTimeout) as caught:
        async with transport.stream(
            "GET", server.url("/stall"), headers={}, read_timeout=1
        ) as response:
            await response.aread()
    assert caught.value.charged is True


async def test_curl_connection_refused_is_egress(transport: CurlCffiTransport) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EgressBlocked):
        async with transport.stream(
            "GET", f"http://127.0.0.1:{port}/", headers={}, read_timeout=5
        ):
            pass
    await _threads_released(transport)


async def test_curl_error_status_keeps_its_body(
    server: LocalServer, transport: CurlCffiTransport
) -> None:
    async with transport.stream(
        "GET", server.url("/challenge"), headers={}, read_timeout=5
    ) as response:
        assert response.status == 403
        assert b"Just a moment" in await response.aread()


async def test_client_over_curl_reads_a_conversation(server: LocalServer) -> None:
    options = UpstreamOptions(base_url=server.url(""), transport="curl_cffi")
    client = UpstreamClient(options)
    assert client.transport.name == "curl_cffi"
    request = ConversationRequest(message="hi", model_name="grok-4")
    async with client.open_conversation(TOKEN, request) as stream:
        events = [event async for event in stream]
    assert [e.text for e in events if isinstance(e, AnswerDelta)] == [
        "Paris",
        " is it.",
    ]
    assert isinstance(events[-1], StreamDone)
    assert server.received[0].headers["Cookie"] == f"sso={TOKEN}; sso-rw={TOKEN}"

    with pytest.raises(TokenRejected):
        await client.rate_limits(TOKEN)
    await client.aclose()
