"""Video generation (``grok-imagine-1.0-video`` through chat completions) via
the official openai SDK, against a real gateway and the emulator."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import openai
import pytest

from grok2api.api.video import render_video
from grok2api.emulator.images import png_image
from grok2api.emulator.state import STREAM_FAULT_KINDS, token_id
from grok2api.emulator.video import VIDEO_FAULT_KINDS
from grok2api.upstream import ConversationRequest
from grok2api.upstream.dialects import ModeIdDialect, ReferenceDialect
from tests.conftest import API_KEY, Emulator, Gateway, GatewayFactory

MODEL = "grok-imagine-1.0-video"
CHAT_PATH = "/rest/app-chat/conversations/new"
POST_PATH = "/rest/media/post/create"
UPSCALE_PATH = "/rest/media/video/upscale"
MP4_BRAND = b"ftyp"
VIDEO_TAG = re.compile(
    r'<video controls preload="metadata" src="([^"]+)" poster="([^"]+)"></video>'
)


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api, api_key=API_KEY, max_retries=0)


def ask(
    client: openai.OpenAI, prompt: Any = "a cat surfing", **extra: Any
) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        **extra,
    )


def calls(emulator: Emulator, path: str) -> list[dict[str, Any]]:
    return emulator.control.requests(path=path, settled=True)


def video_config(record: dict[str, Any]) -> dict[str, Any]:
    override = record["body"]["responseMetadata"]["modelConfigOverride"]
    return override["modelMap"]["videoGenModelConfig"]  # type: ignore[no-any-return]


def stream_text(client: openai.OpenAI, **extra: Any) -> tuple[str, str]:
    """The content and the reasoning of a streamed video answer."""
    content, reasoning = [], []
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "waves at dusk"}],
        stream=True,
        **extra,
    )
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content.append(delta.content or "")
        reasoning.append(getattr(delta, "reasoning_content", None) or "")
    return "".join(content), "".join(reasoning)


def test_text_to_video_answers_a_player_tag_that_opens_without_credentials(
    gateway: Gateway, emulator: Emulator
) -> None:
    with sdk(gateway) as client:
        result = ask(client, "a cat surfing")
    content = result.choices[0].message.content or ""
    match = VIDEO_TAG.fullmatch(content)
    assert match, content
    video, poster = match.groups()
    assert video.startswith(gateway.url + "/v1/files/video/")
    assert poster.startswith(gateway.url + "/v1/files/image/")
    response = httpx.get(video)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.content[4:8] == MP4_BRAND
    assert httpx.get(poster).status_code == 200
    assert result.choices[0].finish_reason == "stop"

    (post,) = calls(emulator, POST_PATH)
    assert post["body"] == {
        "mediaType": "MEDIA_POST_TYPE_VIDEO",
        "prompt": "a cat surfing",
    }
    (chat,) = calls(emulator, CHAT_PATH)
    body = chat["body"]
    assert body["modelName"] == "grok-3" and body["modelMode"] is None
    assert body["toolOverrides"] == {"videoGen": True}
    assert body["message"] == "a cat surfing --mode=normal"
    config = video_config(chat)
    assert config.pop("parentPostId")
    assert config == {"aspectRatio": "3:2", "resolutionName": "480p", "videoLength": 6}


def test_the_video_serves_ranges_without_credentials(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        content = ask(client).choices[0].message.content or ""
    match = VIDEO_TAG.fullmatch(content)
    assert match
    whole = httpx.get(match.group(1)).content
    part = httpx.get(match.group(1), headers={"Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-299/{len(whole)}"
    assert part.content == whole[100:300]


def test_video_config_reaches_the_upstream_and_presets_map_to_mode_flags(
    gateway: Gateway, emulator: Emulator
) -> None:
    config = {"aspect_ratio": "9:16", "video_length": 6, "preset": "fun"}
    with sdk(gateway) as client:
        ask(client, "jump", extra_body={"video_config": config})
    (chat,) = calls(emulator, CHAT_PATH)
    assert chat["body"]["message"] == "jump --mode=extremely-crazy"
    assert video_config(chat)["aspectRatio"] == "9:16"


@pytest.fixture
def url_gateway(gateway_factory: GatewayFactory, emulator: Emulator) -> Gateway:
    for token in ("tok-a", "tok-b"):
        emulator.control.add_account(token)
    return gateway_factory(["tok-a", "tok-b"], GROK2API_APP_VIDEO_FORMAT="url")


def test_streamed_video_shows_progress_as_reasoning_and_a_bare_url(
    url_gateway: Gateway,
) -> None:
    with sdk(url_gateway) as client:
        content, reasoning = stream_text(client, extra_body={"thinking": "enabled"})
    assert re.fullmatch(
        re.escape(url_gateway.url) + r"/v1/files/video/\w+\.mp4", content
    )
    assert "Generating the video: 11%" in reasoning
    assert "Generating the video: 100%" in reasoning
    assert httpx.get(content).content[4:8] == MP4_BRAND


def test_progress_stays_hidden_when_thinking_is_off(url_gateway: Gateway) -> None:
    with sdk(url_gateway) as client:
        content, reasoning = stream_text(client, extra_body={"thinking": "disabled"})
        collected = ask(client, extra_body={"thinking": "disabled"})
    assert content.startswith(url_gateway.url + "/v1/files/video/")
    assert reasoning == ""
    message = collected.choices[0].message
    assert getattr(message, "reasoning_content", None) is None


def test_streamed_html_video_matches_the_non_streamed_shape(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        content, reasoning = stream_text(client)
    assert VIDEO_TAG.fullmatch(content), content
    assert "Generating the video" in reasoning


def test_image_to_video_uploads_the_image_and_posts_it(
    gateway: Gateway, emulator: Emulator
) -> None:
    image = png_image("input")
    data_url = "data:image/png;base64," + base64.b64encode(image).decode()
    parts = [
        {"type": "text", "text": "make it move"},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]
    with sdk(gateway) as client:
        result = ask(client, parts)
    assert VIDEO_TAG.fullmatch(result.choices[0].message.content or "")
    (upload,) = emulator.control.requests(path="/rest/app-chat/upload-file")
    (stored,) = [u for u in emulator.control.uploads()]
    assert base64.b64decode(stored["content"]) == image
    (post,) = calls(emulator, POST_PATH)
    assert post["body"]["mediaType"] == "MEDIA_POST_TYPE_IMAGE"
    assert post["body"]["mediaUrl"] == f"{emulator.url}/{stored['fileUri']}"
    assert post["token_id"] == upload["token_id"]
    (chat,) = calls(emulator, CHAT_PATH)
    assert chat["body"]["message"] == "make it move --mode=normal"
    assert chat["token_id"] == upload["token_id"]


@pytest.fixture
def mixed_gateway(gateway_factory: GatewayFactory, emulator: Emulator) -> Gateway:
    emulator.control.add_account("tok-basic")
    emulator.control.add_account("tok-super", pool="super")
    gateway = gateway_factory(["tok-basic"])
    gateway.add_tokens(["tok-super"], "super")
    return gateway


def test_hd_and_long_videos_go_to_a_super_token(
    mixed_gateway: Gateway, emulator: Emulator
) -> None:
    with sdk(mixed_gateway) as client:
        ask(client, extra_body={"video_config": {"resolution_name": "720p"}})
        ask(client, extra_body={"video_config": {"video_length": 10}})
        ask(client, extra_body={"video_config": {"resolution_name": "480p"}})
    chats = calls(emulator, CHAT_PATH)
    assert [c["token_id"] for c in chats] == [
        token_id("tok-super"),
        token_id("tok-super"),
        token_id("tok-basic"),
    ]
    # A super account renders 720p itself: nothing to upscale.
    assert calls(emulator, UPSCALE_PATH) == []


def test_hd_on_a_basic_token_is_upscaled(gateway: Gateway, emulator: Emulator) -> None:
    with sdk(gateway) as client:
        result = ask(client, extra_body={"video_config": {"resolution_name": "720p"}})
    (chat,) = calls(emulator, CHAT_PATH)
    assert video_config(chat)["resolutionName"] == "720p"
    (upscale,) = calls(emulator, UPSCALE_PATH)
    assert upscale["status"] == 200 and upscale["token_id"] == chat["token_id"]
    downloads = [
        r["path"] for r in emulator.control.requests() if r["path"].endswith(".mp4")
    ]
    assert downloads == [downloads[0]] and downloads[0].endswith("_hd.mp4")
    match = VIDEO_TAG.fullmatch(result.choices[0].message.content or "")
    assert match and httpx.get(match.group(1)).content[4:8] == MP4_BRAND


@pytest.fixture
def impatient_gateway(gateway_factory: GatewayFactory, emulator: Emulator) -> Gateway:
    for token in ("tok-a", "tok-b"):
        emulator.control.add_account(token)
    return gateway_factory(
        ["tok-a", "tok-b"],
        GROK2API_TIMEOUT_VIDEO_IDLE_TIMEOUT="1",
        GROK2API_PERFORMANCE_SSE_KEEPALIVE_SEC="0.5",
    )


def test_a_slow_video_outlasts_the_idle_timeout_while_frames_arrive(
    impatient_gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.configure(line_delay=0.4)
    with sdk(impatient_gateway) as client:
        content, _reasoning = stream_text(client)
    assert VIDEO_TAG.fullmatch(content)
    (chat,) = calls(emulator, CHAT_PATH)
    assert chat["ended_at"] - chat["started_at"] > 3


def test_a_stalled_video_fails_with_a_clear_error(
    impatient_gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("stall", times=None, after_tokens=3, seconds=5)
    with sdk(impatient_gateway) as client, pytest.raises(openai.APIError) as info:
        stream_text(client)
    message = str(info.value)
    assert "stalled at 33%" in message
    assert "timeout.video_idle_timeout" in message


def test_a_video_without_a_link_is_found_in_the_asset_list(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("video_no_url", times=1)
    with sdk(gateway) as client:
        result = ask(client)
    match = VIDEO_TAG.fullmatch(result.choices[0].message.content or "")
    assert match, result.choices[0].message.content
    assert httpx.get(match.group(1)).content[4:8] == MP4_BRAND
    listings = calls(emulator, "/rest/assets")
    assert listings and all(r["status"] == 200 for r in listings)


def test_a_moderated_video_is_an_error_not_an_empty_answer(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("video_moderated", times=1)
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as info:
        ask(client)
    assert info.value.code == "content_policy_violation"
    assert len(calls(emulator, CHAT_PATH)) == 1


BAD_CONFIGS = [
    ({"aspect_ratio": "4:3"}, "video_config.aspect_ratio"),
    ({"video_length": 7}, "video_config.video_length"),
    ({"video_length": "6"}, "video_config.video_length"),
    ({"resolution_name": "1080p"}, "video_config.resolution_name"),
    ({"preset": "wild"}, "video_config.preset"),
    ({"preset": ["fun"]}, "video_config.preset"),
    ("720p", "video_config"),
]


def test_bad_video_config_is_a_400_naming_the_field(
    gateway: Gateway, emulator: Emulator
) -> None:
    with sdk(gateway) as client:
        for config, param in BAD_CONFIGS:
            with pytest.raises(openai.BadRequestError) as info:
                ask(client, extra_body={"video_config": config})
            assert info.value.param == param, config
    assert emulator.control.requests() == []


def test_an_empty_prompt_without_an_image_is_a_400(
    gateway: Gateway, emulator: Emulator
) -> None:
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as info:
        ask(client, "   ")
    assert info.value.param == "messages[0].content"
    assert emulator.control.requests() == []


def test_an_image_without_a_prompt_makes_a_video(
    gateway: Gateway, emulator: Emulator
) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png_image("alone")).decode()
    parts = [{"type": "image_url", "image_url": {"url": data_url}}]
    with sdk(gateway) as client:
        result = ask(client, parts)
    assert VIDEO_TAG.fullmatch(result.choices[0].message.content or "")
    (chat,) = calls(emulator, CHAT_PATH)
    assert chat["body"]["message"] == "--mode=normal"


def test_an_image_part_that_is_no_image_is_a_400_before_any_upstream_call(
    gateway: Gateway, emulator: Emulator
) -> None:
    text = base64.b64encode(b"just some text, labelled as a PNG").decode()
    parts = [
        {"type": "text", "text": "make it move"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{text}"}},
    ]
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as info:
        ask(client, parts)
    assert info.value.param == "messages[0].content[1]"
    assert "not a PNG, JPEG, WebP or GIF image" in info.value.message
    assert emulator.control.requests() == []


def test_the_video_model_is_listed(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        assert MODEL in [m.id for m in client.models.list()]


def test_both_dialects_send_the_video_settings() -> None:
    video = {"aspectRatio": "1:1", "parentPostId": "p1", "resolutionName": "480p"}
    request = ConversationRequest(
        message="x --mode=normal",
        model_name="grok-3",
        tool_overrides={"videoGen": True},
        video_gen_config=video,
    )
    reference = ReferenceDialect().build_body(request)
    later = ModeIdDialect().build_body(request)
    assert reference["modelName"] == "grok-3"
    assert later["modelName"] == "imagine-video-gen" and "modeId" not in later
    for body in (reference, later):
        override = body["responseMetadata"]["modelConfigOverride"]
        assert override["modelMap"]["videoGenModelConfig"] == video
        assert body["toolOverrides"]["videoGen"] is True
    assert VIDEO_FAULT_KINDS <= STREAM_FAULT_KINDS


def test_every_video_format_renders_a_link() -> None:
    video, poster = "http://gw/v1/files/video/a.mp4", "http://gw/v1/files/image/b.png"
    assert render_video("url", video, poster) == video
    assert render_video("markdown", video, poster) == f"[![video]({poster})]({video})"
    assert render_video("markdown", video, None) == f"[video]({video})"
    assert render_video("html", video + '?"x', None) == (
        '<video controls preload="metadata" '
        'src="http://gw/v1/files/video/a.mp4?&quot;x"></video>'
    )


def test_a_client_that_leaves_cancels_the_video(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.configure(line_delay=0.3)
    with sdk(gateway) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "a long one"}],
            stream=True,
            extra_body={"thinking": "enabled"},
        )
        for chunk in stream:
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta is not None and getattr(delta, "reasoning_content", None):
                break
        stream.close()
    (chat,) = emulator.control.requests(path=CHAT_PATH, settled=True, timeout=10)
    # The whole answer takes about 4 s; the gateway let go at the first frame.
    assert chat["outcome"] == "cancelled"
    assert chat["ended_at"] - chat["started_at"] < 2.5
    assert not [r for r in emulator.control.requests() if r["path"].endswith(".mp4")]
