"""The chat route below Quart, driven as Hypercorn drives an ASGI app: the
request body's edge cases that a live server makes slow or racy to reach."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from grok2api.api.direct_chat import CHAT_PATH, DirectChat
from grok2api.config import ServerOptions
from grok2api.gateway import Gateway, open_gateway

API_KEY = "sk-direct-test"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    options = ServerOptions(data_dir=tmp_path)
    environ = {"GROK2API_APP_API_KEY": API_KEY}
    async with open_gateway(options, environ, background=False) as opened:
        await opened.auth.open()
        yield opened


def _scope(method: str = "POST", path: str = CHAT_PATH) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "scheme": "http",
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {API_KEY}".encode()),
            (b"transfer-encoding", b"chunked"),
        ],
    }


class Exchange:
    """One request: the body pieces the client sends, and what comes back."""

    def __init__(self, pieces: list[dict[str, Any]], then_wait: bool = True) -> None:
        self._pieces = pieces
        self._then_wait = then_wait
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self._pieces:
            return self._pieces.pop(0)
        if self._then_wait:
            await trio.sleep_forever()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    def error(self) -> dict[str, Any]:
        body = b"".join(m.get("body", b"") for m in self.sent[1:])
        return json.loads(body)["error"]  # type: ignore[no-any-return]


async def _not_quart(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("the request should not have reached Quart")


async def test_a_body_that_stops_arriving_is_a_408(gateway: Gateway) -> None:
    route = DirectChat(_not_quart, lambda: gateway, body_timeout=0.2)
    exchange = Exchange([{"type": "http.request", "body": b"{", "more_body": True}])

    with trio.fail_after(5):
        await route(_scope(), exchange.receive, exchange.send)

    assert exchange.status == 408
    assert exchange.error()["code"] == "request_timeout"


async def test_a_client_gone_mid_body_gets_no_answer(gateway: Gateway) -> None:
    route = DirectChat(_not_quart, lambda: gateway, body_timeout=5)
    exchange = Exchange(
        [{"type": "http.request", "body": b"{", "more_body": True}], then_wait=False
    )

    with trio.fail_after(5):
        await route(_scope(), exchange.receive, exchange.send)

    assert exchange.sent == []


async def test_a_bad_body_is_answered_before_any_token_is_touched(
    gateway: Gateway,
) -> None:
    route = DirectChat(_not_quart, lambda: gateway, body_timeout=5)
    exchange = Exchange([{"type": "http.request", "body": b"not json"}])

    with trio.fail_after(5):
        await route(_scope(), exchange.receive, exchange.send)

    assert exchange.status == 400
    assert exchange.error()["code"] == "invalid_json"


async def test_other_methods_and_paths_go_on_to_quart(gateway: Gateway) -> None:
    reached: list[tuple[str, str]] = []

    async def quart(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append((scope["method"], scope["path"]))

    route = DirectChat(quart, lambda: gateway, body_timeout=5)
    for method, path in (("GET", CHAT_PATH), ("POST", "/v1/models")):
        await route(_scope(method, path), Exchange([]).receive, Exchange([]).send)

    assert reached == [("GET", CHAT_PATH), ("POST", "/v1/models")]
