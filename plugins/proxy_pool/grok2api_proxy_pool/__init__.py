"""grok2api-proxy-pool: where upstream traffic leaves from.

Two proxy providers, both registered through ``register_proxy_providers``:
``proxy_pool`` takes its proxy from a pool API (``proxy.proxy_pool_url``) and
rotates on egress faults and every ``proxy.proxy_pool_interval`` seconds;
``fixed_proxy`` offers ``proxy.proxy_url``. The pool is asked first.
"""

from __future__ import annotations

from grok2api_proxy_pool.answers import PoolAnswerError, proxy_candidates
from grok2api_proxy_pool.fixed import FixedProxy, create_fixed_proxy
from grok2api_proxy_pool.pool import ProxyPool, create_proxy_pool

__all__ = [
    "ProxyPool",
    "FixedProxy",
    "create_proxy_pool",
    "create_fixed_proxy",
    "proxy_candidates",
    "PoolAnswerError",
]
