"""Showing settings without their secrets.

Wherever configuration is shown (the admin panel, ``grok2api config show``,
a start-up log line) it goes through :func:`settings_as_dict`, which masks
keys, passwords and cookies, and the passwords inside proxy URLs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from grok2api.config.converter import converter
from grok2api.config.schema import Settings

MASK = "***"

#: Settings that hold plain secrets.
_PLAIN_SECRETS = frozenset(
    {
        "app.api_key",
        "app.app_password",
        "security.cf_clearance",
        "security.secret_key",
    }
)
#: Settings that hold URLs whose password (and query values) are secret.
_URL_SECRETS = frozenset(
    {
        "network.base_proxy_url",
        "network.asset_proxy_url",
        "proxy.proxy_url",
        "proxy.proxy_pool_url",
    }
)
#: Every ``section.key`` whose value is redacted when settings are shown.
SECRET_KEYS = _PLAIN_SECRETS | _URL_SECRETS


def mask_secret(value: str) -> str:
    """Mask a secret; long keys keep a hint of both ends (``sk-…abcd``).

    Short values are replaced whole, since their ends would give away most of
    them. An empty value stays empty so "not set" remains visible.
    """
    if not value:
        return ""
    if len(value) < 16:
        return MASK
    return f"{value[:3]}…{value[-4:]}"


def mask_url(value: str) -> str:
    """Hide the password and the query values of a URL.

    Proxy pool APIs commonly take their key in the query string, and proxy
    URLs carry ``user:password@``; the host stays visible for diagnosis.
    """
    if not value:
        return ""
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if ":" in host:  # an IPv6 literal needs its brackets back
        host = f"[{host}]"
    netloc = host + port
    if parts.username is not None:
        user = parts.username + (f":{MASK}" if parts.password is not None else "")
        netloc = f"{user}@{netloc}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, MASK) for name, _ in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_value(path: str, value: Any) -> Any:
    """The shown form of the value at ``section.key``."""
    if path in _PLAIN_SECRETS and isinstance(value, str):
        # Only an API key keeps a hint of its ends, to tell keys apart; a
        # password or cookie shows nothing of itself.
        if path == "app.api_key" or not value:
            return mask_secret(value)
        return MASK
    if path in _URL_SECRETS and isinstance(value, str):
        return mask_url(value)
    return value


def settings_as_dict(settings: Settings, *, redact: bool = True) -> dict[str, Any]:
    """The settings as ``{section: {key: value}}`` of plain TOML/JSON values.

    Args:
        settings: the settings to show.
        redact: mask every key in :data:`SECRET_KEYS` (the default).

    Returns:
        A new dict; lists stand for the settings' tuples.
    """
    tables: dict[str, dict[str, Any]] = converter.unstructure(settings)
    if redact:
        for section, table in tables.items():
            for key, value in table.items():
                table[key] = redact_value(f"{section}.{key}", value)
    return tables
