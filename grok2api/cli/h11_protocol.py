"""Hypercorn's HTTP/1.1 protocol as the gateway serves it.

Five changes to what Hypercorn does:

* **One socket write for a response whose length is known.** Hypercorn
  writes a response head as soon as the app sends ``http.response.start``
  and the body with the next message, so every JSON answer costs two writes.
  On loopback a write is among the costliest single steps of a request (the
  kernel delivers to the reader inside the writer's system call), and the
  gateway's own answers are exactly such pairs. The head of a response that
  carries ``Content-Length`` is held and sent with the bytes that follow
  (a body over 64 KiB is written after it instead of being copied). A
  response without a length (SSE, other chunked streams) keeps its head
  going out at once, so a client sees the headers of a long stream before
  its first event. Any other event of the connection (it goes idle, closes)
  sends a held head first, so nothing stays behind. One difference remains:
  an app cancelled between a sized start and its body (a shutdown whose
  grace ran out) leaves its client with no bytes at all instead of a head
  and a cut body. The gateway sends every sized body straight after its
  start.
* **Bytes the socket takes at once are written without the scheduler.**
  Every Hypercorn write takes the connection's send lock and ends with a
  checkpoint: two passes of Trio's scheduler per write, where a whole chat
  request took about twenty. When no write is in progress, the bytes go
  straight to the socket; only what it does not take at once (a full
  buffer, a broken connection, TLS) goes the usual way. A cancelled task
  writes nothing, as with Hypercorn's own write.
* **Closing a connection and restarting its keep-alive timer are not
  cancelled with the request.** Hypercorn does both inside the app's last
  send, and Quart-Trio cancels a request's tasks the moment its answer is
  out, so with plain Hypercorn a Quart route's connection stayed open after
  ``Connection: close`` and an idle kept-alive one never timed out.
* **A request framed both ways is answered, then its connection closes.**
  With ``Content-Length`` and ``Transfer-Encoding`` both present, the answer
  carries ``Connection: close``, as RFC 9112 asks.
* **Requests that are not HTTP get an error envelope.** A request line or
  header h11 cannot parse, or headers past the size limit, are refused
  before any app sees them; Hypercorn answers those with an empty body. Here
  the answer carries the same ``{"error": {...}}`` body as every other
  refusal, so a client's error handling has something to show, and the
  access log gets its line.

:func:`install` puts the class where Hypercorn's connection wrapper looks
for its HTTP/1.1 protocol; the serving commands call it before they serve.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import hypercorn.protocol
import trio
from hypercorn.events import Event, RawData
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import Response
from hypercorn.protocol.h11 import H11Protocol

from grok2api.api.errors import envelope
from grok2api.errors import ApiError

__all__ = ["GatewayH11Protocol", "install"]

access_log = logging.getLogger("grok2api.access")
#: A non-blocking socket's fd takes what fits in its buffer and says how much.
_socket_write = os.write
#: A body above this size is written after its head rather than copied behind it.
_JOIN_LIMIT = 64 * 1024

_UNPARSEABLE = {
    431: ("The request's headers are too large.", "request_headers_too_large"),
}
_NOT_HTTP = ("The request is not valid HTTP/1.1.", "invalid_http")
#: Set in an app's scope when its request turned out not to be HTTP after
#: the app got it; holds the status sent and the error code, for the access
#: log (``grok2api.api.access_log``).
_REFUSED_SCOPE_KEY = "grok2api.refused_http"


class GatewayH11Protocol(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol, writing a sized response's head with
    its body and answering unparseable requests with an error envelope."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write: Callable[[Event], Awaitable[None]] = self.send
        self.send = self._send
        self._hold_next_write = False
        self._held = b""
        self._client_closed = False
        self._close_after_answer = False
        # Hypercorn's connection: its socket stream and the lock its writes
        # take. Without them (another server class) every write goes the
        # usual way.
        server = getattr(self._write, "__self__", None)
        self._server = (
            server
            if hasattr(server, "send_lock") and hasattr(server, "stream")
            else None
        )

    async def _create_stream(self, request: h11.Request) -> None:
        names = {name for name, _ in request.headers}
        # Both framings at once is how requests are smuggled past proxies;
        # RFC 9112 (6.3) has the server close the connection after answering.
        self._close_after_answer = {b"content-length", b"transfer-encoding"} <= names
        await super()._create_stream(request)

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, Response) and event.status_code >= 200:
            self._hold_next_write = any(
                name.lower() == b"content-length" for name, _ in event.headers
            )
            if self._close_after_answer:
                event = dataclasses.replace(
                    event, headers=[*event.headers, (b"connection", b"close")]
                )
        try:
            await super().stream_send(event)
        finally:
            # The head went through _send, or h11 refused it (a bad header,
            # a failed connection): either way nothing later is a head.
            self._hold_next_write = False

    async def _send(self, event: Event) -> None:
        if not (isinstance(event, RawData) and event.address is None):
            # Closing the connection and restarting its keep-alive timer
            # happen inside the app's last send, and Quart-Trio cancels that
            # task as soon as the answer is out. Cancelled here, an answer
            # to "Connection: close" left its socket open and a kept-alive
            # connection never timed out. A close cannot outlast the time a
            # connection may sit idle (a TLS peer that reads nothing).
            with trio.move_on_after(self.config.keep_alive_timeout, shield=True):
                if self._held:
                    held, self._held = self._held, b""
                    await self._write_bytes(held)
                await self._write(event)
            return
        if self._hold_next_write:
            self._hold_next_write = False
            self._held = event.data
            return
        data = event.data
        if self._held:
            held, self._held = self._held, b""
            if len(data) <= _JOIN_LIMIT:
                data = held + data
            else:
                # A large body is not copied just to sit behind its head.
                await self._write_bytes(held)
        # The end of a sized body encodes to nothing; writing nothing would
        # still take the send lock and a checkpoint.
        if data:
            await self._write_bytes(data)

    async def _write_bytes(self, data: bytes) -> None:
        rest = self._write_at_once(data)
        if len(rest) == len(data):
            await self._write(RawData(data=data))
        elif rest:
            # Part of the bytes is on the wire: the rest must follow whatever
            # happens to this task, or the response's framing breaks.
            with trio.CancelScope(shield=True):
                await self._write(RawData(data=rest))

    def _write_at_once(self, data: bytes) -> bytes:
        """Write what the socket takes without waiting; return the rest.

        Hypercorn's write takes its send lock and, after the send, a
        checkpoint: two passes of the scheduler for bytes the kernel
        usually takes at once. When no write is in progress, the socket is
        offered the bytes directly; whatever it does not take (a full
        buffer, a broken connection) goes the usual way, which waits or
        reports the close. A cancelled task writes nothing here: the usual
        way raises before its first byte, and so must this one.
        """
        server = self._server
        if (
            server is None
            or server.send_lock.locked()
            or trio.current_effective_deadline() == -math.inf
        ):
            return data
        socket = getattr(server.stream, "socket", None)  # none under TLS
        fd = socket.fileno() if socket is not None else -1
        if fd < 0:
            return data
        try:
            sent = _socket_write(fd, data)
        except OSError:
            return data
        return data[sent:]

    async def handle(self, event: Event) -> None:
        if isinstance(event, RawData) and not event.data:
            self._client_closed = True
        await super().handle(event)

    async def _send_error_response(self, status_code: int) -> None:
        message, code = _UNPARSEABLE.get(status_code, _NOT_HTTP)
        app_scope = getattr(self.stream, "scope", None)
        if app_scope is not None:
            # An app has this request (its body broke off or was garbled):
            # the app's own access line tells it, with the method and path.
            if not self._client_closed:
                app_scope[_REFUSED_SCOPE_KEY] = (status_code, code)
        elif self._client_closed:
            # The client hung up inside a request head: nothing to answer.
            access_log.info(
                "- - - model=- token=- duration_ms=- request_id=- outcome=client_gone"
            )
            return
        else:
            # No app sees this request, so the access line is written here;
            # it has no method, path or request id to show.
            access_log.info(
                "- - %d model=- token=- duration_ms=- request_id=- outcome=%s",
                status_code,
                code,
            )
        if self._client_closed:
            return
        error = ApiError(status_code, message, code=code)
        body = json.dumps(envelope(error)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
            *self.config.response_headers("h11"),
        ]
        await self._send_h11_event(
            h11.Response(status_code=status_code, headers=headers)
        )
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


def install() -> None:
    """Make Hypercorn serve HTTP/1.1 with :class:`GatewayH11Protocol`."""
    hypercorn.protocol.H11Protocol = GatewayH11Protocol  # type: ignore[misc]
