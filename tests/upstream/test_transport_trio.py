"""TrioTransport against real servers on 127.0.0.1: framing, keep-alive,
failures and their classes, cancellation, the connection cap and TLS."""

from __future__ import annotations

import gzip
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import attrs
import pytest
import trio

from grok2api.errors import EgressBlocked, UpstreamProtocolError, UpstreamTimeout
from grok2api.upstream import (
    AnswerDelta,
    ConversationRequest,
    StreamDone,
    TrioTransport,
    UpstreamClient,
    UpstreamOptions,
)
from tests.tls_authority import make_authority

from .conftest import PLAIN_ANSWER, TOKEN

#: A route writes a whole response and says whether the connection stays open.
Route = Callable[[trio.abc.Stream], Awaitable[bool]]


@attrs.define
class Received:
    connection: int
    request_line: str
    headers: dict[str, str]
    body: bytes


@attrs.define
class KeepAliveServer:
    """An HTTP/1.1 server that serves many requests per connection and
    numbers its connections, so reuse can be seen from the outside."""

    scheme: str = "http"
    port: int = 0
    routes: dict[str, Route] = attrs.Factory(dict)
    received: list[Received] = attrs.Factory(list)
    connections: int = 0
    disconnected: trio.Event = attrs.Factory(trio.Event)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        number = self.connections
        data = b""
        try:
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines)
                length = int(headers.get("Content-Length", "0"))
                while len(data) < length:
                    data += await stream.receive_some(65536)
                body, data = data[:length], data[length:]
                self.received.append(Received(number, request_line, headers, body))
                path = request_line.split(" ")[1]
                if not await self.routes[path](stream):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.disconnected.set()
        finally:
            await trio.aclose_forcefully(stream)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _chunked(lines: list[bytes], stream: trio.abc.Stream) -> bool:
    # Every line in its own write, as Hypercorn sends a streamed body.
    await stream.send_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
        b"X-Trace: t-1\r\nX-Twice: a\r\nX-Twice: b\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    for line in lines:
        await stream.send_all(_chunk(line))
    await stream.send_all(b"0\r\nX-Trailer: ignored\r\n\r\n")
    return True


async def _fixed(
    body: bytes, stream: trio.abc.Stream, *, extra: bytes = b"", keep: bool = True
) -> bool:
    await stream.send_all(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n"
    )
    await stream.send_all(body)
    return keep


async def _until_close(body: bytes, stream: trio.abc.Stream) -> bool:
    await stream.send_all(b"HTTP/1.1 200 OK\r\n\r\n" + body)
    return False


async def _continue_first(stream: trio.abc.Stream) -> bool:
    await stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
    return await _fixed(b"after", stream)


async def _endless(stream: trio.abc.Stream) -> bool:
    await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:
        await stream.send_all(_chunk(b'{"result":{"response":{"token":"x"}}}\n'))
        await trio.sleep(0.005)


async def _cut_body(stream: trio.abc.Stream) -> bool:
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123")
    return False


async def _cut_chunked(stream: trio.abc.Stream) -> bool:
    await stream.send_all(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunk(b"half")
    )
    return False


async def _hang_up(stream: trio.abc.Stream) -> bool:
    return False


async def _garbage(stream: trio.abc.Stream) -> bool:
    await stream.send_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    return False


async def _stall_head(stream: trio.abc.Stream) -> bool:
    await trio.sleep(30)
    return False


async def _stall_body(stream: trio.abc.Stream) -> bool:
    await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    await trio.sleep(30)
    return False


async def _slow(stream: trio.abc.Stream) -> bool:
    await trio.sleep(0.3)
    return await _fixed(b"slow", stream)


