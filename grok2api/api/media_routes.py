"""Serving cached media: ``GET /v1/files/{kind}/{name}``.

The route is public: browsers and chat clients open these links without any
credential, which is why the names are unguessable (see
:mod:`grok2api.media.names`). A name must have exactly the form the cache
gives its files, so ``..``, slashes (encoded or not), absolute paths and
anything else get the same 404, and the file is opened without following
symbolic links. Single byte ranges are honoured (players seek in videos with
them); the body is read in chunks in a worker thread as the client takes it.
"""

from __future__ import annotations

import re
from types import TracebackType

import trio
from quart import Blueprint, Response, request
from quart.wrappers.response import ResponseBody

from grok2api.errors import ApiError
from grok2api.gateway import current_gateway
from grok2api.media import FILES_PATH, MediaKind, OpenedFile, content_type

__all__ = ["media_routes", "parse_range"]

media_routes = Blueprint("media", __name__)

#: Bytes read from disk per piece of a response body.
CHUNK_BYTES = 256 * 1024

# Positions past any file are still positions (clamped, or a 416); only a
# number too long to be one is malformed.
_RANGE = re.compile(r"bytes=([0-9]{0,100})-([0-9]{0,100})")
_FOREVER = "public, max-age=31536000, immutable"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range ``header`` asks of a file of ``size`` bytes.

    Returns:
        ``(first, last)``, both inclusive, or ``None`` to send the whole
        file: no header, a unit other than bytes, several ranges, or a
        malformed one, all of which a server may ignore.

    Raises:
        ApiError: 416 when the range lies wholly outside the file.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(0) == "bytes=-":
        return None
    first_text, last_text = match.groups()
    if not first_text:
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(
        416,
        f"The requested range lies outside the file, which has {size} bytes.",
        code="range_not_satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
    )


def _not_found() -> ApiError:
    return ApiError(
        404,
        "There is no cached file at this address; it may have been cleaned up.",
        type="not_found_error",
        code="file_not_found",
    )


class _FileBody(ResponseBody):
    """A span of an opened file, read piece by piece in a worker thread."""

    def __init__(self, opened: OpenedFile, offset: int, length: int) -> None:
        self._opened = opened
        self._offset = offset
        self._left = length

    async def __aenter__(self) -> _FileBody:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._opened.close()

    def __aiter__(self) -> _FileBody:
        return self

    async def __anext__(self) -> bytes:
        if self._left <= 0:
            raise StopAsyncIteration
        wanted = min(CHUNK_BYTES, self._left)
        chunk = await trio.to_thread.run_sync(self._opened.read, self._offset, wanted)
        if not chunk:
            # Truncated under us; the server notices the short body.
            raise StopAsyncIteration
        self._offset += len(chunk)
        self._left -= len(chunk)
        return chunk


def _kind(raw: str) -> MediaKind | None:
    try:
        return MediaKind(raw)
    except ValueError:
        return None


@media_routes.get(f"{FILES_PATH}/<kind>/<path:name>")
async def serve_file(kind: str, name: str) -> Response:
    media_kind = _kind(kind)
    opened = None
    if media_kind is not None:
        opened = await current_gateway().media.open(media_kind, name)
    if media_kind is None or opened is None:
        raise _not_found()
    try:
        return _file_response(opened, media_kind, name)
    except BaseException:
        opened.close()
        raise


def _file_response(opened: OpenedFile, kind: MediaKind, name: str) -> Response:
    size = opened.size
    etag = f'"{name.partition(".")[0]}-{size:x}"'
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": _FOREVER,
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
    }
    matches = _etags(request.headers.get("if-none-match"))
    if etag in matches or "*" in matches:
        opened.close()
        return Response(b"", status=304, headers=headers)
    if_range = request.headers.get("if-range")
    span = None
    if if_range is None or if_range.strip() == etag:
        span = parse_range(request.headers.get("range"), size)
    first, last = span if span is not None else (0, size - 1)
    length = last - first + 1
    headers["Content-Length"] = str(length)
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    response = Response(
        _FileBody(opened, first, length),
        status=206 if span is not None else 200,
        headers=headers,
        content_type=content_type(kind, name),
    )
    response.timeout = None  # a large video to a slow client takes its time
    return response


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}
