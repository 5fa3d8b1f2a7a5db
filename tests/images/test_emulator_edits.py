"""The emulator's image edits: references and parent posts must be the asking
account's own, and the answer makes two images in either frame format."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from grok2api.emulator.images import png_image
from grok2api.upstream import ImageProgress, ModelResponse, parse_stream
from tests.conftest import Emulator

OWNER = "edit-owner-0123456789"
OTHER = "edit-other-0123456789"


def cookies(token: str) -> dict[str, str]:
    return {"sso": token, "sso-rw": token}


def upload(emulator: Emulator, token: str) -> str:
    body = {
        "fileName": "in.png",
        "fileMimeType": "image/png",
        "content": base64.b64encode(png_image("in")).decode(),
    }
    response = httpx.post(
        f"{emulator.url}/rest/app-chat/upload-file", json=body, cookies=cookies(token)
    )
    assert response.status_code == 200, response.text
    return f"{emulator.url}/{response.json()['fileUri']}"


def post(emulator: Emulator, token: str, media_url: str) -> str:
    body = {"mediaType": "MEDIA_POST_TYPE_IMAGE", "mediaUrl": media_url}
    response = httpx.post(
        f"{emulator.url}/rest/media/post/create", json=body, cookies=cookies(token)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["post"]["id"])


def edit(
    emulator: Emulator, references: list[str], parent: str, message: str = "tint"
) -> httpx.Response:
    body: dict[str, Any] = {
        "message": message,
        "modelName": "imagine-image-edit",
        "modelMode": None,
        "toolOverrides": {"imageGen": True},
        "responseMetadata": {
            "modelConfigOverride": {
                "modelMap": {
                    "imageEditModel": "imagine",
                    "imageEditModelConfig": {
                        "imageReferences": references,
                        "parentPostId": parent,
                    },
                }
            }
        },
    }
    return httpx.post(
        f"{emulator.url}/rest/app-chat/conversations/new",
        json=body,
        cookies=cookies(OWNER),
    )


def setup(emulator: Emulator) -> None:
    emulator.control.configure(require_statsig=False)
    emulator.control.add_account(OWNER)
    emulator.control.add_account(OTHER)


def remaining(emulator: Emulator) -> int:
    return int(emulator.control.account(OWNER)["remaining"])


def test_an_edit_makes_two_images_of_the_owner(emulator: Emulator) -> None:
    setup(emulator)
    image = upload(emulator, OWNER)
    response = edit(emulator, [image], post(emulator, OWNER, image))
    assert response.status_code == 200, response.text
    events = parse_stream([response.content], emulator.url)
    progress = [e for e in events if isinstance(e, ImageProgress)]
    assert sorted((p.index, p.progress) for p in progress) == [
        (0, 50),
        (0, 100),
        (1, 50),
        (1, 100),
    ]
    (final,) = [e for e in events if isinstance(e, ModelResponse)]
    assert len(set(final.generated_image_urls)) == 2
    for url in final.generated_image_urls:
        assert httpx.get(url, cookies=cookies(OWNER)).content.startswith(b"\x89PNG")
        assert httpx.get(url, cookies=cookies(OTHER)).status_code == 403


def test_card_format_streams_previews_and_finals(emulator: Emulator) -> None:
    setup(emulator)
    image = upload(emulator, OWNER)
    response = edit(
        emulator,
        [image],
        post(emulator, OWNER, image),
        "[emulator:images format=card] tint",
    )
    events = parse_stream([response.content], emulator.url)
    progress = [e for e in events if isinstance(e, ImageProgress)]
    finals = [p.url for p in progress if p.final]
    previews = [p.url for p in progress if not p.final]
    assert len(set(finals)) == 2 and len(previews) == 2
    assert all("-part-0" in str(url) for url in previews)
    for url in [*finals, *previews]:
        assert httpx.get(str(url), cookies=cookies(OWNER)).status_code == 200


def test_foreign_references_and_posts_are_refused_uncharged(
    emulator: Emulator,
) -> None:
    setup(emulator)
    mine = upload(emulator, OWNER)
    theirs = upload(emulator, OTHER)
    my_post = post(emulator, OWNER, mine)
    their_post = post(emulator, OTHER, theirs)
    before = remaining(emulator)
    for references, parent in [
        ([theirs], my_post),
        ([mine], their_post),
        ([mine], "no-such-post"),
        ([], my_post),
        (["https://elsewhere.example/users/x/y/content"], my_post),
    ]:
        response = edit(emulator, references, parent)
        assert response.status_code == 400, (references, parent)
    assert remaining(emulator) == before


def test_an_upload_id_stands_in_for_the_parent_post(emulator: Emulator) -> None:
    setup(emulator)
    image = upload(emulator, OWNER)
    file_id = image.rsplit("/", 2)[-2]
    assert edit(emulator, [image], file_id).status_code == 200
