"""API keys, limiters, statistics, named and short-lived values on both SQL
servers: what the conformance suite cannot see from one backend on a fresh
schema."""

from __future__ import annotations

import pytest
import trio
from grok2api_storage_sql import SqlStorage
from grok2api_storage_sql.schema import SCHEMA_VERSION

from grok2api.errors import StorageError
from grok2api.storage import ApiKeyRecord, NewToken, StatsRow, TokenQuery

from .conftest import open_storage, run_sql

NOW = 1_700_000_000.0
WINDOW_END = (NOW // 60 + 1) * 60

#: The tables schema version 2 added, which a version 1 database lacks.
_VERSION_2_TABLES = (
    "api_keys",
    "rate_buckets",
    "window_counters",
    "slot_buckets",
    "slot_holders",
    "request_stats",
    "audit_log",
    "named_values",
)
#: The table schema version 3 added.
_VERSION_3_TABLES = ("expiring_values",)
_LIMITER_TABLES = ("rate_buckets", "window_counters", "slot_buckets", "slot_holders")


def _key(key_id: str, digest: str) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=key_id,
        name=key_id,
        digest=digest,
        hint="g2a-…",
        enabled=True,
        created_at=NOW,
    )


def _row_count(url: str, table: str) -> int:
    [(count,)] = run_sql(url, f"SELECT COUNT(*) FROM {table}")
    return int(count)


async def test_sql_version_1_database_upgrades_in_place(
    fresh_database_url: str,
) -> None:
    async with open_storage(fresh_database_url) as storage:
        await storage.add_tokens([NewToken("kept", "basic", 5, 5, 3600)], NOW)
    # Back to what the previous release left: no new tables, version 1.
    run_sql(
        fresh_database_url,
        *(f"DROP TABLE {table}" for table in (*_VERSION_2_TABLES, *_VERSION_3_TABLES)),
        "DELETE FROM schema_version WHERE version > 1",
    )

    async with open_storage(fresh_database_url) as storage:
        page = await storage.list_tokens(TokenQuery())
        await storage.add_api_keys([_key("k1", "d1")])
        assert await storage.put_value_if_absent("session.key", "s") == "s"
        await storage.put_expiring("conv:a", "t1", NOW, NOW + 60)

        assert [token.quota for token in page.items] == [5]
        assert [key.id for key in await storage.list_api_keys()] == ["k1"]
        assert await storage.get_expiring("conv:a", NOW) == "t1"
    versions = run_sql(
        fresh_database_url, "SELECT version FROM schema_version ORDER BY version"
    )
    assert [row[0] for row in versions] == list(range(1, SCHEMA_VERSION + 1))


@pytest.mark.parametrize("half_applied", [False, True])
async def test_sql_version_2_database_gains_expiring_values(
    fresh_database_url: str, half_applied: bool
) -> None:
    async with open_storage(fresh_database_url) as storage:
        await storage.put_value("session.key", "kept")
    # A half-applied step (MariaDB cannot roll DDL back) left its table but
    # not its record; the step must run again over it.
    drop = [] if half_applied else [f"DROP TABLE {t}" for t in _VERSION_3_TABLES]
    run_sql(fresh_database_url, *drop, "DELETE FROM schema_version WHERE version > 2")

    async with open_storage(fresh_database_url) as storage:
        await storage.put_expiring("conv:a", "t1", NOW, NOW + 60)

        assert await storage.get_value("session.key") == "kept"
        assert await storage.get_expiring("conv:a", NOW + 59) == "t1"
    versions = run_sql(
        fresh_database_url, "SELECT version FROM schema_version ORDER BY version"
    )
    assert [row[0] for row in versions] == list(range(1, SCHEMA_VERSION + 1))


async def test_sql_sweep_deletes_only_expired_values(
    fresh_database_url: str,
) -> None:
    async with open_storage(fresh_database_url) as storage:
        await storage.put_expiring("conv:gone", "t1", NOW, NOW + 10)
        await storage.put_expiring("conv:ends-now", "t2", NOW, NOW + 20)
        await storage.put_expiring("conv:kept", "t3", NOW, NOW + 21)
        version = await storage.change_version()

        await storage.expire_reservations(NOW + 20)

        assert _row_count(fresh_database_url, "expiring_values") == 1
        assert await storage.get_expiring("conv:kept", NOW + 20) == "t3"
        assert await storage.change_version() == version


