"""A database restart while the backend is in use: calls in the gap fail as
outages, and the same backend works again afterwards with nothing lost."""

from __future__ import annotations

import pytest
import trio

from grok2api.errors import StorageError, StorageUnavailable
from grok2api.storage import CandidateOrder, NewToken, TokenQuery, token_id_for
from grok2api.testing.sql_servers import SqlServer

from .conftest import open_storage

NOW = 1_700_000_000.0


async def _lease_and_commit(storage: object, lease_id: str) -> None:
    lease = await storage.lease(  # type: ignore[attr-defined]
        ["basic"],
        CandidateOrder.MOST_QUOTA,
        None,
        1,
        frozenset(),
        NOW,
        NOW + 60,
        lease_id,
    )
    assert lease is not None
    await storage.commit(lease, NOW)  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_sql_restart_fails_calls_in_the_gap_then_recovers(
    sql_server: SqlServer, fresh_database_url: str
) -> None:
    token_id = token_id_for("survivor")
    async with open_storage(fresh_database_url, timeout=3.0) as storage:
        await storage.add_tokens([NewToken("survivor", "basic", 10, 10, 3600)], NOW)
        await _lease_and_commit(storage, "before")

        await trio.to_thread.run_sync(sql_server.stop)
        try:
            with pytest.raises(StorageUnavailable):
                await storage.get_token(token_id)
            with pytest.raises(StorageUnavailable):
                await _lease_and_commit(storage, "during")
            with pytest.raises(StorageUnavailable):
                await storage.change_version()
        finally:
            await trio.to_thread.run_sync(sql_server.start)

        record = await storage.get_token(token_id)
        assert record is not None
        assert (record.quota, record.use_count) == (9, 1), "the commit survived"
        await _lease_and_commit(storage, "after")
        record = await storage.get_token(token_id)
        assert record is not None and record.quota == 8


async def test_sql_unreachable_server_is_an_outage(sql_server: SqlServer) -> None:
    # A port nobody listens on: the server is "down" from the start.
    url = sql_server.url().replace(f":{sql_server.port}/", ":1/")
    async with open_storage(sql_server.url(), timeout=2.0):
        pass
    with pytest.raises(StorageUnavailable):
        async with open_storage(url, timeout=2.0):
            pass


async def test_sql_wrong_password_is_a_configuration_error(
    sql_server: SqlServer,
) -> None:
    url = sql_server.url().replace(f":{sql_server.password}@", ":wrong-password@")
    with pytest.raises(StorageError) as caught:
        async with open_storage(url, timeout=3.0):
            pass
    assert not isinstance(caught.value, StorageUnavailable)
    assert "SERVER_STORAGE_URL" in str(caught.value)
    assert "wrong-password" not in str(caught.value)


async def test_sql_closed_storage_refuses_calls(sql_storage: object) -> None:
    await sql_storage.aclose()  # type: ignore[attr-defined]
    with pytest.raises(StorageUnavailable):
        await sql_storage.list_tokens(TokenQuery())  # type: ignore[attr-defined]
