"""Upstream failures: who gets penalised, when the gateway fails over, and
what the client sees."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from grok2api.emulator import expected_answer
from grok2api.storage import token_id_for
from tests.conftest import API_KEY, Emulator, Gateway, GatewayFactory

A, B = token_id_for("tok-a"), token_id_for("tok-b")


def ask(gateway: Gateway, **body: Any) -> httpx.Response:
    body.setdefault("model", "grok-4")
    body.setdefault("messages", [{"role": "user", "content": "hello"}])
    with gateway.client() as client:
        return client.post("/v1/chat/completions", json=body)


def penalised(tokens: dict[str, dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """State and failure count of every token that is not fresh and active."""
    return {
        tid: (t["state"], t["fail_count"])
        for tid, t in tokens.items()
        if t["state"] != "active" or t["fail_count"]
    }


def spent(tokens: dict[str, dict[str, Any]]) -> int:
    return sum(t["quota_total"] - t["quota"] for t in tokens.values())


def test_invalid_token_fails_over_and_counts_one_failure(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("401", times=1)
    response = ask(gateway)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == expected_answer(
        "hello"
    )
    tokens = gateway.tokens()
    assert sorted(t["fail_count"] for t in tokens.values()) == [0, 1]
    assert penalised(tokens) == {
        next(t for t in tokens if tokens[t]["fail_count"]): ("active", 1)
    }
    assert spent(tokens) == 1
    assert sum(t["reserved"] for t in tokens.values()) == 0


def test_blocked_account_is_invalidated_at_once(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("403_blocked", times=1)
    assert ask(gateway).status_code == 200
    states = sorted(t["state"] for t in gateway.tokens().values())
    assert states == ["active", "invalid"]


@pytest.mark.parametrize(
    ("fault", "quota_left"), [("429", True), ("429_no_quota", False)]
)
def test_rate_limit_cools_the_token(
    gateway: Gateway, emulator: Emulator, fault: str, quota_left: bool
) -> None:
    emulator.control.fault(fault, times=1)
    assert ask(gateway).status_code == 200
    cooled = [t for t in gateway.tokens().values() if t["state"] == "cooling"]
    assert len(cooled) == 1
    assert cooled[0]["cooldown_until"] > time.time() + 60
    assert (cooled[0]["quota"] > 0) is quota_left


@pytest.mark.parametrize(
    "fault", ["403_cloudflare", "403_empty", "inband_error_internal"]
)
def test_faults_that_are_not_the_tokens_penalise_nobody(
    gateway: Gateway, emulator: Emulator, fault: str
) -> None:
    emulator.control.fault(fault, times=1)
    response = ask(gateway)
    assert response.status_code == 200, response.text
    assert penalised(gateway.tokens()) == {}
    assert len(emulator.control.requests(path="/rest/app-chat/conversations/new")) == 2


def test_in_band_rate_limit_on_the_first_line_fails_over(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("inband_error", times=1)
    with openai.OpenAI(base_url=gateway.api, api_key=API_KEY, max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(
                model="grok-4",
                messages=[{"role": "user", "content": "hello"}],
                stream=True,
            )
        )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected_answer(
        "hello"
    )
    assert [t["state"] for t in gateway.tokens().values()].count("cooling") == 1


def test_server_error_not_in_retry_codes_is_a_502_and_spends_nothing(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("500", times=1)
    response = ask(gateway)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "upstream_error"
    tokens = gateway.tokens()
    assert spent(tokens) == 0 and penalised(tokens) == {}
    assert sum(t["reserved"] for t in tokens.values()) == 0


def test_stream_cut_after_first_byte_ends_with_an_error_event(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("cut", times=1, after_tokens=3)
    with (
        openai.OpenAI(base_url=gateway.api, api_key=API_KEY, max_retries=0) as client,
        pytest.raises(openai.APIError) as info,
    ):
        for _ in client.chat.completions.create(
            model="grok-4", messages=[{"role": "user", "content": "hello"}], stream=True
        ):
            pass
    assert "upstream" in str(info.value.message).lower()
    with gateway.client() as raw:
        body = raw.post(
            "/v1/chat/completions",
            json={
                "model": "grok-4",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        ).text
    assert body.rstrip().endswith("data: [DONE]")
    # The cut stream is logged as such, with the token that served it.
    deadline = time.monotonic() + 5
    while True:
        lines = [
            line
            for line in gateway.log().splitlines()
            if "grok2api.access: POST /v1/chat/completions" in line
        ]
        if len(lines) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    cut, whole = lines
    assert cut.endswith(" outcome=error_event") and " token=-" not in cut
    assert " outcome=" not in whole


def test_stall_fails_over_when_nothing_was_sent(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    for token in ("tok-a", "tok-b"):
        emulator.control.add_account(token)
    gateway = gateway_factory(
        ["tok-a", "tok-b"], GROK2API_TIMEOUT_STREAM_FIRST_TIMEOUT="1"
    )
    emulator.control.fault("stall", times=1, after_tokens=0)
    started = time.monotonic()
    response = ask(gateway)
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 10
    assert penalised(gateway.tokens()) == {}


def test_every_token_exhausted_is_a_429_with_retry_after(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("429_no_quota", times=None)
    response = ask(gateway)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 60
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "2 cooling" in error["message"]
    assert len(emulator.control.requests(path="/rest/app-chat/conversations/new")) == 2


def test_local_quota_runs_out_before_the_upstream_is_asked(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(["tok-a"], GROK2API_TOKEN_BASIC_QUOTA="2")
    assert [ask(gateway).status_code for _ in range(3)] == [200, 200, 429]
    response = ask(gateway)
    assert "1 exhausted" in response.json()["error"]["message"]
    assert 0 < int(response.headers["retry-after"]) <= 20 * 3600
    assert len(emulator.control.requests(path="/rest/app-chat/conversations/new")) == 2


def test_no_token_at_all_is_a_503(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory()
    response = ask(gateway)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_token_available"
    assert response.headers["x-should-retry"] == "false"


def test_heavy_is_served_by_super_tokens_only(
    gateway: Gateway, emulator: Emulator
) -> None:
    assert ask(gateway, model="grok-4-heavy").status_code == 503
    emulator.control.add_account("tok-s", pool="super")
    gateway.add_tokens(["tok-s"], pool="super")
    assert ask(gateway, model="grok-4-heavy").status_code == 200
    assert (
        gateway.tokens()[token_id_for("tok-s")]["quota_total"]
        - gateway.tokens()[token_id_for("tok-s")]["quota"]
        == 4
    )
