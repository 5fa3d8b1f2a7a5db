"""``/v1/public/voice/token``: LiveKit tokens for voice sessions, the session
as the upstream receives it, token choice, failover and refusals."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from grok2api.emulator.state import token_id as emulator_token_id
from grok2api.storage import token_id_for
from tests.conftest import Emulator, Gateway, GatewayFactory

ROUTE = "/v1/public/voice/token"
LIVEKIT_PATH = "/rest/livekit/tokens"


def livekit_calls(emulator: Emulator) -> list[dict[str, Any]]:
    return emulator.control.requests(path=LIVEKIT_PATH)


def session_of(call: dict[str, Any]) -> dict[str, Any]:
    payload = call["body"]["sessionPayload"]
    assert isinstance(payload, str), "sessionPayload travels as a JSON string"
    session: dict[str, Any] = json.loads(payload)
    return session


def test_default_session(gateway: Gateway, emulator: Emulator) -> None:
    with gateway.client() as client:
        response = client.get(ROUTE)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["token"].count(".") == 2, "a JWT from the upstream"
    assert answer["url"] == "wss://livekit.grok.com"
    assert (answer["voice"], answer["personality"], answer["speed"]) == (
        "ara",
        "assistant",
        1.0,
    )
    assert response.headers["cache-control"] == "no-store"
    (call,) = livekit_calls(emulator)
    assert call["status"] == 200
    assert call["body"]["livekitUrl"] == "wss://livekit.grok.com"
    assert call["body"]["requestAgentDispatch"] is False
    assert session_of(call) == {
        "voice": "ara",
        "personality": "assistant",
        "playback_speed": 1.0,
        "enable_vision": False,
        "turn_detection": {"type": "server_vad"},
    }


def test_options_from_the_query(gateway: Gateway, emulator: Emulator) -> None:
    with gateway.client() as client:
        response = client.get(
            ROUTE,
            params={"voice": "rex", "personality": "storyteller", "speed": "0.75"},
        )

    assert response.status_code == 200, response.text
    assert response.json()["personality"] == "storyteller"
    session = session_of(livekit_calls(emulator)[0])
    assert (session["voice"], session["personality"]) == ("rex", "storyteller")
    assert session["playback_speed"] == 0.75


def test_custom_instructions_replace_the_personality(
    gateway: Gateway, emulator: Emulator
) -> None:
    body = {"voice": "eve", "instructions": "Answer like a pirate.", "speed": 1.5}
    with gateway.client() as client:
        response = client.post(ROUTE, json=body)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["voice"], answer["personality"], answer["speed"]) == (
        "eve",
        None,
        1.5,
    )
    session = session_of(livekit_calls(emulator)[0])
    assert session["personality"] is None
    assert session["instructions"] == "Answer like a pirate."
    assert session["is_raw_instructions"] is True
    assert session["playback_speed"] == 1.5


def test_the_livekit_url_comes_from_the_settings(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(
        ["tok-a"], GROK2API_VOICE_LIVEKIT_URL="wss://voice.example.test"
    )

    with gateway.client() as client:
        answer = client.post(ROUTE).json()

    assert answer["url"] == "wss://voice.example.test"
    assert livekit_calls(emulator)[0]["body"]["livekitUrl"] == answer["url"]


BAD_OPTIONS = [
    ("GET", {"voice": "robot"}, None, "voice"),
    ("GET", {"voice": "ARA"}, None, "voice"),
    ("GET", {"personality": "pirate"}, None, "personality"),
    ("GET", {"personality": "custom"}, None, "instructions"),
    ("GET", {"speed": "3"}, None, "speed"),
    ("GET", {"speed": "0.4"}, None, "speed"),
    ("GET", {"speed": "fast"}, None, "speed"),
    ("GET", {"speed": "nan"}, None, "speed"),
    ("POST", None, {"speed": True}, "speed"),
    ("POST", None, {"speed": 10**400}, "speed"),
    ("POST", None, {"instructions": "   "}, "instructions"),
    ("POST", None, {"instructions": "x" * 4001}, "instructions"),
    ("POST", None, {"instructions": "hi", "personality": "doc"}, "personality"),
    ("POST", None, ["voice", "ara"], "body"),
]


def test_bad_options_are_400_naming_the_option(
    gateway: Gateway, emulator: Emulator
) -> None:
    with gateway.client() as client:
        for method, params, body, param in BAD_OPTIONS:
            response = client.request(method, ROUTE, params=params, json=body)
            assert response.status_code == 400, (params, body, response.text)
            error = response.json()["error"]
            assert error["param"] == param, (params, body)
            assert error["type"] == "invalid_request_error"
    assert livekit_calls(emulator) == []


def test_the_api_key_is_required(gateway: Gateway) -> None:
    anonymous = httpx.get(gateway.url + ROUTE, timeout=30)
    wrong = httpx.get(
        gateway.url + ROUTE, headers={"x-api-key": "sk-wrong"}, timeout=30
    )
    for response in (anonymous, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_basic_tokens_are_asked_before_super(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-super", pool="super")
    emulator.control.add_account("tok-basic")
    gateway = gateway_factory(["tok-super"], pool="super")
    gateway.add_tokens(["tok-basic"], "basic")

    with gateway.client() as client:
        for _ in range(3):
            assert client.get(ROUTE).status_code == 200

    assert {call["token_id"] for call in livekit_calls(emulator)} == {
        emulator.control.account("tok-basic")["token_id"]
    }


def test_a_refused_token_fails_over_and_spends_no_quota(
    gateway: Gateway, emulator: Emulator
) -> None:
    before = gateway.tokens()
    emulator.control.fault("401", endpoint="livekit")

    with gateway.client() as client:
        response = client.get(ROUTE)

    assert response.status_code == 200, response.text
    refused, served = livekit_calls(emulator)
    assert (refused["status"], served["status"]) == (401, 200)
    assert refused["token_id"] != served["token_id"]
    refused_token, served_token = (
        next(s for s in ("tok-a", "tok-b") if emulator_token_id(s) == call["token_id"])
        for call in (refused, served)
    )
    after = gateway.tokens()
    assert after[token_id_for(refused_token)]["fail_count"] == 1
    assert after[token_id_for(served_token)]["fail_count"] == 0
    for token_id, record in after.items():
        assert record["quota"] == before[token_id]["quota"]
        assert record["reserved"] == 0


def test_no_usable_token_is_a_503(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    gateway = gateway_factory()

    with gateway.client() as client:
        response = client.get(ROUTE)

    assert response.status_code == 503
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "no_token_available")
    assert response.headers["x-should-retry"] == "false"
    assert livekit_calls(emulator) == []


def test_every_token_refused_is_an_error_not_a_token(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("401", endpoint="livekit", times=None)

    with gateway.client() as client:
        response = client.get(ROUTE)

    assert response.status_code in (502, 503), response.text
    assert "token" not in response.json()
    assert {t["fail_count"] for t in gateway.tokens().values()} == {1}


def test_voice_tokens_are_counted_and_never_logged(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(["tok-a"], GROK2API_STATS_FLUSH_INTERVAL_SEC="0.1")

    with gateway.client() as client:
        livekit_token = client.get(ROUTE).json()["token"]

    audit: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while not audit and time.monotonic() < deadline:
        with gateway.admin() as admin:
            entries = admin.get("/v1/admin/audit").json()["data"]
        audit = [entry for entry in entries if entry["path"] == ROUTE]
        time.sleep(0.1)
    assert audit, "the request is in the audit log"
    assert audit[0]["status"] == 200
    assert audit[0]["token_id"] == token_id_for("tok-a")
    log = gateway.log()
    assert ROUTE in log
    assert livekit_token not in log
    assert livekit_token.split(".")[1] not in log
    assert "tok-a" not in log


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_bad_upstream_answer_is_a_502(
    gateway: Gateway, emulator: Emulator, method: str
) -> None:
    emulator.control.fault("500", endpoint="livekit", times=None)
    with gateway.client() as client:
        response = client.request(method, ROUTE)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
