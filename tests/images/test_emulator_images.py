"""The emulator's image answers: progress frames, final URLs and PNG files
that only the asking account may download."""

from __future__ import annotations

import struct
import zlib

import httpx

from grok2api.emulator.images import png_image
from grok2api.upstream import ImageProgress, ModelResponse, parse_stream
from tests.conftest import Emulator

OWNER = "img-owner-0123456789"
OTHER = "img-other-0123456789"


def ask(emulator: Emulator, count: int, token: str = OWNER) -> httpx.Response:
    body = {
        "message": "a boat",
        "toolOverrides": {"imageGen": True},
        "imageGenerationCount": count,
    }
    return httpx.post(
        f"{emulator.url}/rest/app-chat/conversations/new",
        json=body,
        cookies={"sso": token, "sso-rw": token},
    )


def answer(emulator: Emulator, count: int) -> tuple[list[ImageProgress], ModelResponse]:
    response = ask(emulator, count)
    assert response.status_code == 200
    events = parse_stream([response.content], emulator.url)
    progress = [e for e in events if isinstance(e, ImageProgress)]
    (final,) = [e for e in events if isinstance(e, ModelResponse)]
    return progress, final


def setup(emulator: Emulator) -> None:
    emulator.control.configure(require_statsig=False)
    emulator.control.add_account(OWNER)
    emulator.control.add_account(OTHER)


def test_images_are_distinct_pngs_for_their_owner_only(emulator: Emulator) -> None:
    setup(emulator)
    progress, final = answer(emulator, 3)
    assert sorted((p.index, p.progress) for p in progress) == [
        (i, step) for i in range(3) for step in (50, 100)
    ]
    assert len(set(final.generated_image_urls)) == 3
    owner = {"sso": OWNER, "sso-rw": OWNER}
    files = [httpx.get(url, cookies=owner) for url in final.generated_image_urls]
    assert [f.headers["content-type"] for f in files] == ["image/png"] * 3
    assert len({f.content for f in files}) == 3
    other = {"sso": OTHER, "sso-rw": OTHER}
    assert httpx.get(final.generated_image_urls[0], cookies=other).status_code == 403


def test_yield_cap_and_moderation(emulator: Emulator) -> None:
    setup(emulator)
    emulator.control.configure(image_yield=2)
    _, final = answer(emulator, 5)
    assert len(final.generated_image_urls) == 2
    emulator.control.configure(image_yield=0, moderate_images=True)
    progress, final = answer(emulator, 2)
    assert final.generated_image_urls == ()
    assert {p.moderated for p in progress if p.progress == 100} == {True}


def test_a_chat_without_the_image_tool_is_a_plain_answer(emulator: Emulator) -> None:
    setup(emulator)
    response = httpx.post(
        f"{emulator.url}/rest/app-chat/conversations/new",
        json={"message": "hi", "enableImageGeneration": True},
        cookies={"sso": OWNER, "sso-rw": OWNER},
    )
    events = parse_stream([response.content], emulator.url)
    assert not [e for e in events if isinstance(e, ImageProgress)]


def test_png_image_is_a_valid_one_pixel_png() -> None:
    data = png_image("label")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    position = 8
    kinds = []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunk = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(
            ">I", data[position + 8 + length : position + 12 + length]
        )
        assert zlib.crc32(kind + chunk) == crc
        if kind == b"IHDR":
            assert struct.unpack(">II", chunk[:8]) == (1, 1)
        kinds.append(kind)
        position += 12 + length
    assert kinds == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]
    assert png_image("label") == data and png_image("other") != data
