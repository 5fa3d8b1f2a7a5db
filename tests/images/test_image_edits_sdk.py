"""``POST /v1/images/edits`` through the official openai SDK (and raw httpx for
the JSON shapes and bad bodies), against a real gateway and the emulator."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import openai
import pytest

from grok2api.api.image_edits import edit_conversation, post_id_from_url
from grok2api.config import ChatSettings
from grok2api.emulator.images import png_image
from grok2api.models import ModelCatalog
from grok2api.upstream.dialects import ModeIdDialect, ReferenceDialect
from tests.conftest import API_KEY, Emulator, Gateway, GatewayFactory

CHAT_PATH = "/rest/app-chat/conversations/new"
UPLOAD_PATH = "/rest/app-chat/upload-file"
POST_PATH = "/rest/media/post/create"
UPSTREAM_PATHS = (CHAT_PATH, UPLOAD_PATH, POST_PATH)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODEL = "grok-imagine-1.0-edit"

PHOTO = png_image("a photo")
SKETCH = png_image("a sketch")
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 64


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api, api_key=API_KEY, max_retries=0)


def data_url(content: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode()}"


def calls(emulator: Emulator, path: str = CHAT_PATH) -> list[dict[str, Any]]:
    return emulator.control.requests(path=path, settled=True)


def edit_config(call: dict[str, Any]) -> dict[str, Any]:
    override = call["body"]["responseMetadata"]["modelConfigOverride"]
    assert override["modelMap"]["imageEditModel"] == "imagine"
    return override["modelMap"]["imageEditModelConfig"]  # type: ignore[no-any-return]


def test_one_file_edit_opens_without_credentials(
    gateway: Gateway, emulator: Emulator
) -> None:
    with sdk(gateway) as client:
        result = client.images.edit(
            model=MODEL, image=("photo.png", PHOTO, "image/png"), prompt="make it blue"
        )
    assert len(result.data) == 1
    url = result.data[0].url
    assert url is not None and url.startswith(gateway.url + "/v1/files/image/")
    served = httpx.get(url)
    assert served.status_code == 200
    assert served.content.startswith(PNG_MAGIC) and served.content != PHOTO

    (upload,) = calls(emulator, UPLOAD_PATH)
    assert upload["status"] == 200
    assert upload["body"]["fileMimeType"] == "image/png"
    (post,) = calls(emulator, POST_PATH)
    assert post["body"]["mediaType"] == "MEDIA_POST_TYPE_IMAGE"
    (chat,) = calls(emulator)
    assert chat["status"] == 200
    body = chat["body"]
    assert body["modelName"] == "imagine-image-edit"
    assert body["modelMode"] is None
    assert body["toolOverrides"]["imageGen"] is True
    assert body["message"] == "make it blue"
    config = edit_config(chat)
    assert config["imageReferences"] == [post["body"]["mediaUrl"]]
    assert config["parentPostId"]
    # The same token uploaded, posted and edited.
    assert upload["token_id"] == post["token_id"] == chat["token_id"]


def test_two_files_are_both_referenced(gateway: Gateway, emulator: Emulator) -> None:
    with sdk(gateway) as client:
        result = client.images.edit(
            model=MODEL,
            image=[("a.png", PHOTO, "image/png"), ("b.jpg", JPEG, "image/jpeg")],
            prompt="put the sketch into the photo",
        )
    assert len(result.data) == 1
    uploads = calls(emulator, UPLOAD_PATH)
    assert [u["body"]["fileMimeType"] for u in uploads] == ["image/png", "image/jpeg"]
    (chat,) = calls(emulator)
    references = edit_config(chat)["imageReferences"]
    assert len(references) == 2 and len(set(references)) == 2


def test_three_b64_images_come_from_two_parallel_calls(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.configure(line_delay=0.05)
    with sdk(gateway) as client:
        result = client.images.edit(
            model=MODEL,
            image=("photo.png", PHOTO, "image/png"),
            prompt="three variants",
            n=3,
            response_format="b64_json",
        )
    decoded = [base64.b64decode(item.b64_json or "") for item in result.data]
    assert len(decoded) == 3 and len(set(decoded)) == 3
    assert all(image.startswith(PNG_MAGIC) for image in decoded)
    assert all(item.url is None for item in result.data)
    chats = calls(emulator)
    assert len(chats) == 2
    assert sorted(c["body"]["imageGenerationCount"] for c in chats) == [1, 2]
    assert max(c["started_at"] for c in chats) < min(c["ended_at"] for c in chats)


def test_one_token_uploads_once_for_all_its_calls(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-only")
    gateway = gateway_factory(["tok-only"])
    with sdk(gateway) as client:
        result = client.images.edit(
            model=MODEL, image=("p.png", PHOTO, "image/png"), prompt="x", n=4
        )
    assert len({item.url for item in result.data}) == 4
    assert len(calls(emulator)) == 2
    assert len(calls(emulator, UPLOAD_PATH)) == 1
    assert len(calls(emulator, POST_PATH)) == 1


def test_image_cards_are_read_like_progress_frames(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        result = client.images.edit(
            model=MODEL,
            image=("p.png", PHOTO, "image/png"),
            prompt="[emulator:images format=card] add a hat",
            n=2,
        )
    urls = [item.url for item in result.data]
    assert len(set(urls)) == 2
    assert all(httpx.get(str(url)).content.startswith(PNG_MAGIC) for url in urls)


@pytest.mark.parametrize(
    "images",
    [
        {"image": data_url(PHOTO)},
        {"image": [data_url(PHOTO), data_url(WEBP, "image/webp")]},
        {"images": [{"image_url": data_url(PHOTO)}]},
    ],
    ids=["one-url", "url-list", "images-objects"],
)
def test_json_bodies_with_data_urls(
    gateway: Gateway, emulator: Emulator, images: dict[str, Any]
) -> None:
    body = {"model": MODEL, "prompt": "brighter", "n": 2, **images}
    with gateway.client() as client:
        response = client.post("/v1/images/edits", json=body)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len({item["url"] for item in data}) == 2
    sent = images.get("image", images.get("images"))
    count = len(sent) if isinstance(sent, list) else 1
    (chat,) = calls(emulator)
    assert len(edit_config(chat)["imageReferences"]) == count


def _multipart(
    files: list[tuple[str, tuple[str, bytes, str]]], **fields: str
) -> dict[str, Any]:
    data = {"model": MODEL, "prompt": "edit it", **fields}
    return {"data": {k: v for k, v in data.items() if v}, "files": files}


ONE = [("image", ("p.png", PHOTO, "image/png"))]
NOT_AN_IMAGE = [("image", ("x.png", b"not an image", "image/png"))]
SEVENTEEN = [("image[]", ("x.png", PHOTO, "image/png"))] * 17

BAD_REQUESTS: list[tuple[dict[str, Any], str, int]] = [
    (_multipart([]), "image", 400),
    (_multipart(NOT_AN_IMAGE), "image", 400),
    (_multipart(SEVENTEEN), "image", 400),
    (
        _multipart([*ONE, ("image[]", ("y.bmp", b"BM" + bytes(64), "image/bmp"))]),
        "image[1]",
        400,
    ),
    (_multipart(ONE, model="grok-4"), "model", 400),
    (_multipart(ONE, model="dall-e-2"), "model", 404),
    (_multipart(ONE, prompt=" "), "prompt", 400),
    (_multipart(ONE, n="11"), "n", 400),
    (_multipart(ONE, n="two"), "n", 400),
    (_multipart(ONE, stream="maybe"), "stream", 400),
    (_multipart(ONE, response_format="png"), "response_format", 400),
    (_multipart([*ONE, ("mask", ("m.png", PHOTO, "image/png"))]), "mask", 400),
    ({"json": {"prompt": "x"}}, "image", 400),
    ({"json": {"prompt": "x", "image": "data:image/png;base64,%%%"}}, "image", 400),
    ({"json": {"prompt": "x", "image": data_url(b"GIF")}}, "image", 400),
    ({"json": {"prompt": "x", "image": [data_url(PHOTO), 5]}}, "image[1]", 400),
    (
        {"json": {"prompt": "x", "images": [{"file_id": "file-1"}]}},
        "images[0].file_id",
        400,
    ),
    ({"json": {"prompt": "x", "image": data_url(PHOTO), "mask": "m"}}, "mask", 400),
    ({"json": [1]}, "body", 400),
    # A small body with more parts than the parser takes is a 400, not a 413
    # that would blame the body's size.
    (_multipart(ONE, **{f"extra{i}": "x" for i in range(1500)}), "body", 400),
    (
        {
            "content": b"--b\r\nbroken",
            "headers": {"Content-Type": "multipart/form-data"},
        },
        "body",
        400,
    ),
]


def test_bad_requests_are_400_with_param_and_spend_nothing(
    gateway: Gateway, emulator: Emulator
) -> None:
    before = {tid: t["quota"] for tid, t in gateway.tokens().items()}
    with gateway.client() as client:
        for request_kwargs, param, status in BAD_REQUESTS:
            response = client.post("/v1/images/edits", **request_kwargs)
            assert response.status_code == status, (param, response.text)
            assert response.json()["error"]["param"] == param, response.text
    for path in UPSTREAM_PATHS:
        assert emulator.control.requests(path=path) == []
    assert {tid: t["quota"] for tid, t in gateway.tokens().items()} == before


def test_an_image_over_the_size_limit_is_400(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(["tok-a"], GROK2API_IMAGE_EDIT_MAX_IMAGE_MB="1")
    big = PHOTO + b"\x00" * (1024 * 1024)
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as info:
        client.images.edit(model=MODEL, image=("big.png", big, "image/png"), prompt="x")
    assert info.value.param == "image"
    assert info.value.code == "image_too_large"
    assert emulator.control.requests(path=UPLOAD_PATH) == []


def test_a_body_over_the_cap_is_413_before_any_upload(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(["tok-a"], GROK2API_SECURITY_MAX_BODY_SIZE_MB="1")
    big = PHOTO + b"\x00" * (2 * 1024 * 1024)
    with sdk(gateway) as client, pytest.raises(openai.APIStatusError) as info:
        client.images.edit(model=MODEL, image=("big.png", big, "image/png"), prompt="x")
    assert info.value.status_code == 413
    assert emulator.control.requests(path=UPLOAD_PATH) == []


def test_moderated_edits_are_a_content_policy_error(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.configure(moderate_images=True)
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as info:
        client.images.edit(
            model=MODEL, image=("p.png", PHOTO, "image/png"), prompt="forbidden"
        )
    assert info.value.code == "content_policy_violation"
    assert len(calls(emulator)) == 1


def test_an_upload_refused_401_fails_over_to_another_token(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("401", endpoint="upload", times=1)
    with sdk(gateway) as client:
        result = client.images.edit(
            model=MODEL, image=("p.png", PHOTO, "image/png"), prompt="fox", n=2
        )
    assert len({item.url for item in result.data}) == 2
    uploads = calls(emulator, UPLOAD_PATH)
    assert [u["status"] for u in uploads] == [401, 200]
    assert uploads[0]["token_id"] != uploads[1]["token_id"]
    (chat,) = calls(emulator)
    assert chat["token_id"] == uploads[1]["token_id"]
    failed = [t["id"] for t in gateway.tokens().values() if t["fail_count"]]
    # The gateway's token ids are longer forms of the emulator's.
    assert len(failed) == 1 and failed[0].startswith(uploads[0]["token_id"])


def test_a_failed_media_post_falls_back_to_the_upload_id(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("500", endpoint="media-post", times=1)
    with sdk(gateway) as client:
        result = client.images.edit(
            model=MODEL, image=("p.png", PHOTO, "image/png"), prompt="fox"
        )
    assert len(result.data) == 1
    (upload,) = calls(emulator, UPLOAD_PATH)
    (chat,) = calls(emulator)
    (stored,) = emulator.control.uploads()
    assert edit_config(chat)["parentPostId"] == stored["fileMetadataId"]
    assert upload["token_id"] == chat["token_id"]


def test_a_stream_ends_with_one_completed_event_per_image(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        stream = client.images.edit(
            model=MODEL,
            image=("p.png", PHOTO, "image/png"),
            prompt="stream it",
            n=2,
            size="1024x1024",
            stream=True,
        )
        events = list(stream)
    assert [event.type for event in events] == ["image_edit.completed"] * 2
    decoded = [base64.b64decode(event.b64_json) for event in events]
    assert len(set(decoded)) == 2
    assert all(image.startswith(PNG_MAGIC) for image in decoded)
    assert events[0].size == "1024x1024"


def test_image_card_previews_stream_as_partial_images(gateway: Gateway) -> None:
    with sdk(gateway) as client:
        stream = client.images.edit(
            model=MODEL,
            image=("p.png", PHOTO, "image/png"),
            prompt="[emulator:images format=card] add a hat",
            stream=True,
            partial_images=1,
        )
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds == ["image_edit.partial_image", "image_edit.completed"]
    partial, completed = events
    assert partial.partial_image_index == 0
    assert base64.b64decode(partial.b64_json).startswith(PNG_MAGIC)
    assert partial.b64_json != completed.b64_json


def test_a_failed_stream_is_a_plain_error_before_any_event(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.configure(moderate_images=True)
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as info:
        client.images.edit(
            model=MODEL, image=("p.png", PHOTO, "image/png"), prompt="no", stream=True
        )
    assert info.value.code == "content_policy_violation"


def test_a_key_may_only_use_its_allowed_models(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        created = admin.post("/v1/admin/keys", json={"limits": {"models": ["grok-3"]}})
    assert created.status_code == 201, created.text
    key = created.json()["items"][0]["key"]
    with gateway.client(key) as client:
        refused = client.post(
            "/v1/images/edits", json={"prompt": "x", "image": data_url(PHOTO)}
        )
    assert refused.status_code == 403
    assert refused.json()["error"]["param"] == "model"


@pytest.mark.parametrize("dialect", [ReferenceDialect(), ModeIdDialect()])
def test_both_dialects_send_the_edit_model_and_its_config(
    dialect: ReferenceDialect | ModeIdDialect,
) -> None:
    model = ModelCatalog().get(MODEL)
    assert model is not None
    conversation = edit_conversation(
        model, "tint", 2, ("https://a/u/1/content",), "post-1", ChatSettings()
    )
    body = dialect.build_body(conversation)
    assert body["modelName"] == "imagine-image-edit"
    assert "modeId" not in body
    assert body["toolOverrides"]["imageGen"] is True
    override = body["responseMetadata"]["modelConfigOverride"]
    assert override["modelMap"] == {
        "imageEditModel": "imagine",
        "imageEditModelConfig": {
            "imageReferences": ["https://a/u/1/content"],
            "parentPostId": "post-1",
        },
    }


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("https://assets.grok.com/users/u1/f-9/content", "f-9"),
        ("https://assets.grok.com/users/u1/generated/g-2/image.jpg", "g-2"),
        ("https://assets.grok.com/elsewhere/x.png", None),
    ],
)
def test_the_fallback_parent_is_the_id_in_the_url(url: str, found: str | None) -> None:
    assert post_id_from_url(url) == found
