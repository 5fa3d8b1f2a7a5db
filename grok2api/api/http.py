"""Small HTTP helpers shared by the routes: reading JSON, answering errors."""

from __future__ import annotations

import json
from typing import Any

from quart import Response, request

from grok2api.api.errors import envelope
from grok2api.errors import ApiError

__all__ = ["json_error", "json_response", "read_json_body"]


async def read_json_body(*, optional: bool = False) -> Any:
    """The request body decoded as JSON (``None`` for an empty optional body).

    Raises:
        ApiError: 400 when the body is not valid JSON (413 for an oversized
            body is raised by the server while it arrives).
    """
    raw = await request.get_data(cache=False)
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
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(
            400,
            f"The request body is not valid JSON: {exc}.",
            code="invalid_json",
            param="body",
        ) from exc


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
    return json_response(envelope(error), error.status, error.headers)
