"""The proxy pool wired into the gateway: the plugin's providers, the
settings that choose them, and a chat through the HTTP API that leaves
through the pool's proxy."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from grok2api_proxy_pool import FixedProxy, ProxyPool

from grok2api import EgressPurpose
from grok2api.config import ProxySettings, ServerOptions, Settings, load_settings
from grok2api.emulator import expected_answer
from grok2api.errors import ConfigError
from grok2api.gateway import open_gateway
from grok2api.plugins import PluginHost, load_plugins
from grok2api.proxies import ProxyProviders
from tests.conftest import API_KEY, Emulator, GatewayFactory

from .conftest import PASSWORD
from .servers import HttpProxy, PoolApi, Socks5Proxy, serving_in_thread

CHAT_PATH = "/rest/app-chat/conversations/new"


async def _providers(settings: Settings, tmp_path: Path) -> ProxyProviders:
    plugins = load_plugins(PluginHost(settings, tmp_path))
    return await ProxyProviders.create(plugins.proxy_provider_factories(), settings)


async def test_gateway_plugin_offers_the_pool_before_the_fixed_proxy(
    tmp_path: Path,
) -> None:
    settings = Settings(
        proxy=ProxySettings(
            proxy_url="socks5h://127.0.0.1:1080",
            proxy_pool_url="http://127.0.0.1:9/get",
            sticky_per_token=True,
        )
    )

    providers = await _providers(settings, tmp_path)
    unconfigured = await _providers(Settings(), tmp_path)

    assert providers.names() == ["proxy_pool", "fixed_proxy"]
    assert unconfigured.names() == []
    await providers.aclose()


async def test_gateway_plugin_factories_read_the_settings(tmp_path: Path) -> None:
    plugins = load_plugins(PluginHost(Settings(), tmp_path))
    factories = plugins.proxy_provider_factories()
    settings = Settings(
        proxy=ProxySettings(proxy_pool_url="http://127.0.0.1:9/", sticky_per_token=True)
    )

    pool = factories["proxy_pool"](settings)
    fixed = factories["fixed_proxy"](
        Settings(proxy=ProxySettings(proxy_url="http://127.0.0.1:3128"))
    )

    assert isinstance(pool, ProxyPool)
    assert isinstance(fixed, FixedProxy) and fixed.proxy_url == "http://127.0.0.1:3128"
    assert factories["fixed_proxy"](settings) is None
    await pool.aclose()


def test_gateway_settings_refuse_socks4_for_the_fixed_proxy(tmp_path: Path) -> None:
    environ = {"GROK2API_PROXY_PROXY_URL": f"socks4://user:{PASSWORD}@10.0.0.2:1080"}

    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ)

    assert "proxy.proxy_url" in str(caught.value)
    assert "socks5" in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["trio", "httpx", "curl_cffi"])
def test_gateway_chats_through_the_pool_and_rotates_on_a_challenge(
    transport: str, gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    for token in ("tok-a", "tok-b"):
        emulator.control.add_account(token)
    first = HttpProxy(credentials=("gateway-user", PASSWORD))
    second = Socks5Proxy()
    pool_api = PoolApi()

    with serving_in_thread(first, second, pool_api):
        pool_api.answer(first.url())
        gateway = gateway_factory(
            ["tok-a", "tok-b"],
            GROK2API_PROXY_PROXY_POOL_URL=pool_api.url(),
            GROK2API_NETWORK_TRANSPORT=transport,
            # The upstream call lines, which name the egress, are DEBUG.
            LOG_LEVEL="DEBUG",
        )
        client = openai.OpenAI(base_url=gateway.api, api_key=API_KEY, max_retries=0)
        with client:
            reply = client.chat.completions.create(
                model="grok-4", messages=[{"role": "user", "content": "Hello?"}]
            )
            assert reply.choices[0].message.content == expected_answer("Hello?")
            assert first.targets
            assert pool_api.requests == 1

            pool_api.answer(second.url("socks5h"))
            emulator.control.fault("403_cloudflare", times=1)
            again = client.chat.completions.create(
                model="grok-4", messages=[{"role": "user", "content": "Again?"}]
            )

    assert again.choices[0].message.content == expected_answer("Again?")
    assert pool_api.requests == 2
    assert second.targets == [emulator.url.removeprefix("http://")]
    assert len(emulator.control.requests(path=CHAT_PATH)) == 3
    log = gateway.log()
    assert "egress=http://***@127.0.0.1" in log
    assert PASSWORD not in log and "gateway-user" not in log


async def test_gateway_rebuilds_the_providers_when_proxy_settings_change(
    tmp_path: Path,
) -> None:
    options = ServerOptions(data_dir=tmp_path)
    async with open_gateway(options, {}, background=False) as gateway:
        first = gateway.upstream
        assert first.proxies.names() == []

        await gateway.storage.save_config_overrides(
            {"proxy": {"proxy_url": "http://127.0.0.1:3128"}}
        )
        await gateway.reload_settings()
        changed = gateway.upstream
        await gateway.reload_settings()

        assert changed is not first
        assert changed.proxies.names() == ["fixed_proxy"]
        egress = await changed.egress_for(EgressPurpose.API, "tok-a")
        assert egress.proxy_url == "http://127.0.0.1:3128"
        assert gateway.upstream is changed
