from __future__ import annotations

import json

import httpx
import pytest

from grok2api.upstream import (
    ConversationRequest,
    ModeIdDialect,
    ReferenceDialect,
    get_dialect,
)

from .conftest import PLAIN_ANSWER, TOKEN, MakeClient

# The composed example body of the protocol notes, section 4.1.
REFERENCE_EXAMPLE = json.loads(
    """{"deviceEnvInfo":{"darkModeEnabled":false,"devicePixelRatio":2,
 "screenWidth":2056,"screenHeight":1329,"viewportWidth":2056,"viewportHeight":1083},
 "disableMemory":true,"disableSearch":false,"disableSelfHarmShortCircuit":false,
 "disableTextFollowUps":false,"enableImageGeneration":true,"enableImageStreaming":true,
 "enableSideBySide":true,"fileAttachments":["0d3c9a52-5a9e-4c1e-9d65-2f6a4b1c7e10"],
 "forceConcise":false,"forceSideBySide":false,"imageAttachments":[],
 "imageGenerationCount":2,"isAsyncChat":false,"isReasoning":false,
 "message":"system: be brief\\n\\nWhat is on this picture?",
 "modelMode":"MODEL_MODE_GROK_4_THINKING","modelName":"grok-4",
 "responseMetadata":{"requestModelDetails":{"modelId":"grok-4"},
   "modelConfigOverride":{"temperature":0.8,"topP":0.95}},
 "returnImageBytes":false,"returnRawGrokInXaiRequest":false,"sendFinalMetadata":true,
 "temporary":true,"toolOverrides":{}}"""
)


def _thinking_request(**changes: object) -> ConversationRequest:
    fields: dict[str, object] = {
        "message": "system: be brief\n\nWhat is on this picture?",
        "model_name": "grok-4",
        "model_mode": "MODEL_MODE_GROK_4_THINKING",
        "file_attachments": ["0d3c9a52-5a9e-4c1e-9d65-2f6a4b1c7e10"],
        "temperature": 0.8,
        "top_p": 0.95,
        "temporary": True,
        "disable_memory": True,
    }
    fields.update(changes)
    return ConversationRequest(**fields)  # type: ignore[arg-type]


def test_reference_body_matches_the_composed_example() -> None:
    assert ReferenceDialect().build_body(_thinking_request()) == REFERENCE_EXAMPLE


def test_reference_body_omits_override_without_sampling_settings() -> None:
    body = ReferenceDialect().build_body(
        _thinking_request(temperature=None, top_p=None, reasoning_effort=None)
    )
    assert body["responseMetadata"] == {"requestModelDetails": {"modelId": "grok-4"}}


def test_reference_body_merges_media_override_and_effort() -> None:
    body = ReferenceDialect().build_body(
        _thinking_request(
            reasoning_effort="high",
            tool_overrides={"videoGen": True},
            model_config_override={
                "modelMap": {"videoGenModelConfig": {"videoLength": 6}}
            },
        )
    )
    override = body["responseMetadata"]["modelConfigOverride"]
    assert override["reasoningEffort"] == "high"
    assert override["modelMap"] == {"videoGenModelConfig": {"videoLength": 6}}
    assert body["toolOverrides"] == {"videoGen": True}


def test_mode_id_body_replaces_model_selectors() -> None:
    body = ModeIdDialect().build_body(
        _thinking_request(model_mode="MODEL_MODE_GROK_4_1_THINKING")
    )
    assert body["modeId"] == "expert"
    assert "modelName" not in body
    assert "modelMode" not in body
    assert body["responseMetadata"] == {}
    assert body["toolOverrides"]["gmailSearch"] is False
    assert body["collectionIds"] == []


def test_mode_id_body_prefers_explicit_mode_and_keeps_overrides() -> None:
    body = ModeIdDialect().build_body(
        _thinking_request(mode_id="heavy", tool_overrides={"imageGen": True})
    )
    assert body["modeId"] == "heavy"
    assert body["toolOverrides"]["imageGen"] is True
    assert ModeIdDialect().build_body(_thinking_request())["modeId"] == "auto"


def test_mode_id_body_keeps_model_name_for_imagine_products() -> None:
    body = ModeIdDialect().build_body(
        _thinking_request(
            model_name="imagine-image-edit",
            model_mode=None,
            model_config_override={"modelMap": {"imageEditModel": "imagine"}},
        )
    )
    assert body["modelName"] == "imagine-image-edit"
    assert "modeId" not in body
    assert body["responseMetadata"]["modelConfigOverride"]["modelMap"] == {
        "imageEditModel": "imagine"
    }


def test_get_dialect_names_the_choices() -> None:
    assert get_dialect("mode_id").name == "mode_id"
    with pytest.raises(ValueError, match="unknown dialect 'v9'"):
        get_dialect("v9")


async def test_client_fills_chat_defaults_from_options(make_client: MakeClient) -> None:
    seen: list[dict[str, object]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, content=b"".join(PLAIN_ANSWER))

    client = make_client(handler, temporary=False, dialect="mode_id")
    request = ConversationRequest(message="hi", model_mode="MODEL_MODE_FAST")
    async with client.open_conversation(TOKEN, request) as stream:
        async for _ in stream:
            pass
    await client.aclose()

    assert seen[0]["temporary"] is False
    assert seen[0]["disableMemory"] is True
    assert seen[0]["modeId"] == "fast"
