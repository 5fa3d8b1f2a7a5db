"""Reading and validating a ``POST /v1/images/edits`` request.

Two body shapes are accepted. ``multipart/form-data`` as the OpenAI SDKs send
``images.edit``: one ``image`` file, or ``image[]`` repeated for several,
every other field a text part. And JSON, where ``image`` is a ``data:`` (or
``http(s)``) URL or a list of them, or ``images`` is the newer list of
``{"image_url": ...}`` objects.

Everything is checked here, before a token is leased: the fields, how many
images there are, each image's size against ``image.edit_max_image_mb`` and
its type by its first bytes (PNG, JPEG, WebP or GIF, whatever the client
declared). The multipart body is parsed in memory, bounded by the body cap
(``security.max_body_size_mb``) that the server applies while it arrives;
URLs in a JSON body are fetched only through the user-URL guard
(:mod:`grok2api.security.fetch`). ``mask`` (and ``markup``) are refused: the
upstream's edit has no mask, and ignoring it would edit the whole image.
"""

from __future__ import annotations

import io
from typing import IO, Any

import attrs
import trio
from quart import request
from quart_trio.formparser import TrioFormDataParser
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from grok2api.api.chat_request import MediaPart
from grok2api.api.http import read_json_body
from grok2api.api.images_request import common_fields
from grok2api.api.media_input import load_media
from grok2api.config import Settings
from grok2api.errors import ApiError

__all__ = [
    "DEFAULT_EDIT_MODEL",
    "EditImage",
    "EditRequest",
    "load_edit_images",
    "read_edit_request",
    "sniff_image_type",
]

DEFAULT_EDIT_MODEL = "grok-imagine-1.0-edit"
_IGNORED_STRINGS = ("style", "user", "background")
#: Inputs the upstream edit cannot honour; refused rather than ignored.
_UNSUPPORTED_FILES = ("mask", "markup")
_IMAGE_FIELDS = ("image", "image[]")
#: Form bodies; a urlencoded one can carry only URLs, no files.
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@attrs.frozen
class EditImage:
    """An input image, checked: its bytes and the type they really are."""

    param: str
    mime_type: str
    content: bytes = attrs.field(repr=False)

    @property
    def file_name(self) -> str:
        return "image." + self.mime_type.removeprefix("image/")


@attrs.frozen
class EditRequest:
    """A valid edit request; its images are not read yet (``sources``), so
    the model can be checked before anything is fetched."""

    prompt: str
    sources: tuple[MediaPart | EditImage, ...]
    model: str = DEFAULT_EDIT_MODEL
    n: int = 1
    response_format: str = "url"
    #: The client's words, echoed in stream events; the upstream's edit has
    #: no size or quality setting.
    size: str = "auto"
    quality: str = "auto"
    stream: bool = False
    partial_images: int = 0


