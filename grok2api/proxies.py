"""Proxy providers: where upstream traffic leaves from.

A provider answers, for one upstream call, which proxy URL to use. The
upstream client asks :class:`ProxyProviders` on every call: the providers are
asked in order and the first proxy offered wins; when a call through it ends
in :class:`~grok2api.errors.EgressBlocked` (a Cloudflare challenge, a refused
connection), the fault is reported back to the provider that offered it, so a
pool can rotate. Token faults (a rejected or blocked token, a rate limit) are
never reported: another address would not help.

When no provider answers, API traffic uses ``network.base_proxy_url`` and
asset traffic ``network.asset_proxy_url`` (falling back to the former), and
with those empty, goes direct. A set ``network.asset_proxy_url`` carries asset
traffic even when a provider would answer: it is the operator's explicit
choice for that traffic.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from grok2api.errors import ConfigError, PluginError

__all__ = [
    "PROVIDER_PROXY_SCHEMES",
    "Egress",
    "EgressPurpose",
    "ProxyProvider",
    "ProxyProviderFactory",
    "ProxyProviders",
    "mask_proxy_url",
    "proxy_url_problem",
]

log = logging.getLogger(__name__)

#: The schemes a provider may answer with; both transports speak all four.
PROVIDER_PROXY_SCHEMES = frozenset({"http", "https", "socks5", "socks5h"})

_MASK = "***"


class EgressPurpose(enum.Enum):
    """What an upstream call is for; asset traffic may use its own proxy."""

    API = "api"
    ASSET = "asset"


class ProxyProvider(Protocol):
    """Chooses proxies and hears about egress faults."""

    async def proxy_for(
        self, purpose: EgressPurpose, token_id: str | None
    ) -> str | None:
        """The proxy URL for one call, or None to let the next provider decide."""

    async def report_egress_fault(self, proxy_url: str) -> None:
        """The upstream refused our egress through ``proxy_url`` (a Cloudflare
        challenge or a connection failure); a pool may rotate away from it."""

    async def aclose(self) -> None:
        """Stop background refreshes. Idempotent."""


ProxyProviderFactory = Callable[[Any], ProxyProvider | None]


def mask_proxy_url(url: str) -> str:
    """``url`` fit for a log line or an error: user name, password and query
    values hidden, scheme, host, port and path kept for diagnosis.

    Proxy services often put a session key in the user name, and pool APIs
    their API key in the query string, so all of these go.
    """
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return _MASK
    if ":" in host:  # an IPv6 literal needs its brackets back
        host = f"[{host}]"
    netloc = f"{_MASK}@{host}{port}" if "@" in parts.netloc else f"{host}{port}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, _MASK) for name, _ in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def proxy_url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable proxy URL, or ``None`` when it is.

    The reason never repeats the URL, which may hold credentials.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is what raises on junk
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in PROVIDER_PROXY_SCHEMES:
        return (
            f"has scheme {parts.scheme!r}; a proxy must be http, https, "
            "socks5 or socks5h"
        )
    if not parts.hostname:
        return "has no host"
    return None


@attrs.frozen
class Egress:
    """The way out chosen for one upstream call.

    Attributes:
        proxy_url: the proxy to use; empty for a direct connection.
        provider_name: the provider that offered it, ``None`` for the static
            settings.
        provider: that provider, which hears about faults of this egress.
    """

    proxy_url: str = attrs.field(default="", repr=False)
    provider_name: str | None = None
    provider: ProxyProvider | None = attrs.field(default=None, eq=False, repr=False)

    def __str__(self) -> str:
        return mask_proxy_url(self.proxy_url) if self.proxy_url else "direct"


class ProxyProviders:
    """The configured providers, asked in order for every upstream call.

    A provider that raises or answers something that is not a proxy URL is
    skipped for that call (and the error logged), so a broken plugin costs
    its proxy, not the request.

    Args:
        providers: ``(name, provider)`` pairs in the order they are asked.
    """

    def __init__(self, providers: Sequence[tuple[str, ProxyProvider]] = ()) -> None:
        self._providers = list(providers)
        self._closed = False

    @classmethod
    async def create(
        cls, factories: Mapping[str, ProxyProviderFactory], settings: Any
    ) -> ProxyProviders:
        """Build a provider from each factory that the settings ask for.

        Raises:
            ConfigError: a factory refused the settings.
            PluginError: a factory failed otherwise.
        """
        built = cls()
        for name, factory in factories.items():
            try:
                provider = factory(settings)
            except (ConfigError, PluginError):
                await built.aclose()
                raise
            except Exception as exc:
                await built.aclose()
                raise PluginError(
                    f"The proxy provider {name!r} failed to start "
                    f"({type(exc).__name__}); see the plugin's documentation."
                ) from exc
            if provider is not None:
                built._providers.append((name, provider))
        if built._providers:
            log.info("proxy providers in use: %s", ", ".join(built.names()))
        return built

    def names(self) -> list[str]:
        """The providers in the order they are asked."""
        return [name for name, _ in self._providers]

    async def choose(
        self, purpose: EgressPurpose, token_id: str | None
    ) -> Egress | None:
        """The first proxy a provider offers for this call, or ``None``."""
        for name, provider in self._providers:
            try:
                proxy_url = await provider.proxy_for(purpose, token_id)
            except Exception:
                log.exception(
                    "proxy provider %s failed to choose a proxy; asking the next",
                    name,
                )
                continue
            if not proxy_url:
                continue
            problem = proxy_url_problem(proxy_url)
            if problem is not None:
                log.error(
                    "proxy provider %s offered a proxy that %s; asking the next",
                    name,
                    problem,
                )
                continue
            log.debug(
                "egress chosen provider=%s proxy=%s purpose=%s token=%s",
                name,
                mask_proxy_url(proxy_url),
                purpose.value,
                token_id,
            )
            return Egress(proxy_url, name, provider)
        return None

    async def report_egress_fault(self, egress: Egress) -> None:
        """Tell the provider behind ``egress`` that the upstream refused it."""
        if egress.provider is None or not egress.proxy_url:
            return
        log.info(
            "egress fault provider=%s proxy=%s",
            egress.provider_name,
            mask_proxy_url(egress.proxy_url),
        )
        try:
            await egress.provider.report_egress_fault(egress.proxy_url)
        except Exception:
            log.exception(
                "proxy provider %s failed to take an egress fault report; "
                "it keeps its proxy",
                egress.provider_name,
            )

    async def aclose(self) -> None:
        """Close every provider; errors are logged so the others still close."""
        if self._closed:
            return
        self._closed = True
        for name, provider in reversed(self._providers):
            try:
                await provider.aclose()
            except Exception:
                log.exception("proxy provider %s failed to close; dropped it", name)