def _routes() -> dict[str, Route]:
    text = b"".join(PLAIN_ANSWER)
    deflated = zlib.compress(text)
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw_deflated = raw.compress(text) + raw.flush()
    return {
        "/stream": partial(_chunked, PLAIN_ANSWER),
        "/rest/app-chat/conversations/new": partial(_chunked, PLAIN_ANSWER),
        "/fixed": partial(_fixed, b"fixed body"),
        "/closing": partial(_fixed, b"bye", extra=b"Connection: close\r\n", keep=False),
        "/gzip": partial(
            _fixed, gzip.compress(text), extra=b"Content-Encoding: gzip\r\n"
        ),
        "/deflate": partial(_fixed, deflated, extra=b"Content-Encoding: deflate\r\n"),
        "/raw-deflate": partial(
            _fixed, raw_deflated, extra=b"Content-Encoding: deflate\r\n"
        ),
        "/not-gzip": partial(
            _fixed, b"plain text", extra=b"Content-Encoding: gzip\r\n"
        ),
        "/until-close": partial(_until_close, b"all of it"),
        "/continue": _continue_first,
        "/endless": _endless,
        "/cut-body": _cut_body,
        "/cut-chunked": _cut_chunked,
        "/hang-up": _hang_up,
        "/garbage": _garbage,
        "/stall-head": _stall_head,
        "/stall-body": _stall_body,
        "/slow": _slow,
    }


@pytest.fixture
async def server(nursery: trio.Nursery) -> KeepAliveServer:
    local = KeepAliveServer(routes=_routes())
    listeners = await nursery.start(
        partial(trio.serve_tcp, local.handle, 0, host="127.0.0.1")
    )
    local.port = listeners[0].socket.getsockname()[1]
    return local


@pytest.fixture
async def transport() -> AsyncIterator[TrioTransport]:
    lean = TrioTransport(max_connections=4, connect_timeout=2.0)
    yield lean
    await lean.aclose()


async def _get(transport: TrioTransport, url: str, **options: object) -> bytes:
    async with transport.stream(
        "GET", url, headers={}, read_timeout=5, **options
    ) as response:
        return await response.aread()


