"""Account, anti-bot and Cloudflare checks in front of every /rest call."""

from __future__ import annotations

import base64
from typing import Any

import pytest


def _statsig(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_checks_unknown_token_is_401(emulator: Any) -> None:
    response = emulator.chat("tok-unknown")
    assert response.status_code == 401
    assert "invalid-credentials" in response.text
    (record,) = emulator.control.requests()
    assert record["outcome"] == "rejected"
    assert record["reason"] == "invalid-credentials"


def test_checks_missing_cookie_is_401(emulator: Any) -> None:
    assert emulator.chat(None).status_code == 401


def test_checks_sso_rw_must_match(emulator: Any) -> None:
    headers = emulator.headers(None)
    headers["cookie"] = "sso=tok-a; sso-rw=tok-b"
    assert emulator.chat(headers=headers).status_code == 401
    headers["cookie"] = "sso=tok-a"
    assert emulator.chat(headers=headers).status_code == 401


@pytest.mark.parametrize(
    "statsig",
    [
        None,
        "",
        "not base64 at all!",
        _statsig("TypeError: no prefix"),
        _statsig("y:TypeError: wrong prefix"),
    ],
)
def test_checks_bad_statsig_is_antibot_403(emulator: Any, statsig: str | None) -> None:
    response = emulator.chat(headers=emulator.headers("tok-a", statsig=statsig))
    assert response.status_code == 403
    assert response.json() == {
        "error": {"code": 7, "message": "Request rejected by anti-bot rules."}
    }
    assert emulator.control.account("tok-a")["remaining"] == 10


def test_checks_statsig_accepts_x1_and_unpadded(emulator: Any) -> None:
    x1 = _statsig("x1:TypeError: Cannot read properties of null (reading 'ab')")
    assert emulator.chat(headers=emulator.headers("tok-a", statsig=x1)).is_success
    unpadded = _statsig("e:TypeError: x").rstrip("=")
    assert emulator.chat(headers=emulator.headers("tok-a", statsig=unpadded)).is_success


def test_checks_statsig_prefixes_configurable(emulator: Any) -> None:
    emulator.control.configure(statsig_prefixes=["x1:"])
    assert emulator.chat().status_code == 403  # the fixture's value uses "e:"
    x1 = _statsig("x1:TypeError: x")
    assert emulator.chat(headers=emulator.headers("tok-a", statsig=x1)).is_success


def test_checks_cf_clearance_required(emulator: Any) -> None:
    emulator.control.configure(require_cf_clearance=True, cf_clearance="clear-1")
    response = emulator.chat()
    assert response.status_code == 403
    assert "Just a moment..." in response.text
    assert response.headers["content-type"].startswith("text/html")

    headers = emulator.headers("tok-a")
    headers["cookie"] += ";cf_clearance=clear-2"
    assert emulator.chat(headers=headers).status_code == 403
    headers["cookie"] = headers["cookie"].replace("clear-2", "clear-1")
    assert emulator.chat(headers=headers).status_code == 200


def test_checks_blocked_account_is_403(emulator: Any) -> None:
    emulator.control.add_account("tok-b", blocked=True)
    response = emulator.chat("tok-b")
    assert response.status_code == 403
    assert "blocked-user" in response.text


def test_checks_bad_body_is_400(emulator: Any) -> None:
    response = emulator.http.post(
        emulator.CHAT, content=b"{not json", headers=emulator.headers("tok-a")
    )
    assert response.status_code == 400
    assert emulator.chat(body={"modelName": "grok-4"}).status_code == 400


def test_checks_auto_register_accepts_any_token(emulator: Any) -> None:
    emulator.control.configure(auto_register=True)
    assert emulator.chat("tok-new").status_code == 200
    assert emulator.control.account("tok-new")["pool"] == "basic"


def test_checks_unknown_rest_path_is_logged_404(emulator: Any) -> None:
    response = emulator.http.get(
        "/rest/no-such-endpoint", headers=emulator.headers("tok-a")
    )
    assert response.status_code == 404
    (record,) = emulator.control.requests(path="/rest/no-such-endpoint")
    assert record["reason"] == "not-found"
