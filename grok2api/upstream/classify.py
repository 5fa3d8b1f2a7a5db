"""Deciding whose fault an upstream failure was.

Every refusal Grok sends, as an HTTP status or as an error object inside a
200 stream, is turned into one :class:`~grok2api.errors.UpstreamError`
subclass here and nowhere else. The pool penalises a token only for
:class:`~grok2api.errors.TokenRejected` and
:class:`~grok2api.errors.UpstreamRateLimited`, so the order of the checks
below matters: an account marker wins over Cloudflare, Cloudflare over an
unexplained 403, and an empty 403 blames nobody.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any, TypeVar

from grok2api.errors import (
    EgressBlocked,
    TokenRejected,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRequestRejected,
    UpstreamUnavailable,
)

__all__ = ["classify_response", "classify_stream_error", "retry_after_seconds"]

_CLOUDFLARE_MARKERS = ("just a moment", "challenge-platform", "__cf_chl", "cf-chl-")
_BLOCKED_MARKERS = ("blocked-user", "user is blocked")
_CREDENTIAL_MARKERS = (
    "invalid-credentials",
    "bad-credentials",
    "failed to look up session id",
    "email-domain-rejected",
    "session not found",
    "account suspended",
    "token revoked",
    "token expired",
)
_RATE_MARKERS = ("too many requests", "rate limit", "rate_limit", "usage limit")
_QUOTA_MARKERS = ("usage limit", "usage quota")
_ANTI_BOT_MARKER = "anti-bot"

# gRPC status numbers Grok reuses for its in-band error codes.
_CODE_PERMISSION_DENIED = 7
_CODE_RESOURCE_EXHAUSTED = 8
_CODE_UNAUTHENTICATED = 16

#: How much of an error body is inspected; challenge pages are small.
BODY_INSPECT_LIMIT = 64 * 1024

_E = TypeVar("_E", bound=UpstreamError)


def _charged(error: _E) -> _E:
    # The subclasses' constructors do not all take ``charged``.
    error.charged = True
    return error


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _find_key(value: Any, keys: tuple[str, ...], depth: int = 3) -> Any:
    """The first of ``keys`` found in nested dicts, shallowest first."""
    if not isinstance(value, dict) or depth < 0:
        return None
    for key in keys:
        if key in value:
            return value[key]
    for child in value.values():
        found = _find_key(child, keys, depth - 1)
        if found is not None:
            return found
    return None


def _code_and_message(error: Any) -> tuple[int | None, str]:
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]
    if isinstance(error, str):
        return None, error
    if not isinstance(error, dict):
        return None, ""
    code = error.get("code")
    message = error.get("message") or error.get("systemErrCode") or ""
    return (code if isinstance(code, int) else None), str(message)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after_seconds(value: str | None) -> float | None:
    """Parse ``Retry-After`` (seconds or an HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _rate_limited(
    status: int | None, payload: Any, message: str, retry_after: float | None
) -> UpstreamRateLimited:
    remaining = _find_key(payload, ("remainingTokens", "remainingQueries"))
    if not isinstance(remaining, int) and any(m in message for m in _QUOTA_MARKERS):
        remaining = 0
    left = f", {remaining} left" if isinstance(remaining, int) else ""
    where = f"HTTP {status}" if status else "in-band"
    return UpstreamRateLimited(
        f"Grok rate-limited the token ({where}{left}); it cools down until the "
        "upstream window resets.",
        status=status or 429,
        remaining=remaining if isinstance(remaining, int) else None,
        retry_after=retry_after,
    )


def _token_rejected(lowered: str, status: int | None, detail: str) -> TokenRejected:
    if any(marker in lowered for marker in _BLOCKED_MARKERS):
        return TokenRejected(
            f"Grok reports the token's account as blocked ({detail}); remove the "
            "token from the pool.",
            status=status,
            blocked=True,
        )
    return TokenRejected(
        f"Grok refused the token ({detail}); it is invalid, expired or revoked.",
        status=status,
    )


def classify_response(
    status: int, headers: Mapping[str, str], body: bytes
) -> UpstreamError:
    """Classify a non-200 answer from grok.com.

    Args:
        status: the HTTP status.
        headers: response headers with lower-case names.
        body: the start of the body (at most :data:`BODY_INSPECT_LIMIT`).

    Returns:
        The error to raise; nothing was streamed, so ``charged`` is false.
    """
    text = body[:BODY_INSPECT_LIMIT].decode("utf-8", "replace")
    lowered = text.lower()
    payload = _parse_json(body[:BODY_INSPECT_LIMIT])
    code, message = _code_and_message(payload)
    detail = f"HTTP {status}" + (f": {_short(message)}" if message else "")
    retry_after = retry_after_seconds(headers.get("retry-after"))

    if status == 407:
        # Only a proxy sends this: one that forwards plain-HTTP requests
        # answers in place of the upstream (a CONNECT tunnel fails earlier).
        return EgressBlocked(
            "The proxy refused our credentials (HTTP 407); check the user name "
            "and password in the proxy URL.",
            status=status,
        )
    account_markers = _BLOCKED_MARKERS + _CREDENTIAL_MARKERS
    if status in (400, 401, 403) and any(m in lowered for m in account_markers):
        return _token_rejected(lowered, status, detail)
    if status == 401:
        return _token_rejected(lowered, status, detail)
    if any(marker in lowered for marker in _CLOUDFLARE_MARKERS):
        # Checked before the rate limit: Cloudflare's own rate-limit page is
        # about our egress IP, not about the token.
        return EgressBlocked(
            f"Cloudflare challenged the request (HTTP {status}); check "
            "cf_clearance, the User-Agent and the egress IP or proxy.",
            status=status,
        )
    rate_marked = code == _CODE_RESOURCE_EXHAUSTED or any(
        m in lowered for m in _RATE_MARKERS
    )
    if status == 429 or (400 <= status < 500 and rate_marked):
        return _rate_limited(status, payload, lowered, retry_after)
    if status == 403:
        return _classify_403(code, lowered, text, detail)
    if status >= 500:
        return UpstreamUnavailable(
            f"Grok failed on its side ({detail}).", status=status
        )
    if 400 <= status < 500:
        return UpstreamRequestRejected(
            f"Grok rejected the request ({detail}).", status=status
        )
    return UpstreamError(f"Grok answered an unexpected {detail}.", status=status)


def _classify_403(
    code: int | None, lowered: str, text: str, detail: str
) -> UpstreamError:
    if code == _CODE_PERMISSION_DENIED or _ANTI_BOT_MARKER in lowered:
        return EgressBlocked(
            f"Grok's anti-bot check refused the request ({detail}); the "
            "x-statsig-id or the TLS fingerprint was not accepted.",
            status=403,
        )
    if lowered.lstrip().startswith(("<!doctype html", "<html")):
        return EgressBlocked(
            "Grok answered HTTP 403 with an HTML page, most likely a challenge; "
            "check cf_clearance and the egress IP or proxy.",
            status=403,
        )
    explained = f" ({_short(text)})" if text.strip() else ""
    return UpstreamError(
        f"Grok answered HTTP 403{explained} without saying why; the token, the "
        "egress and the anti-bot check are all possible causes.",
        status=403,
    )


def classify_stream_error(error: Any) -> UpstreamError:
    """Classify an error object found inside a 200 stream.

    ``error`` is a top-level ``error`` value, a ``response.error`` value, one
    ``streamErrors`` item or an image chunk's ``systemErrCode``. The upstream
    may have counted the request by then, so ``charged`` is always true.
    """
    code, message = _code_and_message(error)
    lowered = message.lower()
    detail = "in-band" + (f" code {code}" if code is not None else "")
    detail += f": {_short(message)}" if message else ""
    if code == _CODE_RESOURCE_EXHAUSTED or any(m in lowered for m in _RATE_MARKERS):
        return _charged(_rate_limited(None, error, lowered, None))
    if code == _CODE_PERMISSION_DENIED or _ANTI_BOT_MARKER in lowered:
        return _charged(
            EgressBlocked(
                f"Grok's anti-bot check refused the request ({detail}).",
            )
        )
    account_markers = _BLOCKED_MARKERS + _CREDENTIAL_MARKERS
    if code == _CODE_UNAUTHENTICATED or any(m in lowered for m in account_markers):
        return _charged(_token_rejected(lowered, None, detail))
    return UpstreamUnavailable(
        f"Grok reported an error in the stream ({detail}).", charged=True
    )
