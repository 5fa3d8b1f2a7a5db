"""Job records in storage: results in chunks, the cancel flag, and a job
whose worker stopped writing shown as abandoned."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from grok2api_storage_local import create_local_storage

from grok2api.errors import StorageUnavailable
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


class SlowReads:
    """A storage whose reads yield to other tasks, so a read-change-write
    of the job list interleaves the way two workers' would."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> object:
        return getattr(self._storage, name)

    async def get_expiring(self, name: str, now: float) -> str | None:
        value = await self._storage.get_expiring(name, now)
        await trio.sleep(0.005)
        return value


async def test_jobs_created_at_once_by_two_workers_are_all_listed(
    tmp_path: Path,
) -> None:
    workers = [create_local_storage("", tmp_path) for _ in range(2)]
    for backend in workers:
        await backend.open()
    try:
        stores = [JobStore(SlowReads(backend)) for backend in workers]  # type: ignore[arg-type]
        ids = [f"job_{index:016x}" for index in range(30)]
        async with trio.open_nursery() as nursery:
            for index, job_id in enumerate(ids):
                nursery.start_soon(stores[index % 2].create, record(job_id))
        listed = {job.id for job in await stores[0].list(NOW)}
        assert listed == set(ids)
    finally:
        for backend in workers:
            await backend.aclose()


async def test_a_job_list_locked_too_long_is_a_clear_storage_error(
    storage: Storage,
) -> None:
    await storage.acquire_slot("jobs:index", 1, "stuck-worker", NOW, 4e9)
    store = JobStore(storage, lock_timeout=0.2)
    with pytest.raises(StorageUnavailable, match="stayed locked"):
        await store.create(record())
    assert await store.get(record().id, NOW) is None
