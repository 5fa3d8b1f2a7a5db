"""NSFW enabling through the admin API against a running gateway and the
emulator: one token, a batch job followed over SSE, birth dates."""

from __future__ import annotations

from grok2api.storage import token_id_for
from tests.conftest import Emulator, Gateway, GatewayFactory
from tests.jobs.helpers import (
    BIRTH_DATE,
    account_settings,
    all_results,
    follow,
    job,
    record_birth_date,
    settings_for,
    start_job,
)

TOS_PATH = "/auth_mgmt.AuthManagement/SetTosAcceptedVersion"
NSFW_PATH = "/auth_mgmt.AuthManagement/UpdateUserFeatureControls"
BIRTH_PATH = "/rest/auth/set-birth-date"
NSFW_BODY = bytes.fromhex("00000000200a021001121a0a18") + b"always_show_nsfw_content"


def start(
    gateway_factory: GatewayFactory, emulator: Emulator, tokens: list[str], **env: str
) -> Gateway:
    for token in tokens:
        emulator.control.add_account(token)
    return gateway_factory(tokens, **settings_for(emulator.url), **env)


def test_nsfw_for_one_token_sends_the_exact_calls_and_tags_it(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start(gateway_factory, emulator, ["nsfw-one"])
    record_birth_date(gateway, "nsfw-one")
    token_id = token_id_for("nsfw-one")

    with gateway.admin() as admin:
        response = admin.post(f"/v1/admin/tokens/{token_id}/nsfw")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["ok"] is True and result["status"] == "enabled", result
    assert result["birth_date_set"] is True
    assert "nsfw" in gateway.tokens()[token_id]["tags"]

    (tos,) = emulator.control.requests(path=TOS_PATH)
    (birth,) = emulator.control.requests(path=BIRTH_PATH)
    (nsfw,) = emulator.control.requests(path=NSFW_PATH)
    assert bytes.fromhex(tos["body"]["grpc_hex"]) == bytes.fromhex("00000000021001")
    assert birth["body"] == {"birthDate": f"{BIRTH_DATE}T12:00:00.000Z"}
    assert bytes.fromhex(nsfw["body"]["grpc_hex"]) == NSFW_BODY
    assert tos["seq"] < birth["seq"] < nsfw["seq"]
    assert {tos["status"], birth["status"], nsfw["status"]} == {200}
    assert account_settings(emulator.url, "nsfw-one") == {
        "token_id": tos["token_id"],
        "tos_accepted": True,
        "birth_date": BIRTH_DATE,
        "always_show_nsfw_content": True,
    }
    # Personal data stays out of the log.
    assert BIRTH_DATE not in gateway.log()


def test_nsfw_without_a_birth_date_sends_nothing(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start(gateway_factory, emulator, ["nsfw-undated"])
    token_id = token_id_for("nsfw-undated")
    record_birth_date(gateway, "nsfw-undated")
    with gateway.admin() as admin:
        forgotten = admin.delete(f"/v1/admin/tokens/{token_id}/birth-date")
        assert forgotten.status_code == 200
        assert forgotten.json()["birth_date_recorded"] is False
        result = admin.post(f"/v1/admin/tokens/{token_id}/nsfw").json()
    assert result["ok"] is False
    assert result["status"] == "needs_birth_date"
    assert "birth-date" in result["error"]
    assert emulator.control.requests(path=TOS_PATH) == []
    assert emulator.control.requests(path=BIRTH_PATH) == []
    assert "nsfw" not in gateway.tokens()[token_id]["tags"]


def test_birth_dates_are_validated(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start(gateway_factory, emulator, ["nsfw-check"])
    token_id = token_id_for("nsfw-check")
    url = f"/v1/admin/tokens/{token_id}/birth-date"
    with gateway.admin() as admin:
        for bad in ("1990-02-30", "2999-01-01", "1850-01-01", "23/06/1987", 19870623):
            response = admin.put(url, json={"birth_date": bad})
            assert response.status_code == 400, (bad, response.text)
            error = response.json()["error"]
            assert error["param"] == "birth_date"
            assert str(bad) not in error["message"]
        too_young = admin.put(url, json={"birth_date": "2020-01-01"})
        assert too_young.status_code == 400
        assert "13 to 120" in too_young.json()["error"]["message"]
        assert admin.put(url, json={}).status_code == 400
        unknown = admin.put(
            "/v1/admin/tokens/0123456789abcdef/birth-date",
            json={"birth_date": BIRTH_DATE},
        )
        assert unknown.status_code == 404
        assert (
            admin.delete("/v1/admin/tokens/0123456789abcdef/birth-date").status_code
            == 404
        )
        assert admin.post("/v1/admin/tokens/0123456789abcdef/nsfw").status_code == 404


def test_nsfw_batch_job_reports_every_token_and_streams_progress(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    tokens = [f"nsfw-batch-{i:02d}" for i in range(20)]
    undated, rejected, preset = tokens[:2], tokens[2], tokens[3]
    gateway = start(
        gateway_factory,
        emulator,
        tokens,
        GROK2API_PERFORMANCE_NSFW_MAX_CONCURRENT="3",
        GROK2API_PERFORMANCE_NSFW_BATCH_SIZE="8",
    )
    for token in tokens[2:]:
        record_birth_date(gateway, token)
    # One account has its birth date set already: the upstream refuses a
    # second change (429 with its marker), which counts as done.
    with gateway.admin() as admin:
        first = admin.post(f"/v1/admin/tokens/{token_id_for(preset)}/nsfw")
        assert first.json()["ok"] is True
    emulator.control.fault("401", token=rejected, endpoint="accounts-tos")
    emulator.control.configure(line_delay=0.0)

    started = start_job(gateway, kind="nsfw", all=True)
    assert started["state"] == "running" and started["total"] == 20
    events = follow(gateway, started["id"])

    final = events[-1]
    assert final[0] == "done"
    assert final[1]["state"] == "finished"
    assert (final[1]["done"], final[1]["ok"], final[1]["failed"]) == (20, 17, 3)
    progress = [data for name, data in events if name == "progress"]
    assert progress and progress[0]["state"] == "running"
    assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)

    results = {r["token_id"]: r for r in all_results(gateway, started["id"])}
    assert len(results) == 20
    for token in undated:
        assert results[token_id_for(token)]["status"] == "needs_birth_date"
    assert results[token_id_for(rejected)]["status"] == "token_rejected"
    assert results[token_id_for(rejected)]["http_status"] == 401
    assert results[token_id_for(rejected)]["step"] == "terms"
    assert results[token_id_for(preset)]["ok"] is True
    assert results[token_id_for(preset)]["birth_date_set"] is False

    views = gateway.tokens()
    tagged = {t for t, view in views.items() if "nsfw" in view["tags"]}
    assert tagged == {token_id_for(t) for t in tokens[3:]}
    # The 401 counts against the token like any other token fault.
    assert views[token_id_for(rejected)]["fail_count"] == 1
    # No call at all went out for the tokens without a birth date.
    for token in undated:
        assert emulator.control.requests(token=token) == []
    birth_calls = emulator.control.requests(path=BIRTH_PATH)
    refused = [c for c in birth_calls if c["status"] == 429]
    assert len(refused) == 1 and refused[0]["reason"] == "birth-date-set"

    listed = job(gateway, started["id"])
    assert listed["state"] == "finished" and listed["results"]["total"] == 20
    with gateway.admin() as admin:
        jobs = admin.get("/v1/admin/jobs").json()["items"]
    assert [j["id"] for j in jobs] == [started["id"]]
