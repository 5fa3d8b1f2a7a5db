"""The token pool over the real local backend: leasing, settling by failure
class, and storage trouble on the settling path."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from grok2api_storage_local import LocalStorage

from grok2api.config import Settings, load_settings
from grok2api.errors import (
    EgressBlocked,
    NoTokenAvailable,
    StorageUnavailable,
    TokenRejected,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from grok2api.models import ModelCatalog
from grok2api.pool.pool import TokenPool
from grok2api.pool.strategies import BUILTIN_STRATEGIES
from grok2api.storage import token_id_for

GROK_4 = ModelCatalog().get("grok-4")
HEAVY = ModelCatalog().get("grok-4-heavy")


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[LocalStorage]:
    store = LocalStorage(tmp_path / "pool.sqlite3")
    await store.open()
    yield store
    await store.aclose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path, {"GROK2API_TOKEN_BASIC_QUOTA": "3"})


@pytest.fixture
async def pool(storage: LocalStorage, settings: Settings) -> TokenPool:
    pool = TokenPool(storage, {s.name: s for s in BUILTIN_STRATEGIES}, lambda: settings)
    await storage.add_tokens(
        [pool.new_token("sso=tok-a", "basic"), pool.new_token("tok-s", "super")], 0.0
    )
    return pool


async def test_lease_prefers_the_models_pools_in_order(pool: TokenPool) -> None:
    lease = await pool.lease(GROK_4)
    assert lease.token_id == token_id_for("tok-a") and lease.secret == "tok-a"
    heavy = await pool.lease(HEAVY)
    assert heavy.pool == "super" and heavy.cost == 4


async def test_quota_runs_out_with_a_retry_after(pool: TokenPool) -> None:
    for _ in range(3):
        await pool.commit(await pool.lease(GROK_4, frozenset({token_id_for("tok-s")})))
    with pytest.raises(NoTokenAvailable) as info:
        await pool.lease(GROK_4, frozenset({token_id_for("tok-s")}))
    assert info.value.counts["exhausted"] == 1
    assert info.value.retry_after is not None and info.value.retry_after > 3600


async def test_settling_by_failure_class(
    pool: TokenPool, storage: LocalStorage
) -> None:
    a = token_id_for("tok-a")
    only_a = frozenset({token_id_for("tok-s")})

    await pool.settle_failure(
        await pool.lease(GROK_4, only_a), EgressBlocked("cloudflare", status=403)
    )
    await pool.settle_failure(
        await pool.lease(GROK_4, only_a), UpstreamUnavailable("cut", charged=True)
    )
    record = await storage.get_token(a)
    assert record is not None
    assert (record.quota, record.reserved, record.fail_count) == (2, 0, 0)

    await pool.settle_failure(
        await pool.lease(GROK_4, only_a), TokenRejected("401", status=401)
    )
    record = await storage.get_token(a)
    assert record is not None and (record.fail_count, record.status.value) == (
        1,
        "active",
    )

    await pool.settle_failure(
        await pool.lease(GROK_4, only_a),
        UpstreamRateLimited("slow down", remaining=5, retry_after=30),
    )
    record = await storage.get_token(a)
    assert record is not None and record.state(time.time()) == "cooling"
    assert record.quota == 2 and record.reserved == 0


async def test_a_blocked_account_is_invalid_at_once(
    pool: TokenPool, storage: LocalStorage
) -> None:
    lease = await pool.lease(GROK_4, frozenset({token_id_for("tok-s")}))
    await pool.settle_failure(lease, TokenRejected("blocked", status=403, blocked=True))
    record = await storage.get_token(token_id_for("tok-a"))
    assert record is not None and record.status.value == "invalid"


class _BrokenStorage(LocalStorage):
    async def commit(self, lease: object, now: float) -> None:  # type: ignore[override]
        raise StorageUnavailable("down")


async def test_a_storage_outage_while_settling_is_logged_not_raised(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    storage = _BrokenStorage(tmp_path / "broken.sqlite3")
    await storage.open()
    try:
        pool = TokenPool(
            storage, {s.name: s for s in BUILTIN_STRATEGIES}, lambda: settings
        )
        await storage.add_tokens([pool.new_token("tok-a", "basic")], 0.0)
        with caplog.at_level(logging.ERROR):
            await pool.commit(await pool.lease(GROK_4))
        assert "reservation will expire" in caplog.text
        assert "tok-a" not in caplog.text
    finally:
        await storage.aclose()


async def test_settling_survives_the_request_being_cancelled(
    pool: TokenPool, storage: LocalStorage
) -> None:
    lease = await pool.lease(GROK_4)
    with trio.CancelScope() as scope:
        scope.cancel()
        await pool.release(lease)
    record = await storage.get_token(lease.token_id)
    assert record is not None and record.reserved == 0
