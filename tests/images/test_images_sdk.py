"""``POST /v1/images/generations`` through the official openai SDK, against a
real gateway and the emulator."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from tests.conftest import API_KEY, Emulator, Gateway, GatewayFactory

CHAT_PATH = "/rest/app-chat/conversations/new"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def gateway(gateway_factory: GatewayFactory, emulator: Emulator) -> Gateway:
    """A gateway that makes images over the chat path only (the Imagine
    socket, tested in test_images_ws.py, is off)."""
    for token in ("tok-a", "tok-b"):
        emulator.control.add_account(token)
    return gateway_factory(["tok-a", "tok-b"], GROK2API_IMAGE_IMAGE_WS="false")


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api, api_key=API_KEY, max_retries=0)


def image_calls(emulator: Emulator) -> list[dict[str, object]]:
    return [
        record
        for record in emulator.control.requests(path=CHAT_PATH, settled=True)
        if record["status"] == 200
    ]


def test_one_url_image_opens_without_credentials(
    gateway: Gateway, emulator: Emulator
) -> None:
    with sdk(gateway) as client:
        result = client.images.generate(
            model="grok-imagine-1.0", prompt="a red fox", n=1, response_format="url"
        )
    assert len(result.data) == 1
    url = result.data[0].url
    assert url is not None and url.startswith(gateway.url + "/v1/files/image/")
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_MAGIC)
    (call,) = image_calls(emulator)
    body = call["body"]
    assert isinstance(body, dict)
    assert body["toolOverrides"]["imageGen"] is True
    assert body["enableImageGeneration"] is True
    assert body["imageGenerationCount"] == 1
    assert body["message"] == "a red fox"


def test_four_b64_images_are_distinct_and_match_the_served_files(
    gateway: Gateway, emulator: Emulator
) -> None:
    with sdk(gateway) as client:
        result = client.images.generate(
            model="grok-imagine-1.0", prompt="owls", n=4, response_format="b64_json"
        )
    decoded = [base64.b64decode(item.b64_json or "") for item in result.data]
    assert len(decoded) == 4 and len(set(decoded)) == 4
    assert all(image.startswith(PNG_MAGIC) for image in decoded)
    assert all(item.url is None for item in result.data)
    with gateway.admin() as admin:
        listed = admin.get("/v1/admin/cache/image").json()["items"]
    served = {httpx.get(item["url"]).content for item in listed}
    assert served == set(decoded)
    # Four images fit in one upstream call.
    assert len(image_calls(emulator)) == 1


def test_four_urls_are_distinct(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        result = client.images.generate(
            model="grok-imagine-1.0", prompt="cats", n=4, response_format="url"
        )
    urls = [item.url for item in result.data]
    assert len(set(urls)) == 4
    contents = {httpx.get(str(url)).content for url in urls}
    assert len(contents) == 4


def test_short_calls_are_made_up_by_parallel_calls(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.configure(image_yield=1, line_delay=0.1)
    with sdk(gateway) as client:
        result = client.images.generate(model="grok-imagine-1.0", prompt="dogs", n=4)
    assert len({item.url for item in result.data}) == 4
    calls = image_calls(emulator)
    assert len(calls) == 4
    first, *rest = calls
    assert first["body"]["imageGenerationCount"] == 4
    assert [call["body"]["imageGenerationCount"] for call in rest] == [1, 1, 1]
    # The make-up calls ran side by side: each started before any ended.
    assert max(c["started_at"] for c in rest) < min(c["ended_at"] for c in rest)


def test_ten_images_ask_several_calls_at_once(
    gateway: Gateway, emulator: Emulator
) -> None:
    with sdk(gateway) as client:
        result = client.images.generate(model="grok-imagine-1.0", prompt="sea", n=10)
    assert len({item.url for item in result.data}) == 10
    counts = sorted(c["body"]["imageGenerationCount"] for c in image_calls(emulator))
    assert counts == [2, 4, 4]


def test_moderated_images_are_an_error_not_an_empty_answer(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.configure(moderate_images=True)
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="grok-imagine-1.0", prompt="forbidden", n=2)
    assert info.value.code == "content_policy_violation"
    assert info.value.param == "prompt"
    assert len(image_calls(emulator)) == 1


def test_a_token_fault_fails_over_to_another_token(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("401", endpoint="chat", times=1)
    with sdk(gateway) as client:
        result = client.images.generate(model="grok-imagine-1.0", prompt="fox", n=2)
    assert len({item.url for item in result.data}) == 2
    records = emulator.control.requests(path=CHAT_PATH, settled=True)
    assert [r["status"] for r in records] == [401, 200]
    assert records[0]["token_id"] != records[1]["token_id"]


def test_the_image_models_are_listed(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        listed = [m.id for m in client.models.list()]
        for model in ("grok-imagine-1.0", "grok-imagine-1.0-edit"):
            assert model in listed
            assert client.models.retrieve(model).id == model


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "grok-imagine-1.0"}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "n": "2"}, "n"),
        ({"prompt": "x", "n": True}, "n"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
        ({"prompt": "x", "size": 1024}, "size"),
        ({"prompt": "x", "size": "999x999"}, "size"),
        ({"prompt": "x", "quality": "ultra"}, "quality"),
        ({"prompt": "x", "stream": "yes"}, "stream"),
        ({"prompt": "x", "partial_images": 4}, "partial_images"),
        ({"prompt": "x", "model": "grok-4"}, "model"),
        ([1, 2], "body"),
    ],
)
def test_bad_parameters_are_400_with_param(
    gateway: Gateway, emulator: Emulator, body: object, param: str
) -> None:
    with gateway.client() as client:
        response = client.post("/v1/images/generations", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert emulator.control.requests(path=CHAT_PATH) == []


def test_unknown_model_is_404(gateway: Gateway) -> None:
    with sdk(gateway) as client, pytest.raises(openai.NotFoundError) as info:
        client.images.generate(model="dall-e-3", prompt="x")
    assert info.value.code == "model_not_found"


def test_size_quality_style_and_user_are_accepted(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        result = client.images.generate(
            model="grok-imagine-1.0",
            prompt="a lighthouse",
            size="1792x1024",
            quality="hd",
            style="vivid",
            user="someone",
        )
    assert len(result.data) == 1


def test_a_key_may_only_use_its_allowed_models(gateway: Gateway) -> None:
    keys = {}
    for model in ("grok-3", "grok-imagine-1.0"):
        with gateway.admin() as admin:
            created = admin.post("/v1/admin/keys", json={"limits": {"models": [model]}})
        assert created.status_code == 201, created.text
        keys[model] = created.json()["items"][0]["key"]
    body = {"model": "grok-imagine-1.0", "prompt": "a key"}
    with gateway.client(keys["grok-3"]) as client:
        refused = client.post("/v1/images/generations", json=body)
    assert refused.status_code == 403
    assert refused.json()["error"]["param"] == "model"
    with gateway.client(keys["grok-imagine-1.0"]) as client:
        allowed = client.post("/v1/images/generations", json=body)
    assert allowed.status_code == 200
    assert len(allowed.json()["data"]) == 1
