"""The proxy pool plugin's hook implementations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from grok2api import PluginHost, hookimpl
from grok2api_proxy_pool.fixed import create_fixed_proxy
from grok2api_proxy_pool.pool import create_proxy_pool

if TYPE_CHECKING:
    from grok2api.proxies import ProxyProviderFactory


@hookimpl
def register_proxy_providers(host: PluginHost) -> Mapping[str, ProxyProviderFactory]:
    # The pool comes first: the fixed proxy carries traffic until the pool
    # API has answered once (or when it is the only one configured).
    return {"proxy_pool": create_proxy_pool, "fixed_proxy": create_fixed_proxy}
