"""Client authentication for the OpenAI API and the admin API.

Fails closed: with no ``app.api_key`` configured, the API answers loopback
clients only (the operator's own machine), unless
``security.allow_anonymous_api`` opens it on purpose. The admin API needs the
admin password as a bearer key; with none configured it refuses everyone.
"""

from __future__ import annotations

import hmac
import ipaddress

from grok2api.errors import ApiError

__all__ = ["check_admin_key", "check_api_key", "presented_key"]


def presented_key(headers: dict[str, str] | object) -> str | None:
    """The key a client sent: ``Authorization: Bearer`` or ``x-api-key``."""
    authorization = headers.get("authorization", "")  # type: ignore[attr-defined]
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = headers.get("x-api-key", "")  # type: ignore[attr-defined]
    return api_key.strip() or None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_api_key(
    key: str | None,
    configured: str,
    *,
    anonymous_allowed: bool,
    client_address: str | None,
) -> None:
    """Raise a 401 unless the client may use the API."""
    if configured:
        if key is not None and _same(key, configured):
            return
        message = "Missing API key." if key is None else "Invalid API key."
        raise ApiError(
            401,
            f"{message} Send it as 'Authorization: Bearer <key>' or 'x-api-key'.",
            type="authentication_error",
            code="invalid_api_key",
        )
    if anonymous_allowed or _is_loopback(client_address):
        return
    raise ApiError(
        401,
        "No API key is configured, so only local clients may call the API; "
        "set app.api_key.",
        type="authentication_error",
        code="invalid_api_key",
    )


def check_admin_key(key: str | None, admin_password: str, api_key: str) -> None:
    """Raise unless the bearer key is the admin password."""
    if not admin_password:
        raise ApiError(
            403,
            "The admin API is disabled until app.app_password is set.",
            type="permission_error",
            code="admin_disabled",
        )
    if key is not None and _same(key, admin_password):
        return
    if key is not None and api_key and _same(key, api_key):
        raise ApiError(
            403,
            "An API key cannot use the admin API.",
            type="permission_error",
            code="forbidden",
        )
    raise ApiError(
        401,
        "The admin API needs the admin key as a bearer token.",
        type="authentication_error",
        code="invalid_admin_key",
    )
