"""Hypercorn's HTTP/1.1 protocol as ``grok2api serve`` runs it.

The server runs in this process exactly as ``grok2api serve`` runs one
worker. Every ``send_all`` on a Trio socket stream is recorded, so the
tests see the writes the server made, not how the client's reads split
them; and requests that are not HTTP get the error envelope.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from quart_trio import QuartTrio

from grok2api.cli import h11_protocol
from grok2api.cli.serve import _serve_one

BODY = b'{"answer": "hello"}'
LARGE = bytes(range(256)) * 1024
#: What the app saw when it sent inside a cancelled scope.
cancelled_sends: list[bool] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/sized":
        headers = [(b"content-length", b"%d" % len(BODY))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY})
    elif path == "/empty":
        headers = [(b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        # The head must not wait for the first event of a stream.
        await trio.sleep(0.2)
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/large":
        headers = [(b"content-length", b"%d" % len(LARGE))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": LARGE})
    elif path == "/cancelled":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        with trio.CancelScope() as scope:
            scope.cancel()
            await send(
                {"type": "http.response.body", "body": b"two", "more_body": True}
            )
        cancelled_sends.append(scope.cancelled_caught)
        await send({"type": "http.response.body", "body": b""})


class Writes:
    """Every write the server made while the test runs, in order, empty ones
    included: straight to a socket, or through ``send_all``."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.through_send_all: list[bytes] = []
        #: How many bytes a direct write may hand the socket; None: all.
        self.socket_takes: int | None = None

    def of_server(self) -> list[bytes]:
        return [chunk for chunk in self.chunks if not chunk.startswith(b"GET ")]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Writes:
    recorded = Writes()
    original = trio.SocketStream.send_all

    async def send_all(self: trio.SocketStream, data: Any) -> None:
        # Empty writes too: each one costs the server a pass of the scheduler.
        recorded.chunks.append(bytes(data))
        recorded.through_send_all.append(bytes(data))
        await original(self, data)

    def socket_write(fd: int, data: bytes) -> int:
        if recorded.socket_takes == 0:
            raise BlockingIOError
        sent = os.write(fd, data[: recorded.socket_takes])
        recorded.chunks.append(bytes(data[:sent]))
        return sent

    monkeypatch.setattr(trio.SocketStream, "send_all", send_all)
    monkeypatch.setattr(h11_protocol, "_socket_write", socket_write)
    return recorded


@pytest.fixture
async def server() -> AsyncIterator[int]:
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            functools.partial(_serve_one, app, config, stop.wait)
        )
        yield int(binds[0].rsplit(":", 1)[1])
        stop.set()


async def get(port: int, path: str) -> bytes:
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    return await exchange(port, request.encode())


async def exchange(port: int, request: bytes) -> bytes:
    """Everything the server sends back until it closes the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        received = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some():
                received += chunk
        return received


async def test_sized_response_leaves_in_one_write(server: int, writes: Writes) -> None:
    received = await get(server, "/sized")

    assert received.startswith(b"HTTP/1.1 200")
    assert received.endswith(b"\r\n\r\n" + BODY)
    [only] = writes.of_server()
    assert only == received


async def test_a_sized_answer_goes_straight_to_the_socket(
    server: int, writes: Writes
) -> None:
    await get(server, "/sized")

    assert [w for w in writes.through_send_all if not w.startswith(b"GET ")] == []


@pytest.mark.parametrize("takes", [0, 7])
async def test_what_the_socket_does_not_take_at_once_follows_in_order(
    server: int, writes: Writes, takes: int
) -> None:
    writes.socket_takes = takes

    received = await get(server, "/sized")

    assert received.startswith(b"HTTP/1.1 200")
    assert received.endswith(b"\r\n\r\n" + BODY)
    assert b"".join(writes.of_server()) == received
    assert writes.through_send_all[-1] == received[takes:]


async def test_a_large_body_is_written_after_its_head_not_copied_behind_it(
    server: int, writes: Writes
) -> None:
    received = await get(server, "/large")

    # The socket may take the body in several pieces; the head is its own.
    head, *body = writes.of_server()
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    assert b"".join(body) == LARGE
    assert received == head + LARGE


async def test_a_send_in_a_cancelled_scope_writes_nothing(
    server: int, writes: Writes
) -> None:
    cancelled_sends.clear()

    received = await get(server, "/cancelled")

    # As with plain Hypercorn: the send raises before its first byte, and
    # the chunked framing stays whole.
    assert received.endswith(b"\r\n\r\n3\r\none\r\n0\r\n\r\n")
    assert cancelled_sends == [True]


async def test_empty_sized_response_still_sends_its_head(
    server: int, writes: Writes
) -> None:
    received = await get(server, "/empty")

    assert received.startswith(b"HTTP/1.1 204")
    assert writes.of_server() == [received]


async def test_stream_head_is_not_held_for_the_first_event(
    server: int, writes: Writes
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(get, server, "/stream")
        await trio.sleep(0.1)
        # The app is still sleeping before its first event.
        [head] = writes.of_server()
        assert head.startswith(b"HTTP/1.1 200")
        assert head.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "invalid_http"),
        (b"GET / HTTP/1.1\r\nHost: test\r\nNo colon here\r\n\r\n", 400, "invalid_http"),
        (
            b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            431,
            "request_headers_too_large",
        ),
    ],
    ids=["request-line", "header-line", "headers-too-large"],
)
async def test_a_request_that_is_not_http_gets_an_error_envelope(
    server: int,
    request_bytes: bytes,
    status: int,
    code: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="grok2api.access")
    received = await exchange(server, request_bytes)

    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    assert status_line.startswith(f"HTTP/1.1 {status} ")
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body))
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    [line] = [r.getMessage() for r in caplog.records if r.name == "grok2api.access"]
    assert line.startswith(f"- - {status} ")
    assert line.endswith(f"outcome={code}")


async def test_an_idle_kept_alive_quart_connection_is_closed_on_time() -> None:
    # Quart-Trio cancels a request's tasks as soon as its answer is out,
    # which is where Hypercorn restarts the connection's idle timer.
    quart = QuartTrio(__name__)

    @quart.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.keep_alive_timeout = 0.3
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            functools.partial(_serve_one, quart, config, stop.wait)
        )
        port = int(binds[0].rsplit(":", 1)[1])
        request = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"
        received = await exchange(port, request + request)
        stop.set()

    answers = received.split(b"HTTP/1.1 200")
    assert answers[0] == b"" and len(answers) == 3
    assert all(answer.endswith(b'{"hello":"world"}\n') for answer in answers[1:])


async def test_a_request_framed_both_ways_is_answered_then_the_connection_closes(
    server: int,
) -> None:
    request = (
        b"POST /sized HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    # exchange() returns once the server closes the connection.
    received = await exchange(server, request)
    assert received.startswith(b"HTTP/1.1 200")
    assert b"\r\nconnection: close\r\n" in received.lower()
    assert received.endswith(BODY)
