"""What the gateway remembers about one finished HTTP request.

The access-log wrapper builds a :class:`FinishedRequest` from the ASGI scope
when the response has been sent; statistics, the audit log and the metrics
all read that one record, so they never disagree about a request.
"""

from __future__ import annotations

import secrets

import attrs

from grok2api.storage import AuditEntry

__all__ = [
    "FinishedRequest",
    "is_recorded_route",
    "new_request_id",
    "route_label",
]

#: Paths whose requests count in statistics and the audit log. Admin,
#: health, metrics and model listings are left out on purpose: they say
#: nothing about how the gateway serves its clients.
_RECORDED_PATHS = frozenset({"/v1/chat/completions", "/v1/public/voice/token"})
_RECORDED_PREFIXES = ("/v1/images/",)

#: Paths named as themselves in metric labels; anything else is folded into a
#: few fixed labels so a client probing random URLs cannot grow the series.
_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/public/voice/token",
        "/v1/models",
        "/health",
        "/ready",
        "/metrics",
    }
)


def new_request_id() -> str:
    """A fresh request id: 16 random hex digits (64 bits)."""
    return secrets.token_hex(8)


def is_recorded_route(path: str) -> bool:
    """Whether requests to ``path`` go into statistics and the audit log."""
    return path in _RECORDED_PATHS or path.startswith(_RECORDED_PREFIXES)


def route_label(path: str) -> str:
    """The bounded ``route`` label for a request path."""
    if path in _ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models"
    if path.startswith("/v1/admin/"):
        return "/v1/admin"
    return "other"


@attrs.frozen
class FinishedRequest:
    """One request after its response ended.

    ``at`` is the wall-clock time it arrived; ``status`` the status sent
    (``499`` when the client left before any, ``500`` when the app failed
    without answering); ``error`` the error type of the envelope, or why the
    request did not finish (``client_gone``), empty on success. ``key_id`` is
    set only for a managed API key, ``token_id`` only when a token served it.
    """

    at: float
    request_id: str
    client: str
    method: str
    path: str
    status: int
    duration_ms: float
    model: str = ""
    key_name: str = ""
    key_id: str = ""
    token_id: str = ""
    stream: bool = False
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status < 400 and not self.error

    def audit_entry(self) -> AuditEntry:
        return AuditEntry(
            at=self.at,
            request_id=self.request_id,
            client=self.client,
            key_name=self.key_name,
            method=self.method,
            path=self.path,
            model=self.model,
            status=self.status,
            duration_ms=self.duration_ms,
            stream=self.stream,
            token_id=self.token_id,
            error=self.error,
        )
