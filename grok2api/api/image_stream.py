"""Image streams: OpenAI's image stream events as SSE.

A streamed image request answers ``<prefix>.partial_image`` events while the
images are being made, then one ``<prefix>.completed`` event per image, then
``data: [DONE]``. The prefix is ``image_generation`` for generations and ``image_edit``
for edits; the shapes are the same (``b64_json``, ``created_at``, ``size``,
``quality``, ``background``, ``output_format``, plus ``partial_image_index``
or ``usage``). The gateway counts no image tokens, so ``usage`` is zeros.

As with chat streams, the work runs as a task in the gateway's nursery under
its own cancel scope and feeds a channel that the response body drains; the
body cancels that scope when it ends, so a client that disconnects closes
the upstream socket. A failure before the first event is an ordinary JSON
error; after it, one error event ends the stream.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import trio
from quart import Response

from grok2api.api.errors import as_api_error, sse_error_event
from grok2api.api.sse import DONE, KEEPALIVE, Failure, StreamReader, start_producer
from grok2api.errors import Grok2APIError
from grok2api.gateway import Gateway
from grok2api.media.names import MediaKind, sniff_extension

__all__ = ["ImageEvents", "PartialImages", "open_image_stream"]

log = logging.getLogger(__name__)

_SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
#: Ends every stream, as the gateway's chat streams do; the SDKs stop there.
#: ``output_format`` per cached extension.
_FORMATS = {"png": "png", "jpg": "jpeg", "webp": "webp", "gif": "png"}
#: OpenAI's quality words for the ones it does not list in stream events.
_QUALITIES = {"hd": "high", "standard": "medium"}
_NO_USAGE = {
    "input_tokens": 0,
    "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
    "output_tokens": 0,
    "total_tokens": 0,
}


def output_format(data: bytes) -> str:
    """The ``output_format`` of an image's bytes (``png`` when unknown)."""
    extension = sniff_extension(MediaKind.IMAGE, data[:12]) or "png"
    return _FORMATS[extension]


@attrs.frozen
class ImageEvents:
    """Renders the events of one stream.

    Args:
        prefix: ``image_generation`` or ``image_edit``.
        size: the size the client asked for, echoed in every event.
        quality: likewise.
    """

    prefix: str
    size: str
    quality: str
    background: str = "auto"

    def _event(self, kind: str, data: bytes, **extra: Any) -> bytes:
        name = f"{self.prefix}.{kind}"
        payload = {
            "type": name,
            "b64_json": base64.b64encode(data).decode("ascii"),
            "created_at": int(time.time()),
            "size": self.size,
            "quality": _QUALITIES.get(self.quality, self.quality),
            "background": self.background,
            "output_format": output_format(data),
            **extra,
        }
        text = json.dumps(payload, separators=(",", ":"))
        return f"event: {name}\ndata: {text}\n\n".encode()

    def partial(self, data: bytes, index: int) -> bytes:
        return self._event("partial_image", data, partial_image_index=index)

    def completed(self, data: bytes) -> bytes:
        return self._event("completed", data, usage=_NO_USAGE)


@attrs.frozen
class _Event:
    data: bytes


@attrs.frozen
class _Finished:
    events: list[bytes]


class PartialImages:
    """Picks the partial images a stream shows and sends their events.

    The first ``images`` images seen get up to ``limit`` partials each, in
    rising quality (a frame no better than the last one shown is skipped).
    """

    def __init__(self, events: ImageEvents, images: int, limit: int) -> None:
        self.events = events
        self.images = images
        self.limit = limit
        self._shown: dict[str, tuple[int, int]] = {}
        self._send: trio.MemorySendChannel[object] | None = None

    def attach(self, send: trio.MemorySendChannel[object]) -> None:
        self._send = send

    async def offer(self, key: str, rank: int, data: bytes, *, final: bool) -> None:
        """Show ``data`` as a partial of image ``key`` if it qualifies.

        Args:
            key: which image the frame belongs to.
            rank: its quality; higher is better.
            data: its bytes.
            final: a final image is never a partial.
        """
        if final or self.limit == 0 or self._send is None:
            return
        shown = self._shown.get(key)
        if shown is None:
            if len(self._shown) >= self.images:
                return
            shown = (0, -1)
        count, best = shown
        if count >= self.limit or rank <= best:
            return
        self._shown[key] = (count + 1, rank)
        # A client that left closed the channel; the cancellation that
        # follows ends the work.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send.send(_Event(self.events.partial(data, count)))


Produce = Callable[[PartialImages], Awaitable[list[bytes]]]


async def open_image_stream(
    gateway: Gateway,
    events: ImageEvents,
    partials: PartialImages,
    produce: Produce,
    asgi_scope: dict[str, Any],
) -> Response:
    """Run ``produce`` and stream its partial and completed images.

    Args:
        events: renders the events.
        partials: handed to ``produce``, which offers it frames.
        produce: makes the images and returns their bytes, in order.
        asgi_scope: the request's scope, for the access log's error type.

    Raises:
        Grok2APIError: ``produce`` failed before the first event.
    """
    first, receive, scope = await start_producer(
        gateway.nursery, functools.partial(_produce, produce, partials, events)
    )
    keepalive = gateway.settings.performance.sse_keepalive_sec
    body = _sse_body(first, receive, scope, keepalive, asgi_scope)
    response = Response(body, status=200, headers=_SSE_HEADERS)
    response.timeout = None  # images may take longer than any fixed timeout
    return response


async def _produce(
    produce: Produce,
    partials: PartialImages,
    events: ImageEvents,
    send: trio.MemorySendChannel[object],
    scope: trio.CancelScope,
) -> None:
    partials.attach(send)
    with scope:
        async with send:
            try:
                images = await produce(partials)
            except Grok2APIError as exc:
                await send.send(Failure(exc))
            except Exception as exc:
                log.exception("image stream failed unexpectedly; answering 500")
                await send.send(Failure(exc))
            else:
                await send.send(_Finished([events.completed(i) for i in images]))


async def _sse_body(
    first: object,
    receive: trio.MemoryReceiveChannel[object],
    scope: trio.CancelScope,
    keepalive: float,
    asgi_scope: dict[str, Any],
) -> AsyncIterator[bytes]:
    reader = StreamReader(first, receive, keepalive)
    try:
        while True:
            try:
                item = await reader.next()
            except trio.EndOfChannel:
                return
            if item is None:
                yield KEEPALIVE
            elif isinstance(item, _Event):
                yield item.data
            elif isinstance(item, _Finished):
                for event in item.events:
                    yield event
                yield DONE
                return
            elif isinstance(item, Failure):
                error = as_api_error(item.error)
                asgi_scope["grok2api.error"] = error.type
                yield sse_error_event(error)
                yield DONE
                return
    finally:
        scope.cancel()
        receive.close()
