"""Scripted faults: HTTP errors, in-band errors, cuts and stalls."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest


def _answer_tokens(lines: list[dict[str, Any]]) -> list[str]:
    return [
        line["result"]["response"]["token"]
        for line in lines
        if "token" in line.get("result", {}).get("response", {})
    ]


@pytest.mark.parametrize(
    ("kind", "status", "marker"),
    [
        ("401", 401, "invalid-credentials"),
        ("403_cloudflare", 403, "Just a moment..."),
        ("403_blocked", 403, "blocked-user"),
        ("403_antibot", 403, "anti-bot"),
        ("500", 500, "internal error"),
        ("502", 502, "Bad Gateway"),
        ("503", 503, "unavailable"),
    ],
)
def test_fault_http_kinds(emulator: Any, kind: str, status: int, marker: str) -> None:
    emulator.control.fault(kind, token="tok-a")
    response = emulator.chat()
    assert response.status_code == status
    assert marker in response.text
    # One use only, and a faulted request costs nothing.
    assert emulator.chat().status_code == 200
    assert emulator.control.account("tok-a")["remaining"] == 9
    first = emulator.control.requests()[0]
    assert (first["fault"], first["outcome"], first["status"]) == (
        kind,
        "rejected",
        status,
    )


def test_fault_403_empty_has_no_body(emulator: Any) -> None:
    emulator.control.fault("403_empty")
    response = emulator.chat()
    assert (response.status_code, response.content) == (403, b"")


def test_fault_429_with_quota_left(emulator: Any) -> None:
    emulator.control.fault("429", token="tok-a")
    response = emulator.chat()
    assert response.status_code == 429
    assert response.json()["remainingQueries"] == 10
    assert int(response.headers["retry-after"]) > 0

    emulator.control.fault("429", token="tok-a", remaining=3)
    assert emulator.chat().json()["remainingQueries"] == 3


def test_fault_429_without_quota(emulator: Any) -> None:
    emulator.control.fault("429_no_quota", token="tok-a")
    response = emulator.chat()
    assert response.status_code == 429
    assert response.json()["remainingQueries"] == 0
    assert "retry-after" in response.headers


def test_fault_applies_to_its_token_only(emulator: Any) -> None:
    emulator.control.add_account("tok-b")
    emulator.control.fault("401", token="tok-b")
    assert emulator.chat("tok-a").status_code == 200
    assert emulator.chat("tok-b").status_code == 401
    assert emulator.chat("tok-b").status_code == 200


def test_fault_times_and_clearing(emulator: Any) -> None:
    emulator.control.fault("503", times=2)
    assert [emulator.chat().status_code for _ in range(3)] == [503, 503, 200]

    fault_id = emulator.control.fault("500", times=None)
    assert [emulator.chat().status_code for _ in range(3)] == [500, 500, 500]
    assert emulator.control.faults()[0]["hits"] == 3
    emulator.control.clear_faults(fault_id)
    assert emulator.chat().status_code == 200


def test_fault_endpoint_scoping(emulator: Any) -> None:
    emulator.control.fault("500", endpoint="rate-limits")
    assert emulator.chat().status_code == 200
    headers = emulator.headers("tok-a")
    assert emulator.http.post(emulator.RATE_LIMITS, headers=headers).status_code == 500

    emulator.control.fault("403_cloudflare", endpoint="any")
    assert emulator.http.post(emulator.RATE_LIMITS, headers=headers).status_code == 403


def test_fault_unknown_kind_is_refused(emulator: Any) -> None:
    with pytest.raises(httpx.HTTPStatusError) as info:
        emulator.control.fault("418")
    assert info.value.response.status_code == 400
    with pytest.raises(httpx.HTTPStatusError):
        emulator.control.fault("cut", endpoint="upload")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("inband_error", {"error": {"code": 8, "message": "Too many requests"}}),
        ("inband_error_internal", {"error": {"code": 13, "message": "internal error"}}),
    ],
)
def test_fault_inband_error_first_line(
    emulator: Any, kind: str, expected: dict[str, Any]
) -> None:
    emulator.control.fault(kind)
    response = emulator.chat()
    assert response.status_code == 200
    assert emulator.lines(response) == [expected]


def test_fault_inband_error_after_tokens(emulator: Any) -> None:
    emulator.control.fault(
        "inband_error_after_tokens", after_tokens=3, code=13, message="boom"
    )
    lines = emulator.lines(emulator.chat())
    assert lines[-1] == {"error": {"code": 13, "message": "boom"}}
    assert _answer_tokens(lines) == ["You", " said:", " hello emulator"]
    assert not any("modelResponse" in json.dumps(line) for line in lines)


def test_fault_cut_ends_mid_line(emulator: Any) -> None:
    emulator.control.fault("cut", after_tokens=2)
    response = emulator.chat()
    assert response.status_code == 200
    *complete, partial = response.text.split("\n")
    assert _answer_tokens([json.loads(line) for line in complete]) == ["You", " said:"]
    assert partial.startswith('{"result"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(partial)
    (record,) = emulator.control.requests(settled=True)
    assert (record["outcome"], record["fault"]) == ("completed", "cut")


def test_fault_cut_abort_breaks_the_connection(emulator: Any) -> None:
    emulator.control.fault("cut", after_tokens=1, abort=True)
    with pytest.raises(httpx.RemoteProtocolError):
        emulator.chat()
    # The emulator keeps serving afterwards.
    assert emulator.chat().status_code == 200


def test_fault_stall_keeps_connection_silent(emulator: Any) -> None:
    emulator.control.fault("stall", after_tokens=2, seconds=30)
    timeout = httpx.Timeout(10.0, read=0.3)
    seen: list[dict[str, Any]] = []
    with (
        pytest.raises(httpx.ReadTimeout),
        emulator.http.stream(
            "POST",
            emulator.CHAT,
            json=emulator.body(),
            headers=emulator.headers("tok-a"),
            timeout=timeout,
        ) as response,
    ):
        for line in response.iter_lines():
            seen.append(json.loads(line))
    assert _answer_tokens(seen) == ["You", " said:"]
    (record,) = emulator.control.requests(settled=True)
    assert (record["outcome"], record["fault"]) == ("cancelled", "stall")
