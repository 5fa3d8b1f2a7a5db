"""A client that goes away cancels its upstream request; the ledger spends what
the upstream charged, and the token is not penalised."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import Emulator, Gateway, GatewayFactory

CHAT = {"model": "grok-4", "messages": [{"role": "user", "content": "slow please"}]}


@pytest.fixture
def slow_gateway(gateway_factory: GatewayFactory, emulator: Emulator) -> Gateway:
    emulator.control.add_account("tok-a")
    # Ten lines half a second apart: the answer takes five seconds.
    emulator.control.configure(line_delay=0.5, answer_tokens=10, thinking_tokens=0)
    return gateway_factory(["tok-a"])


def wait_for_cancelled_upstream(emulator: Emulator, within: float) -> dict[str, object]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        records = emulator.control.requests(path="/rest/app-chat/conversations/new")
        if records and records[-1]["outcome"] != "pending":
            return records[-1]
        time.sleep(0.05)
    raise AssertionError("the upstream request was still open")


def assert_ledger_matches_upstream(gateway: Gateway, record: dict[str, object]) -> None:
    # Settling happens right after the cancellation; give it a moment.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        (token,) = gateway.tokens().values()
        if token["reserved"] == 0:
            break
        time.sleep(0.05)
    assert token["reserved"] == 0
    assert record["charged"] == 1
    assert token["quota_total"] - token["quota"] == record["charged"]
    assert token["fail_count"] == 0 and token["state"] == "active"


def test_stream_disconnect_cancels_upstream_within_a_second(
    slow_gateway: Gateway, emulator: Emulator
) -> None:
    with (
        slow_gateway.client() as client,
        client.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
        ) as response,
    ):
        assert response.status_code == 200
        next(response.iter_bytes())
        left_at = time.monotonic()
    record = wait_for_cancelled_upstream(emulator, within=3)
    assert record["outcome"] == "cancelled"
    assert record["ended_at"] - record["started_at"] < 4  # type: ignore[operator]
    assert time.monotonic() - left_at < 1.5
    assert_ledger_matches_upstream(slow_gateway, record)


def test_non_stream_disconnect_cancels_upstream_too(
    slow_gateway: Gateway, emulator: Emulator
) -> None:
    with slow_gateway.client() as client, pytest.raises(httpx.ReadTimeout):
        client.post(
            "/v1/chat/completions", json=CHAT, timeout=httpx.Timeout(30, read=1.0)
        )
    left_at = time.monotonic()
    record = wait_for_cancelled_upstream(emulator, within=3)
    assert record["outcome"] == "cancelled"
    assert time.monotonic() - left_at < 1.5
    assert_ledger_matches_upstream(slow_gateway, record)
    log = slow_gateway.log()
    assert "outcome=client_gone" in log or "outcome=cancelled" in log
