"""Background jobs through the admin API: validation, cancelling a job in
flight, two workers sharing one storage, asset clearing, quota refresh."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from grok2api.emulator.assets import EmulatorAssets
from grok2api.jobs.store import ABANDONED_AFTER
from grok2api.storage import token_id_for
from tests.conftest import (
    Emulator,
    Gateway,
    GatewayFactory,
    free_port,
    gateway_env,
    start_gateway,
)
from tests.jobs.helpers import (
    all_results,
    follow,
    job,
    record_birth_date,
    settings_for,
    start_job,
    wait_for,
)


def start(
    gateway_factory: GatewayFactory, emulator: Emulator, tokens: list[str], **env: str
) -> Gateway:
    for token in tokens:
        emulator.control.add_account(token)
    return gateway_factory(tokens, **settings_for(emulator.url), **env)


def stall_nsfw(emulator: Emulator, tokens: list[str], seconds: float = 60) -> None:
    for token in tokens:
        emulator.control.fault(
            "stall", token=token, times=None, endpoint="nsfw", seconds=seconds
        )


def steady_done(gateway: Gateway, job_id: str, quiet: float = 1.5) -> int:
    """The job's done count once it has not moved for ``quiet`` seconds."""
    done, since = job(gateway, job_id)["done"], time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.1)
        now = job(gateway, job_id)["done"]
        if now != done:
            done, since = now, time.monotonic()
    return done


def shared_gateways(
    tmp_path: Path, emulator: Emulator, tokens: list[str]
) -> tuple[Gateway, Gateway]:
    """Two gateway processes on one storage (the local SQLite file): two
    workers whose only link is the storage. Tokens dated on both."""
    for token in tokens:
        emulator.control.add_account(token)
    first_env = gateway_env(tmp_path / "shared", emulator, **settings_for(emulator.url))
    second_env = {**first_env, "SERVER_PORT": str(free_port())}
    first = start_gateway(first_env, tmp_path / "first.log")
    try:
        second = start_gateway(second_env, tmp_path / "second.log")
    except BaseException:
        first.stop(signal.SIGKILL)
        raise
    first.add_tokens(tokens)
    for token in tokens:
        record_birth_date(first, token)
    return first, second


