"""Refuse a request whose ``Host`` header cannot name a host.

Werkzeug encodes the host with IDNA while Quart builds the request context,
before any route or error handler runs; a host with an empty label (``a..b``,
``.``) or one longer than 63 characters fails there, and the server would
answer a bare 500. This ASGI wrapper answers such a request with a 400 in the
OpenAI error envelope instead.
"""

from __future__ import annotations

import json
from typing import Any

from grok2api.api.errors import envelope
from grok2api.errors import ApiError

__all__ = ["RejectBadHost"]


def _is_usable(host: bytes) -> bool:
    # The same test Werkzeug applies: the name without its port, as IDNA.
    name = host.decode("latin-1").partition(":")[0]
    try:
        name.encode("idna")
    except UnicodeError:
        return False
    return True


class RejectBadHost:
    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = next((v for k, v in scope.get("headers", ()) if k == b"host"), None)
            if host is not None and not _is_usable(host):
                await _refuse(send)
                return
        await self._app(scope, receive, send)


async def _refuse(send: Any) -> None:
    error = ApiError(
        400,
        "The Host header is not a valid host name.",
        code="invalid_host",
        param="Host",
    )
    body = json.dumps(envelope(error)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
