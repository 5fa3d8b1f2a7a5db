"""Fixtures for the emulator's own tests: one emulator thread per module."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from grok2api.emulator import EmulatorControl, run_emulator_in_thread

CHAT = "/rest/app-chat/conversations/new"
UPLOAD = "/rest/app-chat/upload-file"
RATE_LIMITS = "/rest/rate-limits"
STATSIG = base64.b64encode(
    b"e:TypeError: Cannot read properties of undefined (reading 'qwertyuiop')"
).decode()


def grok_headers(token: str | None, *, statsig: str | None = STATSIG) -> dict[str, str]:
    """The headers a gateway sends for ``token`` (no cookie when ``None``)."""
    headers = {"user-agent": "Mozilla/5.0 emulator-tests"}
    if token is not None:
        headers["cookie"] = f"sso={token}; sso-rw={token}"
    if statsig is not None:
        headers["x-statsig-id"] = statsig
    return headers


def chat_body(message: str = "hello emulator", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": message,
        "modelName": "grok-4",
        "modelMode": "MODEL_MODE_FAST",
        "fileAttachments": [],
        "temporary": True,
    }
    body.update(extra)
    return body


def lines_of(response: httpx.Response) -> list[dict[str, Any]]:
    """Every NDJSON line of a finished response, parsed (fails on bad JSON)."""
    return [json.loads(line) for line in response.text.splitlines() if line]


class Emulator:
    """A running emulator: its URL, control client, an HTTP client and helpers."""

    CHAT = CHAT
    UPLOAD = UPLOAD
    RATE_LIMITS = RATE_LIMITS
    STATSIG = STATSIG
    headers = staticmethod(grok_headers)
    body = staticmethod(chat_body)
    lines = staticmethod(lines_of)

    def __init__(self, base_url: str, control: EmulatorControl) -> None:
        self.base_url = base_url
        self.control = control
        self.http = httpx.Client(base_url=base_url, timeout=10.0)

    def chat(
        self, token: str | None = "tok-a", body: dict[str, Any] | None = None, **kw: Any
    ) -> httpx.Response:
        headers = kw.pop("headers", None) or grok_headers(token)
        return self.http.post(CHAT, json=body or chat_body(), headers=headers, **kw)


@pytest.fixture(scope="module")
def running_emulator() -> Iterator[Emulator]:
    with run_emulator_in_thread() as (base_url, control):
        emulator = Emulator(base_url, control)
        yield emulator
        emulator.http.close()


@pytest.fixture
def emulator(running_emulator: Emulator) -> Emulator:
    """A freshly reset emulator with account ``tok-a`` (quota 10)."""
    running_emulator.control.reset()
    running_emulator.control.add_account("tok-a", quota=10)
    return running_emulator