def test_job_requests_are_validated(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start(
        gateway_factory,
        emulator,
        ["job-a", "job-b"],
        GROK2API_PERFORMANCE_USAGE_MAX_TOKENS="1",
    )
    cases = [
        ({"kind": "nope", "all": True}, "kind"),
        ({"kind": "nsfw"}, "token_ids"),
        ({"kind": "nsfw", "all": True, "pool": "basic"}, "token_ids"),
        ({"kind": "nsfw", "token_ids": "job-a"}, "token_ids"),
        ({"kind": "nsfw", "token_ids": []}, "token_ids"),
        ({"kind": "nsfw", "pool": "gold"}, "pool"),
        ({"kind": "nsfw", "all": "yes"}, "all"),
        ({"kind": "refresh", "all": True}, "token_ids"),
    ]
    with gateway.admin() as admin:
        for body, param in cases:
            response = admin.post("/v1/admin/jobs", json=body)
            assert response.status_code == 400, (body, response.text)
            error = response.json()["error"]
            assert error["param"] == param, body
            assert error["code"] == "invalid_value", body
        too_many = admin.post("/v1/admin/jobs", json={"kind": "refresh", "all": True})
        assert "performance.usage_max_tokens" in too_many.json()["error"]["message"]
        for path in ("/v1/admin/jobs/job_0123456789abcdef", "/v1/admin/jobs/../x"):
            assert admin.get(path).status_code == 404
        missing = admin.post("/v1/admin/jobs/job_0123456789abcdef/cancel")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "job_not_found"
        assert (
            admin.get("/v1/admin/jobs/job_0123456789abcdef/events").status_code == 404
        )
        assert admin.get("/v1/admin/jobs").json() == {"items": []}


def test_cancel_stops_a_job_promptly_and_keeps_partial_results(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    tokens = [f"job-cancel-{i}" for i in range(10)]
    gateway = start(
        gateway_factory,
        emulator,
        tokens,
        GROK2API_PERFORMANCE_NSFW_MAX_CONCURRENT="2",
        GROK2API_PERFORMANCE_SSE_KEEPALIVE_SEC="0.3",
    )
    for token in tokens:
        record_birth_date(gateway, token)
    # Slow enough to watch, then stuck: once two tokens are done, every NSFW
    # call that starts stalls for a minute.
    emulator.control.fault("stall", times=None, endpoint="nsfw", seconds=0.3)

    started = start_job(
        gateway, kind="nsfw", token_ids=[token_id_for(t) for t in tokens]
    )
    wait_for(gateway, started["id"], done=2)
    emulator.control.clear_faults()
    emulator.control.fault("stall", times=None, endpoint="nsfw", seconds=60)
    before = steady_done(gateway, started["id"])
    assert 2 <= before < 10

    with gateway.admin() as admin:
        asked = time.monotonic()
        cancelled = admin.post(f"/v1/admin/jobs/{started['id']}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["cancel_requested"] is True
    events = follow(gateway, started["id"], timeout=10)
    assert time.monotonic() - asked < 5
    name, final = events[-1]
    assert name == "done" and final["state"] == "cancelled"
    assert final["done"] == before < 10
    results = all_results(gateway, started["id"])
    assert len(results) == before and all(r["ok"] for r in results)
    # The stalled upstream calls were abandoned, not waited for.
    stalled = emulator.control.requests(
        path="/auth_mgmt.AuthManagement/UpdateUserFeatureControls",
        settled=True,
        timeout=10,
    )
    assert any(r["outcome"] == "cancelled" for r in stalled)
    # Cancelling a finished job changes nothing.
    with gateway.admin() as admin:
        again = admin.post(f"/v1/admin/jobs/{started['id']}/cancel").json()
    assert again["state"] == "cancelled"


def test_a_job_on_one_worker_is_seen_and_cancelled_from_another(
    tmp_path: Path, emulator: Emulator
) -> None:
    tokens = [f"job-shared-{i}" for i in range(4)]
    first, second = shared_gateways(tmp_path, emulator, tokens)
    try:
        stall_nsfw(emulator, tokens)

        started = start_job(first, kind="nsfw", all=True)
        seen = job(second, started["id"])
        assert seen["state"] == "running" and seen["worker"] == started["worker"]
        with second.admin() as admin:
            listed = admin.get("/v1/admin/jobs").json()["items"]
            assert [j["id"] for j in listed] == [started["id"]]
            response = admin.post(f"/v1/admin/jobs/{started['id']}/cancel")
            assert response.status_code == 200
        events = follow(second, started["id"], timeout=15)
        assert events[-1][0] == "done"
        assert events[-1][1]["state"] == "cancelled"
        assert job(first, started["id"])["state"] == "cancelled"
    finally:
        for gateway in (first, second):
            gateway.stop(signal.SIGKILL)


@pytest.mark.slow
def test_a_job_whose_worker_died_is_shown_as_abandoned(
    tmp_path: Path, emulator: Emulator
) -> None:
    tokens = ["job-orphan-1", "job-orphan-2"]
    first, second = shared_gateways(tmp_path, emulator, tokens)
    try:
        stall_nsfw(emulator, tokens)
        started = start_job(first, kind="nsfw", all=True)
        first.stop(signal.SIGKILL)
        assert job(second, started["id"])["state"] == "running"
        # The progress stream ends by itself once the heartbeat is too old.
        events = follow(second, started["id"], timeout=ABANDONED_AFTER + 15)
        name, final = events[-1]
        assert name == "done" and final["state"] == "abandoned"
        assert final["done"] == 0 and "stopped answering" in final["error"]
    finally:
        for gateway in (first, second):
            gateway.stop(signal.SIGKILL)


def test_progress_stream_sends_keepalive_comments_while_nothing_moves(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start(
        gateway_factory,
        emulator,
        ["job-quiet"],
        GROK2API_PERFORMANCE_SSE_KEEPALIVE_SEC="0.2",
    )
    record_birth_date(gateway, "job-quiet")
    stall_nsfw(emulator, ["job-quiet"], seconds=2)
    started = start_job(gateway, kind="nsfw", all=True)
    events = follow(gateway, started["id"], timeout=20)
    assert ("comment", "keepalive") in events
    assert events[-1][0] == "done" and events[-1][1]["ok"] == 1


def test_assets_clear_deletes_every_upstream_asset_of_the_chosen_tokens(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    tokens = ["job-assets-a", "job-assets-b", "job-assets-kept"]
    gateway = start(
        gateway_factory,
        emulator,
        tokens,
        GROK2API_PERFORMANCE_ASSETS_DELETE_BATCH_SIZE="4",
        GROK2API_PERFORMANCE_ASSETS_MAX_CONCURRENT="3",
    )
    with EmulatorAssets(emulator.url) as assets:
        for token in tokens:
            for index in range(9):
                assets.put(
                    token, f"users/{token}/a{index}/image.png", b"png", "image/png"
                )
    chosen = [token_id_for(t) for t in tokens[:2]]
    started = start_job(gateway, kind="assets_clear", token_ids=chosen)
    events = follow(gateway, started["id"])
    assert events[-1][1]["state"] == "finished" and events[-1][1]["ok"] == 2
    results = all_results(gateway, started["id"])
    assert {(r["token_id"], r["deleted"]) for r in results} == {(t, 9) for t in chosen}
    remaining = httpx.get(f"{emulator.url}/_emulator/assets").json()
    assert {a["path"].split("/")[1] for a in remaining} == {"job-assets-kept"}
    assert len(remaining) == 9


def test_refresh_job_reads_the_quota_of_the_chosen_pool(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start(gateway_factory, emulator, ["job-refresh"])
    emulator.control.add_account("job-refresh", remaining=33)
    started = start_job(gateway, kind="refresh", pool="basic")
    events = follow(gateway, started["id"])
    assert events[-1][1]["state"] == "finished"
    [result] = all_results(gateway, started["id"])
    assert result["ok"] is True and result["remaining"] == 33
    assert gateway.tokens()[token_id_for("job-refresh")]["quota"] == 33
