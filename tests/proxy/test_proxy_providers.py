"""The provider chain: order, fallbacks, fault reports to the right provider,
and plugins that misbehave."""

from __future__ import annotations

import logging

import attrs
import pytest

from grok2api import EgressPurpose, token_id_for
from grok2api.errors import EgressBlocked, PluginError
from grok2api.proxies import Egress, ProxyProviders, mask_proxy_url

from .conftest import PASSWORD, TOKEN, MakeClient, chat
from .servers import HttpProxy


@attrs.define
class RecordingProvider:
    """Offers ``proxy_url`` (or nothing) and records what it is told."""

    proxy_url: str | None
    asked: list[tuple[EgressPurpose, str | None]] = attrs.Factory(list)
    faults: list[str] = attrs.Factory(list)
    closed: bool = False

    async def proxy_for(
        self, purpose: EgressPurpose, token_id: str | None
    ) -> str | None:
        self.asked.append((purpose, token_id))
        return self.proxy_url

    async def report_egress_fault(self, proxy_url: str) -> None:
        self.faults.append(proxy_url)

    async def aclose(self) -> None:
        self.closed = True


class BrokenProvider(RecordingProvider):
    async def proxy_for(
        self, purpose: EgressPurpose, token_id: str | None
    ) -> str | None:
        raise RuntimeError("plugin bug")


async def test_providers_fault_reaches_the_provider_that_supplied_the_proxy(
    make_client: MakeClient, http_proxy: HttpProxy
) -> None:
    silent = RecordingProvider(None)
    supplier = RecordingProvider(http_proxy.url())
    later = RecordingProvider("http://127.0.0.1:1")
    client = make_client("httpx", silent, supplier, later)
    assert await chat(client)
    http_proxy.stop()

    with pytest.raises(EgressBlocked):
        await chat(client)

    assert supplier.faults == [http_proxy.url()]
    assert silent.faults == later.faults == []
    assert later.asked == []
    assert silent.asked[0] == (EgressPurpose.API, token_id_for(TOKEN))


@pytest.mark.parametrize("answer", ["socks4://127.0.0.1:1080", "not a url", "ftp://h"])
async def test_providers_skip_a_broken_or_unusable_answer(
    answer: str,
    make_client: MakeClient,
    http_proxy: HttpProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(
        "httpx",
        BrokenProvider(None),
        RecordingProvider(answer),
        RecordingProvider(http_proxy.url()),
    )

    with caplog.at_level(logging.ERROR, logger="grok2api.proxies"):
        assert await chat(client)

    assert http_proxy.connections >= 1
    assert "provider0 failed to choose a proxy" in caplog.text
    assert "provider1 offered a proxy that" in caplog.text


async def test_providers_are_created_closed_and_refused_in_order() -> None:
    made = RecordingProvider("http://127.0.0.1:1")

    def refuses(settings: object) -> None:
        raise ValueError("cannot")

    providers = await ProxyProviders.create(
        {"wanted": lambda s: made, "unasked": lambda s: None}, object()
    )
    assert providers.names() == ["wanted"]
    await providers.aclose()
    assert made.closed

    again = RecordingProvider(None)
    with pytest.raises(PluginError, match="'broken' failed to start"):
        await ProxyProviders.create(
            {"first": lambda s: again, "broken": refuses}, object()
        )
    assert again.closed


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"http://user:{PASSWORD}@10.0.0.2:3128", "http://***@10.0.0.2:3128"),
        ("socks5h://session-key@proxy.test:1080", "socks5h://***@proxy.test:1080"),
        ("http://10.0.0.2:3128", "http://10.0.0.2:3128"),
        (
            "https://pool.test/get?key=abc&n=1",
            "https://pool.test/get?key=***&n=***",
        ),
        ("http://u:p@[::1]:8080", "http://***@[::1]:8080"),
        ("http://u:p@host:notaport", "***"),
    ],
)
def test_providers_mask_proxy_credentials(url: str, shown: str) -> None:
    assert mask_proxy_url(url) == shown
    assert str(Egress(url)) == shown
    assert PASSWORD not in repr(Egress(url))


def test_providers_direct_egress_says_so() -> None:
    assert str(Egress()) == "direct"
