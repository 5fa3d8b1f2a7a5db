"""The emulator's images inside plain chat answers (``[emulator:images ...]``),
and the gateway's splitting of render tags out of answer text."""

from __future__ import annotations

import httpx
import pytest

from grok2api.api.chat_images import ImageSlot, RenderSplitter
from grok2api.upstream import AnswerDelta, ImageProgress, ModelResponse, parse_stream
from tests.conftest import Emulator

OWNER = "chat-img-owner-0123456789"
OTHER = "chat-img-other-0123456789"


def chat(emulator: Emulator, message: str, **extra: object) -> httpx.Response:
    emulator.control.configure(require_statsig=False)
    emulator.control.add_account(OWNER)
    return httpx.post(
        f"{emulator.url}/rest/app-chat/conversations/new",
        json={"message": message, "enableImageGeneration": True, **extra},
        cookies={"sso": OWNER, "sso-rw": OWNER},
    )


def test_card_answer_streams_cards_tags_and_owned_files(emulator: Emulator) -> None:
    response = chat(emulator, "two [emulator:images count=2 format=card moderated=2]")
    events = parse_stream([response.content], emulator.url)
    progress = [e for e in events if isinstance(e, ImageProgress)]
    assert [(p.index, p.progress, p.moderated) for p in progress] == [
        (0, 50, False),
        (0, 100, False),
        (1, 50, False),
        (1, 100, True),
    ]
    assert not progress[0].final and progress[1].final
    text = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert text.count('type="render_generated_image"') == 2
    assert text.endswith(" Enjoy!")
    (final,) = [e for e in events if isinstance(e, ModelResponse)]
    assert final.generated_image_urls == (progress[1].url,)
    assert len(final.card_attachments) == 2
    owner = {"sso": OWNER, "sso-rw": OWNER}
    assert httpx.get(progress[1].url or "", cookies=owner).status_code == 200
    # Neither the preview nor the moderated image is stored.
    assert httpx.get(progress[0].url or "", cookies=owner).status_code == 404
    assert httpx.get(progress[3].url or "", cookies=owner).status_code == 404
    other = {"sso": OTHER, "sso-rw": OTHER}
    emulator.control.add_account(OTHER)
    assert httpx.get(progress[1].url or "", cookies=other).status_code == 403


def test_legacy_answer_lists_the_images_after_progress(emulator: Emulator) -> None:
    response = chat(emulator, "[emulator:images count=3]")
    events = parse_stream([response.content], emulator.url)
    progress = [e for e in events if isinstance(e, ImageProgress)]
    assert [(p.index, p.progress) for p in progress] == [
        (i, step) for i in range(3) for step in (50, 100)
    ]
    (final,) = [e for e in events if isinstance(e, ModelResponse)]
    assert len(set(final.generated_image_urls)) == 3
    assert final.message == "Here are 3 image(s)."


def test_no_directive_or_images_disabled_is_a_plain_answer(emulator: Emulator) -> None:
    for response in (
        chat(emulator, "hello"),
        chat(emulator, "[emulator:images]", enableImageGeneration=False),
    ):
        events = parse_stream([response.content], emulator.url)
        assert not [e for e in events if isinstance(e, ImageProgress)]


@pytest.mark.parametrize(
    "directive",
    [
        "[emulator:images count=11]",
        "[emulator:images format=gif]",
        "[emulator:images size=2]",
    ],
)
def test_a_bad_directive_is_a_400(emulator: Emulator, directive: str) -> None:
    response = chat(emulator, directive)
    assert response.status_code == 400
    assert "image directive" in response.json()["error"]["message"]


def test_render_tags_split_over_pieces_become_slots() -> None:
    splitter = RenderSplitter()
    pieces = [
        *splitter.split("see <gr"),
        *splitter.split('ok:render card_id="c1" type="render_generated_image">'),
        *splitter.split("</grok:render> and <grok:renderer/> "),
        *splitter.split('<grok:render card_id="2" type="render_inline_citation">'),
        *splitter.split("x</grok:render> end <"),
    ]
    assert pieces == [
        "see ",
        ImageSlot("c1"),
        " and ",
        "<grok:render",
        "er/> ",
        '<grok:render card_id="2" type="render_inline_citation">x</grok:render>',
        " end ",
    ]
    assert splitter.finish() == "<"
