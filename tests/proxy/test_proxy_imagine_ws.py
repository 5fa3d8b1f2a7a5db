"""The Imagine WebSocket takes the token's egress like every other call."""

from __future__ import annotations

import pytest
from grok2api_proxy_pool import FixedProxy

from grok2api.errors import EgressBlocked
from grok2api.upstream.imagine_ws import (
    ImagineLimits,
    ImagineRequest,
    generate_over_socket,
)
from tests.conftest import Emulator

from .conftest import TOKEN, MakeClient
from .servers import Socks5Proxy

LIMITS = ImagineLimits(settle_seconds=0.3, idle_timeout=2.0)


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
async def test_proxy_socks5_carries_the_imagine_socket(
    scheme: str, make_client: MakeClient, socks_proxy: Socks5Proxy, accounts: Emulator
) -> None:
    client = make_client("httpx", FixedProxy(socks_proxy.url(scheme)))

    result = await generate_over_socket(
        client, TOKEN, ImagineRequest("through"), 2, LIMITS
    )

    assert len(result.images) == 2
    assert socks_proxy.connections == 1
    assert socks_proxy.targets[0].endswith(accounts.url.rsplit(":", 1)[1])


async def test_proxy_stopped_proxy_is_an_egress_fault_for_the_socket(
    make_client: MakeClient,
) -> None:
    client = make_client("httpx", FixedProxy("socks5://127.0.0.1:9"))
    with pytest.raises(EgressBlocked):
        await generate_over_socket(client, TOKEN, ImagineRequest("x"), 1, LIMITS)
