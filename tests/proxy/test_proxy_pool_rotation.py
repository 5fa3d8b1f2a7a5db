"""When the pool rotates: on egress faults and on its interval, never on
token faults; and how a failing pool API is lived with."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from grok2api_proxy_pool import ProxyPool

from grok2api import EgressPurpose
from grok2api.errors import EgressBlocked, TokenRejected, UpstreamRateLimited
from tests.conftest import Emulator

from .conftest import TOKEN, MakeClient, chat
from .servers import HttpProxy, PoolApi, Socks5Proxy

TRANSPORTS = ["trio", "httpx", "curl_cffi"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_pool_rotates_after_a_cloudflare_challenge(
    transport: str,
    make_client: MakeClient,
    accounts: Emulator,
    pool_api: PoolApi,
    http_proxy: HttpProxy,
    socks_proxy: Socks5Proxy,
) -> None:
    pool_api.answer(http_proxy.url())
    client = make_client(transport, ProxyPool(pool_api.url(), interval=300))
    assert await chat(client)
    pool_api.answer(socks_proxy.url("socks5h"))
    accounts.control.fault("403_cloudflare", times=1)

    with pytest.raises(EgressBlocked):
        await chat(client)
    used_before = http_proxy.connections
    assert await chat(client)

    assert pool_api.requests == 2
    assert socks_proxy.connections >= 1
    assert http_proxy.connections == used_before


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_pool_rotates_when_the_proxy_refuses_connections(
    transport: str,
    make_client: MakeClient,
    pool_api: PoolApi,
    http_proxy: HttpProxy,
    second_proxy: HttpProxy,
) -> None:
    pool_api.answer(http_proxy.url())
    client = make_client(transport, ProxyPool(pool_api.url(), interval=300))
    assert await chat(client)
    http_proxy.stop()
    pool_api.answer(second_proxy.url())

    with pytest.raises(EgressBlocked):
        await chat(client)
    assert await chat(client)

    assert pool_api.requests == 2
    assert second_proxy.connections >= 1


@pytest.mark.parametrize(
    ("fault", "error"), [("401", TokenRejected), ("429", UpstreamRateLimited)]
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_pool_keeps_its_proxy_after_a_token_fault(
    transport: str,
    fault: str,
    error: type[Exception],
    make_client: MakeClient,
    accounts: Emulator,
    pool_api: PoolApi,
    http_proxy: HttpProxy,
    second_proxy: HttpProxy,
) -> None:
    pool_api.answer(http_proxy.url())
    client = make_client(transport, ProxyPool(pool_api.url(), interval=300))
    assert await chat(client)
    pool_api.answer(second_proxy.url())
    accounts.control.fault(fault, times=1)

    with pytest.raises(error):
        await chat(client)
    assert await chat(client)

    assert pool_api.requests == 1
    assert second_proxy.connections == 0


async def test_pool_fetches_again_once_the_interval_passed(
    mock_clock: trio.testing.MockClock, pool_api: PoolApi
) -> None:
    pool_api.answer("10.0.0.2:3128")
    pool = ProxyPool(pool_api.url(), interval=60)

    first = await pool.proxy_for(EgressPurpose.API, None)
    pool_api.answer("10.0.0.3:3128")
    mock_clock.jump(59)
    still = await pool.proxy_for(EgressPurpose.API, None)
    mock_clock.jump(2)
    later = await pool.proxy_for(EgressPurpose.API, None)

    assert (first, still, later) == (
        "http://10.0.0.2:3128",
        "http://10.0.0.2:3128",
        "http://10.0.0.3:3128",
    )
    assert pool_api.requests == 2
    await pool.aclose()


async def test_pool_interval_refresh_steers_the_next_call(
    mock_clock: trio.testing.MockClock,
    make_client: MakeClient,
    pool_api: PoolApi,
    http_proxy: HttpProxy,
    second_proxy: HttpProxy,
) -> None:
    pool_api.answer(http_proxy.url())
    client = make_client("httpx", ProxyPool(pool_api.url(), interval=60))
    assert await chat(client)
    pool_api.answer(second_proxy.url())

    mock_clock.jump(61)
    limits = await client.rate_limits(TOKEN)

    assert limits.remaining > 0
    assert second_proxy.connections == 1


async def test_pool_api_failure_keeps_the_last_good_proxy_and_warns_once(
    mock_clock: trio.testing.MockClock,
    pool_api: PoolApi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool_api.answer("10.0.0.2:3128")
    pool = ProxyPool(pool_api.url(), interval=60)
    assert await pool.proxy_for(EgressPurpose.API, None) == "http://10.0.0.2:3128"
    pool_api.status = 503

    with caplog.at_level(logging.DEBUG, logger="grok2api_proxy_pool"):
        await pool.report_egress_fault("http://10.0.0.2:3128")
        after_fault = await pool.proxy_for(EgressPurpose.API, None)
        mock_clock.jump(31)
        after_retry = await pool.proxy_for(EgressPurpose.API, None)
        pool_api.answer("10.0.0.3:3128")
        mock_clock.jump(31)
        recovered = await pool.proxy_for(EgressPurpose.API, None)

    assert (after_fault, after_retry, recovered) == (
        "http://10.0.0.2:3128",
        "http://10.0.0.2:3128",
        "http://10.0.0.3:3128",
    )
    assert pool_api.requests == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "HTTP 503" in warnings[0].getMessage()
    assert "keeping http://10.0.0.2:3128" in warnings[0].getMessage()
    assert "answers again" in caplog.text
    await pool.aclose()


async def test_pool_api_that_never_answers_times_out(pool_api: PoolApi) -> None:
    pool_api.stall = True
    pool = ProxyPool(pool_api.url(), interval=60, fetch_timeout=0.2)

    with trio.fail_after(5):
        proxy = await pool.proxy_for(EgressPurpose.API, None)

    assert proxy is None
    assert pool_api.requests == 1
    await pool.aclose()


async def test_pool_without_any_proxy_yet_lets_the_static_proxy_carry(
    make_client: MakeClient, pool_api: PoolApi, http_proxy: HttpProxy
) -> None:
    pool_api.stop()
    client = make_client(
        "httpx", ProxyPool(pool_api.url(), interval=60), proxy_url=http_proxy.url()
    )

    assert await chat(client)

    assert http_proxy.connections >= 1


async def test_pool_fetches_once_for_concurrent_calls(
    make_client: MakeClient, pool_api: PoolApi, http_proxy: HttpProxy
) -> None:
    pool_api.answer(http_proxy.url())
    client = make_client("httpx", ProxyPool(pool_api.url(), interval=60))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(client.rate_limits, TOKEN)

    assert pool_api.requests == 1
    assert len(http_proxy.targets) == 5