async def test_streams_a_chunked_answer_and_sends_the_request_as_given(
    server: KeepAliveServer, transport: TrioTransport
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
        assert response.headers["x-twice"] == "a, b"
        assert transport.statistics().open_streams == 1
        chunks = [chunk async for chunk in response.aiter_bytes()]

    assert b"".join(chunks) == b"".join(PLAIN_ANSWER)
    sent = server.received[0]
    assert sent.request_line == "POST /stream HTTP/1.1"
    assert sent.headers["Host"] == f"127.0.0.1:{server.port}"
    assert sent.headers["Cookie"] == "sso=t"
    # Only encodings this transport can decode are asked for.
    assert sent.headers["Accept-Encoding"] == "gzip, deflate"
    assert sent.body == '{"message":"héllo"}'.encode()
    assert sent.headers["Content-Length"] == str(len(sent.body))
    assert transport.statistics().open_streams == 0


async def test_keeps_one_connection_for_requests_in_a_row(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    for path in ("/fixed", "/stream", "/gzip", "/fixed"):
        await _get(transport, server.url(path))
    assert [r.connection for r in server.received] == [1, 1, 1, 1]


async def test_decodes_gzip_and_both_deflate_forms(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    for path in ("/gzip", "/deflate", "/raw-deflate"):
        assert await _get(transport, server.url(path)) == b"".join(PLAIN_ANSWER)


async def test_a_body_that_does_not_decompress_is_a_charged_protocol_error(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    with pytest.raises(UpstreamProtocolError) as caught:
        await _get(transport, server.url("/not-gzip"))
    assert caught.value.charged is True


async def test_reads_bodies_to_close_and_skips_interim_responses(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    assert await _get(transport, server.url("/until-close")) == b"all of it"
    assert await _get(transport, server.url("/continue")) == b"after"
    # The read-to-close body ended its connection; the next one is new.
    assert [r.connection for r in server.received] == [1, 2]


async def test_a_connection_the_server_closes_is_not_reused(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    assert await _get(transport, server.url("/closing")) == b"bye"
    assert await _get(transport, server.url("/fixed")) == b"fixed body"
    assert [r.connection for r in server.received] == [1, 2]


async def test_an_idle_connection_closed_by_the_server_is_replaced(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    await _get(transport, server.url("/fixed"))
    # The server drops the idle connection, as on its keep-alive timeout.
    server.routes["/fixed"] = partial(_fixed, b"fixed body", keep=False)
    await _get(transport, server.url("/fixed"))
    await trio.sleep(0.05)
    assert await _get(transport, server.url("/fixed")) == b"fixed body"
    assert [r.connection for r in server.received] == [1, 1, 2]


class _ClosesAsRequestArrives:
    """Hangs up on a kept-alive connection's second request without a byte
    (a keep-alive timeout racing the client's reuse), or sends ``partial``
    first; answers a request that opened its connection."""

    def __init__(self, server: KeepAliveServer, partial: bytes = b"") -> None:
        self._server = server
        self._partial = partial

    async def __call__(self, stream: trio.abc.Stream) -> bool:
        this = self._server.received[-1].connection
        if any(r.connection == this for r in self._server.received[:-1]):
            await stream.send_all(self._partial)
            return False
        return await _fixed(b"answered", stream)


async def test_a_request_the_server_hangs_up_on_at_reuse_goes_again_on_a_new_connection(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    server.routes["/race"] = _ClosesAsRequestArrives(server)
    await _get(transport, server.url("/fixed"))
    async with transport.stream(
        "POST", server.url("/race"), headers={}, json={"n": 1}, read_timeout=5
    ) as response:
        assert await response.aread() == b"answered"
    assert [(r.connection, r.body) for r in server.received[1:]] == [
        (1, b'{"n":1}'),
        (2, b'{"n":1}'),
    ]


async def test_a_reused_connection_cut_after_part_of_an_answer_is_not_sent_again(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    server.routes["/race"] = _ClosesAsRequestArrives(server, b"HTTP/1.1 200 OK\r\n")
    await _get(transport, server.url("/fixed"))
    with pytest.raises(EgressBlocked) as caught:
        await _get(transport, server.url("/race"))
    assert caught.value.charged is False
    assert [r.connection for r in server.received] == [1, 1]


async def test_a_new_connection_hung_up_on_is_not_tried_again(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    with pytest.raises(EgressBlocked):
        await _get(transport, server.url("/hang-up"))
    assert [r.connection for r in server.received] == [1]


async def test_an_unread_body_closes_its_connection(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    async with transport.stream(
        "GET", server.url("/stream"), headers={}, read_timeout=5
    ) as response:
        assert response.status == 200
    await _get(transport, server.url("/fixed"))
    assert [r.connection for r in server.received] == [1, 2]


@pytest.mark.parametrize("path", ["/cut-body", "/cut-chunked"])
async def test_a_body_cut_short_is_a_charged_protocol_error(
    server: KeepAliveServer, transport: TrioTransport, path: str
) -> None:
    with pytest.raises(UpstreamProtocolError) as caught:
        await _get(transport, server.url(path))
    assert caught.value.charged is True
    assert caught.value.status == 200


@pytest.mark.parametrize("path", ["/hang-up", "/garbage"])
async def test_no_answer_at_all_is_an_uncharged_egress_failure(
    server: KeepAliveServer, transport: TrioTransport, path: str
) -> None:
    with pytest.raises(EgressBlocked) as caught:
        await _get(transport, server.url(path))
    assert caught.value.charged is False


async def test_silence_before_the_head_is_an_uncharged_timeout(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    with pytest.raises(UpstreamTimeout) as caught:
        async with transport.stream(
            "GET", server.url("/stall-head"), headers={}, read_timeout=0.3
        ):
            pass
    assert caught.value.charged is False


async def test_silence_mid_body_is_a_charged_timeout(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    with pytest.raises(UpstreamTimeout) as caught:
        async with transport.stream(
            "GET", server.url("/stall-body"), headers={}, read_timeout=0.3
        ) as response:
            await response.aread()
    assert caught.value.charged is True


async def test_connection_refused_is_egress(transport: TrioTransport) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EgressBlocked) as caught:
        await _get(transport, f"http://127.0.0.1:{port}/")
    assert "(ConnectionRefusedError)" in str(caught.value)
    assert transport.statistics().open_streams == 0


async def test_cancelling_mid_stream_closes_the_connection_and_frees_its_slot(
    server: KeepAliveServer,
) -> None:
    transport = TrioTransport(max_connections=1)
    with trio.move_on_after(10) as give_up:
        async with transport.stream(
            "GET", server.url("/endless"), headers={}, read_timeout=5
        ) as response:
            async for _ in response.aiter_bytes():
                give_up.cancel()  # stands in for a client disconnect
    assert give_up.cancelled_caught
    with trio.fail_after(5):
        await server.disconnected.wait()
    assert transport.statistics().open_streams == 0
    # The only slot is free again.
    with trio.fail_after(5):
        assert await _get(transport, server.url("/fixed")) == b"fixed body"
    await transport.aclose()


async def test_a_request_past_the_connection_cap_waits_then_times_out(
    server: KeepAliveServer,
) -> None:
    transport = TrioTransport(max_connections=1)
    results: dict[str, object] = {}

    async def slow() -> None:
        results["slow"] = await _get(transport, server.url("/slow"))

    async def queued(read_timeout: float) -> None:
        try:
            async with transport.stream(
                "GET", server.url("/fixed"), headers={}, read_timeout=read_timeout
            ) as response:
                results["queued"] = await response.aread()
        except UpstreamTimeout as exc:
            results["queued"] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow)
        await trio.sleep(0.05)
        nursery.start_soon(queued, 0.05)
    assert results["slow"] == b"slow"
    assert isinstance(results["queued"], UpstreamTimeout)
    assert results["queued"].charged is False

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow)
        await trio.sleep(0.05)
        nursery.start_soon(queued, 5)
    assert results["queued"] == b"fixed body"
    # One connection at a time, and it served all three requests.
    assert {r.connection for r in server.received} == {1}
    await transport.aclose()


async def test_a_line_break_in_a_header_is_refused_before_sending(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    with pytest.raises(ValueError, match="line break"):
        async with transport.stream(
            "GET",
            server.url("/fixed"),
            headers={"Cookie": "sso=t\r\nX-Injected: 1"},
            read_timeout=5,
        ):
            pass
    assert server.received == []


async def test_speaks_tls_to_an_https_target(
    nursery: trio.Nursery, tmp_path_factory: pytest.TempPathFactory
) -> None:
    authority = make_authority(tmp_path_factory.mktemp("tls"), "upstream.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(authority.cert_path, authority.key_path)
    local = KeepAliveServer(scheme="https", routes=_routes())
    serve = partial(trio.serve_ssl_over_tcp, host="127.0.0.1")
    listeners = await nursery.start(serve, local.handle, 0, context)
    local.port = listeners[0].transport_listener.socket.getsockname()[1]

    trusting = TrioTransport(tls_context=authority.client_context)
    for _ in range(2):
        assert await _get(trusting, local.url("/gzip")) == b"".join(PLAIN_ANSWER)
    assert [r.connection for r in local.received] == [1, 1]
    await trusting.aclose()

    # Without the test CA in its trust store, the handshake fails.
    with pytest.raises(EgressBlocked):
        await _get(TrioTransport(), local.url("/fixed"))


async def test_client_over_trio_reads_a_conversation(
    server: KeepAliveServer,
) -> None:
    options = UpstreamOptions(base_url=server.url(""))
    client = UpstreamClient(options)
    assert client.transport.name == "trio"
    request = ConversationRequest(message="hi", model_name="grok-4")
    async with client.open_conversation(TOKEN, request) as stream:
        events = [event async for event in stream]
    assert [e.text for e in events if isinstance(e, AnswerDelta)] == [
        "Paris",
        " is it.",
    ]
    assert isinstance(events[-1], StreamDone)
    assert server.received[0].headers["Cookie"] == f"sso={TOKEN}; sso-rw={TOKEN}"
    await client.aclose()


async def _raw(reply: bytes, stream: trio.abc.Stream) -> bool:
    await stream.send_all(reply)
    return False


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        # "²" passes str.isdigit() but not int().
        (b"HTTP/1.1 2\xb20 OK\r\nContent-Length: 0\r\n\r\n", EgressBlocked),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", UpstreamProtocolError),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
            UpstreamProtocolError,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", EgressBlocked),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            UpstreamProtocolError,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\n", UpstreamProtocolError),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"-2\r\nok\r\n0\r\n\r\n",
            UpstreamProtocolError,
        ),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", EgressBlocked),
    ],
)
async def test_a_malformed_answer_is_an_upstream_error_never_a_crash(
    server: KeepAliveServer, transport: TrioTransport, reply: bytes, error: type
) -> None:
    server.routes["/raw"] = partial(_raw, reply)
    with pytest.raises(error):
        await _get(transport, server.url("/raw"))
    assert transport.statistics().open_streams == 0


async def test_an_answer_sent_before_a_large_upload_was_taken_is_read(
    nursery: trio.Nursery,
) -> None:
    async def refuse_early(stream: trio.SocketStream) -> None:
        # Reads only the head of a large upload, answers and hangs up.
        await stream.receive_some(1024)
        await stream.send_all(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n"
            b"Connection: close\r\n\r\ntoo big!"
        )
        await stream.aclose()

    listeners = await nursery.start(
        partial(trio.serve_tcp, refuse_early, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    transport = TrioTransport()
    async with transport.stream(
        "POST",
        f"http://127.0.0.1:{port}/upload",
        headers={},
        content=b"x" * (32 * 1024 * 1024),
        read_timeout=5,
    ) as response:
        assert response.status == 413
        assert await response.aread() == b"too big!"
    await transport.aclose()


async def test_a_compressed_body_cut_short_is_an_error(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    whole = gzip.compress(b"".join(PLAIN_ANSWER))
    server.routes["/half-gzip"] = partial(
        _fixed, whole[: len(whole) // 2], extra=b"Content-Encoding: gzip\r\n"
    )
    with pytest.raises(UpstreamProtocolError) as caught:
        await _get(transport, server.url("/half-gzip"))
    assert caught.value.charged is True


async def test_raw_deflate_is_recognised_from_a_one_byte_first_piece(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    text = b"".join(PLAIN_ANSWER)
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    packed = packer.compress(text) + packer.flush()

    async def trickle(stream: trio.abc.Stream) -> bool:
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n"
            b"Content-Length: %d\r\n\r\n" % len(packed) + packed[:1]
        )
        await trio.sleep(0.05)
        await stream.send_all(packed[1:])
        return True

    server.routes["/trickle"] = trickle
    assert await _get(transport, server.url("/trickle")) == text


async def test_a_small_body_that_expands_hugely_is_handed_out_in_pieces(
    server: KeepAliveServer, transport: TrioTransport
) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    server.routes["/bomb"] = partial(_fixed, bomb, extra=b"Content-Encoding: gzip\r\n")
    async with transport.stream(
        "GET", server.url("/bomb"), headers={}, read_timeout=5
    ) as response:
        first = await response.aiter_bytes().__anext__()
        assert 0 < len(first) <= 1024 * 1024
        assert len(await response.aread(limit=2 * 1024 * 1024)) == 2 * 1024 * 1024


async def test_a_caller_cancelled_during_the_tls_handshake_closes_its_socket(
    nursery: trio.Nursery,
) -> None:
    hung_up = trio.Event()

    async def never_shake_hands(stream: trio.SocketStream) -> None:
        # Takes the TCP connection, never answers the TLS hello.
        while await stream.receive_some(65536):
            pass
        hung_up.set()

    listeners = await nursery.start(
        partial(trio.serve_tcp, never_shake_hands, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    transport = TrioTransport(connect_timeout=30)
    with trio.move_on_after(0.2):
        await _get(transport, f"https://127.0.0.1:{port}/")
    with trio.fail_after(5):
        await hung_up.wait()
    await transport.aclose()
