"""Proxy providers: where upstream traffic leaves from.

A provider answers, for one upstream call, which proxy URL to use. Without a
provider, upstream traffic uses ``network.base_proxy_url`` (asset traffic
``network.asset_proxy_url``), and with that empty, goes direct.

TODO: the upstream client takes its proxy from the static settings only; the
providers registered here are collected but not consulted until the proxy
pool lands (the security issue), so a pool plugin has no effect yet.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

__all__ = ["EgressPurpose", "ProxyProvider", "ProxyProviderFactory"]


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


ProxyProviderFactory = Callable[[object], ProxyProvider | None]
