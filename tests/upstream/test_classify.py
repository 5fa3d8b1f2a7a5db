from __future__ import annotations

import email.utils
import json
import time

import pytest

from grok2api.errors import (
    EgressBlocked,
    FailureKind,
    TokenRejected,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRequestRejected,
    UpstreamUnavailable,
)
from grok2api.upstream import classify_response

CHALLENGE = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
    b'<body><script src="/cdn-cgi/challenge-platform/h/g/orchestrate"></script>'
    b"</body></html>"
)


def _json(payload: object) -> bytes:
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("status", "body", "error_type", "kind"),
    [
        (
            401,
            _json({"error": "invalid-credentials"}),
            TokenRejected,
            FailureKind.TOKEN,
        ),
        (401, b"", TokenRejected, FailureKind.TOKEN),
        (400, b"Bad-Credentials supplied", TokenRejected, FailureKind.TOKEN),
        (403, b"Session not found", TokenRejected, FailureKind.TOKEN),
        (
            400,
            _json({"error": {"message": "bad field"}}),
            UpstreamRequestRejected,
            FailureKind.REQUEST,
        ),
        (403, CHALLENGE, EgressBlocked, FailureKind.EGRESS),
        (503, CHALLENGE, EgressBlocked, FailureKind.EGRESS),
        (
            403,
            b"<html><body>Forbidden</body></html>",
            EgressBlocked,
            FailureKind.EGRESS,
        ),
        (
            403,
            _json({"error": {"code": 7, "message": "denied"}}),
            EgressBlocked,
            FailureKind.EGRESS,
        ),
        (
            403,
            _json({"message": "Request rejected by anti-bot rules"}),
            EgressBlocked,
            FailureKind.EGRESS,
        ),
        (502, b"bad gateway", UpstreamUnavailable, FailureKind.UPSTREAM),
        (500, b"", UpstreamUnavailable, FailureKind.UPSTREAM),
    ],
)
def test_classify_status_and_body(
    status: int, body: bytes, error_type: type[UpstreamError], kind: FailureKind
) -> None:
    error = classify_response(status, {}, body)
    assert type(error) is error_type
    assert error.kind is kind
    assert error.status == status
    assert error.charged is False


@pytest.mark.parametrize("body", [b"", b"   ", b"forbidden"])
def test_classify_unexplained_403_is_ambiguous(body: bytes) -> None:
    error = classify_response(403, {}, body)
    assert type(error) is UpstreamError
    assert error.kind is FailureKind.AMBIGUOUS


@pytest.mark.parametrize("marker", ["blocked-user", "User is blocked"])
def test_classify_blocked_account_is_definitive(marker: str) -> None:
    error = classify_response(403, {}, _json({"error": marker}))
    assert isinstance(error, TokenRejected)
    assert error.blocked is True
    assert "blocked" in str(error)


def test_classify_credentials_are_not_a_block() -> None:
    error = classify_response(401, {}, b"token expired")
    assert isinstance(error, TokenRejected)
    assert error.blocked is False


def test_classify_429_reads_remaining_and_retry_after() -> None:
    body = _json({"error": {"code": 8}, "remainingQueries": 0, "totalQueries": 50})
    error = classify_response(429, {"retry-after": "30"}, body)
    assert isinstance(error, UpstreamRateLimited)
    assert (error.remaining, error.retry_after) == (0, 30.0)


def test_classify_429_prefers_remaining_tokens() -> None:
    body = _json({"remainingTokens": 3, "remainingQueries": 9})
    error = classify_response(429, {}, body)
    assert isinstance(error, UpstreamRateLimited)
    assert error.remaining == 3


def test_classify_429_without_details() -> None:
    error = classify_response(429, {}, b"")
    assert isinstance(error, UpstreamRateLimited)
    assert (error.remaining, error.retry_after) == (None, None)


def test_classify_429_retry_after_as_http_date() -> None:
    moment = email.utils.formatdate(time.time() + 120, usegmt=True)
    error = classify_response(429, {"retry-after": moment}, b"{}")
    assert isinstance(error, UpstreamRateLimited)
    assert error.retry_after is not None
    assert 100 < error.retry_after <= 121


def test_classify_400_with_rate_code_is_a_rate_limit() -> None:
    error = classify_response(400, {}, _json({"error": {"code": 8, "message": "x"}}))
    assert isinstance(error, UpstreamRateLimited)
    assert error.status == 400


def test_classify_cloudflare_message_names_what_to_check() -> None:
    error = classify_response(403, {}, CHALLENGE)
    assert "cf_clearance" in str(error)
    assert "proxy" in str(error)
