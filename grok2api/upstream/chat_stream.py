"""An open chat answer, read as typed events under three timeouts."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

import trio

from grok2api.errors import UpstreamError, UpstreamTimeout
from grok2api.upstream.events import ConversationStarted, StreamDone, UpstreamEvent
from grok2api.upstream.stream import StreamParser
from grok2api.upstream.transport import Response

__all__ = ["ChatStream"]


class ChatStream:
    """The events of one chat answer, in order; an async iterator.

    Each wait for the next event is bounded on its own: by
    ``first_frame_timeout`` until the first event, by ``idle_timeout`` after
    it, and never past the stream's overall deadline. A wait that runs out
    raises :class:`~grok2api.errors.UpstreamTimeout`. The stream ends after
    :class:`~grok2api.upstream.events.StreamDone`.

    Created by :meth:`UpstreamClient.open_conversation`, which also closes
    the underlying response; do not construct it directly.
    """

    def __init__(
        self,
        response: Response,
        parser: StreamParser,
        *,
        first_frame_timeout: float,
        idle_timeout: float,
        deadline: float,
    ) -> None:
        self._chunks: AsyncIterator[bytes] = response.aiter_bytes()
        self._parser = parser
        self._first_frame_timeout = first_frame_timeout
        self._idle_timeout = idle_timeout
        self._deadline = deadline
        self._peeked: deque[UpstreamEvent] = deque()
        self._seen_event = False
        self._finished = False

    @property
    def conversation_id(self) -> str | None:
        """The upstream conversation id, once its header line was read."""
        return self._parser.conversation_id

    @property
    def model_hash(self) -> str | None:
        """``llmInfo.modelHash`` once seen (an OpenAI ``system_fingerprint``)."""
        return self._parser.model_hash

    def buffered(self) -> bool:
        """Whether the next event can be had without waiting for the network.

        Callers use it to handle a burst of small events (a fast upstream
        sends dozens of tokens in one network chunk) as one piece of work.
        """
        return bool(self._peeked) or self._parser.has_pending()

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> UpstreamEvent:
        if self._peeked:
            return self._peeked.popleft()
        return await self._read_next()

    async def first_event(self) -> UpstreamEvent:
        """Wait for the first meaningful event without consuming anything.

        Reads past the conversation header to the first event that says how
        the answer goes, and returns it; iteration afterwards still yields
        every event from the start. Call this before committing a response
        to the client: an in-band error or a timeout on the first line
        raises here, while another token can still be tried.

        Raises:
            UpstreamError: the classified failure.
        """
        for event in self._peeked:
            if not isinstance(event, ConversationStarted):
                return event
        while True:
            event = await self._read_next()
            self._peeked.append(event)
            if not isinstance(event, ConversationStarted):
                return event

    async def _read_next(self) -> UpstreamEvent:
        if self._finished:
            raise StopAsyncIteration
        try:
            # One network chunk usually carries many lines: events already
            # parsed need no wait, so no timeout (and no cancel scope) either.
            event = self._parser.next_event()
            if event is None:
                event = await self._wait_for_event()
        except UpstreamError:
            self._finished = True
            raise
        return self._note(event)

    async def _wait_for_event(self) -> UpstreamEvent:
        wait = self._idle_timeout if self._seen_event else self._first_frame_timeout
        deadline = min(trio.current_time() + wait, self._deadline)
        with trio.move_on_at(deadline) as scope:
            return await self._read_event()
        assert scope.cancelled_caught
        raise self._timeout(deadline)

    def _note(self, event: UpstreamEvent) -> UpstreamEvent:
        # The conversation header arrives at once whatever happens next; the
        # first-frame timeout keeps running until a frame says how it goes.
        if not isinstance(event, ConversationStarted):
            self._seen_event = True
        if isinstance(event, StreamDone):
            self._finished = True
        return event

    async def _read_event(self) -> UpstreamEvent:
        while (event := self._parser.next_event()) is None:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._parser.end_of_body()
                continue
            self._parser.feed(chunk)
        return event

    def _timeout(self, deadline: float) -> UpstreamTimeout:
        if deadline >= self._deadline:
            message = "The Grok answer ran past total_timeout and was cut off."
        elif self._seen_event:
            message = (
                f"Grok went silent mid-answer for {self._idle_timeout:g}s "
                "(idle_timeout)."
            )
        else:
            message = (
                f"Grok sent no event within {self._first_frame_timeout:g}s "
                "(first_frame_timeout)."
            )
        return UpstreamTimeout(message, status=200, charged=True)
