"""Fixtures for the proxy tests: local proxies and a pool API in the test's
nursery, the Grok emulator as the upstream, and a client builder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio

from grok2api.proxies import ProxyProvider, ProxyProviders
from grok2api.upstream import (
    AnswerDelta,
    ConversationRequest,
    UpstreamClient,
    UpstreamOptions,
)
from tests.conftest import Emulator

from .servers import HttpProxy, PoolApi, Socks5Proxy

TOKEN = "tok-proxy-a"
OTHER_TOKEN = "tok-proxy-b"
PASSWORD = "s3cret-proxy-pass"
REQUEST = ConversationRequest(message="hello", model_name="grok-4")

MakeClient = Callable[..., UpstreamClient]


@pytest.fixture
async def http_proxy(nursery: trio.Nursery) -> HttpProxy:
    """An HTTP proxy (CONNECT and forwarding) without authentication."""
    proxy = HttpProxy()
    await nursery.start(proxy.serve)
    return proxy


@pytest.fixture
async def second_proxy(nursery: trio.Nursery) -> HttpProxy:
    """Another HTTP proxy, for rotations."""
    proxy = HttpProxy()
    await nursery.start(proxy.serve)
    return proxy


@pytest.fixture
async def auth_proxy(nursery: trio.Nursery) -> HttpProxy:
    """An HTTP proxy that wants ``proxy-user`` / :data:`PASSWORD`."""
    proxy = HttpProxy(credentials=("proxy-user", PASSWORD))
    await nursery.start(proxy.serve)
    return proxy


@pytest.fixture
async def socks_proxy(nursery: trio.Nursery) -> Socks5Proxy:
    """A SOCKS5 proxy that wants ``socks-user`` / :data:`PASSWORD`."""
    proxy = Socks5Proxy(credentials=("socks-user", PASSWORD))
    await nursery.start(proxy.serve)
    return proxy


@pytest.fixture
async def pool_api(nursery: trio.Nursery) -> PoolApi:
    """A pool API answering nothing useful until a test scripts it."""
    api = PoolApi()
    await nursery.start(api.serve)
    return api


@pytest.fixture
def accounts(emulator: Emulator) -> Emulator:
    """The emulator, knowing :data:`TOKEN` and :data:`OTHER_TOKEN`."""
    emulator.control.add_account(TOKEN)
    emulator.control.add_account(OTHER_TOKEN)
    return emulator


@pytest.fixture
async def make_client(accounts: Emulator) -> AsyncIterator[MakeClient]:
    """Build upstream clients aimed at the emulator; closed after the test.

    ``make_client(transport, *providers, **options)`` takes the transport
    name, proxy providers in the order they are asked, and option changes.
    """
    built: list[UpstreamClient] = []

    def build(
        transport: str = "httpx", *providers: ProxyProvider, **options: Any
    ) -> UpstreamClient:
        settings = UpstreamOptions(
            base_url=accounts.url,
            assets_url=accounts.url,
            transport=transport,
            first_frame_timeout=10.0,
            request_timeout=10.0,
            connect_timeout=5.0,
            **options,
        )
        named = [(f"provider{i}", p) for i, p in enumerate(providers)]
        client = UpstreamClient(settings, proxies=ProxyProviders(named))
        built.append(client)
        return client

    yield build
    for client in built:
        await client.aclose()
        await client.proxies.aclose()


async def chat(client: UpstreamClient, token: str = TOKEN) -> str:
    """One conversation; its answer text."""
    async with client.open_conversation(token, REQUEST) as stream:
        return "".join([e.text async for e in stream if isinstance(e, AnswerDelta)])
