"""Tokens sealed at rest with ``security.secret_key``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest
from grok2api_storage_local import create_local_storage

from grok2api.api.errors import as_api_error
from grok2api.errors import SealedSecretError, StorageError
from grok2api.security.sealing import SealedStorage, Sealer
from grok2api.storage import (
    CandidateOrder,
    Lease,
    NewToken,
    Storage,
    TokenQuery,
    token_id_for,
)
from grok2api.testing.storage_conformance import StorageConformance
from tests.conftest import API_KEY, Emulator, GatewayFactory

SECRET = "sso-secret-value-that-must-not-be-on-disk"
NOW = 1_700_000_000.0


class TestSealedStorageConformance(StorageConformance):
    """The wrapper is a storage backend in its own right."""

    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:
        backend = SealedStorage(create_local_storage("", tmp_path), Sealer("k" * 20))
        await backend.open()
        try:
            yield backend
        finally:
            await backend.aclose()


async def lease_one(storage: Storage) -> Lease | None:
    return await storage.lease(
        ["basic"], CandidateOrder.MOST_QUOTA, None, 1, frozenset(), NOW, NOW + 60, "l"
    )


def stored_bytes(data_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in data_dir.rglob("*") if path.is_file())


async def test_only_ciphertext_reaches_the_backend(tmp_path: Path) -> None:
    inner = create_local_storage("", tmp_path)
    sealed = SealedStorage(inner, Sealer("operator key"))
    await sealed.open()
    try:
        await sealed.add_tokens([NewToken(SECRET, "basic", 5, 5, 3600)], NOW)
        await sealed.put_value("admin.session_key", "session-key-material")

        [record] = (await sealed.list_tokens(TokenQuery())).items
        assert record.id == token_id_for(SECRET), "ids stay those of the plain secret"
        raw = await inner.token_secrets([record.id])
        assert SECRET not in raw[record.id]
        assert await inner.get_value("admin.session_key") != "session-key-material"

        lease = await lease_one(sealed)
        assert lease is not None and lease.secret == SECRET
        assert await sealed.token_secrets([record.id]) == {record.id: SECRET}
        [exported] = await sealed.export_tokens(0, 10)
        assert exported.secret == SECRET
        overrides = {"app": {"api_key": "sk-runtime-master"}, "chat": {"stream": True}}
        await sealed.save_config_overrides(overrides)
        assert await sealed.load_config_overrides() == overrides
        raw_config = await inner.load_config_overrides()
        assert raw_config["app"]["api_key"] != "sk-runtime-master"
        assert raw_config["chat"] == {"stream": True}
        # The same secret again is the same token.
        assert (
            await sealed.add_tokens([NewToken(SECRET, "basic", 5, 5, 3600)], NOW) == 0
        )
    finally:
        await sealed.aclose()
    assert SECRET.encode() not in stored_bytes(tmp_path)

    other = SealedStorage(create_local_storage("", tmp_path), Sealer("another key"))
    await other.open()
    try:
        with pytest.raises(StorageError, match=r"another security\.secret_key"):
            await other.token_secrets([token_id_for(SECRET)])
    finally:
        await other.aclose()


async def test_without_the_key_a_sealed_token_is_refused_and_not_left_reserved(
    tmp_path: Path,
) -> None:
    sealing = SealedStorage(create_local_storage("", tmp_path), Sealer("key"))
    await sealing.open()
    try:
        await sealing.add_tokens([NewToken(SECRET, "basic", 5, 5, 3600)], NOW)
        await sealing.check_key()
    finally:
        await sealing.aclose()

    keyless = SealedStorage(create_local_storage("", tmp_path), Sealer(""))
    await keyless.open()
    try:
        with pytest.raises(StorageError, match=r"secret_key is empty"):
            await keyless.check_key()
        with pytest.raises(SealedSecretError, match=r"secret_key is empty") as refused:
            await lease_one(keyless)
        # A client is told the gateway cannot serve, not that it broke.
        answer = as_api_error(refused.value)
        assert (answer.status, answer.code) == (503, "token_sealed")
        [record] = (await keyless.list_tokens(TokenQuery())).items
        assert record.reserved == 0 and record.quota == 5
    finally:
        await keyless.aclose()


def test_a_gateway_with_a_secret_key_serves_and_stores_ciphertext(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account(SECRET)
    gateway = gateway_factory([SECRET], GROK2API_SECURITY_SECRET_KEY="operator key")

    answer = httpx.post(
        f"{gateway.api}/chat/completions",
        json={"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )

    assert answer.status_code == 200, answer.text
    exported = gateway.cli("tokens", "export")
    assert SECRET in exported.stdout, "an explicit export shows the secret"
    gateway.stop()
    assert SECRET.encode() not in stored_bytes(gateway.data_dir)


async def test_a_wrong_key_never_claims_a_backend_sealed_before_its_marker(
    tmp_path: Path,
) -> None:
    # Plain tokens first, then tokens sealed by a version that left no
    # marker: only the key that sealed them may start, and claim it.
    inner = create_local_storage("", tmp_path)
    await inner.open()
    try:
        sealed_by_k1 = Sealer("k1").seal("sso-sealed")
        await inner.add_tokens(
            [
                NewToken("sso-plain", "basic", 5, 5, 3600),
                attrs.evolve(
                    NewToken("sso-sealed", "basic", 5, 5, 3600), secret=sealed_by_k1
                ),
            ],
            NOW,
        )
    finally:
        await inner.aclose()

    async def check(key: str) -> None:
        backend = SealedStorage(create_local_storage("", tmp_path), Sealer(key))
        await backend.open()
        try:
            await backend.check_key()
        finally:
            await backend.aclose()

    for wrong in ("k2", "", "k2"):
        with pytest.raises(SealedSecretError):
            await check(wrong)
    await check("k1")
    for wrong in ("", "k2"):
        with pytest.raises(SealedSecretError):
            await check(wrong)
    await check("k1")
