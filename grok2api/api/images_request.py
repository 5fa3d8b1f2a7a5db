"""Parsing and validating a ``POST /v1/images/generations`` body.

The body becomes a typed :class:`ImageRequest` or an :class:`ApiError` with
``param`` naming the offending field. ``size``, ``quality``, ``style`` and
``user`` must be strings when present but change nothing: the upstream's
HTTP image path has no field for them. Other OpenAI fields (``background``,
``output_format``, ``moderation``, ...) are accepted and ignored.
"""

from __future__ import annotations

from typing import Any

import attrs

from grok2api.errors import ApiError

__all__ = ["DEFAULT_IMAGE_MODEL", "MAX_IMAGES", "ImageRequest", "parse_image_request"]

DEFAULT_IMAGE_MODEL = "grok-imagine-1.0"
MAX_IMAGES = 10
_FORMATS = ("url", "b64_json")
_IGNORED_STRINGS = ("size", "quality", "style", "user")


@attrs.frozen
class ImageRequest:
    prompt: str
    model: str = DEFAULT_IMAGE_MODEL
    n: int = 1
    response_format: str = "url"


def _bad(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def parse_image_request(body: Any) -> ImageRequest:
    """Validate a decoded JSON body.

    Raises:
        ApiError: 400 with ``param`` set to the first invalid field.
    """
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "body", "invalid_json")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad(
            "'prompt' is required and must be a non-blank string.",
            "prompt",
            "missing_required_parameter",
        )
    model = body.get("model")
    if model is None:
        model = DEFAULT_IMAGE_MODEL
    if not isinstance(model, str) or not model:
        raise _bad("'model' must be a non-empty string.", "model")
    n = body.get("n")
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_IMAGES:
        raise _bad(f"'n' must be an integer from 1 to {MAX_IMAGES}, got {n!r}.", "n")
    response_format = body.get("response_format")
    if response_format is None:
        response_format = "url"
    if response_format not in _FORMATS:
        raise _bad(
            f"'response_format' must be 'url' or 'b64_json', got {response_format!r}.",
            "response_format",
        )
    for name in _IGNORED_STRINGS:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise _bad(f"'{name}' must be a string.", name)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean.", "stream")
    if stream:
        raise _bad(
            "Streaming image generation is not supported yet; send "
            "'stream': false or leave it out.",
            "stream",
            "unsupported_value",
        )
    return ImageRequest(prompt, model, n, response_format)
