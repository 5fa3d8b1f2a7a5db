"""Images and files in chat messages: decoded or fetched before any token is
leased, so a bad part costs nothing and is reported as a 400 naming it."""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Collection, Sequence

import attrs

from grok2api.api.chat_request import MediaPart
from grok2api.errors import MediaFetchError
from grok2api.security.fetch import fetch_user_url

__all__ = ["LoadedMedia", "load_media"]


@attrs.frozen
class LoadedMedia:
    param: str
    filename: str
    mime_type: str
    content: bytes


def _decode_base64(data: str, param: str) -> bytes:
    try:
        return base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaFetchError(
            f"The content at {param} is not valid base64.", param=param
        ) from exc


def _from_data_url(part: MediaPart, url: str) -> LoadedMedia:
    header, sep, data = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise MediaFetchError(
            f"The data URL at {part.param} must be base64-encoded.", param=part.param
        )
    mime = header[len("data:") : -len(";base64")] or "application/octet-stream"
    content = _decode_base64(data, part.param)
    return LoadedMedia(
        part.param, part.filename or _filename(part.kind, mime), mime, content
    )


def _filename(kind: str, mime: str) -> str:
    extension = mimetypes.guess_extension(mime) or ".bin"
    return f"{kind}{extension}"


async def load_media(
    parts: Sequence[MediaPart],
    *,
    max_bytes: int,
    timeout: float,
    allow_hosts: Collection[str],
    proxy: str | None,
) -> list[LoadedMedia]:
    """Decode or fetch every part, in order.

    Raises:
        MediaFetchError: for the first part that cannot be used.
    """
    loaded: list[LoadedMedia] = []
    for part in parts:
        if part.url is not None and part.url.startswith("data:"):
            item = _from_data_url(part, part.url)
        elif part.url is not None:
            fetched = await fetch_user_url(
                part.url,
                param=part.param,
                max_bytes=max_bytes,
                timeout=timeout,
                allow_hosts=allow_hosts,
                proxy=proxy,
            )
            item = LoadedMedia(
                part.param,
                part.filename or fetched.filename,
                fetched.mime_type,
                fetched.content,
            )
        else:
            mime = part.mime_type or "application/octet-stream"
            content = _decode_base64(part.data or "", part.param)
            item = LoadedMedia(
                part.param, part.filename or _filename(part.kind, mime), mime, content
            )
        if not item.content:
            raise MediaFetchError(
                f"The content at {part.param} is empty.", param=part.param
            )
        if len(item.content) > max_bytes:
            raise MediaFetchError(
                f"The file at {part.param} is larger than {max_bytes} bytes.",
                param=part.param,
            )
        loaded.append(item)
    return loaded
