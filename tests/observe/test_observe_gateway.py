"""Statistics, the audit log, request ids, metrics and probes on real
gateways over the local backend, against the emulator."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from grok2api.storage import token_id_for
from tests.conftest import (
    ADMIN_KEY,
    API_KEY,
    Emulator,
    Gateway,
    GatewayFactory,
    gateway_env,
    start_gateway,
)

from .promtext import parse

CHAT = {"model": "grok-4", "messages": [{"role": "user", "content": "hello"}]}
FAST_FLUSH = {"GROK2API_STATS_FLUSH_INTERVAL_SEC": "0.2"}
REQUEST_ID = re.compile(r"[0-9a-f]{16}")


def wait_for(check: Callable[[], Any], timeout: float = 10) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def stats(gateway: Gateway, **params: str) -> list[dict[str, Any]]:
    with gateway.admin() as admin:
        response = admin.get("/v1/admin/stats", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def totals(gateway: Gateway, dimension: str = "total") -> dict[str, list[int]]:
    """Requests, successes and failures per value, summed over the hours."""
    summed: dict[str, list[int]] = {}
    for row in stats(gateway, dimension=dimension):
        counts = summed.setdefault(row["value"], [0, 0, 0])
        for i, field in enumerate(("requests", "successes", "failures")):
            counts[i] += row[field]
    return summed


def audit(gateway: Gateway, **params: str) -> list[dict[str, Any]]:
    with gateway.admin() as admin:
        response = admin.get("/v1/admin/audit", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


@pytest.fixture
def shared_gateways(
    tmp_path: Path, emulator: Emulator
) -> Iterator[tuple[Gateway, Gateway]]:
    """Two single-worker gateways on one data directory (one SQLite file)."""
    for token in ("tok-a", "tok-b"):
        emulator.control.add_account(token)
    data_dir = tmp_path / "shared"
    first = start_gateway(
        gateway_env(data_dir, emulator, **FAST_FLUSH), tmp_path / "first.log"
    )
    second = start_gateway(
        gateway_env(data_dir, emulator, **FAST_FLUSH), tmp_path / "second.log"
    )
    try:
        first.add_tokens(["tok-a", "tok-b"])
        yield first, second
    finally:
        for gateway in (first, second):
            if gateway.process.poll() is None:
                gateway.stop(signal.SIGKILL)


@pytest.mark.slow
def test_statistics_add_up_across_flushes_and_gateways(
    shared_gateways: tuple[Gateway, Gateway],
) -> None:
    first, second = shared_gateways
    with first.admin() as admin:
        created = admin.post("/v1/admin/keys", json={"name": "team-blue"})
    assert created.status_code == 201, created.text
    team_key = created.json()["items"][0]["key"]
    with second.client(team_key) as client:
        # The second gateway learns of the key through the change version.
        assert wait_for(lambda: client.get("/v1/models").status_code == 200)

    sent: list[str] = []
    with first.client() as client:
        for _ in range(2):
            response = client.post("/v1/chat/completions", json=CHAT)
            assert response.status_code == 200
            sent.append(response.headers["x-request-id"])
    with second.client(team_key) as client:
        response = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert response.status_code == 200
        sent.append(response.headers["x-request-id"])
        missing = client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
        assert missing.status_code == 404
        sent.append(missing.headers["x-request-id"])
    assert wait_for(lambda: totals(second).get("") == [4, 3, 1])

    # A second flush of the first gateway adds to the same hour's row.
    with first.client() as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert wait_for(lambda: totals(first).get("") == [5, 4, 1])

    assert totals(first, "model") == {"grok-4": [4, 4, 0]}
    assert totals(first, "key") == {"master": [3, 3, 0], "team-blue": [2, 1, 1]}
    by_token = totals(first, "token")
    assert set(by_token) <= {token_id_for("tok-a"), token_id_for("tok-b")}
    assert sum(counts[0] for counts in by_token.values()) == 4
    day = stats(first, period="day")
    assert sum(row["requests"] for row in day) == 5
    assert all(row["start"] % 86400 == 0 for row in day)

    entries = audit(second)
    assert {e["request_id"] for e in entries} >= set(sent)
    failed = next(e for e in entries if e["request_id"] == sent[3])
    assert failed["status"] == 404 and failed["error"] == "invalid_request_error"
    assert failed["key_name"] == "team-blue"
    streamed = next(e for e in entries if e["request_id"] == sent[2])
    assert streamed["stream"] is True and streamed["error"] == ""
    assert streamed["token_id"] in (token_id_for("tok-a"), token_id_for("tok-b"))
    assert streamed["client"] == "127.0.0.1"

    assert wait_for(lambda: _use_count(first) == 2)
    for gateway in (first, second):
        text = gateway.log()
        for secret in ("tok-a", "tok-b", API_KEY, ADMIN_KEY, team_key):
            assert secret not in text


def _use_count(gateway: Gateway) -> int:
    with gateway.admin() as admin:
        keys = admin.get("/v1/admin/keys").json()["items"]
    return int(keys[0]["use_count"])


def test_statistics_are_flushed_when_the_gateway_stops(
    gateway_factory: GatewayFactory, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(["tok-a"], GROK2API_STATS_FLUSH_INTERVAL_SEC="3600")
    with gateway.client() as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert totals(gateway) == {}
    assert gateway.stop() == 0

    again = start_gateway(gateway.env, tmp_path / "again.log")
    try:
        assert totals(again).get("") == [1, 1, 0]
        assert len(audit(again)) == 1
    finally:
        again.stop()


def test_audit_log_keeps_the_newest_entries(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(GROK2API_STATS_LOG_MAX_ENTRIES="3", **FAST_FLUSH)
    sent = []
    with gateway.client() as client:
        for n in range(5):
            response = client.post(
                "/v1/chat/completions", json={**CHAT, "model": f"missing-{n}"}
            )
            sent.append(response.headers["x-request-id"])
    expected = list(reversed(sent[-3:]))
    assert wait_for(lambda: [e["request_id"] for e in audit(gateway)] == expected)
    page = audit(gateway, limit="2", offset="1")
    assert [e["request_id"] for e in page] == expected[1:]
    assert all(e["status"] == 404 for e in page)


def test_every_response_carries_a_request_id(
    gateway: Gateway, emulator: Emulator
) -> None:
    with gateway.client() as client, gateway.client(None) as anonymous:
        responses = [
            client.get("/health"),
            client.get("/ready"),
            client.get("/no/such/route"),
            client.post("/v1/chat/completions", content=b"{not json"),
            anonymous.post("/v1/chat/completions", json=CHAT),
            client.post("/v1/chat/completions", json=CHAT),
            client.post("/v1/chat/completions", json={**CHAT, "stream": True}),
        ]
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 404, 400, 401, 200, 200]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(REQUEST_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    log = wait_for(lambda: ids[-1] in gateway.log() and gateway.log())
    for request_id in ids:
        assert f"request_id={request_id}" in log


def test_ready_needs_a_usable_token(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    gateway = gateway_factory()
    with gateway.client(None) as anonymous:
        not_ready = anonymous.get("/ready")
        assert anonymous.get("/health").status_code == 200
    assert not_ready.status_code == 503
    assert not_ready.headers["retry-after"] == "5"
    error = not_ready.json()["error"]
    assert error["code"] == "not_ready" and error["type"] == "server_error"
    assert "No token is usable" in error["message"]

    emulator.control.add_account("tok-a")
    gateway.add_tokens(["tok-a"])
    with gateway.client(None) as anonymous:
        ready = anonymous.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "usable_tokens": 1}


def test_metrics_parse_and_name_no_token_or_key(
    gateway: Gateway, emulator: Emulator
) -> None:
    with gateway.admin() as admin:
        created = admin.post("/v1/admin/keys", json={"name": "secret-team-name"})
    team_key = created.json()["items"][0]["key"]
    emulator.control.fault("401", times=1)
    with gateway.client(team_key) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    with gateway.admin() as admin:
        response = admin.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    families = parse(text)

    requests = families["grok2api_requests_total"]
    assert (
        requests.value(route="/v1/chat/completions", model="grok-4", status_class="2xx")
        == 1
    )
    assert requests.value(route="/v1/chat/completions", status_class="4xx") == 1
    assert families["grok2api_upstream_faults_total"].value(kind="token") == 1
    assert families["grok2api_tokens"].value(pool="basic", state="active") == 2
    assert families["grok2api_token_quota_remaining"].value(pool="basic") > 0
    assert families["grok2api_storage_up"].value() == 1
    assert families["grok2api_open_streams"].value() == 0
    workers = {
        labels["worker"] for _, labels, _ in requests.samples if "worker" in labels
    }
    assert workers == {str(_server_pid(gateway))}
    for forbidden in (
        token_id_for("tok-a"),
        token_id_for("tok-b"),
        "tok-a",
        "secret-team-name",
        team_key,
        API_KEY,
    ):
        assert forbidden not in text

    assert httpx.get(f"{gateway.url}/metrics").status_code == 401


def _server_pid(gateway: Gateway) -> int:
    match = re.search(r" (\d+) INFO grok2api.app: worker ready", gateway.log())
    assert match, gateway.log()
    return int(match.group(1))


def test_admin_stats_refuse_bad_query_values(gateway: Gateway) -> None:
    bad = [
        ("/v1/admin/stats?period=week", "period"),
        ("/v1/admin/stats?dimension=pool", "dimension"),
        ("/v1/admin/stats?since=yesterday", "since"),
        ("/v1/admin/stats?since=-1", "since"),
        ("/v1/admin/stats?since=inf", "since"),
        ("/v1/admin/audit?limit=0", "limit"),
        ("/v1/admin/audit?limit=1001", "limit"),
        ("/v1/admin/audit?offset=-3", "offset"),
        ("/v1/admin/audit?offset=1.5", "offset"),
    ]
    with gateway.admin() as admin:
        for path, param in bad:
            response = admin.get(path)
            assert response.status_code == 400, path
            error = response.json()["error"]
            assert error["param"] == param, path
            assert error["type"] == "invalid_request_error"
            assert REQUEST_ID.fullmatch(response.headers["x-request-id"])
        assert admin.get("/v1/admin/stats?period=day&since=0").status_code == 200
