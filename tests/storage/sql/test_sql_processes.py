"""Several OS processes on one SQL server: the schema is created once, and
the quota is spent exactly, never oversold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio
from grok2api_storage_sql.schema import SCHEMA_VERSION

from grok2api.storage import TokenQuery
from grok2api.testing.sql_servers import SqlServer

from .conftest import open_storage, run_sql

SCRIPT = Path(__file__).with_name("hammer_sql_storage.py")


async def _read_until_eof(stream: trio.abc.ReceiveStream) -> bytes:
    chunks = []
    while chunk := await stream.receive_some():
        chunks.append(chunk)
    return b"".join(chunks)


async def _wait_for_ready(stream: trio.abc.ReceiveStream) -> None:
    seen = b""
    while b"ready\n" not in seen:
        chunk = await stream.receive_some()
        assert chunk, f"worker exited before it was ready: {seen!r}"
        seen += chunk


async def _run_workers(url: str, mode: str, workers: int) -> list[str]:
    procs: list[trio.Process] = []
    outputs: list[bytes] = []
    try:
        with trio.fail_after(60):
            for number in range(workers):
                procs.append(
                    await trio.lowlevel.open_process(
                        [sys.executable, str(SCRIPT), url, str(number), mode],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                    )
                )
            # Hold everyone at the start line so that the workers really race.
            for proc in procs:
                assert proc.stdout is not None
                await _wait_for_ready(proc.stdout)
            for proc in procs:
                assert proc.stdin is not None
                await proc.stdin.send_all(b"go\n")
            for proc in procs:
                assert proc.stdout is not None
                outputs.append(await _read_until_eof(proc.stdout))
                assert await proc.wait() == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    return [out.decode() for out in outputs]


def _schema_versions(url: str) -> list[int]:
    rows = run_sql(url, "SELECT version FROM schema_version ORDER BY version")
    return [row[0] for row in rows]


@pytest.mark.slow
async def test_sql_migrations_run_once_when_workers_start_together(
    fresh_database_url: str,
) -> None:
    outputs = await _run_workers(fresh_database_url, "open", 6)

    assert all(out.split() == ["opened"] for out in outputs), outputs
    assert _schema_versions(fresh_database_url) == list(range(1, SCHEMA_VERSION + 1))
    async with open_storage(fresh_database_url) as storage:
        assert (await storage.list_tokens(TokenQuery())).total == 0


@pytest.mark.slow
async def test_sql_processes_spend_exactly_the_quota(
    sql_server: SqlServer, fresh_database_url: str
) -> None:
    outputs = await _run_workers(fresh_database_url, "hammer", 4)

    results = [dict(part.split("=") for part in out.split()) for out in outputs]
    assert sum(int(r["added"]) for r in results) == 3, "each token is new once"
    committed = [int(r["committed"]) for r in results]
    assert sum(committed) == 3 * 40
    assert sum(1 for n in committed if n) >= 2, f"workers did not overlap: {committed}"
    async with open_storage(fresh_database_url) as storage:
        page = await storage.list_tokens(TokenQuery())
    assert [(t.quota, t.reserved, t.use_count) for t in page.items] == [(0, 0, 40)] * 3
