"""What the local backend adds to the storage contract: its file, its schema,
its indexes, its plugin hook and how it fails."""

from __future__ import annotations

import importlib.metadata
import sqlite3
import threading
import time
from pathlib import Path

import pluggy
import pytest
import trio
from grok2api_storage_local import LocalStorage, create_local_storage, database_path
from grok2api_storage_local import hooks as local_hooks
from grok2api_storage_local.database import switch_to_wal
from grok2api_storage_local.ledger import CANDIDATE_QUERIES
from grok2api_storage_local.schema import SCHEMA_VERSION, STEPS

from grok2api import hookspecs
from grok2api.errors import ConfigError, StorageError, StorageUnavailable
from grok2api.storage import ApiKeyRecord, NewToken, TokenQuery, token_id_for

NOW = 1_700_000_000.0


async def _opened(path: Path, **kwargs: float) -> LocalStorage:
    storage = LocalStorage(path, **kwargs)  # type: ignore[arg-type]
    await storage.open()
    return storage


def test_local_database_path_from_url(tmp_path: Path) -> None:
    assert database_path("", tmp_path) == tmp_path / "grok2api.sqlite3"
    assert database_path("  ", tmp_path) == tmp_path / "grok2api.sqlite3"
    assert database_path("sqlite:///ledger.db", tmp_path) == tmp_path / "ledger.db"
    assert database_path("sqlite:////srv/x.db", tmp_path) == Path("/srv/x.db")
    assert database_path("/srv/y.db", tmp_path) == Path("/srv/y.db")
    assert database_path("sub/z.db", tmp_path) == tmp_path / "sub" / "z.db"


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379", "sqlite://", "sqlite:///:memory:", ":memory:"]
)
def test_local_database_path_refuses_unshareable_urls(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        database_path(url, tmp_path)
    assert caught.value.problems[0].startswith("SERVER_STORAGE_URL:")


def test_local_hook_registers_the_factory(tmp_path: Path) -> None:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(local_hooks)
    manager.check_pending()

    [offered] = manager.hook.register_storage_backends(host=None)
    storage = offered["local"]("", tmp_path)
    assert isinstance(storage, LocalStorage)
    assert storage.name == "local"
    assert storage.path == tmp_path / "grok2api.sqlite3"

    entry_points = importlib.metadata.entry_points(group="grok2api")
    assert entry_points["storage_local"].value == "grok2api_storage_local.hooks"


async def test_local_open_creates_a_wal_file_with_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "data" / "ledger.sqlite3"
    storage = await _opened(path)
    await storage.aclose()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_local_reopen_keeps_tokens_and_config(tmp_path: Path) -> None:
    storage = create_local_storage("", tmp_path)
    await storage.open()
    await storage.add_tokens([NewToken("kept", "basic", 3, 3, 60)], NOW)
    await storage.save_config_overrides({"token": {"fail_threshold": 2}})
    version = await storage.change_version()
    await storage.aclose()
    await storage.aclose()  # idempotent

    again = await _opened(tmp_path / "grok2api.sqlite3")
    try:
        assert (await again.list_tokens(TokenQuery())).total == 1
        assert await again.load_config_overrides() == {"token": {"fail_threshold": 2}}
        assert await again.change_version() == version
    finally:
        await again.aclose()


async def test_local_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    storage = LocalStorage(path)
    with pytest.raises(StorageError, match="newer than this grok2api"):
        await storage.open()
    await storage.aclose()


async def test_local_upgrades_a_version_1_file_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(STEPS[0])
        conn.execute(
            "INSERT INTO tokens (id, secret, pool, status, quota, quota_total, "
            "window_seconds, created_at, rand_key) "
            "VALUES (?, 'kept', 'basic', 'active', 3, 3, 60, ?, 0.5)",
            (token_id_for("kept"), NOW),
        )
        conn.execute("UPDATE change_counter SET version = 7")
        conn.execute("PRAGMA user_version = 1")
    finally:
        conn.close()

    storage = await _opened(path)
    try:
        record = await storage.get_token(token_id_for("kept"))
        assert record is not None and record.quota == 3
        assert await storage.change_version() == 7
        key = ApiKeyRecord("k1", "ci", "digest", "g2a-…abcd", True, NOW)
        await storage.add_api_keys([key])
        assert await storage.list_api_keys() == [key]
        assert await storage.take_window("key:k1:quota", 1, 60, NOW) == 0.0
        assert await storage.change_version() == 8
    finally:
        await storage.aclose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_local_upgrade_keeps_open_and_spent_leases(tmp_path: Path) -> None:
    # A version 3 file written by the previous release, mid-flight: one lease
    # still reserved, one already committed.
    path = tmp_path / "v3.sqlite3"
    storage = await _opened(path)
    await storage.add_tokens([NewToken("t", "basic", 10, 10, 3600)], NOW)
    token_id = token_id_for("t")
    held = await storage.reserve(token_id, "held", 2, NOW, NOW + 60)
    spent = await storage.reserve(token_id, "spent", 3, NOW, NOW + 60)
    assert held is not None and spent is not None
    await storage.commit(spent, NOW)
    await storage.aclose()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for table in ("reservations", "spent_leases"):
            conn.execute(f"DROP TABLE {table}")
        for statement in STEPS[0].split(";"):
            if "reservations" in statement or "spent_leases" in statement:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO reservations VALUES ('held', ?, 2, ?)", (token_id, NOW + 60)
        )
        conn.execute("INSERT INTO spent_leases VALUES ('spent', ?)", (NOW,))
        conn.execute("PRAGMA user_version = 3")
    finally:
        conn.close()

    storage = await _opened(path)
    try:
        await storage.commit(spent, NOW)  # a repeat: nothing more is spent
        record = await storage.get_token(token_id)
        assert record is not None
        assert (record.quota, record.reserved, record.use_count) == (7, 2, 1)
        await storage.release(held)
        record = await storage.get_token(token_id)
        assert record is not None and record.reserved == 0
    finally:
        await storage.aclose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = dict(conn.execute("SELECT name, sql FROM sqlite_master"))
        assert "WITHOUT ROWID" in tables["reservations"]
        assert "WITHOUT ROWID" in tables["spent_leases"]
        assert "reservations_by_token" in tables and "spent_leases_by_time" in tables
    finally:
        conn.close()


