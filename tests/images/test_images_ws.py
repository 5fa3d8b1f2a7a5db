"""Image generation over the Imagine WebSocket, through the official openai
SDK against a real gateway and the emulator: both frame formats, several
sockets, streaming, the size mapping, moderation, blocked and stalled rounds,
token failover and the fallback to the chat path."""

from __future__ import annotations

import base64
import time

import httpx
import openai
import pytest

from grok2api.emulator.state import token_id as emu_id
from grok2api.storage import token_id_for
from tests.conftest import API_KEY, Emulator, Gateway, GatewayFactory

WS_PATH = "/ws/imagine/listen"
CHAT_PATH = "/rest/app-chat/conversations/new"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


@pytest.fixture
def gateway(gateway_factory: GatewayFactory, emulator: Emulator) -> Gateway:
    """Two tokens, the socket on, and waits short enough for a test."""
    for token in ("tok-a", "tok-b"):
        emulator.control.add_account(token)
    return gateway_factory(
        ["tok-a", "tok-b"],
        GROK2API_IMAGE_IMAGE_WS_BLOCKED_SECONDS="1",
        GROK2API_IMAGE_IMAGE_WS_IDLE_TIMEOUT="1",
        GROK2API_RETRY_RETRY_BUDGET="2",
    )


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api, api_key=API_KEY, max_retries=0)


def sockets(emulator: Emulator) -> list[dict[str, object]]:
    return emulator.control.requests(path=WS_PATH, settled=True)


def sent_properties(record: dict[str, object]) -> dict[str, object]:
    body = record["body"]
    assert isinstance(body, dict)
    assert body["type"] == "conversation.item.create"
    (content,) = body["item"]["content"]
    assert content["type"] == "input_text"
    return dict(content["properties"])


def test_one_url_image_comes_over_the_socket(
    gateway: Gateway, emulator: Emulator
) -> None:
    with sdk(gateway) as client:
        result = client.images.generate(
            model="grok-imagine-1.0", prompt="a red fox", response_format="url"
        )
    (image,) = result.data
    assert image.url is not None and image.url.startswith(gateway.url + "/v1/files/")
    served = httpx.get(image.url)
    assert served.status_code == 200
    assert served.content.startswith(PNG_MAGIC)
    (record,) = sockets(emulator)
    assert record["status"] == 101 and record["outcome"] == "completed"
    assert record["cookie_names"] == ["sso", "sso-rw"]
    body = record["body"]
    assert isinstance(body, dict)
    assert body["item"]["content"][0]["text"] == "a red fox"
    properties = sent_properties(record)
    assert properties["aspect_ratio"] == "1:1"
    assert properties["enable_nsfw"] is True
    assert properties["enable_pro"] is False
    assert emulator.control.requests(path=CHAT_PATH) == []


