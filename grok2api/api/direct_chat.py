"""``POST /v1/chat/completions`` served straight on ASGI, below Quart.

Quart builds a request object, pushes two contexts and runs two tasks for
every request. For the chat route, whose cost is what the gateway is
measured by, that machinery is a tenth of the CPU a request takes, so this
layer reads the body, admits the caller, runs the completion and writes
the answer itself. Everything else, and every other method on this path,
goes on to Quart, which keeps the route in its URL map so that 405s and the
API document stay right.

What the Quart hooks and error handlers do for other routes happens here
the same way: the caller is admitted by :mod:`grok2api.api.caller`, errors
are answered in the OpenAI envelope, and a client that goes away cancels
the completion.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import trio

from grok2api.api.caller import ScopeHeaders, admit_api_caller, client_address
from grok2api.api.chat import ChatAnswer, answer_chat
from grok2api.api.errors import answerable, envelope, sse_error_event
from grok2api.api.http import body_too_large, decode_json_body
from grok2api.api.sse import DONE
from grok2api.errors import ApiError
from grok2api.gateway import Gateway

__all__ = ["CHAT_PATH", "DirectChat"]

log = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class _ClientGone(Exception):
    """The client disconnected before its request body had arrived."""


class DirectChat:
    """Serves ``POST`` on :data:`CHAT_PATH`; passes anything else to ``app``.

    Args:
        app: the ASGI app below (Quart).
        gateway: returns the worker's gateway (None before it is open).
        body_timeout: seconds the whole request body may take to arrive.
    """

    def __init__(
        self, app: Any, gateway: Callable[[], Gateway | None], body_timeout: float
    ) -> None:
        self._app = app
        self._gateway = gateway
        self._body_timeout = body_timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != CHAT_PATH
            or scope["method"] != "POST"
        ):
            await self._app(scope, receive, send)
            return
        gateway = self._gateway()
        if gateway is None:
            await _send_error(
                send, scope, ApiError(503, "The gateway is still starting.")
            )
            return
        headers = ScopeHeaders(scope)
        try:
            auth = gateway.auth
            address = client_address(auth, scope, headers)
            await admit_api_caller(auth, scope, headers, address)
            limit = gateway.settings.security.max_body_size_mb * 1024 * 1024
            raw = await self._read_body(receive, headers, limit)
        except _ClientGone:
            return
        except Exception as exc:
            await _send_failure(send, scope, exc)
            return
        sent = _Sent()
        with gateway.drain.guard() as shutdown:
            with shutdown:
                await _answer(gateway, scope, headers, raw, receive, send, sent)
            if shutdown.cancelled_caught:
                await _end_for_shutdown(send, scope, sent)

    async def _read_body(
        self, receive: Any, headers: ScopeHeaders, limit: int
    ) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise body_too_large()
        body = bytearray()
        with trio.move_on_after(self._body_timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone
                body += message.get("body", b"")
                if len(body) > limit:
                    raise body_too_large()
                if not message.get("more_body", False):
                    return bytes(body)
        raise ApiError(
            408,
            f"The request body did not arrive within {self._body_timeout:g}s.",
            code="request_timeout",
        )


async def _answer(
    gateway: Gateway,
    scope: dict[str, Any],
    headers: ScopeHeaders,
    raw: bytes,
    receive: Any,
    send: Any,
    sent: _Sent,
) -> None:
    async with trio.open_nursery() as nursery:
        # From here the client only sends a disconnect: it cancels the
        # completion, as Quart does for its routes.
        nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
        try:
            answer = await answer_chat(
                gateway,
                scope,
                decode_json_body(raw),
                functools.partial(gateway.media.base_url_for, scope, headers),
            )
        except Exception as exc:
            await _send_failure(send, scope, exc)
        else:
            await _send_answer(send, answer, sent)
        nursery.cancel_scope.cancel()


async def _cancel_on_disconnect(receive: Any, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


class _Sent:
    """How much of an answer went out: nothing, a stream's head, all of it."""

    stream_head = False
    #: Every event of a stream went out; only its end is left.
    events_done = False
    done = False


async def _end_for_shutdown(send: Any, scope: dict[str, Any], sent: _Sent) -> None:
    if sent.done:
        return
    error = ApiError(
        503,
        "The gateway is shutting down and ended this answer; send the request again.",
        type="server_error",
        code="server_shutting_down",
    )
    if not sent.stream_head:
        await _send_error(send, scope, error)
        return
    if not sent.events_done:
        scope["grok2api.error"] = error.type
        await send(
            {
                "type": "http.response.body",
                "body": sse_error_event(error) + DONE,
                "more_body": True,
            }
        )
    await send({"type": "http.response.body", "body": b""})


async def _send_answer(send: Any, answer: ChatAnswer, sent: _Sent) -> None:
    if answer.events is None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [_JSON, (b"content-length", b"%d" % len(answer.body))],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})
        sent.done = True
        return
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
    sent.stream_head = True
    async with contextlib.aclosing(answer.events) as events:
        async for chunk in events:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    sent.events_done = True
    await send({"type": "http.response.body", "body": b""})
    sent.done = True


async def _send_failure(send: Any, scope: dict[str, Any], exc: Exception) -> None:
    await _send_error(send, scope, answerable(exc, scope["method"], scope["path"], log))


async def _send_error(send: Any, scope: dict[str, Any], error: ApiError) -> None:
    scope["grok2api.error"] = error.type
    body = json.dumps(envelope(error), ensure_ascii=False).encode()
    headers = [_JSON, (b"content-length", b"%d" % len(body))]
    headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in error.headers.items()
    ]
    start = {"type": "http.response.start", "status": error.status}
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
