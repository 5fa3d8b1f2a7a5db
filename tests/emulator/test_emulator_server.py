"""Running the emulator: under Trio with a shared state, and from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from functools import partial

import httpx
import pytest
import trio

from grok2api.emulator import (
    EmulatorConfig,
    EmulatorState,
    expected_answer,
    parse_account_spec,
    serve_emulator,
)

STATSIG = "ZTpUeXBlRXJyb3I6IHg="  # base64 of "e:TypeError: x"


def _headers(token: str) -> dict[str, str]:
    return {"cookie": f"sso={token}; sso-rw={token}", "x-statsig-id": STATSIG}


async def test_server_trio_reports_port_and_shares_state(
    nursery: trio.Nursery,
) -> None:
    state = EmulatorState(EmulatorConfig(answer_tokens=3), accounts=["tok-t"])
    port = await nursery.start(partial(serve_emulator, "127.0.0.1", 0, state=state))
    assert port > 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        response = await client.post(
            "/rest/app-chat/conversations/new",
            json={"message": "async hello", "modeId": "fast"},
            headers=_headers("tok-t"),
        )
        assert response.status_code == 200
        assert expected_answer("async hello", 3) in response.text

        state.add_fault("503", token="tok-t", endpoint="rate-limits")
        response = await client.post(
            "/rest/rate-limits", json={}, headers=_headers("tok-t")
        )
        assert response.status_code == 503
    assert [r.outcome for r in state.log] == ["completed", "rejected"]
    assert state.accounts["tok-t"].remaining == 79


async def test_server_trio_cancellation_reaches_log(nursery: trio.Nursery) -> None:
    state = EmulatorState(EmulatorConfig(line_delay=0.05, answer_tokens=100), ["t"])
    port = await nursery.start(partial(serve_emulator, "127.0.0.1", 0, state=state))
    body = json.dumps({"message": "x"}).encode()
    head = (
        "POST /rest/app-chat/conversations/new HTTP/1.1\r\nHost: emulator\r\n"
        f"Cookie: sso=t; sso-rw=t\r\nx-statsig-id: {STATSIG}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    # A bare socket, so "the client went away" is exactly one close() call.
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(head.encode() + body)
    received = b""
    while b"conversationId" not in received:
        received += await stream.receive_some()
    assert received.startswith(b"HTTP/1.1 200")
    await stream.aclose()

    (record,) = state.log
    with trio.fail_after(1):
        await state.wait_until(lambda: record.outcome != "pending")
    assert record.outcome == "cancelled"


def test_server_account_spec_parsing() -> None:
    assert parse_account_spec("tok") == {"token": "tok"}
    assert parse_account_spec("tok:super:50:3600") == {
        "token": "tok",
        "pool": "super",
        "quota": 50,
        "window_seconds": 3600,
    }
    with pytest.raises(ValueError):
        parse_account_spec(":super")


def test_server_cli_serves_until_interrupted() -> None:
    command = [sys.executable, "-m", "grok2api.emulator", "--port", "0"]
    with subprocess.Popen(
        [*command, "--account", "c:super"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert first.startswith("Grok emulator listening on http://127.0.0.1:")
            url = first.rsplit(" ", 1)[1].strip()
            ok = httpx.post(url + "/rest/rate-limits", json={}, headers=_headers("c"))
            assert ok.json()["totalQueries"] == 140
            bad = httpx.post(url + "/rest/rate-limits", headers=_headers("x"))
            assert bad.status_code == 401
        finally:
            os.kill(process.pid, signal.SIGINT)
            assert process.wait(timeout=10) == 0
