"""Every transport really sends upstream traffic through the chosen proxy."""

from __future__ import annotations

import pytest
from grok2api_proxy_pool import FixedProxy

from grok2api.errors import EgressBlocked
from tests.conftest import Emulator

from .conftest import PASSWORD, TOKEN, MakeClient, chat
from .servers import HttpProxy, Socks5Proxy

TRANSPORTS = ["trio", "httpx", "curl_cffi"]
CHAT_PATH = "/rest/app-chat/conversations/new"


def _emulator_target(accounts: Emulator) -> str:
    return accounts.url.removeprefix("http://")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_proxy_http_carries_the_conversation(
    transport: str, make_client: MakeClient, auth_proxy: HttpProxy, accounts: Emulator
) -> None:
    client = make_client(transport, FixedProxy(auth_proxy.url()))

    answer = await chat(client)

    assert answer
    assert auth_proxy.connections >= 1
    assert auth_proxy.targets == [_emulator_target(accounts)] * len(auth_proxy.targets)
    assert len(accounts.control.requests(path=CHAT_PATH)) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
async def test_proxy_socks5_carries_the_conversation(
    transport: str,
    scheme: str,
    make_client: MakeClient,
    socks_proxy: Socks5Proxy,
    accounts: Emulator,
) -> None:
    client = make_client(transport, FixedProxy(socks_proxy.url(scheme)))

    answer = await chat(client)

    assert answer
    assert socks_proxy.connections >= 1
    assert socks_proxy.targets[0].endswith(_emulator_target(accounts).split(":")[1])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_proxy_static_base_proxy_applies_without_a_provider(
    transport: str, make_client: MakeClient, http_proxy: HttpProxy
) -> None:
    client = make_client(transport, proxy_url=http_proxy.url())

    assert await chat(client)
    limits = await client.rate_limits(TOKEN)

    assert limits.remaining > 0
    assert http_proxy.connections >= 1
    assert len(http_proxy.targets) >= 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_proxy_provider_wins_over_the_static_proxy(
    transport: str,
    make_client: MakeClient,
    http_proxy: HttpProxy,
    second_proxy: HttpProxy,
) -> None:
    client = make_client(
        transport, FixedProxy(second_proxy.url()), proxy_url=http_proxy.url()
    )

    assert await chat(client)

    assert second_proxy.connections >= 1
    assert http_proxy.connections == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_proxy_asset_traffic_takes_the_asset_proxy(
    transport: str,
    make_client: MakeClient,
    http_proxy: HttpProxy,
    second_proxy: HttpProxy,
) -> None:
    client = make_client(
        transport, FixedProxy(http_proxy.url()), asset_proxy_url=second_proxy.url()
    )

    uploaded = await client.upload_file(TOKEN, "cat.png", "image/png", b"\x89PNG")
    assert uploaded.file_metadata_id
    assert (second_proxy.connections, http_proxy.connections) == (1, 0)

    assert await chat(client)
    assert http_proxy.connections >= 1
    assert second_proxy.connections == 1


# Over HTTP: httpcore leaves the socket of a refused SOCKS handshake for the
# garbage collector, which the suite's ResourceWarning-as-error would blame
# on this test.
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_proxy_wrong_password_is_an_egress_fault_without_the_password(
    transport: str, make_client: MakeClient, auth_proxy: HttpProxy
) -> None:
    wrong = auth_proxy.url().replace(PASSWORD, "wrong-pass-123")
    client = make_client(transport, FixedProxy(wrong))

    with pytest.raises(EgressBlocked) as caught:
        await chat(client)

    assert "wrong-pass-123" not in str(caught.value)
    assert auth_proxy.connections == 1
    assert auth_proxy.targets == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_proxy_stopped_proxy_is_an_egress_fault(
    transport: str, make_client: MakeClient, auth_proxy: HttpProxy
) -> None:
    client = make_client(transport, FixedProxy(auth_proxy.url()))
    auth_proxy.stop()

    with pytest.raises(EgressBlocked) as caught:
        await chat(client)

    assert PASSWORD not in str(caught.value)
