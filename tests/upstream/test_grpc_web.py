"""gRPC-web framing: the exact bytes of the account calls, and every shape of
answer (trailer frame, trailers-only headers, base64 text, cut frames)."""

from __future__ import annotations

import base64

import pytest

from grok2api.errors import (
    TokenRejected,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRequestRejected,
    UpstreamUnavailable,
)
from grok2api.upstream.account import NSFW_REQUEST, TOS_REQUEST
from grok2api.upstream.grpc_web import (
    GrpcReply,
    data_frame,
    decode_frames,
    grpc_error,
    length_field,
    parse_reply,
    parse_trailer,
    trailer_frame,
    varint,
    varint_field,
)

GRPC = {"content-type": "application/grpc-web+proto"}


def test_grpc_tos_request_is_the_seven_bytes_the_web_app_sends() -> None:
    assert data_frame(TOS_REQUEST) == bytes.fromhex("00000000021001")


def test_grpc_nsfw_request_is_the_37_bytes_the_web_app_sends() -> None:
    expected = bytes.fromhex("00000000200a021001121a0a18") + b"always_show_nsfw_content"
    assert data_frame(NSFW_REQUEST) == expected
    assert len(expected) == 37


def test_grpc_varints_use_seven_bits_per_byte() -> None:
    assert varint(0) == b"\x00"
    assert varint(127) == b"\x7f"
    assert varint(128) == b"\x80\x01"
    assert varint(300) == b"\xac\x02"
    assert varint_field(2, 1) == b"\x10\x01"
    assert length_field(1, b"ab") == b"\x0a\x02ab"
    with pytest.raises(ValueError, match="non-negative"):
        varint(-1)


def test_grpc_frames_carry_a_flag_byte_and_big_endian_length() -> None:
    trailer = trailer_frame({"grpc-status": "0"})
    assert trailer[:5] == b"\x80\x00\x00\x00\x10"
    assert trailer[5:] == b"grpc-status: 0\r\n"
    body = data_frame(b"") + data_frame(b"\x08\x01") + trailer
    assert decode_frames(body) == [
        (0x00, b""),
        (0x00, b"\x08\x01"),
        (0x80, b"grpc-status: 0\r\n"),
    ]


def test_grpc_status_from_the_trailer_frame_with_percent_decoded_message() -> None:
    body = data_frame(b"") + trailer_frame(
        {"grpc-status": "9", "grpc-message": "birth%20date%20required%3A%2018%2B"}
    )
    reply = parse_reply(GRPC, body)
    assert reply == GrpcReply((b"",), 9, "birth date required: 18+")
    assert not reply.ok


def test_grpc_status_in_headers_when_the_answer_is_trailers_only() -> None:
    reply = parse_reply(
        {**GRPC, "grpc-status": "16", "grpc-message": "no%20session"}, b""
    )
    assert (reply.status, reply.message, reply.messages) == (16, "no session", ())


def test_grpc_trailer_frame_wins_over_headers() -> None:
    body = trailer_frame({"grpc-status": "0"})
    assert parse_reply({**GRPC, "grpc-status": "13"}, body).ok


def test_grpc_missing_status_means_ok() -> None:
    assert parse_reply(GRPC, data_frame(b"\x08\x01")).ok
    assert parse_reply(GRPC, b"").ok


def test_grpc_web_text_bodies_are_base64_decoded_chunk_by_chunk() -> None:
    frames = data_frame(b"\x08\x01"), trailer_frame({"grpc-status": "8"})
    # Each chunk padded on its own, as a streaming server sends them.
    text = b"".join(base64.b64encode(f) for f in frames)
    assert b"=" in text[:-2]
    reply = parse_reply({"content-type": "application/grpc-web-text"}, text)
    assert reply == GrpcReply((b"\x08\x01",), 8, "")
    # Without the content type, a body of base64 characters only is text too.
    assert parse_reply({}, text + b"\r\n").status == 8


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00\x00",  # header cut short
        b"\x00\x00\x00\x00\x05abc",  # payload cut short
        b"\x01\x00\x00\x00\x01x",  # compressed
    ],
)
def test_grpc_broken_frames_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        parse_reply(GRPC, body)


def test_grpc_bad_base64_and_bad_status_are_protocol_errors() -> None:
    with pytest.raises(UpstreamProtocolError, match="base64"):
        parse_reply({"content-type": "application/grpc-web-text"}, b"A")
    with pytest.raises(UpstreamProtocolError, match="not a number"):
        parse_reply({**GRPC, "grpc-status": "ok"}, b"")


def test_grpc_trailer_lines_are_trimmed_and_lower_cased() -> None:
    assert parse_trailer(b"Grpc-Status:  3 \r\ngrpc-message:x\r\nnoise\r\n") == {
        "grpc-status": "3",
        "grpc-message": "x",
    }


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        (16, "", TokenRejected),
        (7, "blocked-user", TokenRejected),
        (8, "", UpstreamRateLimited),
        (14, "", UpstreamUnavailable),
        (9, "", UpstreamRequestRejected),
        (7, "not allowed", UpstreamRequestRejected),
    ],
)
def test_grpc_statuses_are_classified_like_other_upstream_failures(
    status: int, message: str, error: type[Exception]
) -> None:
    classified = grpc_error(GrpcReply((), status, message), "SetTosAcceptedVersion")
    assert type(classified) is error
    assert f"gRPC status {status}" in str(classified)
    if message == "blocked-user":
        assert isinstance(classified, TokenRejected) and classified.blocked