def _limiter_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return sum(
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("rate_buckets", "window_counts", "slots")
        )
    finally:
        conn.close()


async def test_local_sweep_forgets_only_idle_limiter_state(tmp_path: Path) -> None:
    path = tmp_path / "limits.sqlite3"
    storage = await _opened(path)
    try:
        assert await storage.take_rate("ip:a", 1, 0.1, NOW) == 0.0
        assert await storage.take_window("key:q", 1, 60, NOW) == 0.0
        assert await storage.acquire_slot("key:c", 1, "a", NOW, NOW + 30)

        # Nothing is due yet: every limit still holds after a sweep.
        await storage.expire_reservations(NOW + 5)
        assert _limiter_rows(path) == 3
        assert await storage.take_rate("ip:a", 1, 0.1, NOW + 5) > 0
        assert await storage.take_window("key:q", 1, 60, NOW + 5) > 0
        assert not await storage.acquire_slot("key:c", 1, "b", NOW + 5, NOW + 30)

        # The bucket refilled, the window ended, the slot expired.
        await storage.expire_reservations(NOW + 3600)
        assert _limiter_rows(path) == 0
    finally:
        await storage.aclose()


async def test_local_limiters_refuse_impossible_arguments(tmp_path: Path) -> None:
    storage = await _opened(tmp_path / "args.sqlite3")
    try:
        with pytest.raises(ValueError, match="capacity must be at least 1, got 0"):
            await storage.take_rate("ip:a", 0, 1.0, NOW)
        with pytest.raises(ValueError, match="per_second must be positive"):
            await storage.take_rate("ip:a", 5, 0.0, NOW)
        with pytest.raises(ValueError, match="window_seconds must be positive"):
            await storage.take_window("key:q", 5, 0, NOW)
        with pytest.raises(ValueError, match="keep must be non-negative"):
            await storage.append_audit([], keep=-1)
    finally:
        await storage.aclose()


