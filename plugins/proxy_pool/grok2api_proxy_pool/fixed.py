"""A proxy provider with one fixed proxy (``proxy.proxy_url``)."""

from __future__ import annotations

from typing import Any

from grok2api import EgressPurpose

__all__ = ["FixedProxy", "create_fixed_proxy"]


class FixedProxy:
    """Offers the same proxy for every call; there is nothing to rotate to,
    so an egress fault changes nothing."""

    def __init__(self, proxy_url: str) -> None:
        self.proxy_url = proxy_url

    async def proxy_for(
        self, purpose: EgressPurpose, token_id: str | None
    ) -> str | None:
        return self.proxy_url

    async def report_egress_fault(self, proxy_url: str) -> None:
        pass

    async def aclose(self) -> None:
        pass


def create_fixed_proxy(settings: Any) -> FixedProxy | None:
    """The provider ``proxy.proxy_url`` asks for, or ``None`` when unset."""
    proxy_url: str = settings.proxy.proxy_url
    return FixedProxy(proxy_url) if proxy_url else None