async def test_sql_expiring_values_are_shared_by_separate_backends(
    fresh_database_url: str,
) -> None:
    async with (
        open_storage(fresh_database_url) as first,
        open_storage(fresh_database_url) as second,
    ):
        await first.put_expiring("conv:a", "t1", NOW, NOW + 60)
        assert await second.get_expiring("conv:a", NOW + 1) == "t1"
        # A backend whose clock runs ahead sees it gone before the sweep.
        assert await second.get_expiring("conv:a", NOW + 60) is None

        await second.put_expiring("conv:a", "t2", NOW + 1, NOW + 120)
        assert await first.get_expiring("conv:a", NOW + 60) == "t2"
        await first.delete_expiring("conv:a")
        assert await second.get_expiring("conv:a", NOW + 1) is None


async def test_sql_limiters_hold_across_separate_backends(
    fresh_database_url: str,
) -> None:
    taken = {"rate": 0, "window": 0, "slot": 0}

    async def hammer(storage: SqlStorage, worker: int) -> None:
        for n in range(15):
            if await storage.take_rate("shared:rate", 10, 0.001, NOW) == 0.0:
                taken["rate"] += 1
            if await storage.take_window("shared:window", 7, 3600, NOW) == 0.0:
                taken["window"] += 1
            holder = f"worker-{worker}-{n}"
            if await storage.acquire_slot("shared:slot", 4, holder, NOW, NOW + 60):
                taken["slot"] += 1

    async with (
        open_storage(fresh_database_url) as first,
        open_storage(fresh_database_url) as second,
        trio.open_nursery() as nursery,
    ):
        for worker in range(8):
            nursery.start_soon(hammer, first if worker % 2 else second, worker)

    assert taken == {"rate": 10, "window": 7, "slot": 4}


async def test_sql_sweep_deletes_only_expired_limiter_state(
    fresh_database_url: str,
) -> None:
    async with open_storage(fresh_database_url) as storage:
        assert await storage.take_rate("ip:a", 2, 1.0, NOW) == 0.0
        assert await storage.take_rate("ip:a", 2, 1.0, NOW) == 0.0
        assert await storage.take_window("key:q", 1, 60, NOW) == 0.0
        assert await storage.acquire_slot("key:c", 1, "a", NOW, NOW + 30)

        await storage.expire_reservations(NOW + 1)

        assert await storage.take_rate("ip:a", 2, 1.0, NOW + 1) == 0.0
        assert await storage.take_rate("ip:a", 2, 1.0, NOW + 1) > 0
        assert await storage.take_window("key:q", 1, 60, NOW + 1) == pytest.approx(
            WINDOW_END - NOW - 1
        )
        assert not await storage.acquire_slot("key:c", 1, "b", NOW + 1, NOW + 31)
        for table in _LIMITER_TABLES:
            assert _row_count(fresh_database_url, table) == 1, table

        await storage.expire_reservations(NOW + 100)

        for table in _LIMITER_TABLES:
            assert _row_count(fresh_database_url, table) == 0, table
        assert await storage.take_rate("ip:a", 2, 1.0, NOW + 100) == 0.0
        assert await storage.take_window("key:q", 1, 60, NOW + 100) == 0.0
        assert await storage.acquire_slot("key:c", 1, "b", NOW + 100, NOW + 130)


async def test_sql_stats_batch_repeating_a_row_adds_it_up(
    sql_storage: SqlStorage,
) -> None:
    hour = NOW - NOW % 3600
    await sql_storage.add_stats(
        [
            StatsRow("hour", hour, "model", "grok-4", 1, 1, 0, 2.0),
            StatsRow("hour", hour, "model", "grok-3", 1, 0, 1, 4.0),
            StatsRow("hour", hour, "model", "grok-4", 2, 1, 1, 3.0),
        ]
    )

    assert await sql_storage.read_stats("hour", "model", hour) == [
        StatsRow("hour", hour, "model", "grok-3", 1, 0, 1, 4.0),
        StatsRow("hour", hour, "model", "grok-4", 3, 2, 1, 5.0),
    ]


async def test_sql_api_keys_with_a_reused_digest_are_refused_whole(
    sql_storage: SqlStorage,
) -> None:
    await sql_storage.add_api_keys([_key("k1", "same")])
    version = await sql_storage.change_version()

    with pytest.raises(StorageError):
        await sql_storage.add_api_keys([_key("k2", "new"), _key("k3", "same")])

    assert [key.id for key in await sql_storage.list_api_keys()] == ["k1"]
    assert await sql_storage.change_version() == version
