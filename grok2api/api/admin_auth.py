"""Admin login, logout and the current session (``/v1/admin/login`` ...).

Login sets the session cookie (HttpOnly, SameSite=Strict, Secure when the
client came over https) and answers with the CSRF token the panel must send
back in ``X-CSRF-Token`` on every state-changing request.
"""

from __future__ import annotations

import time
from typing import Any

from quart import Blueprint, Response, g, request

from grok2api.api.http import json_response, read_json_body
from grok2api.errors import ApiError
from grok2api.gateway import current_gateway
from grok2api.security.sessions import SESSION_COOKIE

__all__ = ["admin_auth", "client_address", "came_over_https"]

admin_auth = Blueprint("admin_auth", __name__, url_prefix="/v1/admin")


def client_address() -> str:
    return str(request.scope.get("grok2api.client") or request.remote_addr or "")


def came_over_https() -> bool:
    if request.scheme == "https":
        return True
    peer = request.scope.get("client")
    return current_gateway().auth.proxies.forwarded_https(
        peer[0] if peer else None, request.headers.get("x-forwarded-proto")
    )


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"'{name}' must be a non-empty string.", param=name)
    return value


@admin_auth.post("/login")
async def login() -> Response:
    body = await read_json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.", param="body")
    auth = current_gateway().auth
    cookie, session = await auth.login(
        _text(body, "username"), _text(body, "password"), client_address()
    )
    response = json_response(
        {
            "username": session.username,
            "csrf_token": session.csrf_token,
            "expires_at": session.expires_at,
        }
    )
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(session.expires_at - time.time()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=came_over_https(),
    )
    return response


@admin_auth.post("/logout")
async def logout() -> Response:
    # The cookie is self-contained, so logging out is forgetting it; a copy
    # kept elsewhere stays valid until it expires or the password changes.
    response = json_response({"logged_out": True})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
    return response


@admin_auth.get("/session")
async def session() -> Response:
    identity = g.admin_identity
    auth = current_gateway().auth
    body: dict[str, Any] = {
        "auth": identity.method,
        "password_source": auth.password.source,
    }
    if identity.session is not None:
        body |= {
            "username": identity.session.username,
            "csrf_token": identity.session.csrf_token,
            "expires_at": identity.session.expires_at,
        }
    return json_response(body)
