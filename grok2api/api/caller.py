"""Who is calling: the client address and the API caller's admission.

Shared by the Quart hook that guards every route and by the chat route,
which is served below Quart (:mod:`grok2api.api.direct_chat`). Both leave
their findings in the ASGI scope under the ``grok2api.*`` keys the access
log reads.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from grok2api.security.auth import Authenticator, presented_key

__all__ = ["HeaderLookup", "ScopeHeaders", "admit_api_caller", "client_address"]


class HeaderLookup(Protocol):
    """What is read from request headers: Werkzeug's ``Headers`` has it,
    and so has :class:`ScopeHeaders`."""

    def get(self, name: str, default: Any = None) -> Any: ...

    def getlist(self, name: str) -> list[str]: ...


class ScopeHeaders:
    """The request headers of an ASGI scope, looked up by any-case name."""

    __slots__ = ("_values",)

    def __init__(self, scope: dict[str, Any]) -> None:
        values: dict[str, list[str]] = {}
        for name, value in scope.get("headers", ()):
            values.setdefault(name.decode("latin-1").lower(), []).append(
                value.decode("latin-1")
            )
        self._values = values

    def get(self, name: str, default: Any = None) -> Any:
        found = self._values.get(name.lower())
        return found[0] if found else default

    def getlist(self, name: str) -> list[str]:
        return list(self._values.get(name.lower(), ()))


def client_address(
    auth: Authenticator, scope: dict[str, Any], headers: HeaderLookup
) -> str:
    """The client's address after trusted-proxy handling, also left in the
    scope as ``grok2api.client``."""
    peer = scope.get("client")
    address = auth.proxies.client_address(
        peer[0] if peer else None, headers.getlist("x-forwarded-for")
    )
    scope["grok2api.client"] = address
    return address


async def admit_api_caller(
    auth: Authenticator, scope: dict[str, Any], headers: HeaderLookup, address: str
) -> None:
    """Check an OpenAI API caller's key and limits.

    Leaves the key's name, id and record in the scope, and the concurrency
    slot the request now holds as ``grok2api.slot`` (released when the
    response ends).

    Raises:
        ApiError: 401 for a missing or wrong key, 429 past a limit.
    """
    await auth.limiter.check_address(address)
    caller = auth.api_caller(
        presented_key(headers),
        address,
        host=headers.get("host"),
        origin=headers.get("origin"),
    )
    scope["grok2api.key_name"] = caller.name
    if caller.key is None:
        return
    scope["grok2api.key_id"] = caller.key.id
    scope["grok2api.api_key"] = caller.key
    holder = scope.get("grok2api.request_id") or uuid.uuid4().hex
    bucket = await auth.limiter.admit_key(caller.key, holder)
    if bucket is not None:
        scope["grok2api.slot"] = (bucket, holder)
