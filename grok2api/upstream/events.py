"""Typed events read from a chat stream, in the order the upstream sends them."""

from __future__ import annotations

import json
from typing import Any

import attrs

__all__ = [
    "AnswerDelta",
    "CardAttachment",
    "ConversationStarted",
    "ImageProgress",
    "ModelResponse",
    "StreamDone",
    "ThinkingDelta",
    "ToolCard",
    "UpstreamEvent",
    "VideoProgress",
]


@attrs.frozen
class ConversationStarted:
    """The upstream opened a conversation (the first line of ``/new``)."""

    conversation_id: str


@attrs.frozen
class ThinkingDelta:
    """A piece of reasoning text; ``rollout_id`` names the agent in team modes."""

    text: str
    response_id: str | None = None
    rollout_id: str | None = None


@attrs.frozen
class AnswerDelta:
    """A piece of answer text; it may contain ``<grok:render>`` tags."""

    text: str
    response_id: str | None = None


@attrs.frozen
class ToolCard:
    """The model called a tool (web search, code execution, ...).

    Both eras arrive here: the in-text ``<xai:tool_usage_card>`` markup
    (``era="text"``) and the later ``toolUsageCard`` object
    (``era="object"``). ``name`` is snake_case in both (``web_search``).
    ``thinking`` tells whether the card came inside reasoning or inside the
    answer channel; either way its markup never reaches an
    :class:`AnswerDelta`.
    """

    name: str
    arguments: dict[str, Any] | str
    card_id: str | None = None
    thinking: bool = False
    era: str = "text"

    @property
    def summary(self) -> str:
        """One short line for showing the call to a reader."""
        args = self.arguments
        if isinstance(args, dict):
            shown = next(
                (str(args[k]) for k in ("query", "url", "code") if k in args),
                json.dumps(args, ensure_ascii=False, separators=(",", ":")),
            )
        else:
            shown = args
        shown = " ".join(shown.split())
        if len(shown) > 120:
            shown = shown[:119] + "…"
        return f"{self.name}: {shown}" if shown else self.name


@attrs.frozen
class ImageProgress:
    """Progress of one generated or edited image.

    ``index`` is the image's position in this answer; ``url`` is absolute
    when the upstream gave one. Intermediate previews carry ``-part-<k>`` in
    their URL, so only :attr:`final` images are worth downloading.
    """

    index: int
    progress: int
    url: str | None = None
    moderated: bool = False
    image_id: str | None = None
    card_id: str | None = None

    @property
    def final(self) -> bool:
        """True for a finished, unmoderated image with its final URL."""
        return (
            self.progress >= 100
            and not self.moderated
            and self.url is not None
            and "-part-" not in self.url
        )


@attrs.frozen
class VideoProgress:
    """Progress of a generated video; the URLs arrive with ``progress == 100``."""

    video_id: str
    progress: int
    url: str | None = None
    thumbnail_url: str | None = None
    moderated: bool = False
    post_id: str | None = None
    #: The resolution the upstream is rendering (``480p``/``720p``), when told.
    resolution_name: str | None = None


@attrs.frozen
class CardAttachment:
    """A decoded card (citation, searched image) a render tag refers to."""

    card: dict[str, Any]

    @property
    def card_id(self) -> str | None:
        """The id ``<grok:render card_id=...>`` tags use to point at it."""
        value = self.card.get("id")
        return str(value) if value is not None else None


@attrs.frozen
class ModelResponse:
    """The final model turn: the full message and everything it produced."""

    response_id: str | None
    message: str
    generated_image_urls: tuple[str, ...] = ()
    card_attachments: tuple[dict[str, Any], ...] = ()
    model_hash: str | None = None


@attrs.frozen
class StreamDone:
    """The body ended after the model marked its turn complete."""

    conversation_id: str | None = None
    model_hash: str | None = None


UpstreamEvent = (
    ConversationStarted
    | ThinkingDelta
    | AnswerDelta
    | ToolCard
    | ImageProgress
    | VideoProgress
    | CardAttachment
    | ModelResponse
    | StreamDone
)
