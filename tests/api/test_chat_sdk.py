"""Chat completions through the official openai SDK, against a real server."""

from __future__ import annotations

import base64
import functools
import http.server
import threading
from pathlib import Path

import openai
import pytest

from grok2api.emulator import expected_answer
from tests.conftest import API_KEY, Emulator, Gateway, GatewayFactory


def sdk(gateway: Gateway, **options: object) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.api, api_key=API_KEY, max_retries=0, **options
    )  # type: ignore[arg-type]


def async_sdk(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.api, api_key=API_KEY, max_retries=0)


def test_sync_non_stream_answer_and_usage(gateway: Gateway, emulator: Emulator) -> None:
    with sdk(gateway) as client:
        reply = client.chat.completions.create(
            model="grok-4",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        )
    assert reply.object == "chat.completion"
    assert reply.model == "grok-4"
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == expected_answer("What is the capital of France?")
    assert reply.usage is not None
    assert (
        reply.usage.total_tokens
        == reply.usage.prompt_tokens + reply.usage.completion_tokens
    )
    assert reply.usage.completion_tokens > 0
    assert len(emulator.control.requests(path="/rest/app-chat/conversations/new")) == 1


def test_sync_stream_chunks_follow_the_contract(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        chunks = list(
            client.chat.completions.create(
                model="grok-4",
                messages=[{"role": "user", "content": "stream me"}],
                stream=True,
            )
        )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    assert len({c.created for c in chunks}) == 1
    assert {c.model for c in chunks} == {"grok-4"}
    assert all(c.usage is None for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == expected_answer("stream me")


def test_stream_usage_chunk_only_when_asked(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        chunks = list(
            client.chat.completions.create(
                model="grok-4-thinking",
                messages=[{"role": "user", "content": "count"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    *body, last = chunks
    assert last.choices == []
    assert last.usage is not None and last.usage.total_tokens > 0
    assert last.usage.completion_tokens_details is not None
    assert last.usage.completion_tokens_details.reasoning_tokens > 0
    assert all(c.usage is None for c in body)


async def test_async_stream_and_non_stream(gateway: Gateway) -> None:
    async with async_sdk(gateway) as client:
        reply = await client.chat.completions.create(
            model="grok-3", messages=[{"role": "user", "content": "async hello"}]
        )
        assert reply.choices[0].message.content == expected_answer("async hello")
        stream = await client.chat.completions.create(
            model="grok-3",
            messages=[{"role": "user", "content": "async stream"}],
            stream=True,
        )
        async with stream:
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == expected_answer("async stream")


def test_thinking_goes_to_reasoning_content_only(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        reply = client.chat.completions.create(
            model="grok-4-thinking", messages=[{"role": "user", "content": "think"}]
        )
        hidden = client.chat.completions.create(
            model="grok-4-thinking",
            messages=[{"role": "user", "content": "think"}],
            extra_body={"thinking": "disabled"},
        )
        streamed = list(
            client.chat.completions.create(
                model="grok-4-thinking",
                messages=[{"role": "user", "content": "think"}],
                stream=True,
            )
        )
    message = reply.choices[0].message
    reasoning = message.model_extra["reasoning_content"]  # type: ignore[index]
    assert reasoning and "Thinking" in reasoning
    assert message.content == expected_answer("think")
    assert "reasoning_content" not in (hidden.choices[0].message.model_extra or {})
    assert hidden.choices[0].message.content == expected_answer("think")
    streamed_reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "")
        for c in streamed
        if c.choices
    )
    assert streamed_reasoning == reasoning
    assert (
        "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        == message.content
    )


def test_max_tokens_and_stop_are_enforced(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        short = client.chat.completions.create(
            model="grok-4",
            messages=[{"role": "user", "content": "long answer please"}],
            max_tokens=2,
        )
        stopped = client.chat.completions.create(
            model="grok-4",
            messages=[{"role": "user", "content": "long answer please"}],
            stop=["answer"],
        )
    assert short.choices[0].finish_reason == "length"
    assert len(short.choices[0].message.content or "") == 8
    assert stopped.choices[0].finish_reason == "stop"
    full = expected_answer("long answer please")
    assert stopped.choices[0].message.content == full[: full.index("answer")]


def test_image_data_url_is_uploaded_and_attached(
    gateway: Gateway, emulator: Emulator
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"pixels" * 50
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    with sdk(gateway) as client:
        reply = client.chat.completions.create(
            model="grok-4",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "describe"},
                        {"type": "image_url", "image_url": {"url": data_url}},
                    ],
                }
            ],
        )
    assert reply.choices[0].finish_reason == "stop"
    uploads = emulator.control.uploads()
    assert len(uploads) == 1
    chat = emulator.control.requests(path="/rest/app-chat/conversations/new")[-1]
    assert chat["body"]["fileAttachments"] == [uploads[0]["fileMetadataId"]]
    assert (
        base64.b64decode(
            emulator.control.upload(uploads[0]["fileMetadataId"])["content"]
        )
        == png
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/secret.png",
        "http://169.254.169.254/latest/meta-data",
        "ftp://example.com/a.png",
    ],
)
def test_refused_media_url_is_a_400_naming_the_part(
    gateway: Gateway, emulator: Emulator, url: str
) -> None:
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="grok-4",
            messages=[
                {"role": "user", "content": "first"},
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": url}}],
                },
            ],
        )
    error = info.value.body
    assert isinstance(error, dict)
    assert error["param"] == "messages[1].content[0]"
    assert "127.0.0.1" not in error["message"] and "169.254" not in error["message"]
    assert emulator.control.requests(path="/rest/app-chat/conversations/new") == []


def test_models_list_and_lookup(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        ids = [m.id for m in client.models.list()]
        assert "grok-4" in ids and "grok-4-heavy" in ids
        assert client.models.retrieve("grok-4.1-fast").id == "grok-4.1-fast"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-5")
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(
                model="gpt-5", messages=[{"role": "user", "content": "x"}]
            )
    assert info.value.code == "model_not_found"


def test_filter_tags_remove_a_tag_split_over_upstream_tokens(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.configure(
        scripted_answer=[
            "Here",
            " is <grok:ren",
            'der card_id="c1">',
            "card</grok:",
            "render> the end",
        ]
    )
    with sdk(gateway) as client:
        reply = client.chat.completions.create(
            model="grok-4", messages=[{"role": "user", "content": "x"}]
        )
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="grok-4", messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
    assert reply.choices[0].message.content == "Here is  the end"
    assert streamed == "Here is  the end"


def test_image_url_is_fetched_through_the_guard_when_allowed(
    gateway_factory: GatewayFactory, emulator: Emulator, tmp_path: Path
) -> None:
    image = b"\xff\xd8\xff\xe0" + b"jpeg" * 100
    (tmp_path / "cat.jpg").write_bytes(image)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp_path))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        emulator.control.add_account("tok-a")
        gateway = gateway_factory(
            ["tok-a"], GROK2API_SECURITY_MEDIA_FETCH_ALLOW_HOSTS="127.0.0.1"
        )
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with sdk(gateway) as client:
            reply = client.chat.completions.create(
                model="grok-4",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": f"{url}/cat.jpg"},
                            }
                        ],
                    }
                ],
            )
            assert reply.choices[0].finish_reason == "stop"
            with pytest.raises(openai.BadRequestError) as info:
                client.chat.completions.create(
                    model="grok-4",
                    messages=[
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "image_url",
                                    "image_url": {"url": f"{url}/gone.jpg"},
                                }
                            ],
                        }
                    ],
                )
        assert info.value.body["param"] == "messages[0].content[0]"  # type: ignore[index]
    finally:
        server.shutdown()
        server.server_close()
    (upload,) = emulator.control.uploads()
    assert upload["fileName"] == "cat.jpg" and upload["fileMimeType"] == "image/jpeg"
    assert emulator.control.upload(upload["fileMetadataId"])["data"] == image


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
