"""What a cached media file is called and what it may contain.

A file's name is the first 128 bits of an HMAC of the asset's upstream URL,
in hex, plus an extension taken from the file's own first bytes. The HMAC key
is shared by every worker through storage, so all of them give one asset the
same name (and find each other's downloads), while nobody without the key can
guess the name of an asset from its URL. Only the few formats below are ever
stored or served: a download whose bytes are not one of them is refused, so
the gateway never serves HTML or SVG from its own origin.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re

__all__ = [
    "SNIFF_BYTES",
    "STEM_LENGTH",
    "MediaKind",
    "content_type",
    "extensions",
    "is_cached_name",
    "is_part_name",
    "name_stem",
    "part_name",
    "sniff_extension",
]

#: Hex digits of a name before its extension (128 bits).
STEM_LENGTH = 32
#: Bytes of a file's start that decide its format.
SNIFF_BYTES = 12
#: Every file being written starts with this; no cached name does.
PART_PREFIX = "."
PART_SUFFIX = ".part"


class MediaKind(enum.StrEnum):
    """The two kinds of cached media; each has its own folder and limit."""

    IMAGE = "image"
    VIDEO = "video"


_CONTENT_TYPES: dict[MediaKind, dict[str, str]] = {
    MediaKind.IMAGE: {
        "jpg": "image/jpeg",
        "png": "image/png",
        "gif": "image/gif",
        "webp": "image/webp",
    },
    MediaKind.VIDEO: {"mp4": "video/mp4", "webm": "video/webm"},
}

_NAME_PATTERNS = {
    kind: re.compile(rf"[0-9a-f]{{{STEM_LENGTH}}}\.(?:{'|'.join(types)})")
    for kind, types in _CONTENT_TYPES.items()
}


def name_stem(key: bytes, asset_url: str) -> str:
    """The name of ``asset_url``'s file without its extension."""
    digest = hmac.new(key, asset_url.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:STEM_LENGTH]


def extensions(kind: MediaKind) -> tuple[str, ...]:
    """The extensions a file of ``kind`` may have."""
    return tuple(_CONTENT_TYPES[kind])


def is_cached_name(kind: MediaKind, name: str) -> bool:
    """Whether ``name`` has exactly the form of a cached file of ``kind``."""
    return _NAME_PATTERNS[kind].fullmatch(name) is not None


def content_type(kind: MediaKind, name: str) -> str:
    """The media type to serve the cached file ``name`` with."""
    return _CONTENT_TYPES[kind][name.rpartition(".")[2]]


def sniff_extension(kind: MediaKind, head: bytes) -> str | None:
    """The extension for a file of ``kind`` starting with ``head``, or
    ``None`` when those bytes are not a format ``kind`` allows."""
    if kind is MediaKind.IMAGE:
        if head.startswith(b"\xff\xd8\xff"):
            return "jpg"
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return "png"
        if head.startswith((b"GIF87a", b"GIF89a")):
            return "gif"
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
            return "webp"
        return None
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    return None


def part_name(stem: str, nonce: str) -> str:
    """The name of a file still being written for ``stem``."""
    return f"{PART_PREFIX}{stem}.{nonce}{PART_SUFFIX}"


def is_part_name(name: str) -> bool:
    return name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX)
