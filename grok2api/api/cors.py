"""CORS for the OpenAI API, from ``security.cors_allow_origins``.

An ASGI wrapper outside the app, so a preflight ``OPTIONS`` is answered
before authentication (browsers never send credentials on a preflight). The
admin API and the metrics are never exposed cross-origin: they get no CORS
headers at all, so a browser keeps other sites' scripts away from them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["Cors", "is_admin_path"]

_ALLOWED_HEADERS = b"authorization, content-type, x-api-key"
_ALLOWED_METHODS = b"GET, POST, PATCH, DELETE, OPTIONS"
_EXPOSED_HEADERS = b"x-request-id, retry-after"


def is_admin_path(path: str) -> bool:
    # Repeated slashes are collapsed first, so "//v1/admin/..." cannot pass
    # for a public path here while something else treats it as admin.
    path = re.sub("/{2,}", "/", path)
    return path.startswith("/v1/admin/") or path in ("/v1/admin", "/metrics")


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


class Cors:
    def __init__(self, app: Any, allowed_origins: Callable[[], tuple[str, ...]]):
        self._app = app
        self._allowed_origins = allowed_origins

    def _allows(self, origin: bytes) -> bool:
        allowed = self._allowed_origins()
        if "*" in allowed:
            return True
        try:
            return origin.decode("ascii") in allowed
        except UnicodeDecodeError:
            return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        origin = _header(scope, b"origin") if scope["type"] == "http" else None
        if origin is None or is_admin_path(scope["path"]) or not self._allows(origin):
            await self._app(scope, receive, send)
            return
        cors_headers = [
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
        ]
        preflight = scope["method"] == "OPTIONS" and _header(
            scope, b"access-control-request-method"
        )
        if preflight:
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *cors_headers,
                        (b"access-control-allow-methods", _ALLOWED_METHODS),
                        (b"access-control-allow-headers", _requested_headers(scope)),
                        (b"access-control-max-age", b"600"),
                        (b"content-length", b"0"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [
                    *message.get("headers", ()),
                    *cors_headers,
                    (b"access-control-expose-headers", _EXPOSED_HEADERS),
                ]
            await send(message)

        await self._app(scope, receive, send_with_cors)


def _requested_headers(scope: dict[str, Any]) -> bytes:
    # The SDKs send their own x-stainless-* headers; echoing the request's
    # list (names only, checked to be tokens) allows them without a wildcard.
    requested = _header(scope, b"access-control-request-headers") or b""
    names = [name.strip().lower() for name in requested.split(b",") if name.strip()]
    if all(name.replace(b"-", b"").isalnum() for name in names) and names:
        return b", ".join(names)
    return _ALLOWED_HEADERS
