"""The reference dialect (2026-02): ``modelName`` + ``modelMode`` pick the model."""

from __future__ import annotations

from typing import Any

from grok2api.upstream.conversation import ConversationRequest

__all__ = ["DEVICE_ENV_INFO", "ReferenceDialect", "common_fields"]

#: Browser telemetry the web app attaches; a plausible laptop window.
DEVICE_ENV_INFO: dict[str, Any] = {
    "darkModeEnabled": False,
    "devicePixelRatio": 2,
    "screenWidth": 2056,
    "screenHeight": 1329,
    "viewportWidth": 2056,
    "viewportHeight": 1083,
}


def common_fields(request: ConversationRequest) -> dict[str, Any]:
    """The body fields both dialects send the same way."""
    temporary = True if request.temporary is None else request.temporary
    disable_memory = True if request.disable_memory is None else request.disable_memory
    body: dict[str, Any] = {
        "deviceEnvInfo": dict(DEVICE_ENV_INFO),
        "disableMemory": disable_memory,
        "disableSearch": request.disable_search,
        "disableSelfHarmShortCircuit": False,
        "disableTextFollowUps": request.disable_text_follow_ups,
        "enableImageGeneration": request.enable_image_generation,
        "enableImageStreaming": True,
        "enableSideBySide": True,
        "fileAttachments": list(request.file_attachments),
        "forceConcise": request.force_concise,
        "forceSideBySide": False,
        "imageAttachments": [],
        "imageGenerationCount": request.image_generation_count,
        "isAsyncChat": False,
        "isReasoning": False,
        "message": request.message,
        "returnImageBytes": False,
        "returnRawGrokInXaiRequest": False,
        "sendFinalMetadata": True,
        "temporary": temporary,
        "toolOverrides": dict(request.tool_overrides),
    }
    if request.parent_response_id is not None:
        body["parentResponseId"] = request.parent_response_id
    return body


class ReferenceDialect:
    """Bodies as the 2026-02 reference client sends them."""

    name = "reference"

    def build_body(self, request: ConversationRequest) -> dict[str, Any]:
        """Return the ``modelName``/``modelMode`` body for ``request``."""
        body = common_fields(request)
        body["modelName"] = request.model_name
        body["modelMode"] = request.model_mode
        metadata: dict[str, Any] = {
            "requestModelDetails": {"modelId": request.model_name}
        }
        override = request.sampling_override()
        if override:
            metadata["modelConfigOverride"] = override
        body["responseMetadata"] = metadata
        if request.enable_nsfw is not None:
            body["enableNsfw"] = request.enable_nsfw
        return body
