"""The public address cached media is served at.

``app.app_url`` wins when it is set. Otherwise the address is the one the
client used: the request's scheme and ``Host``, or what a trusted reverse
proxy (``security.trusted_proxies``) reports in ``X-Forwarded-Proto`` and
``X-Forwarded-Host``. From any other peer those headers are ignored, so a
client cannot make the gateway hand out links to a host of its choosing
for anyone but itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from grok2api.errors import ApiError
from grok2api.media.names import MediaKind
from grok2api.security.client_address import TrustedProxies

__all__ = [
    "FILES_PATH",
    "file_path",
    "public_base_url",
    "request_base_url",
    "scope_base_url",
]

#: Where the gateway serves cached files: ``{FILES_PATH}/{kind}/{name}``.
FILES_PATH = "/v1/files"

_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)


def file_path(kind: MediaKind, name: str) -> str:
    """The path part of a cached file's URL."""
    return f"{FILES_PATH}/{kind.value}/{name}"


def _last(values: Sequence[str]) -> str | None:
    hops = [hop.strip() for value in values for hop in value.split(",")]
    hops = [hop for hop in hops if hop]
    # The nearest (trusted) proxy appended the right-most value.
    return hops[-1] if hops else None


def public_base_url(
    app_url: str,
    *,
    scheme: str,
    host: str | None,
    peer: str | None,
    forwarded_proto: Sequence[str] = (),
    forwarded_host: Sequence[str] = (),
    proxies: TrustedProxies,
) -> str:
    """The scheme and host (no trailing slash) links to cached files use.

    Args:
        app_url: ``app.app_url``; used as it is when set.
        scheme: the request's own scheme.
        host: the request's ``Host`` header.
        peer: the socket peer's address.
        forwarded_proto: every ``X-Forwarded-Proto`` value received.
        forwarded_host: every ``X-Forwarded-Host`` value received.
        proxies: the trusted reverse proxies.

    Raises:
        ApiError: 400 when no valid host name can be found and
            ``app.app_url`` is empty.
    """
    if app_url:
        return app_url.rstrip("/")
    if proxies.trusts(peer):
        proto = _last(forwarded_proto)
        if proto and proto.lower() in ("http", "https"):
            scheme = proto.lower()
        forwarded = _last(forwarded_host)
        if forwarded and _HOST.fullmatch(forwarded):
            host = forwarded
    if not host or not _HOST.fullmatch(host):
        raise ApiError(
            400,
            "The request's Host header is not a host name, so no link to a "
            "cached file can be built; send a valid Host or set app.app_url.",
            code="invalid_host",
        )
    return f"{'https' if scheme == 'https' else 'http'}://{host}"


def request_base_url(app_url: str, proxies: TrustedProxies) -> str:
    """:func:`public_base_url` for the request being served.

    Raises:
        ApiError: as :func:`public_base_url`.
        RuntimeError: outside a request with ``app.app_url`` empty.
    """
    if app_url:
        return app_url.rstrip("/")
    from quart import has_request_context, request

    if not has_request_context():
        raise RuntimeError("a file URL needs app.app_url or a request to build it")
    return scope_base_url(app_url, proxies, request.scope, request.headers)


def scope_base_url(
    app_url: str, proxies: TrustedProxies, scope: dict[str, Any], headers: Any
) -> str:
    """:func:`public_base_url` for the request of an ASGI ``scope``, whose
    ``headers`` have ``get`` and ``getlist`` by name.

    Raises:
        ApiError: as :func:`public_base_url`.
    """
    if app_url:
        return app_url.rstrip("/")
    peer = scope.get("client")
    return public_base_url(
        app_url,
        scheme=scope.get("scheme", "http"),
        host=headers.get("host"),
        peer=peer[0] if peer else None,
        forwarded_proto=headers.getlist("x-forwarded-proto"),
        forwarded_host=headers.getlist("x-forwarded-host"),
        proxies=proxies,
    )
