"""``proxy.sticky_per_token``: a token keeps its egress address while it works."""

from __future__ import annotations

import trio.testing
from grok2api_proxy_pool import ProxyPool

from grok2api import EgressPurpose

from .conftest import OTHER_TOKEN, TOKEN, MakeClient, chat
from .servers import HttpProxy, PoolApi

API = EgressPurpose.API


async def test_sticky_token_keeps_its_proxy_across_a_refresh(
    mock_clock: trio.testing.MockClock,
    make_client: MakeClient,
    pool_api: PoolApi,
    http_proxy: HttpProxy,
    second_proxy: HttpProxy,
) -> None:
    pool_api.answer(http_proxy.url())
    client = make_client("httpx", ProxyPool(pool_api.url(), interval=60, sticky=True))
    assert await chat(client, TOKEN)
    pool_api.answer(second_proxy.url())
    mock_clock.jump(61)

    assert await chat(client, OTHER_TOKEN)  # fetches, gets the second proxy
    first_after_refresh = len(http_proxy.targets)
    assert await chat(client, TOKEN)

    assert pool_api.requests == 2
    assert len(second_proxy.targets) == 1
    assert len(http_proxy.targets) == first_after_refresh + 1


async def test_sticky_token_moves_on_after_an_egress_fault(
    mock_clock: trio.testing.MockClock, pool_api: PoolApi
) -> None:
    pool_api.answer("10.0.0.2:3128")
    pool = ProxyPool(pool_api.url(), interval=60, sticky=True)
    assert await pool.proxy_for(API, "token-1") == "http://10.0.0.2:3128"
    pool_api.answer("10.0.0.3:3128")
    mock_clock.jump(61)
    assert await pool.proxy_for(API, "token-2") == "http://10.0.0.3:3128"

    assert await pool.proxy_for(API, "token-1") == "http://10.0.0.2:3128"
    await pool.report_egress_fault("http://10.0.0.2:3128")
    assert await pool.proxy_for(API, "token-1") == "http://10.0.0.3:3128"
    assert pool_api.requests == 2  # the faulted proxy was no longer current
    await pool.aclose()


async def test_without_stickiness_every_token_follows_the_pool(
    mock_clock: trio.testing.MockClock, pool_api: PoolApi
) -> None:
    pool_api.answer("10.0.0.2:3128")
    pool = ProxyPool(pool_api.url(), interval=60)
    assert await pool.proxy_for(API, "token-1") == "http://10.0.0.2:3128"
    pool_api.answer("10.0.0.3:3128")
    mock_clock.jump(61)

    assert await pool.proxy_for(API, "token-1") == "http://10.0.0.3:3128"
    await pool.aclose()
