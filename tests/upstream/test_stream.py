from __future__ import annotations

import json
import random

import attrs
import pytest

from grok2api.errors import (
    EgressBlocked,
    TokenRejected,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from grok2api.upstream import (
    AnswerDelta,
    CardAttachment,
    ConversationStarted,
    ImageProgress,
    ModelResponse,
    StreamDone,
    StreamParser,
    ThinkingDelta,
    ToolCard,
    VideoProgress,
    parse_stream,
)

from .conftest import PLAIN_ANSWER, conversation, frame

ASSETS = "https://assets.grok.com"
EXPECTED_PLAIN = [
    ConversationStarted("7c1f2a90"),
    ThinkingDelta("Thinking.", "r"),
    AnswerDelta("Paris", "r"),
    AnswerDelta(" is it.", "r"),
    ModelResponse("r", "Paris is it.", (), (), "mh-3e7"),
    StreamDone("7c1f2a90", "mh-3e7"),
]


def _random_cuts(data: bytes, rng: random.Random) -> list[bytes]:
    chunks, position = [], 0
    while position < len(data):
        size = rng.choice([1, 2, 3, 7, 40, 500])
        chunks.append(data[position : position + size])
        position += size
    return chunks


def _card(payload: dict[str, object]) -> dict[str, str]:
    return {"jsonData": json.dumps(payload)}


def test_stream_parses_plain_answer_with_reasoning() -> None:
    assert parse_stream(PLAIN_ANSWER) == EXPECTED_PLAIN


@pytest.mark.parametrize("seed", range(20))
def test_stream_survives_random_chunking(seed: int) -> None:
    body = b"".join(PLAIN_ANSWER)
    assert parse_stream(_random_cuts(body, random.Random(seed))) == EXPECTED_PLAIN


def test_stream_decodes_utf8_split_anywhere() -> None:
    text = "Grüße 🗼 中文"
    body = b"".join(
        [
            conversation(),
            frame(token=text, messageTag="final"),
            frame(isSoftStop=True),
        ]
    )
    for cut in range(1, len(body)):
        events = parse_stream([body[:cut], body[cut:]])
        assert AnswerDelta(text) in events, cut


def test_stream_tolerates_data_prefix_blank_lines_and_missing_final_newline() -> None:
    body = (
        b"\r\n"
        + b"data: "
        + conversation("c9")
        + b"\n\n"
        + b"data:"
        + frame(token="hi", messageTag="final").rstrip(b"\n")
        + b"\r\n"
        + frame(token="!", messageTag="final")
        + frame(isSoftStop=True).rstrip(b"\n")
    )
    events = parse_stream([body])
    assert events == [
        ConversationStarted("c9"),
        AnswerDelta("hi"),
        AnswerDelta("!"),
        StreamDone("c9", None),
    ]


def test_stream_reads_back_to_back_objects_on_one_line() -> None:
    line = frame(token="a").rstrip(b"\n") + frame(token="b").rstrip(b"\n") + b"\n"
    events = parse_stream([line, frame(isSoftStop=True)])
    assert events[:2] == [AnswerDelta("a"), AnswerDelta("b")]


def test_stream_drops_raw_function_results_and_user_echo() -> None:
    events = parse_stream(
        [
            frame(userResponse={"responseId": "u1"}),
            frame(token='{"results": []}', messageTag="raw_function_result"),
            frame(token="ok", messageTag="final"),
            frame(finalMetadata={}),
        ]
    )
    assert events == [AnswerDelta("ok"), StreamDone()]


def test_stream_tool_card_text_era_never_leaks_markup() -> None:
    card = (
        "<xai:tool_usage_card><xai:tool_name>web_search</xai:tool_name>"
        '<xai:tool_args><![CDATA[{"query":"capital of France"}]]></xai:tool_args>'
        "</xai:tool_usage_card>"
    )
    events = parse_stream(
        [
            frame(token=card, isThinking=True, messageTag="tool_usage_card"),
            frame(token="Before " + card[:30], messageTag="final"),
            frame(token=card[30:] + " after", messageTag="final"),
            frame(isSoftStop=True),
        ]
    )
    expected_card = ToolCard("web_search", {"query": "capital of France"})
    assert events == [
        attrs.evolve(expected_card, thinking=True),
        AnswerDelta("Before "),
        expected_card,
        AnswerDelta(" after"),
        StreamDone(),
    ]
    assert expected_card.summary == "web_search: capital of France"


def test_stream_tool_card_object_era() -> None:
    events = parse_stream(
        [
            frame(
                messageTag="tool_usage_card",
                token="",
                toolUsageCard={
                    "toolUsageCardId": "t1",
                    "xSemanticSearch": {"args": {"query": "grok"}},
                },
            ),
            frame(
                messageTag="tool_usage_card", toolUsageCard={"toolUsageCardId": "t1"}
            ),
            frame(token="done", messageTag="final"),
            frame(isSoftStop=True),
        ]
    )
    assert events[0] == ToolCard(
        "x_semantic_search", {"query": "grok"}, card_id="t1", era="object"
    )
    assert events[1:] == [AnswerDelta("done"), StreamDone()]


def test_stream_images_reference_shape() -> None:
    events = parse_stream(
        [
            frame(streamingImageGenerationResponse={"imageIndex": 0, "progress": 20}),
            frame(streamingImageGenerationResponse={"imageIndex": 1, "progress": 60}),
            frame(
                modelResponse={
                    "responseId": "r-22",
                    "message": "Here you go.",
                    "generatedImageUrls": [
                        "users/U1/generated/aa11/image.jpg",
                        "https://assets.grok.com/users/U1/generated/bb22/image.jpg",
                    ],
                }
            ),
        ]
    )
    assert events[:2] == [ImageProgress(0, 20), ImageProgress(1, 60)]
    final = events[2]
    assert isinstance(final, ModelResponse)
    assert final.generated_image_urls == (
        f"{ASSETS}/users/U1/generated/aa11/image.jpg",
        f"{ASSETS}/users/U1/generated/bb22/image.jpg",
    )
    assert isinstance(events[3], StreamDone)


def test_stream_images_card_shape_and_other_cards() -> None:
    def chunk(url: str, progress: int) -> dict[str, str]:
        return _card(
            {
                "id": "c7",
                "type": "render_generated_image",
                "image_chunk": {
                    "imageUuid": "aa11",
                    "imageUrl": url,
                    "progress": progress,
                    "moderated": False,
                },
            }
        )

    citation = {"id": "c8", "type": "render_inline_citation", "url": "https://x.ai"}
    events = parse_stream(
        [
            frame(cardAttachment=chunk("users/U1/generated/aa11-part-0/image.jpg", 50)),
            frame(token='<grok:render card_id="c7"></grok:render>', messageTag="final"),
            frame(cardAttachment=chunk("users/U1/generated/aa11/image.jpg", 100)),
            frame(cardAttachment=_card(citation)),
            frame(isSoftStop=True),
        ]
    )
    preview, render, done, card, _ = events
    assert isinstance(preview, ImageProgress) and not preview.final
    assert render == AnswerDelta('<grok:render card_id="c7"></grok:render>')
    assert done == ImageProgress(
        0, 100, f"{ASSETS}/users/U1/generated/aa11/image.jpg", False, "aa11", "c7"
    )
    assert done.final
    assert card == CardAttachment(citation)
    assert card.card_id == "c8"


def test_stream_video_progress() -> None:
    events = parse_stream(
        [
            conversation("c-vid"),
            frame(streamingVideoGenerationResponse={"videoId": "v9", "progress": 5}),
            frame(
                streamingVideoGenerationResponse={
                    "videoId": "v9",
                    "progress": 100,
                    "videoPostId": "p3",
                    "videoUrl": "users/U1/generated/v9/generated_video.mp4",
                    "thumbnailImageUrl": "users/U1/generated/v9/preview_image.jpg",
                }
            ),
            frame(token="Your video is ready.", isSoftStop=True),
        ]
    )
    assert events[1] == VideoProgress("v9", 5)
    assert events[2] == VideoProgress(
        "v9",
        100,
        f"{ASSETS}/users/U1/generated/v9/generated_video.mp4",
        f"{ASSETS}/users/U1/generated/v9/preview_image.jpg",
        post_id="p3",
    )
    assert events[3:] == [AnswerDelta("Your video is ready."), StreamDone("c-vid")]


@pytest.mark.parametrize(
    ("line", "error_type"),
    [
        (b'{"error":{"code":8,"message":"Too many requests"}}\n', UpstreamRateLimited),
        (
            frame(error={"message": "You've reached your usage limit."}),
            UpstreamRateLimited,
        ),
        (
            b'{"error":{"code":7,"message":"request rejected by anti-bot"}}\n',
            EgressBlocked,
        ),
        (b'{"error":{"code":16,"message":"unauthenticated"}}\n', TokenRejected),
        (
            frame(modelResponse={"message": "", "streamErrors": ["sampling engine"]}),
            UpstreamUnavailable,
        ),
        (
            frame(
                cardAttachment=_card(
                    {"id": "c", "image_chunk": {"systemErrCode": "rate_limit"}}
                )
            ),
            UpstreamRateLimited,
        ),
    ],
)
def test_stream_in_band_errors_raise_classified_and_charged(
    line: bytes, error_type: type[Exception]
) -> None:
    with pytest.raises(error_type) as caught:
        parse_stream([conversation(), line])
    assert caught.value.charged is True  # type: ignore[attr-defined]


def test_stream_usage_limit_means_no_quota_left() -> None:
    with pytest.raises(UpstreamRateLimited) as caught:
        parse_stream([frame(error={"message": "You've reached your usage limit."})])
    assert caught.value.remaining == 0


def test_stream_error_after_events_comes_after_them() -> None:
    parser = StreamParser()
    parser.feed(
        conversation("c1")
        + frame(token="partial", messageTag="final")
        + b'{"error":{"code":13,"message":"internal"}}\n'
    )
    assert parser.next_event() == ConversationStarted("c1")
    assert parser.next_event() == AnswerDelta("partial")
    with pytest.raises(UpstreamUnavailable, match="internal"):
        parser.next_event()


@pytest.mark.parametrize(
    "body",
    [
        [conversation(), frame(token="cut off", messageTag="final")],
        [conversation(), b'{"result":{"response":{"tok'],
        [conversation(), b"<html>oops</html>\n"],
        [conversation(), b"\xff\xfe\n"],
    ],
)
def test_stream_cut_or_garbled_body_is_a_protocol_error(body: list[bytes]) -> None:
    with pytest.raises(UpstreamProtocolError) as caught:
        parse_stream(body)
    assert caught.value.charged is True
