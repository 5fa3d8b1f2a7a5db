"""The NDJSON parser for the chat stream: bytes in, typed events out.

The body is one JSON object per line. Readers tolerate ``data:`` prefixes,
blank lines, several objects on one line and a last line without a newline.
Bytes are split into lines *before* decoding: ``\\n`` never occurs inside a
multi-byte UTF-8 sequence, so a character cut between two chunks simply waits
in the buffer with the rest of its line.

The parser is pull-based. :meth:`StreamParser.feed` only buffers; each
:meth:`StreamParser.next_event` call parses as many lines as it needs for one
event. An in-band error therefore raises only after every event before it
was handed out, and a consumer that stops early never pays for the rest.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

from grok2api.errors import UpstreamProtocolError
from grok2api.upstream.classify import classify_stream_error
from grok2api.upstream.events import (
    AnswerDelta,
    CardAttachment,
    ConversationStarted,
    ImageProgress,
    ModelResponse,
    StreamDone,
    ThinkingDelta,
    UpstreamEvent,
    VideoProgress,
)
from grok2api.upstream.tool_cards import ToolCardSplitter, card_from_object

__all__ = ["MAX_LINE_BYTES", "StreamParser", "asset_url", "parse_stream"]

log = logging.getLogger(__name__)

#: A line longer than this without a newline is treated as a broken stream.
MAX_LINE_BYTES = 16 * 1024 * 1024

_decoder = json.JSONDecoder()


def asset_url(path: str, assets_url: str) -> str:
    """Make an upstream media path absolute on the assets host."""
    if path.startswith(("http://", "https://")):
        return path
    return assets_url.rstrip("/") + "/" + path.lstrip("/")


def _broken(message: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(message, status=200, charged=True)


class StreamParser:
    """Turns the chunks of one chat stream into :data:`UpstreamEvent` values.

    Args:
        assets_url: where relative media paths live.
    """

    def __init__(self, assets_url: str = "https://assets.grok.com") -> None:
        self._assets_url = assets_url
        self._buffer = bytearray()
        self._lines: deque[bytes] = deque()
        self._events: deque[UpstreamEvent] = deque()
        self._ended = False
        self._done = False
        self._turn_complete = False
        self._tool_text = ToolCardSplitter()
        self._image_slots: dict[str, int] = {}
        self.conversation_id: str | None = None
        self.model_hash: str | None = None

    # -- input -----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Buffer a chunk of the body, however it was cut."""
        if self._ended:
            raise RuntimeError("feed() after end_of_body()")
        self._buffer += data
        if b"\n" in data:
            *complete, rest = self._buffer.split(b"\n")
            self._lines.extend(complete)
            self._buffer = bytearray(rest)
        if len(self._buffer) > MAX_LINE_BYTES:
            raise _broken("Grok sent a stream line longer than the parser accepts.")

    def end_of_body(self) -> None:
        """Note that the body ended; a last line without newline still counts."""
        self._ended = True
        if self._buffer.strip():
            self._lines.append(bytes(self._buffer))
        self._buffer.clear()

    # -- output ----------------------------------------------------------

    def has_pending(self) -> bool:
        """Whether lines or events are waiting that need no more bytes."""
        return bool(self._events or self._lines)

    def next_event(self) -> UpstreamEvent | None:
        """Return the next event, or ``None`` when more bytes are needed.

        After :meth:`end_of_body`, the last event is :class:`StreamDone`; then
        ``None`` for good.

        Raises:
            UpstreamError: an in-band error line (classified), a line that is
                not JSON, or a body that ended before the model's turn did.
        """
        while not self._events:
            if self._lines:
                self._handle_line(self._lines.popleft())
            elif self._ended and not self._done:
                self._done = True
                self._finish()
            else:
                return None
        return self._events.popleft()

    def _finish(self) -> None:
        if not self._turn_complete:
            raise _broken("The Grok stream ended before the model finished its answer.")
        if self._tool_text.holding:
            log.debug("stream dropped_unclosed_tool_card=1")
        self._events.append(StreamDone(self.conversation_id, self.model_hash))

    # -- lines -----------------------------------------------------------

    def _handle_line(self, raw: bytes) -> None:
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise _broken("Grok sent a stream line that is not UTF-8.") from exc
        if line.startswith("data:"):
            line = line[len("data:") :].strip()
        if not line or line == "[DONE]":
            return
        position = 0
        while position < len(line):
            try:
                frame, position = _decoder.raw_decode(line, position)
            except ValueError as exc:
                raise _broken(
                    f"Grok sent a stream line that is not JSON ({len(line)} chars)."
                ) from exc
            if not isinstance(frame, dict):
                raise _broken("Grok sent a stream line that is not a JSON object.")
            self._handle_frame(frame)
            while position < len(line) and line[position].isspace():
                position += 1

    def _handle_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("error"):
            raise classify_stream_error(frame["error"])
        result = frame.get("result")
        if not isinstance(result, dict):
            log.debug("stream ignored_frame keys=%s", ",".join(sorted(frame)))
            return
        conversation = result.get("conversation")
        if (
            isinstance(conversation, dict)
            and conversation.get("conversationId")
            and self.conversation_id is None
        ):
            self.conversation_id = str(conversation["conversationId"])
            self._events.append(ConversationStarted(self.conversation_id))
        response = result.get("response")
        if isinstance(response, dict):
            self._handle_response(response)

    def _handle_response(self, response: dict[str, Any]) -> None:
        if response.get("error"):
            raise classify_stream_error(response["error"])
        llm_info = response.get("llmInfo")
        if isinstance(llm_info, dict) and llm_info.get("modelHash"):
            self.model_hash = str(llm_info["modelHash"])
        self._handle_token(response)
        image = response.get("streamingImageGenerationResponse")
        if isinstance(image, dict):
            self._events.append(self._legacy_image(image))
        card = response.get("cardAttachment")
        if isinstance(card, dict):
            self._handle_card(card.get("jsonData"))
        video = response.get("streamingVideoGenerationResponse")
        if isinstance(video, dict) and video.get("videoId"):
            self._events.append(self._video(video))
        final = response.get("modelResponse")
        if isinstance(final, dict):
            self._events.append(self._model_response(final))
            self._turn_complete = True
        if response.get("isSoftStop") is True or "finalMetadata" in response:
            self._turn_complete = True

    def _handle_token(self, response: dict[str, Any]) -> None:
        token = response.get("token")
        tag = response.get("messageTag")
        thinking = response.get("isThinking") is True
        tool_object = response.get("toolUsageCard")
        if isinstance(tool_object, dict):
            card = card_from_object(tool_object, thinking)
            if card is not None:
                self._events.append(card)
            return
        if tag == "raw_function_result" or not isinstance(token, str) or not token:
            return
        response_id = response.get("responseId")
        rollout_id = response.get("rolloutId")
        for piece in self._tool_text.split(token, thinking=thinking):
            if not isinstance(piece, str):
                self._events.append(piece)
            elif tag == "tool_usage_card":
                continue  # stray markup around a card, never answer text
            elif thinking:
                self._events.append(ThinkingDelta(piece, response_id, rollout_id))
            else:
                self._events.append(AnswerDelta(piece, response_id))

    # -- media and final -------------------------------------------------

    def _url(self, value: Any) -> str | None:
        return (
            asset_url(value, self._assets_url)
            if isinstance(value, str) and value
            else None
        )

    def _legacy_image(self, image: dict[str, Any]) -> ImageProgress:
        return ImageProgress(
            index=int(image.get("imageIndex") or 0),
            progress=int(image.get("progress") or 0),
            url=self._url(image.get("imageUrl")),
            moderated=image.get("moderated") is True,
        )

    def _handle_card(self, json_data: Any) -> None:
        try:
            card = json.loads(json_data) if isinstance(json_data, str) else None
        except ValueError:
            card = None
        if not isinstance(card, dict):
            log.debug("stream ignored_card reason=not_json")
            return
        chunk = card.get("image_chunk")
        if not isinstance(chunk, dict):
            self._events.append(CardAttachment(card))
            return
        if chunk.get("systemErrCode"):
            raise classify_stream_error({"message": str(chunk["systemErrCode"])})
        image_id = str(chunk.get("imageUuid") or card.get("id") or "")
        index = self._image_slots.setdefault(image_id, len(self._image_slots))
        self._events.append(
            ImageProgress(
                index=index,
                progress=int(chunk.get("progress") or 0),
                url=self._url(chunk.get("imageUrl")),
                moderated=chunk.get("moderated") is True,
                image_id=image_id or None,
                card_id=str(card["id"]) if card.get("id") is not None else None,
            )
        )

    def _video(self, video: dict[str, Any]) -> VideoProgress:
        return VideoProgress(
            video_id=str(video["videoId"]),
            progress=int(video.get("progress") or 0),
            url=self._url(video.get("videoUrl")),
            thumbnail_url=self._url(video.get("thumbnailImageUrl")),
            moderated=video.get("moderated") is True,
            post_id=video.get("videoPostId"),
            resolution_name=str(video.get("resolutionName") or "") or None,
        )

    def _model_response(self, final: dict[str, Any]) -> ModelResponse:
        errors = final.get("streamErrors")
        if isinstance(errors, list) and errors:
            raise classify_stream_error(errors[0])
        metadata = final.get("metadata")
        llm_info = metadata.get("llm_info") if isinstance(metadata, dict) else None
        if isinstance(llm_info, dict) and llm_info.get("modelHash"):
            self.model_hash = str(llm_info["modelHash"])
        urls = final.get("generatedImageUrls") or []
        cards = []
        for raw in final.get("cardAttachmentsJson") or []:
            try:
                card = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                continue
            if isinstance(card, dict):
                cards.append(card)
        return ModelResponse(
            response_id=final.get("responseId"),
            message=str(final.get("message") or ""),
            generated_image_urls=tuple(
                url for url in (self._url(u) for u in urls) if url is not None
            ),
            card_attachments=tuple(cards),
            model_hash=self.model_hash,
        )


def parse_stream(
    chunks: Iterable[bytes], assets_url: str = "https://assets.grok.com"
) -> list[UpstreamEvent]:
    """Parse a whole body at once; handy for tests and offline tools.

    Raises:
        UpstreamError: as :meth:`StreamParser.next_event`.
    """
    parser = StreamParser(assets_url)
    events: list[UpstreamEvent] = []
    for chunk in chunks:
        parser.feed(chunk)
        while (event := parser.next_event()) is not None:
            events.append(event)
    parser.end_of_body()
    while (event := parser.next_event()) is not None:
        events.append(event)
    return events
