"""Proxy credentials and pool API keys never reach a log line or an error."""

from __future__ import annotations

import logging

import pytest
from grok2api_proxy_pool import ProxyPool

from grok2api.errors import EgressBlocked
from tests.conftest import Emulator

from .conftest import PASSWORD, MakeClient, chat
from .servers import HttpProxy, PoolApi, Socks5Proxy

POOL_KEY = "pool-api-secret"


@pytest.mark.parametrize("transport", ["httpx", "curl_cffi"])
async def test_secrets_stay_out_of_logs_and_errors(
    transport: str,
    make_client: MakeClient,
    accounts: Emulator,
    pool_api: PoolApi,
    auth_proxy: HttpProxy,
    socks_proxy: Socks5Proxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool_api.answer(auth_proxy.url())
    pool = ProxyPool(pool_api.url(f"/get?key={POOL_KEY}"), interval=300)
    client = make_client(transport, pool)
    # As grok2api.logs sets them: httpx logs every request URL at INFO.
    caplog.set_level(logging.WARNING, logger="httpx")
    caplog.set_level(logging.WARNING, logger="httpcore")
    caplog.set_level(logging.DEBUG)  # last: it also sets the handler's level

    assert await chat(client)
    accounts.control.fault("403_cloudflare", times=1)
    with pytest.raises(EgressBlocked) as challenged:
        await chat(client)
    pool_api.answer(socks_proxy.url())
    assert await chat(client)
    socks_proxy.stop()
    pool_api.status = 500
    with pytest.raises(EgressBlocked) as refused:
        await chat(client)
    with pytest.raises(EgressBlocked) as kept:
        await chat(client)  # the pool API fails; the last proxy is kept

    errors = [str(e.value) for e in (challenged, refused, kept)]
    shown = caplog.text + "\n".join(errors)
    assert auth_proxy.connections >= 1 and socks_proxy.connections >= 1
    assert "egress=http://***@127.0.0.1" in caplog.text
    assert "The proxy pool API http://127.0.0.1" in caplog.text
    assert PASSWORD not in shown
    assert POOL_KEY not in shown
    assert "proxy-user" not in shown and "socks-user" not in shown
