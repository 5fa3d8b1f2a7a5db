"""Helpers for the job tests: starting jobs, following their events."""

from __future__ import annotations

import json
import time
from typing import Any

from grok2api.emulator import token_id as emulator_token_id
from grok2api.emulator.accounts import EmulatorAccountSettings
from grok2api.storage import token_id_for
from tests.conftest import Gateway

BIRTH_DATE = "1987-06-23"


def settings_for(emulator_url: str) -> dict[str, str]:
    """Gateway settings that point the accounts host at the emulator."""
    return {"GROK2API_NETWORK_ACCOUNTS_URL": emulator_url}


def record_birth_date(gateway: Gateway, token: str, date: str = BIRTH_DATE) -> None:
    with gateway.admin() as admin:
        response = admin.put(
            f"/v1/admin/tokens/{token_id_for(token)}/birth-date",
            json={"birth_date": date},
        )
        assert response.status_code == 200, response.text


def start_job(gateway: Gateway, **body: Any) -> dict[str, Any]:
    with gateway.admin() as admin:
        response = admin.post("/v1/admin/jobs", json=body)
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]


def job(gateway: Gateway, job_id: str, **params: Any) -> dict[str, Any]:
    with gateway.admin() as admin:
        response = admin.get(f"/v1/admin/jobs/{job_id}", params=params)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


def all_results(gateway: Gateway, job_id: str, page: int = 7) -> list[dict[str, Any]]:
    """Every per-token result, read ``page`` at a time."""
    results: list[dict[str, Any]] = []
    while True:
        items = job(gateway, job_id, offset=len(results), limit=page)["results"]
        results.extend(items["items"])
        if len(items["items"]) < page:
            return results


def wait_for(gateway: Gateway, job_id: str, done: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while job(gateway, job_id)["done"] < done:
        assert time.monotonic() < deadline, job(gateway, job_id)
        time.sleep(0.1)


def follow(gateway: Gateway, job_id: str, timeout: float = 60) -> list[tuple[str, Any]]:
    """Read the job's event stream until it ends: (event, data) pairs, with
    keep-alive comments as ("comment", text)."""
    events: list[tuple[str, Any]] = []
    name = "message"
    with (
        gateway.admin() as admin,
        admin.stream(
            "GET", f"/v1/admin/jobs/{job_id}/events", timeout=timeout
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                events.append(("comment", line[1:].strip()))
            elif line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
                name = "message"
    return events


def account_settings(emulator_url: str, token: str) -> dict[str, Any]:
    """What the emulator's account for ``token`` has set (empty: nothing)."""
    with EmulatorAccountSettings(emulator_url) as settings:
        return settings.all().get(emulator_token_id(token), {})
