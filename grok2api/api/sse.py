"""Server-sent event bodies fed by a task in the gateway's nursery.

A streamed answer (chat, images) is produced by a task that outlives the
request handler and sends what it makes down a memory channel; the response
body drains that channel. :class:`StreamReader` is the body's side: it hands
out the items in order, says when a keep-alive comment is due because
nothing came for ``performance.sse_keepalive_sec``, and lets a body gather
everything already waiting into one write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import trio

__all__ = ["DONE", "KEEPALIVE", "Failure", "StreamReader", "start_producer"]

#: The OpenAI SDK's end-of-stream marker.
DONE = b"data: [DONE]\n\n"
#: A comment line: clients ignore it, proxies see the connection is alive.
KEEPALIVE = b": keepalive\n\n"


@attrs.frozen
class Failure:
    """What a producer sends instead of its last item when it failed."""

    error: BaseException


Producer = Callable[[trio.MemorySendChannel[object], trio.CancelScope], Awaitable[None]]


async def start_producer(
    nursery: trio.Nursery, producer: Producer
) -> tuple[object, trio.MemoryReceiveChannel[object], trio.CancelScope]:
    """Start ``producer(send, scope)`` in ``nursery`` and wait for its first
    item, which decides the response: a :class:`Failure` first is raised here
    (the client gets a plain error answer), anything else starts the body.

    Returns:
        the first item, the channel for the rest, and the scope that cancels
        the producer (the body cancels it when it ends, so a client that
        leaves stops the upstream work).
    """
    send, receive = trio.open_memory_channel[object](64)
    scope = trio.CancelScope()
    nursery.start_soon(producer, send, scope)
    try:
        first = await receive.receive()
    except BaseException:
        scope.cancel()
        receive.close()
        raise
    if isinstance(first, Failure):
        scope.cancel()
        receive.close()
        raise first.error
    return first, receive, scope


class StreamReader:
    """The items of one producer's channel, starting with the one the
    handler already took (it decided the response status).

    Args:
        first: the item received before the body started.
        receive: the channel the producer sends on.
        keepalive: seconds of silence after which :meth:`next` answers None.
    """

    def __init__(
        self,
        first: object,
        receive: trio.MemoryReceiveChannel[object],
        keepalive: float,
    ) -> None:
        self._pending: object | None = first
        self._receive = receive
        self._keepalive = keepalive

    async def next(self) -> object | None:
        """The next item, or None when a keep-alive comment is due.

        Raises:
            trio.EndOfChannel: the producer finished without a last item.
        """
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        try:
            # An item already waiting needs no timer (and no cancel scope).
            item = self._receive.receive_nowait()
        except trio.WouldBlock:
            pass
        else:
            return item
        with trio.move_on_after(self._keepalive):
            return await self._receive.receive()
        return None

    def next_ready(self) -> object | None:
        """The next item if one is already waiting, else None."""
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        try:
            return self._receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return None

    def put_back(self, item: object) -> None:
        """Make ``item`` the next one again (a body that read one too many)."""
        self._pending = item
