"""The settings the upstream client needs, decoupled from the config schema.

The lead builds one :class:`UpstreamOptions` from the loaded settings; keeping
this class here means the upstream package imports nothing from
``grok2api.config`` and can be driven directly by tests and tools.
"""

from __future__ import annotations

import attrs

__all__ = ["DEFAULT_USER_AGENT", "UpstreamOptions"]

#: Chrome 136 on macOS; it must agree with the TLS profile (``browser``) and
#: with the browser that obtained ``cf_clearance``.
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/136.0.0.0 Safari/537.36"
)

_TRANSPORTS = ("auto", "trio", "httpx", "curl_cffi")
_DIALECTS = ("reference", "mode_id")
_STATSIG_PREFIXES = ("x1:", "e:")


def _positive(
    instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class UpstreamOptions:
    """How to reach Grok and how long to wait for it.

    Timeouts are in seconds. ``first_frame_timeout`` bounds the wait for the
    response headers and for the first event of a chat stream,
    ``idle_timeout`` the silence between two events, ``total_timeout`` a
    whole chat stream, ``request_timeout`` a plain REST call (upload, rate
    limits) from request to parsed answer.

    ``proxy_url`` carries upstream traffic and ``asset_proxy_url`` asset
    traffic (uploads) when no proxy provider answers; see
    :mod:`grok2api.proxies` for the order.
    """

    base_url: str = "https://grok.com"
    assets_url: str = "https://assets.grok.com"
    transport: str = attrs.field(
        default="auto", validator=attrs.validators.in_(_TRANSPORTS)
    )
    browser: str = "chrome136"
    user_agent: str = DEFAULT_USER_AGENT
    cf_clearance: str = attrs.field(default="", repr=False)
    dynamic_statsig: bool = True
    statsig_prefix: str = attrs.field(
        default="x1:", validator=attrs.validators.in_(_STATSIG_PREFIXES)
    )
    proxy_url: str = attrs.field(default="", repr=False)
    asset_proxy_url: str = attrs.field(default="", repr=False)
    request_timeout: float = attrs.field(default=120.0, validator=_positive)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    first_frame_timeout: float = attrs.field(default=30.0, validator=_positive)
    idle_timeout: float = attrs.field(default=120.0, validator=_positive)
    total_timeout: float = attrs.field(default=600.0, validator=_positive)
    max_connections: int = attrs.field(default=200, validator=_positive)
    temporary: bool = True
    disable_memory: bool = True
    dialect: str = attrs.field(
        default="reference", validator=attrs.validators.in_(_DIALECTS)
    )