async def test_local_candidate_queries_walk_an_index(tmp_path: Path) -> None:
    storage = await _opened(tmp_path / "plans.sqlite3")
    await storage.aclose()
    params = {"pool": "p", "now": NOW, "cost": 1, "limit": 8, "exclude": "[]"}
    conn = sqlite3.connect(tmp_path / "plans.sqlite3")
    try:
        for name, sql in CANDIDATE_QUERIES.items():
            plan = conn.execute(
                f"EXPLAIN QUERY PLAN {sql}", {**params, "start": 0.5}
            ).fetchall()
            steps = " | ".join(str(row[-1]) for row in plan)
            assert "USING INDEX tokens_by_" in steps, (name, steps)
            assert "SCAN tokens" not in steps, (name, steps)
            assert "TEMP B-TREE" not in steps, (name, steps)
    finally:
        conn.close()


async def test_local_held_write_lock_raises_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    storage = await _opened(path, timeout=0.3)
    await storage.add_tokens([NewToken("t", "basic", 3, 3, 60)], NOW)
    token_id = token_id_for("t")
    # Another process's writer, holding the write lock past our timeout.
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught:
            await storage.reserve(token_id, "blocked", 1, NOW, NOW + 60)
        assert time.monotonic() - started < 2.0
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        # Reads are not blocked by a writer in WAL mode.
        assert (await storage.get_token(token_id)) is not None
    finally:
        other.execute("ROLLBACK")
        other.close()

    try:
        record = await storage.get_token(token_id)
        assert record is not None and record.reserved == 0
        assert await storage.reserve(token_id, "free", 1, NOW, NOW + 60) is not None
    finally:
        await storage.aclose()


async def test_local_busy_connections_time_out(tmp_path: Path) -> None:
    path = tmp_path / "busy.sqlite3"
    storage = await _opened(path, timeout=0.3, connections=1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    errors: list[Exception] = []

    async def save() -> None:
        try:
            await storage.save_config_overrides({"a": {}})
        except StorageUnavailable as exc:
            errors.append(exc)

    try:
        # Two callers, one connection: the second waits for the connection,
        # the first for the lock, and both give up within their timeout.
        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(save)
                nursery.start_soon(save)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert len(errors) == 2
    assert await storage.load_config_overrides() == {}
    await storage.aclose()


async def test_local_closed_storage_is_unavailable(tmp_path: Path) -> None:
    storage = await _opened(tmp_path / "closed.sqlite3")
    await storage.aclose()
    with pytest.raises(StorageUnavailable):
        await storage.change_version()


def test_local_package_exports_resolve() -> None:
    import grok2api_storage_local

    for name in grok2api_storage_local.__all__:
        assert getattr(grok2api_storage_local, name) is not None


async def test_short_calls_wait_in_a_thread_while_another_process_writes(
    tmp_path: Path,
) -> None:
    # Per-request writes first try to run on the event loop; when another
    # process holds the write lock they must wait in a thread instead, with
    # the loop free meanwhile, and still apply exactly once.
    backend = create_local_storage("", tmp_path)
    await backend.open()
    blocker = sqlite3.connect(database_path("", tmp_path), isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        taken: list[float] = []

        async def take() -> None:
            taken.append(await backend.take_rate("ip:x", 1, 0.001, NOW))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take)
            await trio.sleep(0.3)
            assert taken == [], "the call waits for the lock"
            blocker.execute("ROLLBACK")
        assert taken == [0.0]
        assert await backend.take_rate("ip:x", 1, 0.001, NOW) > 0, "taken once"
    finally:
        blocker.close()
        await backend.aclose()


def test_connections_turning_on_wal_at_once_all_succeed(tmp_path: Path) -> None:
    # Workers starting together on a new file all switch it to WAL at the
    # same moment; SQLite refuses all but one at once, without a busy wait.
    for attempt in range(30):
        path = tmp_path / f"race{attempt}.sqlite3"
        connections = [
            sqlite3.connect(path, timeout=5.0, check_same_thread=False)
            for _ in range(4)
        ]
        barrier = threading.Barrier(len(connections))
        modes: list[str] = []

        threads = [
            threading.Thread(target=_switch_together, args=(conn, barrier, modes))
            for conn in connections
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for conn in connections:
            conn.close()
        assert modes == ["wal"] * len(connections)


def _switch_together(
    conn: sqlite3.Connection, barrier: threading.Barrier, modes: list[str]
) -> None:
    barrier.wait()
    modes.append(switch_to_wal(conn, timeout=5.0))
