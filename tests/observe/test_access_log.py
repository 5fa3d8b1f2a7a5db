"""The access-log layer at the ASGI level: request ids, the log line, and
what it hands to the recorder, for finished, abandoned and cancelled
responses."""

from __future__ import annotations

import logging
import re
from typing import Any, cast

import pytest
import trio

from grok2api.api.access_log import AccessLog
from grok2api.models import ModelCatalog
from grok2api.observe import Recorder
from grok2api.storage import Storage

from .conftest import MemoryStatsStorage, settings_with

Message = dict[str, Any]


def http_scope(path: str = "/v1/chat/completions") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [],
        "client": ("198.51.100.4", 50000),
    }


async def nothing_received() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Sent:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def header(self, name: bytes) -> bytes | None:
        start = self.messages[0]
        values = [v for n, v in start["headers"] if n == name]
        return values[0] if values else None


@pytest.fixture
def recorder(storage: MemoryStatsStorage) -> Recorder:
    settings = settings_with()
    catalog = ModelCatalog()
    return Recorder(
        cast(Storage, storage), lambda: settings, lambda model: model in catalog
    )


async def test_access_log_gives_each_request_an_id_before_the_app_runs(
    recorder: Recorder,
    storage: MemoryStatsStorage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "grok2api.access")
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["grok2api.request_id"])
        scope["grok2api.model"] = "grok-4"
        scope["grok2api.key_name"] = "ci"
        scope["grok2api.key_id"] = "key-1"
        scope["grok2api.error"] = "rate_limit_error"
        await send({"type": "http.response.start", "status": 429, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    layer = AccessLog(app, lambda: recorder)
    first, second = Sent(), Sent()
    await layer(http_scope(), nothing_received, first)
    await layer(http_scope(), nothing_received, second)

    assert first.header(b"x-request-id") == seen[0].encode()
    assert second.header(b"x-request-id") == seen[1].encode()
    assert re.fullmatch("[0-9a-f]{16}", seen[0]) and seen[0] != seen[1]
    line = caplog.records[0].getMessage()
    assert line.startswith("POST /v1/chat/completions 429 model=grok-4 token=- ")
    assert f"request_id={seen[0]}" in line

    await recorder.flush()
    entry = storage.audit[0]
    assert (entry.request_id, entry.client, entry.key_name) == (
        seen[0],
        "198.51.100.4",
        "ci",
    )
    assert (entry.status, entry.error, entry.model, entry.stream) == (
        429,
        "rate_limit_error",
        "grok-4",
        False,
    )
    assert storage.row("hour", "total").failures == 2
    assert storage.key_uses["key-1"][0] == 2


async def test_access_log_counts_open_streams_and_prefers_the_proxied_client(
    recorder: Recorder, storage: MemoryStatsStorage
) -> None:
    open_while_streaming: list[float] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["grok2api.client"] = "203.0.113.50"
        scope["grok2api.stream"] = True
        scope["grok2api.token_id"] = "0123456789abcdef"
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True}
        )
        open_while_streaming.append(recorder.metrics.open_streams.value())
        await send({"type": "http.response.body", "body": b""})

    await AccessLog(app, lambda: recorder)(http_scope(), nothing_received, Sent())

    assert open_while_streaming == [1]
    assert recorder.metrics.open_streams.value() == 0
    assert recorder.metrics.requests_in_flight.value() == 0
    await recorder.flush()
    entry = storage.audit[0]
    assert (entry.client, entry.stream, entry.token_id, entry.error) == (
        "203.0.113.50",
        True,
        "0123456789abcdef",
        "",
    )
    assert storage.row("hour", "total").successes == 1


async def test_access_log_records_a_response_the_client_left_as_a_failure(
    recorder: Recorder, storage: MemoryStatsStorage
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})

    await AccessLog(app, lambda: recorder)(http_scope(), nothing_received, Sent())
    await recorder.flush()
    assert (storage.audit[0].status, storage.audit[0].error) == (200, "client_gone")
    assert storage.row("hour", "total").failures == 1


async def test_access_log_records_a_cancelled_request_as_499(
    recorder: Recorder, storage: MemoryStatsStorage
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await trio.sleep_forever()

    with trio.move_on_after(0.01):
        await AccessLog(app, lambda: recorder)(http_scope(), nothing_received, Sent())
    await recorder.flush()
    assert (storage.audit[0].status, storage.audit[0].error) == (499, "cancelled")
    assert recorder.metrics.requests.value("/v1/chat/completions", "", "4xx") == 1


async def test_access_log_before_the_gateway_opens_only_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "grok2api.access")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = Sent()
    await AccessLog(app, lambda: None)(http_scope("/health"), nothing_received, sent)
    assert sent.header(b"x-request-id") is not None
    assert "POST /health 200" in caplog.records[0].getMessage()
