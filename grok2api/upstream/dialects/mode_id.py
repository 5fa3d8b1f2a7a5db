"""The later dialect (2026-03 on): the model chosen by a single ``modeId``.

Sending ``modelName``/``modelMode`` for the new modes was reported to give
empty answers or "sampling engine" errors, so this dialect omits both and
sends ``responseMetadata`` without the model details. The imagine products
(``imagine-image-edit``, ``imagine-video-gen``) kept their ``modelName``;
a video turn is sent as ``imagine-video-gen`` whatever name the caller gave.
"""

from __future__ import annotations

from typing import Any

from grok2api.upstream.conversation import ConversationRequest
from grok2api.upstream.dialects.reference import common_fields

__all__ = ["MODE_IDS_BY_MODEL_MODE", "ModeIdDialect"]

#: The interim mapping from reference modes to mode ids.
MODE_IDS_BY_MODEL_MODE = {
    "MODEL_MODE_FAST": "fast",
    "MODEL_MODE_EXPERT": "expert",
    "MODEL_MODE_HEAVY": "heavy",
    "MODEL_MODE_GROK_420": "expert",
    "MODEL_MODE_GROK_4_1_THINKING": "expert",
    "MODEL_MODE_GROK_4_1_MINI_THINKING": "expert",
}

#: The model name video turns go to in this era.
VIDEO_MODEL_NAME = "imagine-video-gen"

#: Connector searches the web app turns off unless the user linked them.
_CONNECTORS_OFF = {
    "gmailSearch": False,
    "googleCalendarSearch": False,
    "outlookSearch": False,
    "outlookCalendarSearch": False,
    "googleDriveSearch": False,
}


def mode_id_for(request: ConversationRequest) -> str:
    """The ``modeId`` to send: explicit, mapped from the mode, or ``auto``."""
    if request.mode_id:
        return request.mode_id
    return MODE_IDS_BY_MODEL_MODE.get(request.model_mode or "", "auto")


class ModeIdDialect:
    """Bodies as the web app sends them after the ``modeId`` switch."""

    name = "mode_id"

    def build_body(self, request: ConversationRequest) -> dict[str, Any]:
        """Return the ``modeId`` body for ``request``."""
        body = common_fields(request)
        body["toolOverrides"] = {**_CONNECTORS_OFF, **request.tool_overrides}
        body["collectionIds"] = []
        body["connectors"] = []
        body["searchAllConnectors"] = False
        metadata: dict[str, Any] = {}
        model_name = request.model_name or ""
        if request.video_gen_config is not None:
            model_name = VIDEO_MODEL_NAME
        if model_name.startswith("imagine-"):
            body["modelName"] = model_name
            override = request.sampling_override()
            if override:
                metadata["modelConfigOverride"] = override
        else:
            # Chat modes carry no per-request model details in this era; the
            # sampling settings are not known to be honoured, so none are sent.
            body["modeId"] = mode_id_for(request)
        body["responseMetadata"] = metadata
        if request.enable_nsfw is not None:
            body["enableNsfw"] = request.enable_nsfw
        if request.custom_personality:
            body["customPersonality"] = request.custom_personality
        return body
