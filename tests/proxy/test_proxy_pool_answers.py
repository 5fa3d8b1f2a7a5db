"""The pool API's answer formats: plain text, JSON objects, JSON lists."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from grok2api_proxy_pool import PoolAnswerError, ProxyPool, proxy_candidates

from grok2api import EgressPurpose

from .conftest import MakeClient, chat
from .servers import HttpProxy, PoolApi

Answer = Callable[[int], tuple[str, str]]

ANSWERS: dict[str, Answer] = {
    "plain host:port": lambda port: (f"127.0.0.1:{port}\n", "text/plain"),
    "plain url": lambda port: (f"http://127.0.0.1:{port}", "text/plain"),
    "json proxy": lambda port: (
        json.dumps({"proxy": f"127.0.0.1:{port}"}),
        "application/json",
    ),
    "json data.proxy": lambda port: (
        json.dumps({"code": 0, "data": {"proxy": f"http://127.0.0.1:{port}"}}),
        "application/json",
    ),
    "json ip and port": lambda port: (
        json.dumps({"code": 0, "data": [{"ip": "127.0.0.1", "port": port}]}),
        "application/json",
    ),
    "json list": lambda port: (
        json.dumps([f"127.0.0.1:{port}", "127.0.0.1:1"]),
        "application/json",
    ),
}


@pytest.mark.parametrize("shape", sorted(ANSWERS))
async def test_pool_answer_shape_carries_the_conversation(
    shape: str, make_client: MakeClient, pool_api: PoolApi, http_proxy: HttpProxy
) -> None:
    pool_api.answer(*ANSWERS[shape](http_proxy.port))
    pool = ProxyPool(pool_api.url(), interval=300)
    client = make_client("httpx", pool)

    assert await chat(client)

    assert pool.current == f"http://127.0.0.1:{http_proxy.port}"
    assert http_proxy.connections >= 1
    assert pool_api.requests == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"10.0.0.2:3128", ["http://10.0.0.2:3128"]),
        (
            b"user:pw@10.0.0.2:3128\r\n10.0.0.3:3128",
            ["http://user:pw@10.0.0.2:3128", "http://10.0.0.3:3128"],
        ),
        (b"socks5h://u:p@proxy.test:1080", ["socks5h://u:p@proxy.test:1080"]),
        (b'"10.0.0.2:3128"', ["http://10.0.0.2:3128"]),
        (b'{"data": "10.0.0.2:3128"}', ["http://10.0.0.2:3128"]),
        (b'{"https": "https://10.0.0.2:443"}', ["https://10.0.0.2:443"]),
        (
            b'{"result": {"list": ["10.0.0.2:1", "10.0.0.3:2"]}}',
            ["http://10.0.0.2:1", "http://10.0.0.3:2"],
        ),
        (b'{"ip": "10.0.0.2:3128"}', ["http://10.0.0.2:3128"]),
        (
            b'{"ip": "10.0.0.2", "port": "1080", "protocol": "SOCKS5",'
            b' "username": "u@x", "password": "p:w"}',
            ["socks5://u%40x:p%3Aw@10.0.0.2:1080"],
        ),
        (b'{"host": "::1", "port": 8080}', ["http://[::1]:8080"]),
    ],
)
def test_pool_answer_addresses_are_read(body: bytes, expected: list[str]) -> None:
    assert proxy_candidates(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \n",
        b"<html>rate limited</html>",
        b'{"code": 500, "msg": "no proxy left"}',
        b"[]",
        b"ftp://10.0.0.2:21",
        b'{"ip": "10.0.0.2"}',
        b"socks4://10.0.0.2:1080",
    ],
)
def test_pool_answer_without_a_usable_address_is_refused(body: bytes) -> None:
    with pytest.raises(PoolAnswerError):
        proxy_candidates(body)


async def test_pool_answer_skips_a_proxy_that_just_failed(pool_api: PoolApi) -> None:
    pool_api.answer(json.dumps(["10.0.0.2:1", "10.0.0.3:2"]), "application/json")
    pool = ProxyPool(pool_api.url(), interval=300)

    first = await pool.proxy_for(EgressPurpose.API, None)
    await pool.report_egress_fault("http://10.0.0.2:1")
    second = await pool.proxy_for(EgressPurpose.API, None)

    assert (first, second) == ("http://10.0.0.2:1", "http://10.0.0.3:2")
    assert pool_api.requests == 2
    await pool.aclose()
