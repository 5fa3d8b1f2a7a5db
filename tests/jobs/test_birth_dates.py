"""Birth dates: validation, storage as named values (sealed with a secret
key), and the CLI."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from grok2api_storage_local import create_local_storage

from grok2api.jobs import BirthDates, parse_birth_date
from grok2api.security.sealing import SealedStorage, Sealer
from grok2api.storage import token_id_for
from tests.conftest import Emulator, GatewayFactory

TODAY = datetime.date(2026, 12, 4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2013-12-05", "outside 13 to 120"),  # twelve, a day short of 13
        ("1905-12-04", "outside 13 to 120"),  # 121 today
        ("2026-12-05", "in the future"),
        ("2001-02-29", "not a real"),
        ("2001-2-3", "YYYY-MM-DD"),
        ("\uff12001-02-03", "YYYY-MM-DD"),  # a fullwidth digit
        (20010203, "YYYY-MM-DD"),
    ],
)
def test_birth_date_refused(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_birth_date(text, TODAY)
    assert str(text) not in str(caught.value)


def test_birth_date_age_limits_are_inclusive() -> None:
    assert parse_birth_date("2013-12-04", TODAY) == datetime.date(2013, 12, 4)
    assert parse_birth_date("1906-12-04", TODAY) == datetime.date(1906, 12, 4)


async def test_birth_dates_are_sealed_at_rest(tmp_path: Path) -> None:
    inner = create_local_storage("", tmp_path)
    storage = SealedStorage(inner, Sealer("operator key"))
    await storage.open()
    try:
        dates = BirthDates(storage)
        await dates.put("0123456789abcdef", datetime.date(1987, 6, 23))
        assert await dates.get("0123456789abcdef") == datetime.date(1987, 6, 23)
        stored = await inner.get_value("birth_date:0123456789abcdef")
        assert stored is not None and "1987" not in stored
        assert await dates.forget("0123456789abcdef") is True
        assert await dates.get("0123456789abcdef") is None
        assert await dates.forget("0123456789abcdef") is False
    finally:
        await storage.aclose()


def test_birth_date_cli_records_what_the_nsfw_call_sends(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("cli-dated")
    gateway = gateway_factory(["cli-dated"], GROK2API_NETWORK_ACCOUNTS_URL=emulator.url)
    token_id = token_id_for("cli-dated")
    refused = gateway.cli("tokens", "birth-date", token_id, "2999-01-01")
    assert refused.returncode == 2 and "future" in refused.stderr
    unknown = gateway.cli("tokens", "birth-date", "0123456789abcdef", "1980-01-31")
    assert unknown.returncode == 1
    done = gateway.cli("tokens", "birth-date", token_id, "1980-01-31")
    assert done.returncode == 0, done.stderr
    assert "1980" not in done.stdout

    with gateway.admin() as admin:
        result = admin.post(f"/v1/admin/tokens/{token_id}/nsfw").json()
    assert result["ok"] is True, result
    [call] = emulator.control.requests(path="/rest/auth/set-birth-date")
    assert call["body"] == {"birthDate": "1980-01-31T12:00:00.000Z"}

    assert gateway.cli("tokens", "birth-date", token_id, "--forget").returncode == 0
    with gateway.admin() as admin:
        result = admin.post(f"/v1/admin/tokens/{token_id}/nsfw").json()
    assert result["status"] == "needs_birth_date"


def test_sealed_gateway_keeps_birth_dates_off_disk(
    gateway_factory: GatewayFactory, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.control.add_account("sealed-dated")
    gateway = gateway_factory(
        ["sealed-dated"], GROK2API_SECURITY_SECRET_KEY="a-long-operator-secret-key"
    )
    with gateway.admin() as admin:
        response = admin.put(
            f"/v1/admin/tokens/{token_id_for('sealed-dated')}/birth-date",
            json={"birth_date": "1979-11-08"},
        )
        assert response.status_code == 200
    gateway.stop()
    on_disk = b"".join(
        path.read_bytes() for path in gateway.data_dir.rglob("*") if path.is_file()
    )
    assert b"birth_date:" in on_disk
    assert b"1979-11-08" not in on_disk
