"""Small HTTP helpers shared by the routes: reading JSON, answering errors."""

from __future__ import annotations

import json
import re
from typing import Any

from quart import Response, has_request_context, request

from grok2api.api.errors import envelope
from grok2api.errors import ApiError

__all__ = [
    "BODY_TOO_LARGE",
    "body_too_large",
    "decode_json_body",
    "json_error",
    "json_response",
    "query_int",
    "read_json_body",
]


BODY_TOO_LARGE = "The request body is larger than security.max_body_size_mb allows."


def body_too_large() -> ApiError:
    """The 413 for a body past ``security.max_body_size_mb``."""
    return ApiError(413, BODY_TOO_LARGE, code="request_too_large")


async def read_json_body(*, optional: bool = False) -> Any:
    """The request body decoded as JSON (``None`` for an empty optional body).

    Raises:
        ApiError: 400 when the body is not valid JSON (413 for an oversized
            body is raised by the server while it arrives).
    """
    return decode_json_body(await request.get_data(cache=False), optional=optional)


def decode_json_body(raw: bytes, *, optional: bool = False) -> Any:
    """``raw`` decoded as JSON (``None`` for an empty optional body).

    Raises:
        ApiError: 400 when the body is not valid JSON.
    """
    if not raw and optional:
        return None
    if not raw:
        raise ApiError(
            400,
            "The request body is empty; send a JSON object.",
            code="invalid_json",
            param="body",
        )
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"The request body is not valid JSON: {exc}.") from exc
    except (ValueError, RecursionError) as exc:
        # A number with thousands of digits, arrays nested thousands deep.
        raise _invalid(
            "The request body is JSON this server will not parse "
            "(a number too long or nesting too deep)."
        ) from exc
    if _ESCAPED_SURROGATE.search(raw) and not _encodes(body):
        raise _invalid(
            "The request body holds a lone UTF-16 surrogate escape, which is not text."
        )
    return body


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, code="invalid_json", param="body")


# JSON may spell a surrogate as an escape; a lone one decodes to a str that
# cannot be encoded again. Checking only when such an escape is present keeps
# the common path free of a second pass over the body.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _encodes(body: Any) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def json_error(error: ApiError) -> Response:
    """The error envelope as a response; within a request, the error type is
    also left in the ASGI scope as ``grok2api.error`` for the audit log."""
    if has_request_context():
        request.scope["grok2api.error"] = error.type
    return json_response(envelope(error), error.status, error.headers)


def query_int(name: str, default: int, low: int, high: int) -> int:
    """The query argument ``name`` as a plain decimal from ``low`` to
    ``high``, ``default`` when absent.

    Raises:
        ApiError: 400 naming ``name`` for anything else.
    """
    raw = request.args.get(name)
    if raw is None:
        return default
    # isdigit() alone also passes digits such as "²" that int() refuses.
    plain = raw.isascii() and raw.isdigit() and len(raw) <= 12
    value = int(raw) if plain else low - 1
    if not low <= value <= high:
        raise ApiError(
            400,
            f"'{name}' must be an integer from {low} to {high}.",
            code="invalid_value",
            param=name,
        )
    return value
