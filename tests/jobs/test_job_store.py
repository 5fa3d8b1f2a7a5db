"""Job records in storage: results in chunks, the cancel flag, and a job
whose worker stopped writing shown as abandoned."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grok2api_storage_local import create_local_storage

from grok2api.jobs import JobRecord, JobStore, TokenResult
from grok2api.jobs.store import ABANDONED_AFTER, RESULTS_PER_CHUNK
from grok2api.storage import Storage

NOW = 1_800_000_000.0


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    backend = create_local_storage("", tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.aclose()


def record(job_id: str = "job_0123456789abcdef") -> JobRecord:
    return JobRecord(id=job_id, kind="nsfw", total=250, worker="w/1", created_at=NOW)


async def test_job_store_pages_results_across_chunks(storage: Storage) -> None:
    store = JobStore(storage)
    job = record()
    await store.create(job)
    results = [TokenResult(f"t{i:03d}", i % 3 != 0, "enabled") for i in range(250)]
    for chunk in range(3):
        start = chunk * RESULTS_PER_CHUNK
        await store.save_results(
            job.id, chunk, results[start : start + RESULTS_PER_CHUNK], NOW
        )
    page = await store.results(job.id, 95, 10, NOW)
    assert [r["token_id"] for r in page] == [f"t{i:03d}" for i in range(95, 105)]
    tail = await store.results(job.id, 240, 100, NOW)
    assert [r["token_id"] for r in tail] == [f"t{i:03d}" for i in range(240, 250)]
    assert await store.results(job.id, 250, 10, NOW) == []


async def test_job_store_shows_a_silent_running_job_as_abandoned(
    storage: Storage,
) -> None:
    store = JobStore(storage)
    job = record()
    await store.create(job)
    assert (await store.get(job.id, NOW + 1)).state == "running"  # type: ignore[union-attr]
    later = await store.get(job.id, NOW + ABANDONED_AFTER + 1)
    assert later is not None and later.state == "abandoned"
    assert "stopped answering" in later.error
    job.state = "finished"
    await store.save(job, NOW)
    done = await store.get(job.id, NOW + ABANDONED_AFTER + 1)
    assert done is not None and done.state == "finished"


async def test_job_store_lists_newest_first_and_keeps_cancel_flags(
    storage: Storage,
) -> None:
    store = JobStore(storage)
    first, second = record("job_000000000000000a"), record("job_000000000000000b")
    await store.create(first)
    await store.create(second)
    assert [j.id for j in await store.list(NOW)] == [second.id, first.id]
    assert not await store.cancel_requested(first.id, NOW)
    await store.request_cancel(first.id, NOW)
    assert await store.cancel_requested(first.id, NOW)
    shown = await store.get(first.id, NOW)
    assert shown is not None and shown.cancel_requested
    assert await store.get("job_ffffffffffffffff", NOW) is None
