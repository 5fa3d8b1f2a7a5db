"""Images a chat model generates, through the official openai SDK against a
real gateway and the emulator (its ``[emulator:images ...]`` directive)."""

from __future__ import annotations

import base64
import json
import re

import httpx
import openai

from tests.conftest import API_KEY, Emulator, Gateway, GatewayFactory

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LINK = re.compile(r"!\[image\]\(([^)\s]+)\)")
MODERATED = "Grok's moderation"


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api, api_key=API_KEY, max_retries=0)


def ask(directive: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Draw me something {directive}"}]


def collected(
    gateway: Gateway, directive: str, **options: object
) -> tuple[str, str | None]:
    """The content and reasoning_content of a non-streamed answer."""
    with sdk(gateway) as client:
        reply = client.chat.completions.create(
            model="grok-4", messages=ask(directive), **options
        )  # type: ignore[call-overload]
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "stop"
    return message.content or "", (message.model_extra or {}).get("reasoning_content")


def streamed(gateway: Gateway, directive: str, **options: object) -> tuple[str, str]:
    """The content and reasoning_content deltas of a streamed answer, joined."""
    with sdk(gateway) as client:
        chunks = list(
            client.chat.completions.create(
                model="grok-4", messages=ask(directive), stream=True, **options
            )  # type: ignore[call-overload]
        )
    deltas = [chunk.choices[0] for chunk in chunks if chunk.choices]
    assert deltas[-1].finish_reason == "stop"
    content = "".join(choice.delta.content or "" for choice in deltas)
    reasoning = "".join(
        (choice.delta.model_extra or {}).get("reasoning_content") or ""
        for choice in deltas
    )
    return content, reasoning


def assert_served(gateway: Gateway, emulator: Emulator, content: str) -> list[str]:
    """Every image link opens on the gateway without credentials."""
    links = LINK.findall(content)
    for link in links:
        assert link.startswith(gateway.url + "/v1/files/image/")
        response = httpx.get(link)
        assert response.status_code == 200
        assert response.content.startswith(PNG_MAGIC)
    assert emulator.url not in content
    assert "users/" not in content
    return links


def shape(content: str) -> str:
    return LINK.sub("![image](LINK)", content)


def test_legacy_images_follow_the_text_streamed_and_collected(
    gateway: Gateway, emulator: Emulator
) -> None:
    one, _ = collected(gateway, "[emulator:images count=1]")
    assert shape(one) == "Here is 1 image(s).\n\n![image](LINK)"
    two, _ = collected(gateway, "[emulator:images count=2]")
    two_streamed, _ = streamed(gateway, "[emulator:images count=2]")
    expected = "Here are 2 image(s).\n\n![image](LINK)\n\n![image](LINK)"
    assert shape(two) == shape(two_streamed) == expected
    links = [
        link
        for content in (one, two, two_streamed)
        for link in assert_served(gateway, emulator, content)
    ]
    assert len(set(links)) == 5


def test_card_images_take_the_place_of_their_render_tags(
    gateway: Gateway, emulator: Emulator
) -> None:
    expected = "Here are 2 image(s).\n![image](LINK)\n![image](LINK) Enjoy!"
    content, _ = collected(gateway, "[emulator:images count=2 format=card]")
    streamed_content, _ = streamed(gateway, "[emulator:images count=2 format=card]")
    assert shape(content) == shape(streamed_content) == expected
    assert "grok:render" not in content + streamed_content
    links = assert_served(gateway, emulator, content + streamed_content)
    assert len(set(links)) == 4
    # The final turn lists the same images again; each is downloaded once.
    downloads = [
        record
        for record in emulator.control.requests()
        if record["method"] == "GET" and record["path"].startswith("/users/")
    ]
    assert len(downloads) == 4


def test_one_card_image_streams_as_its_own_content_delta(
    gateway: Gateway, emulator: Emulator
) -> None:
    # Apart in time, the link cannot share a chunk with the text around it.
    emulator.control.configure(line_delay=0.1)
    with sdk(gateway) as client:
        chunks = list(
            client.chat.completions.create(
                model="grok-4",
                messages=ask("[emulator:images format=card]"),
                stream=True,
            )
        )
    contents = [c.choices[0].delta.content for c in chunks if c.choices]
    assert any(text and LINK.fullmatch(text.strip()) for text in contents)


def test_progress_is_reasoning_only_when_thinking_is_shown(gateway: Gateway) -> None:
    for directive in ("[emulator:images count=2]", "[emulator:images format=card]"):
        content, reasoning = collected(gateway, directive)
        streamed_content, streamed_reasoning = streamed(gateway, directive)
        assert reasoning is not None
        assert "Generating image 1: 50%" in reasoning
        assert "Generating image 1: 100%" in reasoning
        assert "Generating image 1: 50%" in streamed_reasoning
        assert "%" not in content + streamed_content

        hidden, hidden_reasoning = collected(
            gateway, directive, extra_body={"thinking": "disabled"}
        )
        hidden_streamed, hidden_streamed_reasoning = streamed(
            gateway, directive, extra_body={"thinking": "disabled"}
        )
        assert hidden_reasoning is None
        assert hidden_streamed_reasoning == ""
        assert shape(hidden) == shape(hidden_streamed) == shape(content)


def test_moderated_images_become_a_notice(gateway: Gateway, emulator: Emulator) -> None:
    legacy, _ = collected(gateway, "[emulator:images count=2 moderated=2]")
    assert shape(legacy) == (
        "Here are 2 image(s).\n\n![image](LINK)\n\n"
        "(Image 2 was blocked by Grok's moderation.)"
    )
    card, _ = streamed(gateway, "[emulator:images format=card moderated=all]")
    assert card == (
        "Here is 1 image(s).\n(Image 1 was blocked by Grok's moderation.) Enjoy!"
    )
    assert_served(gateway, emulator, legacy)
    # A moderated image is never downloaded.
    downloads = [
        record
        for record in emulator.control.requests()
        if record["method"] == "GET" and record["path"].startswith("/users/")
    ]
    assert len(downloads) == 1


def test_an_asset_403_is_a_notice_and_the_stream_ends_with_done(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("403_empty", endpoint="asset")
    body = {
        "model": "grok-4",
        "stream": True,
        "messages": ask("[emulator:images format=card]"),
    }
    events: list[str] = []
    with (
        gateway.client() as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: ") :])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    content = "".join(
        chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks
    )
    assert content == (
        "Here is 1 image(s).\n"
        "(Image 1 could not be downloaded from Grok (HTTP 403).) Enjoy!"
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    (download,) = [
        record
        for record in emulator.control.requests()
        if record["path"].startswith("/users/")
    ]
    assert download["status"] == 403


def test_base64_format_inlines_the_image_bytes(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(["tok-a"], GROK2API_APP_IMAGE_FORMAT="base64")
    content, _ = collected(gateway, "[emulator:images count=1]")
    head, data = content.split("![image](data:image/png;base64,")
    assert head == "Here is 1 image(s).\n\n"
    assert base64.b64decode(data.rstrip(")")).startswith(PNG_MAGIC)
    assert emulator.url not in content
