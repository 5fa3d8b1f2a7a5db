"""gRPC-web framing, as the Grok web app's account calls use it.

A gRPC-web body is a run of frames: one flag byte (``0x00`` data, ``0x80``
trailers; bit ``0x01`` marks a compressed payload, which the web app never
sends), a big-endian 32-bit payload length, the payload. Data frames carry
protobuf messages; the trailer frame carries ``name: value`` lines with
``grpc-status`` and a percent-encoded ``grpc-message``. A server may send the
status as HTTP headers instead (a "trailers-only" answer), and may encode the
whole body as base64 text (``application/grpc-web-text``).

The two messages the gateway writes are tiny, so the few protobuf fields they
need are encoded here by hand rather than through a protobuf library.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import urllib.parse
from collections.abc import Mapping

import attrs

from grok2api.errors import (
    TokenRejected,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRequestRejected,
    UpstreamUnavailable,
)

__all__ = [
    "CONTENT_TYPE",
    "GrpcReply",
    "data_frame",
    "decode_frames",
    "grpc_error",
    "length_field",
    "parse_reply",
    "parse_trailer",
    "trailer_frame",
    "varint_field",
]

CONTENT_TYPE = "application/grpc-web+proto"

DATA_FLAG = 0x00
TRAILER_FLAG = 0x80
COMPRESSED_FLAG = 0x01
_HEADER = struct.Struct(">BI")
_BASE64_BODY = re.compile(rb"[A-Za-z0-9+/=\s]+")
# grpc-web-text may be several base64 chunks one after the other, each with
# its own padding, so it is decoded chunk by chunk.
_BASE64_CHUNK = re.compile(rb"[A-Za-z0-9+/]+={0,2}")

# gRPC status codes the account calls can answer with.
_PERMISSION_DENIED = 7
_RESOURCE_EXHAUSTED = 8
_UNAUTHENTICATED = 16
_SERVER_SIDE = frozenset({2, 4, 10, 13, 14, 15})
_BLOCKED_MARKERS = ("blocked-user", "user is blocked")


def varint(value: int) -> bytes:
    """``value`` as a protobuf base-128 varint."""
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    """A protobuf field of wire type 0 (varint, booleans included)."""
    return varint(number << 3) + varint(value)


def length_field(number: int, payload: bytes) -> bytes:
    """A protobuf field of wire type 2 (a string, bytes or a nested message)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def data_frame(message: bytes) -> bytes:
    """One uncompressed data frame holding ``message``."""
    return _HEADER.pack(DATA_FLAG, len(message)) + message


def trailer_frame(trailers: Mapping[str, str]) -> bytes:
    """The trailer frame for ``trailers`` (names as given, CRLF-separated)."""
    text = "".join(f"{name}: {value}\r\n" for name, value in trailers.items())
    payload = text.encode("ascii")
    return _HEADER.pack(TRAILER_FLAG, len(payload)) + payload


def _unwrap_text(body: bytes, content_type: str) -> bytes:
    text_type = "grpc-web-text" in content_type.lower()
    looks_text = bool(body) and _BASE64_BODY.fullmatch(body) is not None
    if not (text_type or looks_text):
        return body
    try:
        return b"".join(
            base64.b64decode(chunk, validate=True)
            for chunk in _BASE64_CHUNK.findall(body)
        )
    except (binascii.Error, ValueError) as exc:
        raise UpstreamProtocolError(
            "Grok's gRPC-web text answer is not valid base64."
        ) from exc


def decode_frames(body: bytes) -> list[tuple[int, bytes]]:
    """Split a binary gRPC-web body into ``(flags, payload)`` pairs.

    Raises:
        UpstreamProtocolError: a frame is cut short or compressed.
    """
    frames = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < _HEADER.size:
            raise UpstreamProtocolError("Grok's gRPC-web answer ends inside a frame.")
        flags, length = _HEADER.unpack_from(body, offset)
        offset += _HEADER.size
        if len(body) - offset < length:
            raise UpstreamProtocolError("Grok's gRPC-web answer ends inside a frame.")
        if flags & COMPRESSED_FLAG:
            raise UpstreamProtocolError(
                "Grok sent a compressed gRPC-web frame, which the gateway never "
                "asks for."
            )
        frames.append((flags, body[offset : offset + length]))
        offset += length
    return frames


def parse_trailer(payload: bytes) -> dict[str, str]:
    """The ``name: value`` lines of a trailer frame; names in lower case."""
    trailers = {}
    for line in payload.decode("utf-8", "replace").splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip():
            trailers[name.strip().lower()] = value.strip()
    return trailers


@attrs.frozen
class GrpcReply:
    """A decoded gRPC-web answer.

    ``status`` is the gRPC status (``0`` when the server sent none, which the
    web app also takes as success); ``message`` the decoded ``grpc-message``.
    """

    messages: tuple[bytes, ...]
    status: int
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 0


def parse_reply(headers: Mapping[str, str], body: bytes) -> GrpcReply:
    """Decode a gRPC-web answer from its headers (lower-case names) and body.

    A status in the trailer frame wins over one in the headers.

    Raises:
        UpstreamProtocolError: the body is not gRPC-web, or the status is not
            a number.
    """
    frames = decode_frames(_unwrap_text(body, headers.get("content-type", "")))
    trailers = {
        name: value
        for name in ("grpc-status", "grpc-message")
        if (value := headers.get(name)) is not None
    }
    for flags, payload in frames:
        if flags & TRAILER_FLAG:
            trailers.update(parse_trailer(payload))
    raw_status = trailers.get("grpc-status", "0").strip() or "0"
    if not raw_status.isdigit():
        raise UpstreamProtocolError(
            f"Grok's gRPC status {raw_status[:20]!r} is not a number."
        )
    return GrpcReply(
        messages=tuple(p for flags, p in frames if not flags & TRAILER_FLAG),
        status=int(raw_status),
        message=urllib.parse.unquote(trailers.get("grpc-message", "")),
    )


def grpc_error(reply: GrpcReply, call: str) -> UpstreamError:
    """The classified error for a failed gRPC reply to ``call``."""
    detail = f"gRPC status {reply.status}" + (
        f": {reply.message[:200]}" if reply.message else ""
    )
    lowered = reply.message.lower()
    if reply.status == _UNAUTHENTICATED or any(m in lowered for m in _BLOCKED_MARKERS):
        blocked = any(m in lowered for m in _BLOCKED_MARKERS)
        return TokenRejected(
            f"Grok refused the token on {call} ({detail}).", blocked=blocked
        )
    if reply.status == _RESOURCE_EXHAUSTED:
        return UpstreamRateLimited(f"Grok rate-limited {call} ({detail}).", status=None)
    if reply.status in _SERVER_SIDE:
        return UpstreamUnavailable(f"Grok failed {call} on its side ({detail}).")
    if reply.status == _PERMISSION_DENIED:
        return UpstreamRequestRejected(
            f"Grok does not let this account call {call} ({detail})."
        )
    return UpstreamRequestRejected(f"Grok refused {call} ({detail}).")
