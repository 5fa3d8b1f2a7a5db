"""Parsing chat requests the way strict OpenAI clients send them."""

from __future__ import annotations

from typing import Any

import pytest

from grok2api.api.chat_request import parse_chat_request
from grok2api.api.prompt import flatten_messages
from grok2api.errors import ApiError


def parse(**body: Any):  # type: ignore[no-untyped-def]
    body.setdefault("model", "grok-4")
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return parse_chat_request(body)


def error_for(**body: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse(**body)
    assert info.value.status == 400
    return info.value


def test_missing_stream_means_false_and_unknown_fields_are_ignored() -> None:
    request = parse(
        logit_bias={"1": 2},
        seed=3,
        tools=[],
        response_format={"type": "text"},
        user="u",
    )
    assert request.stream is False
    assert request.include_usage is False


def test_roles_content_shapes_and_dropped_empty_turns() -> None:
    request = parse(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "system", "content": ""},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "one"},
                    {"type": "text", "text": "two"},
                ],
            },
            {"role": "assistant", "content": None},
            {"role": "assistant", "content": {"type": "text", "text": "reply"}},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
            {"role": "user", "content": "last"},
        ]
    )
    assert [(m.role, m.text) for m in request.messages] == [
        ("system", "Be brief."),
        ("user", "one\ntwo"),
        ("assistant", "reply"),
        ("tool", "42"),
        ("user", "last"),
    ]
    assert flatten_messages(request.messages) == (
        "system: Be brief.\n\nuser: one\ntwo\n\nassistant: reply\n\ntool: 42\n\nlast"
    )


def test_a_single_user_message_travels_bare() -> None:
    assert flatten_messages(parse().messages) == "hi"


def test_media_parts_are_located_by_param() -> None:
    request = parse(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,AAAA"},
                    },
                    {
                        "type": "file",
                        "file": {"file_data": "QUJD", "filename": "a.txt"},
                    },
                ],
            }
        ]
    )
    media = request.messages[0].media
    assert [(m.param, m.kind) for m in media] == [
        ("messages[0].content[1]", "image"),
        ("messages[0].content[2]", "file"),
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"messages": [{"role": "system", "content": "x"}, {"role": "tool"}]},
            "messages[1].content",
        ),
        # Nothing but empty text would spend a conversation on nothing.
        ({"messages": [{"role": "user", "content": " "}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": "\u200b\u200b"}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "assistant", "content": None}]}, "messages"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
        ({"stream": "yes"}, "stream"),
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "ten"}, "max_completion_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"temperature": 3}, "temperature"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"thinking": "maybe"}, "thinking"),
    ],
)
def test_invalid_fields_are_named_in_param(body: dict[str, Any], param: str) -> None:
    assert error_for(**body).param == param


def test_thinking_switches() -> None:
    assert parse().show_thinking is None
    assert parse(thinking="enabled").show_thinking is True
    assert parse(thinking={"type": "disabled"}).show_thinking is False
    assert parse(reasoning_effort="none").show_thinking is False
    assert (
        parse(stream_options={"include_usage": True}, stream=True).include_usage is True
    )
