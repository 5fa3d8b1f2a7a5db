"""The request log: what it records, cancellation, and waiting on it."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from grok2api.emulator import token_id


def test_log_records_one_entry_per_chat(emulator: Any) -> None:
    emulator.chat(body=emulator.body("log me"))
    (record,) = emulator.control.requests()
    assert record["path"] == emulator.CHAT
    assert record["method"] == "POST"
    assert record["token_id"] == token_id("tok-a")
    assert record["body"]["message"] == "log me"
    assert record["user_agent"] == "Mozilla/5.0 emulator-tests"
    assert record["statsig_present"] is True
    assert record["cookie_names"] == ["sso", "sso-rw"]
    assert (record["status"], record["outcome"], record["charged"]) == (
        200,
        "completed",
        1,
    )
    assert record["conversation_id"] and record["response_id"]
    assert record["started_at"] <= record["ended_at"]


def test_log_never_holds_the_token(emulator: Any) -> None:
    emulator.control.add_account("secret-token-value")
    emulator.chat("secret-token-value")
    emulator.chat("secret-token-value-unknown")
    dumped = json.dumps([emulator.control.requests(), emulator.control.accounts()])
    assert "secret-token-value" not in dumped


def test_log_filters_by_token(emulator: Any) -> None:
    emulator.control.add_account("tok-b")
    emulator.chat("tok-a")
    emulator.chat("tok-b")
    emulator.chat("tok-b")
    assert len(emulator.control.requests(token="tok-b")) == 2
    assert len(emulator.control.requests(token="tok-a")) == 1
    emulator.control.clear_requests()
    assert emulator.control.requests() == []


def test_log_records_client_disconnect(emulator: Any) -> None:
    emulator.control.configure(line_delay=0.05, answer_tokens=100)
    with emulator.http.stream(
        "POST", emulator.CHAT, json=emulator.body(), headers=emulator.headers("tok-a")
    ) as response:
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
        closed_at = time.time()
    (record,) = emulator.control.requests(settled=True, timeout=2)
    assert record["outcome"] == "cancelled"
    assert record["ended_at"] - closed_at < 1.0


def test_log_wait_times_out(emulator: Any) -> None:
    with pytest.raises(TimeoutError):
        emulator.control.requests(min_count=1, timeout=0.1)


def test_control_rejects_unknown_option(emulator: Any) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        emulator.control.configure(answer_tokenz=3)
    with pytest.raises(httpx.HTTPStatusError):
        emulator.control.configure(answer_tokens=0)
    assert emulator.control.config()["answer_tokens"] == 8


def test_control_reset_forgets_everything(emulator: Any) -> None:
    emulator.control.configure(answer_tokens=2)
    emulator.control.fault("500", times=None)
    emulator.chat()
    emulator.control.reset()
    assert emulator.control.accounts() == []
    assert emulator.control.faults() == []
    assert emulator.control.requests() == []
    assert emulator.control.config()["answer_tokens"] == 8
