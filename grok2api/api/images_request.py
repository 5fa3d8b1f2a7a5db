"""Parsing and validating a ``POST /v1/images/generations`` body.

The body becomes a typed :class:`ImageRequest` or an :class:`ApiError` with
``param`` naming the offending field. What the upstream can act on is
mapped here: ``size`` becomes the Imagine socket's aspect ratio (an OpenAI
size, ``auto``, or a ratio such as ``16:9``), ``quality`` ``high`` or ``hd``
asks for its slower higher-quality variant. ``style`` (``vivid`` or
``natural``) and ``user`` are accepted and change nothing: Grok has no such
setting. Other OpenAI fields (``background``, ``output_format``,
``moderation``, ...) are accepted and ignored.
"""

from __future__ import annotations

from typing import Any

import attrs

from grok2api.errors import ApiError

__all__ = [
    "ASPECT_RATIOS",
    "CommonFields",
    "DEFAULT_IMAGE_MODEL",
    "ImageRequest",
    "MAX_IMAGES",
    "MAX_PARTIAL_IMAGES",
    "QUALITIES",
    "SIZES",
    "common_fields",
    "int_field",
    "parse_image_request",
]

DEFAULT_IMAGE_MODEL = "grok-imagine-1.0"
MAX_IMAGES = 10
MAX_PARTIAL_IMAGES = 3
_FORMATS = ("url", "b64_json")
_IGNORED_STRINGS = ("style", "user")

#: OpenAI sizes and the upstream aspect ratio each one maps to.
SIZES = {
    "auto": "auto",
    "256x256": "1:1",
    "512x512": "1:1",
    "1024x1024": "1:1",
    "1536x1024": "3:2",
    "1024x1536": "2:3",
    "1792x1024": "16:9",
    "1024x1792": "9:16",
}
#: Ratios the upstream knows, also accepted as ``size`` directly.
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "16:9", "9:16")
#: Accepted ``quality`` values; the first two ask for the pro variant.
QUALITIES = ("high", "hd", "standard", "medium", "low", "auto")
_PRO_QUALITIES = ("high", "hd")


@attrs.frozen
class ImageRequest:
    """A validated request. ``size`` and ``quality`` keep the client's words
    for the answer; ``aspect_ratio`` and ``enable_pro`` are what goes
    upstream."""

    prompt: str
    model: str = DEFAULT_IMAGE_MODEL
    n: int = 1
    response_format: str = "url"
    size: str = "1024x1024"
    aspect_ratio: str = "1:1"
    quality: str = "auto"
    enable_pro: bool = False
    stream: bool = False
    partial_images: int = 0


def _bad(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def _optional_string(body: dict[str, Any], name: str, default: str) -> str:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _bad(f"'{name}' must be a string.", name)
    return value


def _aspect_ratio(size: str) -> str:
    if size in SIZES:
        return SIZES[size]
    if size in ASPECT_RATIOS:
        return size
    accepted = ", ".join([*SIZES, *ASPECT_RATIOS])
    raise _bad(f"'size' {size!r} is not supported; use one of: {accepted}.", "size")


def int_field(
    values: dict[str, Any], name: str, default: int, high: int, low: int = 1
) -> int:
    """``values[name]`` as an integer from ``low`` to ``high``, ``default``
    when absent.

    Raises:
        ApiError: 400 naming ``name`` for anything else (booleans included).
    """
    value = values.get(name)
    if value is None:
        return default
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not low <= value <= high
    ):
        raise _bad(
            f"'{name}' must be an integer from {low} to {high}, got {value!r}.", name
        )
    return value


@attrs.frozen
class CommonFields:
    """The fields image generation and image edits share, validated."""

    prompt: str
    model: str
    n: int
    response_format: str
    stream: bool
    partial_images: int


def common_fields(values: dict[str, Any], default_model: str) -> CommonFields:
    """Validate ``prompt``, ``model``, ``n``, ``response_format``,
    ``stream`` and ``partial_images``.

    Raises:
        ApiError: 400 with ``param`` set to the first invalid field.
    """
    prompt = values.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad(
            "'prompt' is required and must be a non-blank string.",
            "prompt",
            "missing_required_parameter",
        )
    model = values.get("model")
    if model is None:
        model = default_model
    if not isinstance(model, str) or not model:
        raise _bad("'model' must be a non-empty string.", "model")
    n = int_field(values, "n", 1, MAX_IMAGES)
    response_format = values.get("response_format")
    if response_format is None:
        response_format = "url"
    if response_format not in _FORMATS:
        raise _bad(
            f"'response_format' must be 'url' or 'b64_json', got {response_format!r}.",
            "response_format",
        )
    stream = values.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean.", "stream")
    partial_images = int_field(values, "partial_images", 0, MAX_PARTIAL_IMAGES, 0)
    return CommonFields(prompt, model, n, response_format, bool(stream), partial_images)


def parse_image_request(body: Any) -> ImageRequest:
    """Validate a decoded JSON body.

    Raises:
        ApiError: 400 with ``param`` set to the first invalid field.
    """
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "body", "invalid_json")
    common = common_fields(body, DEFAULT_IMAGE_MODEL)
    size = _optional_string(body, "size", "1024x1024")
    aspect_ratio = _aspect_ratio(size)
    quality = _optional_string(body, "quality", "auto")
    if quality not in QUALITIES:
        raise _bad(
            f"'quality' {quality!r} is not supported; use one of: "
            f"{', '.join(QUALITIES)}.",
            "quality",
        )
    for name in _IGNORED_STRINGS:
        _optional_string(body, name, "")
    return ImageRequest(
        prompt=common.prompt,
        model=common.model,
        n=common.n,
        response_format=common.response_format,
        size=size,
        aspect_ratio=aspect_ratio,
        quality=quality,
        enable_pro=quality in _PRO_QUALITIES,
        stream=common.stream,
        partial_images=common.partial_images,
    )
