"""What one chat turn asks of the upstream, before any dialect shapes it."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["ConversationRequest"]


def _copy_dict(value: dict[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen
class ConversationRequest:
    """One conversation turn, independent of the protocol dialect.

    ``model_name`` and ``model_mode`` are the reference selectors
    (``grok-4``, ``MODEL_MODE_GROK_4_THINKING``); ``mode_id`` is the later
    single selector (``auto``, ``fast``, ``expert``, ``heavy``). A dialect
    uses the ones it understands and derives the others where it can.

    ``temporary`` and ``disable_memory`` left as ``None`` take the client's
    defaults from :class:`~grok2api.upstream.options.UpstreamOptions`.
    ``model_config_override`` is merged into
    ``responseMetadata.modelConfigOverride`` after the sampling settings, so
    media requests can pass their ``modelMap`` there.

    ``video_gen_config`` makes the turn a video generation: the
    ``videoGenModelConfig`` object (``aspectRatio``, ``parentPostId``,
    ``resolutionName``, ``videoLength``), which every dialect sends in
    ``modelConfigOverride.modelMap`` under the video model name of its era.

    ``conversation_id`` and ``parent_response_id`` continue an existing
    upstream conversation: the turn is posted to that conversation's
    ``responses`` endpoint as a reply to the given response, and ``message``
    holds only the new turn. Both or neither must be set.
    """

    message: str
    model_name: str | None = None
    model_mode: str | None = None
    mode_id: str | None = None
    file_attachments: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    temperature: float | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None
    tool_overrides: dict[str, Any] = attrs.field(factory=dict, converter=_copy_dict)
    model_config_override: dict[str, Any] = attrs.field(
        factory=dict, converter=_copy_dict
    )
    temporary: bool | None = None
    disable_memory: bool | None = None
    disable_search: bool = False
    disable_text_follow_ups: bool = False
    force_concise: bool = False
    enable_image_generation: bool = True
    image_generation_count: int = 2
    enable_nsfw: bool | None = None
    custom_personality: str | None = None
    video_gen_config: dict[str, Any] | None = None
    conversation_id: str | None = None
    parent_response_id: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.conversation_id is None) != (self.parent_response_id is None):
            raise ValueError(
                "conversation_id and parent_response_id must be set together, got "
                f"{self.conversation_id!r} and {self.parent_response_id!r}"
            )

    def sampling_override(self) -> dict[str, Any]:
        """The ``modelConfigOverride`` object, empty when nothing is set."""
        override: dict[str, Any] = {}
        if self.temperature is not None:
            override["temperature"] = self.temperature
        if self.top_p is not None:
            override["topP"] = self.top_p
        if self.reasoning_effort is not None:
            override["reasoningEffort"] = self.reasoning_effort
        override.update(self.model_config_override)
        if self.video_gen_config is not None:
            model_map = dict(override.get("modelMap") or {})
            model_map["videoGenModelConfig"] = dict(self.video_gen_config)
            override["modelMap"] = model_map
        return override
