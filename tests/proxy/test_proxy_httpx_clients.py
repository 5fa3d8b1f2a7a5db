"""The httpx transport keeps one client per proxy, a bounded number of them."""

from __future__ import annotations

import pytest

from grok2api.errors import EgressBlocked
from grok2api.upstream import HttpxTransport
from tests.conftest import Emulator

from .servers import HttpProxy, Socks5Proxy


async def _health(transport: HttpxTransport, url: str, proxy_url: str) -> int:
    async with transport.stream(
        "GET", url, headers={}, read_timeout=5, proxy_url=proxy_url
    ) as response:
        await response.aread()
        return response.status


async def test_httpx_clients_are_bounded_and_an_evicted_busy_one_drains(
    emulator: Emulator,
    http_proxy: HttpProxy,
    second_proxy: HttpProxy,
    socks_proxy: Socks5Proxy,
) -> None:
    transport = HttpxTransport(max_proxy_clients=2, connect_timeout=5)
    health = f"{emulator.url}/_emulator/health"

    async with transport.stream(
        "GET", health, headers={}, read_timeout=5, proxy_url=http_proxy.url()
    ) as held:
        assert await _health(transport, health, second_proxy.url()) == 200
        assert await _health(transport, health, socks_proxy.url()) == 200
        # The first proxy's client is evicted but still carries ``held``.
        assert transport.statistics().proxy_clients == 3
        assert held.status == 200
        assert b"ok" in await held.aread()
    assert transport.statistics().proxy_clients == 2

    assert await _health(transport, health, http_proxy.url()) == 200
    assert transport.statistics().proxy_clients == 2
    assert len(http_proxy.targets) == 2
    assert len(second_proxy.targets) == len(socks_proxy.targets) == 1

    await transport.aclose()
    assert transport.statistics().proxy_clients == 0


async def test_httpx_reuses_the_client_of_a_known_proxy(
    emulator: Emulator, http_proxy: HttpProxy
) -> None:
    transport = HttpxTransport(max_proxy_clients=2)
    health = f"{emulator.url}/_emulator/health"

    for _ in range(3):
        assert await _health(transport, health, http_proxy.url()) == 200
    assert await _health(transport, health, "") == 200

    assert transport.statistics().proxy_clients == 2
    assert len(http_proxy.targets) == 3
    await transport.aclose()


@pytest.mark.parametrize("proxy_url", ["socks4://user:pw@127.0.0.1:1080", "ftp://h"])
async def test_httpx_unusable_proxy_is_a_clear_egress_error(
    emulator: Emulator, proxy_url: str
) -> None:
    transport = HttpxTransport()

    with pytest.raises(EgressBlocked, match="cannot use the configured proxy") as e:
        await _health(transport, f"{emulator.url}/_emulator/health", proxy_url)

    assert "pw" not in str(e.value)
    assert transport.statistics().proxy_clients == 0
    await transport.aclose()