def test_four_b64_images_in_the_reference_format_are_distinct_jpegs(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.configure(imagine_format="reference")
    with sdk(gateway) as client:
        result = client.images.generate(
            model="grok-imagine-1.0", prompt="owls", n=4, response_format="b64_json"
        )
    decoded = [base64.b64decode(item.b64_json or "") for item in result.data]
    assert len(set(decoded)) == 4
    assert all(image.startswith(JPEG_MAGIC) for image in decoded)
    assert len(sockets(emulator)) == 1
    # The finals are also the account's assets upstream.
    assets = httpx.get(emulator.url + "/_emulator/assets").json()
    assert sum(a["path"].endswith(".jpg") for a in assets) == 6


def test_eight_images_take_two_sockets(gateway: Gateway, emulator: Emulator) -> None:
    with sdk(gateway) as client:
        result = client.images.generate(model="grok-imagine-1.0", prompt="sea", n=8)
    urls = [item.url for item in result.data]
    assert len(set(urls)) == 8
    assert len({httpx.get(str(url)).content for url in urls}) == 8
    assert [r["status"] for r in sockets(emulator)] == [101, 101]


def test_size_and_quality_reach_the_socket(
    gateway: Gateway, emulator: Emulator
) -> None:
    with sdk(gateway) as client:
        client.images.generate(
            model="grok-imagine-1.0",
            prompt="wide",
            size="1792x1024",
            quality="hd",
            style="vivid",
        )
        client.images.generate(
            model="grok-imagine-1.0", prompt="tall", size="1024x1536"
        )
        with pytest.raises(openai.BadRequestError) as info:
            client.images.generate(
                model="grok-imagine-1.0",
                prompt="odd",
                size="333x777",  # type: ignore[arg-type]
            )
    assert info.value.param == "size"
    assert "1024x1792" in info.value.message and "16:9" in info.value.message
    wide, tall = (sent_properties(r) for r in sockets(emulator))
    assert (wide["aspect_ratio"], wide["enable_pro"]) == ("16:9", True)
    assert (tall["aspect_ratio"], tall["enable_pro"]) == ("2:3", False)


def test_stream_sends_partial_images_then_completed_events(
    gateway: Gateway, emulator: Emulator
) -> None:
    with sdk(gateway) as client:
        stream = client.images.generate(
            model="grok-imagine-1.0",
            prompt="a stream",
            n=2,
            stream=True,
            partial_images=2,
            size="1024x1024",
            quality="high",
        )
        events = list(stream)
    partials = [e for e in events if e.type == "image_generation.partial_image"]
    completed = [e for e in events if e.type == "image_generation.completed"]
    assert events[-2:] == completed and len(completed) == 2
    # Preview and medium of each of the two images, in rising order.
    assert sorted(e.partial_image_index for e in partials) == [0, 0, 1, 1]
    finals = [base64.b64decode(e.b64_json) for e in completed]
    assert len(set(finals)) == 2 and all(f.startswith(PNG_MAGIC) for f in finals)
    assert all(e.output_format == "png" for e in completed)
    assert {e.size for e in events} == {"1024x1024"}
    assert {e.quality for e in events} == {"high"}
    assert completed[0].usage.total_tokens == 0


def test_stream_without_partials_sends_only_completed_events(
    gateway: Gateway,
) -> None:
    with sdk(gateway) as client:
        stream = client.images.generate(
            model="grok-imagine-1.0", prompt="quiet", stream=True
        )
        kinds = [event.type for event in stream]
    assert kinds == ["image_generation.completed"]


def test_moderated_round_is_a_400_and_never_falls_back(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("ws_moderated", endpoint="imagine", times=None)
    with sdk(gateway) as client:
        with pytest.raises(openai.BadRequestError) as info:
            client.images.generate(model="grok-imagine-1.0", prompt="bad", n=2)
        assert info.value.code == "content_policy_violation"
        # Streamed, the refusal still comes before any event: a JSON error.
        with pytest.raises(openai.BadRequestError) as streamed:
            client.images.generate(model="grok-imagine-1.0", prompt="bad", stream=True)
        assert streamed.value.code == "content_policy_violation"
    assert len(sockets(emulator)) == 2
    assert emulator.control.requests(path=CHAT_PATH) == []


def test_blocked_round_is_an_error(gateway: Gateway, emulator: Emulator) -> None:
    emulator.control.fault("ws_blocked", endpoint="imagine", seconds=10)
    started = time.monotonic()
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="grok-imagine-1.0", prompt="hidden")
    assert info.value.code == "content_policy_violation"
    assert "preview" in info.value.message
    assert time.monotonic() - started < 8
    (record,) = sockets(emulator)
    assert record["outcome"] == "cancelled"
    assert emulator.control.requests(path=CHAT_PATH) == []


def test_refused_upgrade_falls_back_to_the_chat_path(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("403_cloudflare", endpoint="imagine", times=None)
    with sdk(gateway) as client:
        result = client.images.generate(model="grok-imagine-1.0", prompt="fox", n=2)
    assert len({item.url for item in result.data}) == 2
    # One refused upgrade is enough: no other token tries the socket.
    assert [r["status"] for r in sockets(emulator)] == [403]
    chats = emulator.control.requests(path=CHAT_PATH, settled=True)
    assert [c["status"] for c in chats] == [200]
    body = chats[0]["body"]
    assert isinstance(body, dict) and body["toolOverrides"]["imageGen"] is True


def test_a_fallback_asks_the_chat_path_for_no_more_than_it_makes_per_call(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("403_cloudflare", endpoint="imagine", times=None)
    with sdk(gateway) as client:
        result = client.images.generate(model="grok-imagine-1.0", prompt="fox", n=6)
    assert len({item.url for item in result.data}) == 6
    chats = emulator.control.requests(path=CHAT_PATH, settled=True)
    asked = sorted(c["body"]["imageGenerationCount"] for c in chats)  # type: ignore[index]
    assert asked == [2, 4]


def test_rate_limit_frame_moves_to_the_next_token(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("ws_rate_limit", endpoint="imagine")
    with sdk(gateway) as client:
        result = client.images.generate(model="grok-imagine-1.0", prompt="fox")
    assert len(result.data) == 1
    first, second = sockets(emulator)
    assert first["fault"] == "ws_rate_limit" and second["fault"] is None
    assert first["token_id"] != second["token_id"]
    assert emulator.control.requests(path=CHAT_PATH) == []
    limited = next(t for t in ("tok-a", "tok-b") if emu_id(t) == first["token_id"])
    assert gateway.tokens()[token_id_for(limited)]["state"] == "cooling"


def test_a_stalled_socket_times_out(gateway: Gateway, emulator: Emulator) -> None:
    emulator.control.fault("ws_stall", endpoint="imagine", times=None, seconds=30)
    with sdk(gateway) as client, pytest.raises(openai.APIStatusError) as info:
        client.images.generate(model="grok-imagine-1.0", prompt="slow")
    assert info.value.status_code == 504
    assert "image_ws_idle_timeout" in info.value.message
    # Frames had come, so the chat path was not asked to make them again.
    assert emulator.control.requests(path=CHAT_PATH) == []


def test_stream_error_after_partials_is_an_error_event(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("ws_stall", endpoint="imagine", times=None, seconds=30)
    seen = []
    with sdk(gateway) as client:
        stream = client.images.generate(
            model="grok-imagine-1.0", prompt="slow", stream=True, partial_images=1
        )
        with pytest.raises(openai.APIError) as info:
            for event in stream:
                seen.append(event.type)
    assert seen and set(seen) == {"image_generation.partial_image"}
    assert "timed out" in info.value.message


def test_client_leaving_a_stream_closes_the_socket(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.configure(line_delay=0.5)
    with sdk(gateway) as client:
        stream = client.images.generate(
            model="grok-imagine-1.0", prompt="leave", stream=True, partial_images=1
        )
        first = next(iter(stream))
        assert first.type == "image_generation.partial_image"
        stream.close()
    (record,) = sockets(emulator)
    assert record["outcome"] == "cancelled"
