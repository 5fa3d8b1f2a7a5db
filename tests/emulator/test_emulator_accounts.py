"""The fake account settings: gRPC-web answers, the birth date limit, stall
faults, and the settings kept per account."""

from __future__ import annotations

import time

import httpx
import pytest

from grok2api.emulator.accounts import (
    NSFW_DISABLE,
    NSFW_ENABLE,
    TOS_ACCEPT,
    EmulatorAccountSettings,
)
from tests.emulator.conftest import Emulator, grok_headers

TOS = "/auth_mgmt.AuthManagement/SetTosAcceptedVersion"
NSFW = "/auth_mgmt.AuthManagement/UpdateUserFeatureControls"
BIRTH = "/rest/auth/set-birth-date"
GRPC = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}


def frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def grpc(emulator: Emulator, path: str, message: bytes) -> httpx.Response:
    headers = {**grok_headers("tok-a"), **GRPC}
    return emulator.http.post(path, content=frame(message), headers=headers)


def birth(
    emulator: Emulator, value: str = "1990-04-17T12:00:00.000Z"
) -> httpx.Response:
    return emulator.http.post(
        BIRTH, json={"birthDate": value}, headers=grok_headers("tok-a")
    )


def settings(emulator: Emulator) -> dict[str, object]:
    with EmulatorAccountSettings(emulator.base_url) as client:
        [only] = client.all().values()
        return only


def test_emulator_accounts_sequence_sets_everything(emulator: Emulator) -> None:
    tos = grpc(emulator, TOS, TOS_ACCEPT)
    assert (tos.status_code, tos.headers["grpc-status"], tos.content) == (200, "0", b"")
    refused = grpc(emulator, NSFW, NSFW_ENABLE)
    assert refused.content.startswith(b"\x00\x00\x00\x00\x00\x80")
    assert b"grpc-status: 9\r\n" in refused.content
    assert b"grpc-message: birth date required%3A set it first" in refused.content

    assert birth(emulator).status_code == 200
    again = birth(emulator, "1980-01-01T12:00:00.000Z")
    assert again.status_code == 429
    assert "birth-date-change-limit-reached" in again.text

    enabled = grpc(emulator, NSFW, NSFW_ENABLE)
    assert enabled.content == frame(b"") + b"\x80\x00\x00\x00\x10grpc-status: 0\r\n"
    assert settings(emulator) == {
        "token_id": emulator.control.account("tok-a")["token_id"],
        "tos_accepted": True,
        "birth_date": "1990-04-17",
        "always_show_nsfw_content": True,
    }
    grpc(emulator, NSFW, NSFW_DISABLE)
    assert settings(emulator)["always_show_nsfw_content"] is False
    [record] = emulator.control.requests(path=TOS)
    assert record["body"] == {"grpc_hex": "00000000021001"}


def test_emulator_accounts_refuse_odd_requests(emulator: Emulator) -> None:
    odd = grpc(emulator, TOS, b"\x10\x02")
    assert odd.headers["grpc-status"] == "3"
    wrong_type = emulator.http.post(
        TOS, content=frame(TOS_ACCEPT), headers=grok_headers("tok-a")
    )
    assert wrong_type.status_code == 415
    assert birth(emulator, "yesterday").status_code == 400
    stranger = emulator.http.post(
        TOS, content=frame(TOS_ACCEPT), headers={**grok_headers("nobody"), **GRPC}
    )
    assert stranger.status_code == 401


def test_emulator_accounts_faults_and_stalls(emulator: Emulator) -> None:
    emulator.control.fault("403_cloudflare", endpoint="nsfw")
    assert grpc(emulator, NSFW, NSFW_ENABLE).status_code == 403
    emulator.control.fault("stall", endpoint="accounts-tos", seconds=0.5)
    started = time.monotonic()
    assert grpc(emulator, TOS, TOS_ACCEPT).headers["grpc-status"] == "0"
    assert time.monotonic() - started >= 0.5
    with pytest.raises(httpx.HTTPStatusError):
        emulator.control.fault("cut", endpoint="nsfw")