def _bad(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def sniff_image_type(content: bytes) -> str | None:
    """The image type ``content`` starts like, or ``None``."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


async def read_edit_request(settings: Settings) -> EditRequest:
    """Read and validate the current request's body, multipart or JSON.

    Raises:
        ApiError: 400 naming the first invalid field (413 for a body over the
            cap is raised by the server while the body arrives).
    """
    if request.mimetype in _FORM_TYPES:
        fields, files = await _read_form()
        return _from_form(fields, files, settings)
    return _from_json(await read_json_body(), settings)


async def load_edit_images(
    asked: EditRequest, settings: Settings
) -> tuple[EditImage, ...]:
    """Fetch or decode every source and check each image's size and type.

    Fetched URLs count against the body cap together, as uploaded files do.

    Raises:
        ApiError: 400 naming the first image that cannot be used.
        MediaFetchError: a URL could not be fetched or a data URL decoded.
    """
    max_bytes = settings.image.edit_max_image_mb * 1024 * 1024
    max_total = settings.security.max_body_size_mb * 1024 * 1024
    images: list[EditImage] = []
    total = 0
    for source in asked.sources:
        if isinstance(source, MediaPart):
            (item,) = await load_media(
                [source],
                max_bytes=max_bytes,
                timeout=settings.network.timeout,
                allow_hosts=settings.security.media_fetch_allow_hosts,
                proxy=settings.network.base_proxy_url or None,
            )
            source = EditImage(item.param, item.mime_type, item.content)
        image = _checked(source, max_bytes)
        total += len(image.content)
        if total > max_total:
            raise _bad(
                f"The images add up to more than {max_total // (1024 * 1024)} MB "
                "(security.max_body_size_mb); send fewer or smaller images.",
                image.param,
                "image_too_large",
            )
        images.append(image)
    return tuple(images)


def _checked(image: EditImage, max_bytes: int) -> EditImage:
    if not image.content:
        raise _bad(f"The image at {image.param} is empty.", image.param)
    if len(image.content) > max_bytes:
        raise _bad(
            f"The image at {image.param} is {len(image.content)} bytes; one image "
            f"may have at most {max_bytes // (1024 * 1024)} MB "
            "(image.edit_max_image_mb).",
            image.param,
            "image_too_large",
        )
    mime = sniff_image_type(image.content)
    if mime is None:
        raise _bad(
            f"The file at {image.param} is not a PNG, JPEG, WebP or GIF image.",
            image.param,
            "invalid_image_format",
        )
    return EditImage(image.param, mime, image.content)


# -- multipart ---------------------------------------------------------------


def _in_memory(
    _total: int | None,
    _content_type: str | None,
    _filename: str | None,
    _length: int | None = None,
) -> IO[bytes]:
    # The body cap bounds the whole form; memory avoids blocking disk writes
    # on the event loop that the default spooled files would make.
    return io.BytesIO()


async def _read_form() -> tuple[MultiDict[str, str], MultiDict[str, Any]]:
    parser = TrioFormDataParser(
        max_content_length=request.max_content_length,
        # Text parts share the body cap; a long prompt is not a 413.
        max_form_memory_size=request.max_content_length,
        max_form_parts=request.max_form_parts,
        silent=False,
        stream_factory=_in_memory,
    )
    timeout = request.body_timeout
    try:
        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            return await parser.parse(
                request.body,
                request.mimetype,
                request.content_length,
                request.mimetype_params,
            )
    except ValueError as exc:
        raise _bad(
            f"The form body cannot be read: {exc}.", "body", "invalid_form"
        ) from exc
    except RequestEntityTooLarge:
        # A body within the cap is refused only for its number of parts;
        # the 413's message would blame the body's size.
        length, cap = request.content_length, request.max_content_length
        if length is not None and cap is not None and length <= cap:
            raise _bad(
                f"The form has more than {request.max_form_parts} parts.",
                "body",
                "invalid_form",
            ) from None
        raise
    raise RequestTimeout()


def _from_form(
    fields: MultiDict[str, str], files: MultiDict[str, Any], settings: Settings
) -> EditRequest:
    for name in _UNSUPPORTED_FILES:
        if name in files or fields.get(name):
            raise _unsupported_file(name)
    sources: list[MediaPart | EditImage] = []
    for name in _IMAGE_FIELDS:
        for upload in files.getlist(name):
            sources.append(EditImage(name, "", upload.stream.read()))
        for text in fields.getlist(name):
            # A text part instead of a file: a data: or http(s) URL.
            if text:
                sources.append(MediaPart(param=name, kind="image", url=text))
    _rename_params(sources)
    values: dict[str, Any] = {
        name: value
        for name, value in fields.items()
        if value != "" and name not in _IMAGE_FIELDS
    }
    for name in ("n", "partial_images"):
        if name in values:
            values[name] = _form_int(values[name], name)
    if "stream" in values:
        values["stream"] = _form_bool(values["stream"], "stream")
    return _validated(values, sources, settings)


def _rename_params(sources: list[MediaPart | EditImage]) -> None:
    """Name each image ``image`` when there is one, ``image[<i>]`` otherwise."""
    if len(sources) == 1:
        sources[0] = attrs.evolve(sources[0], param="image")
        return
    for index, source in enumerate(sources):
        sources[index] = attrs.evolve(source, param=f"image[{index}]")


def _form_int(text: str, param: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise _bad(f"'{param}' must be an integer, got {text[:40]!r}.", param) from None


def _form_bool(text: str, param: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise _bad(f"'{param}' must be true or false, got {text[:40]!r}.", param)
    return value == "true"


# -- JSON --------------------------------------------------------------------


def _from_json(body: Any, settings: Settings) -> EditRequest:
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "body", "invalid_json")
    for name in _UNSUPPORTED_FILES:
        if body.get(name) is not None:
            raise _unsupported_file(name)
    image, images = body.get("image"), body.get("images")
    if image is not None and images is not None:
        raise _bad("Send either 'image' or 'images', not both.", "images")
    sources: list[MediaPart | EditImage] = []
    if isinstance(image, str):
        sources.append(MediaPart(param="image", kind="image", url=image))
    elif isinstance(image, list):
        for index, url in enumerate(image):
            param = f"image[{index}]"
            if not isinstance(url, str) or not url:
                raise _bad(f"'{param}' must be a data: or http(s) URL.", param)
            sources.append(MediaPart(param=param, kind="image", url=url))
    elif image is not None:
        raise _bad("'image' must be a URL or a list of URLs.", "image")
    if images is not None:
        sources.extend(_listed_images(images))
    return _validated(body, sources, settings)


def _listed_images(images: Any) -> list[MediaPart]:
    if not isinstance(images, list):
        raise _bad("'images' must be a list of {'image_url': ...} objects.", "images")
    parts = []
    for index, item in enumerate(images):
        param = f"images[{index}].image_url"
        url = item.get("image_url") if isinstance(item, dict) else None
        if isinstance(url, dict):
            url = url.get("url")
        if isinstance(item, dict) and item.get("file_id") is not None:
            raise _bad(
                "File ids are not supported; send the image as 'image_url' "
                "(a data: or http(s) URL).",
                f"images[{index}].file_id",
                "unsupported_parameter",
            )
        if not isinstance(url, str) or not url:
            raise _bad(f"'{param}' must be a data: or http(s) URL.", param)
        parts.append(MediaPart(param=param, kind="image", url=url))
    return parts


# -- shared ------------------------------------------------------------------


def _unsupported_file(name: str) -> ApiError:
    return _bad(
        f"'{name}' is not supported: Grok's image edit has no mask and edits "
        "the whole image; describe the change in the prompt instead.",
        name,
        "unsupported_parameter",
    )


def _validated(
    values: dict[str, Any], sources: list[MediaPart | EditImage], settings: Settings
) -> EditRequest:
    common = common_fields(values, DEFAULT_EDIT_MODEL)
    for name in (*_IGNORED_STRINGS, "size", "quality"):
        if values.get(name) is not None and not isinstance(values[name], str):
            raise _bad(f"'{name}' must be a string.", name)
    if not sources:
        raise _bad(
            "'image' is required: send one or more image files (or data: URLs).",
            "image",
            "missing_required_parameter",
        )
    most = settings.image.edit_max_images
    if len(sources) > most:
        raise _bad(
            f"{len(sources)} images were sent; an edit takes at most {most} "
            "(image.edit_max_images).",
            "image",
            "too_many_images",
        )
    return EditRequest(
        common.prompt,
        tuple(sources),
        common.model,
        common.n,
        common.response_format,
        size=values.get("size") or "auto",
        quality=values.get("quality") or "auto",
        stream=common.stream,
        partial_images=common.partial_images,
    )
