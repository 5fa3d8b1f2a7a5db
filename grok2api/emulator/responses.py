"""Canned upstream error responses, one per failure the real site produces."""

from __future__ import annotations

import json
from typing import Any

from quart import Response

__all__ = [
    "ANTI_BOT_BODY",
    "CLOUDFLARE_PAGE",
    "json_response",
    "fault_response",
]

#: The anti-bot refusal for a missing or malformed ``x-statsig-id``.
ANTI_BOT_BODY = {"error": {"code": 7, "message": "Request rejected by anti-bot rules."}}

CLOUDFLARE_PAGE = (
    '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>'
    '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
    '<meta name="robots" content="noindex,nofollow"></head><body>'
    '<div class="main-wrapper" role="main"><noscript>Enable JavaScript and '
    "cookies to continue</noscript></div>"
    "<script>window._cf_chl_opt={cvId:'3',cType:'managed',__cf_chl_tk:'emu'};"
    '</script><script src="/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page'
    '/v1?ray=emu"></script></body></html>'
)


def json_response(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> Response:
    """A compact JSON response."""
    return Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def cloudflare_response() -> Response:
    return Response(
        CLOUDFLARE_PAGE,
        status=403,
        headers={"cf-mitigated": "challenge", "server": "cloudflare"},
        content_type="text/html; charset=UTF-8",
    )


def invalid_credentials() -> Response:
    return json_response(
        401,
        {
            "error": {
                "code": 16,
                "message": "invalid-credentials: the session is not valid",
                "details": [],
            }
        },
    )


def blocked_user() -> Response:
    return json_response(
        403,
        {
            "error": {
                "code": 7,
                "message": "blocked-user: user is blocked",
                "details": [],
            }
        },
    )


def quota_exhausted(limits: dict[str, Any], retry_after: int) -> Response:
    body = {"error": {"code": 8, "message": "Too many requests", "details": []}}
    body.update(limits)
    return json_response(429, body, {"Retry-After": str(retry_after)})


def fault_response(
    kind: str, limits: dict[str, Any] | None, retry_after: int, remaining: int | None
) -> Response:
    """The HTTP answer for one of the HTTP fault kinds.

    Args:
        kind: one of ``HTTP_FAULT_KINDS``.
        limits: the account's rate-limit numbers, or ``None`` for an unknown
            token (defaults are made up then).
        retry_after: seconds for the ``Retry-After`` header of 429 answers.
        remaining: ``remainingQueries`` to report on a ``429`` with quota left.
    """
    if kind == "401":
        return invalid_credentials()
    if kind in ("429", "429_no_quota"):
        numbers = dict(limits or {"windowSizeSeconds": 7200, "totalQueries": 80})
        if kind == "429_no_quota":
            left = 0
        else:
            left = (
                remaining if remaining is not None else numbers.get("remainingQueries")
            )
            left = max(1, left or 0)
        numbers["remainingQueries"] = numbers["remainingTokens"] = left
        return quota_exhausted(numbers, retry_after)
    if kind == "403_cloudflare":
        return cloudflare_response()
    if kind == "403_blocked":
        return blocked_user()
    if kind == "403_empty":
        return Response(b"", status=403)
    if kind == "403_antibot":
        return json_response(403, ANTI_BOT_BODY)
    if kind == "500":
        return json_response(500, {"error": {"code": 13, "message": "internal error"}})
    if kind == "502":
        return Response(
            "<html><head><title>502 Bad Gateway</title></head><body>"
            "<center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare"
            "</center></body></html>",
            status=502,
            headers={"server": "cloudflare"},
            content_type="text/html",
        )
    if kind == "503":
        return json_response(
            503, {"error": {"code": 14, "message": "service unavailable"}}
        )
    raise ValueError(f"not an HTTP fault kind: {kind!r}")
