"""Quota refresh from the upstream: on schedule, never on the request path."""

from __future__ import annotations

import time

from grok2api.storage import token_id_for
from tests.conftest import Emulator, Gateway, GatewayFactory


def test_chat_requests_never_call_the_rate_limits_endpoint(
    gateway: Gateway, emulator: Emulator
) -> None:
    with gateway.client() as client:
        for _ in range(3):
            client.post(
                "/v1/chat/completions",
                json={
                    "model": "grok-4",
                    "messages": [{"role": "user", "content": "x"}],
                },
            )
    assert emulator.control.requests(path="/rest/rate-limits") == []


def test_scheduled_refresh_syncs_quota_and_marks_failures_stale(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a", quota=60, remaining=33)
    gateway = gateway_factory(
        ["tok-a", "tok-gone"],
        GROK2API_TOKEN_AUTO_REFRESH="true",
        GROK2API_TOKEN_REFRESH_INTERVAL_HOURS="0.0005",
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        tokens = gateway.tokens()
        if (
            tokens[token_id_for("tok-a")]["last_sync_at"]
            and tokens[token_id_for("tok-gone")]["stale"]
        ):
            break
        time.sleep(0.2)
    a, gone = tokens[token_id_for("tok-a")], tokens[token_id_for("tok-gone")]
    assert (a["quota"], a["quota_total"], a["stale"]) == (33, 60, False)
    assert (
        gone["stale"] is True and gone["last_sync_at"] is None and gone["quota"] == 80
    )
