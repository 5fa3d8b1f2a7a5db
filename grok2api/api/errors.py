"""Every error the API answers, in the OpenAI envelope with the right status.

``error_response`` is the single translation from the exception tree to HTTP;
nothing else builds error bodies, so the status, type and code of a failure
are the same whether it happens before a stream starts or in a JSON answer.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from grok2api.errors import (
    ApiError,
    FailureKind,
    Grok2APIError,
    MediaFetchError,
    NoTokenAvailable,
    SealedSecretError,
    StorageUnavailable,
    UpstreamError,
    UpstreamRequestRejected,
    UpstreamTimeout,
)

__all__ = ["answerable", "as_api_error", "envelope", "sse_error_event"]


def envelope(error: ApiError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


def as_api_error(exc: BaseException) -> ApiError:
    """Map any gateway error onto the envelope a client should get."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, MediaFetchError):
        return ApiError(400, str(exc), code="invalid_media", param=exc.param)
    if isinstance(exc, NoTokenAvailable):
        return _no_token(exc)
    if isinstance(exc, SealedSecretError):
        # The client can do nothing about it; the operator's log says more.
        return ApiError(
            503,
            "A token in the pool cannot be opened with the gateway's key; "
            "the operator must fix security.secret_key.",
            type="server_error",
            code="token_sealed",
        )
    if isinstance(exc, StorageUnavailable):
        return ApiError(
            503,
            "The gateway's storage is unavailable; try again shortly.",
            type="server_error",
            code="storage_unavailable",
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, UpstreamRequestRejected):
        return ApiError(
            400, f"The upstream refused the request: {exc}", code="upstream_rejected"
        )
    if isinstance(exc, UpstreamTimeout):
        return ApiError(
            504,
            f"The upstream timed out: {exc}",
            type="server_error",
            code="upstream_timeout",
        )
    if isinstance(exc, UpstreamError):
        code = (
            "upstream_rate_limited"
            if exc.kind is FailureKind.RATE_LIMIT
            else "upstream_error"
        )
        return ApiError(
            502, f"The upstream failed: {exc}", type="server_error", code=code
        )
    return ApiError(
        500,
        "Internal error; the gateway logged the details.",
        type="server_error",
        code="internal_error",
    )


def _no_token(exc: NoTokenAvailable) -> ApiError:
    described = (
        ", ".join(f"{n} {state}" for state, n in sorted(exc.counts.items()) if n)
        or "none in the pools that serve it"
    )
    if exc.retry_after is not None:
        seconds = math.ceil(exc.retry_after)
        # The SDK retries by itself only when the wait is short; past two
        # minutes tell it not to, or its retries multiply with ours.
        headers = {"Retry-After": str(seconds)}
        if seconds > 120:
            headers["x-should-retry"] = "false"
        return ApiError(
            429,
            f"Every token that can serve {exc.model!r} is out of quota or cooling down "
            f"(tokens: {described}); the earliest is usable again in {seconds}s.",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers=headers,
        )
    return ApiError(
        503,
        f"No healthy token can serve {exc.model!r} (tokens: {described}); "
        "add or re-enable tokens.",
        type="server_error",
        code="no_token_available",
        headers={"x-should-retry": "false"},
    )


def sse_error_event(error: ApiError) -> bytes:
    """A failure after the first byte: one error event (the SDK raises on it)."""
    return (
        b"data: " + json.dumps(envelope(error), ensure_ascii=False).encode() + b"\n\n"
    )


def answerable(exc: Exception, method: str, path: str, log: logging.Logger) -> ApiError:
    """The envelope to answer for ``exc``, logged to ``log`` on the way: a
    gateway error as one INFO line, anything unexpected with its traceback."""
    if isinstance(exc, ApiError):
        return exc
    api = as_api_error(exc)
    if isinstance(exc, Grok2APIError):
        log.info("request failed status=%d code=%s: %s", api.status, api.code, exc)
    else:
        log.exception("unhandled error on %s %s; answered 500", method, path)
    return api
