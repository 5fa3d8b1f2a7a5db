"""Quota windows, the 429 when empty, and /rest/rate-limits."""

from __future__ import annotations

from typing import Any

from grok2api.emulator import Account, chat_cost


def _rate_limits(emulator: Any, token: str = "tok-a") -> dict[str, Any]:
    response = emulator.http.post(
        emulator.RATE_LIMITS,
        json={"requestKind": "DEFAULT", "modelName": "grok-4-1-thinking-1129"},
        headers=emulator.headers(token),
    )
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_quota_decrements_then_429(emulator: Any) -> None:
    emulator.control.add_account("tok-q", quota=3, window_seconds=600)
    for _ in range(3):
        assert emulator.chat("tok-q").status_code == 200
    response = emulator.chat("tok-q")
    assert response.status_code == 429
    assert response.json()["remainingQueries"] == 0
    assert 0 < int(response.headers["retry-after"]) <= 600
    assert emulator.control.requests(token="tok-q")[-1]["reason"] == "quota"


def test_quota_expensive_modes_cost_four(emulator: Any) -> None:
    for mode in (
        "MODEL_MODE_EXPERT",
        "MODEL_MODE_HEAVY",
        "MODEL_MODE_GROK_4_1_THINKING",
    ):
        emulator.control.add_account("tok-e", quota=10)
        assert emulator.chat("tok-e", emulator.body(modelMode=mode)).is_success
        assert emulator.control.account("tok-e")["remaining"] == 6, mode
    assert chat_cost({"modeId": "heavy"}) == 4
    assert chat_cost({"modelMode": "MODEL_MODE_GROK_4_THINKING"}) == 1


def test_quota_partial_window_is_drained(emulator: Any) -> None:
    emulator.control.add_account("tok-p", quota=10, remaining=2)
    body = emulator.body(modelMode="MODEL_MODE_EXPERT")
    assert emulator.chat("tok-p", body).status_code == 200
    assert emulator.control.requests(token="tok-p")[0]["charged"] == 2
    assert emulator.chat("tok-p", body).status_code == 429


def test_quota_rate_limits_numbers(emulator: Any) -> None:
    emulator.control.add_account("tok-r", pool="super", quota=50, window_seconds=7200)
    emulator.chat("tok-r")
    emulator.chat("tok-r", emulator.body(modeId="expert"))
    assert _rate_limits(emulator, "tok-r") == {
        "windowSizeSeconds": 7200,
        "remainingQueries": 45,
        "totalQueries": 50,
        "remainingTokens": 45,
        "lowEffortRateLimits": None,
        "highEffortRateLimits": None,
    }


def test_quota_pool_defaults(emulator: Any) -> None:
    emulator.control.add_account("tok-s", pool="super")
    limits = _rate_limits(emulator, "tok-s")
    assert (limits["totalQueries"], limits["windowSizeSeconds"]) == (140, 7200)


def test_quota_rate_limits_checks_account(emulator: Any) -> None:
    response = emulator.http.post(
        emulator.RATE_LIMITS, json={}, headers=emulator.headers("tok-unknown")
    )
    assert response.status_code == 401


def test_quota_window_refills_after_its_length() -> None:
    account = Account(
        "tok", quota_total=2, remaining=2, window_seconds=60, window_started=1000.0
    )
    start = account.window_started
    assert account.charge(4, start + 1) == 2
    assert account.charge(1, start + 59) == 0
    assert account.retry_after(start + 59) == 1
    assert account.charge(1, start + 60) == 1
    assert account.remaining == 1
