"""Job records in storage, so that every worker sees every job.

A job runs in the worker that accepted it, but any worker may be asked about
it: its state, counts and per-token results, its progress stream, a cancel.
So the running worker writes the job to storage as expiring values (which do
not bump the change version, so progress writes never make workers reload
settings) and every reader reads them from there:

* ``job:<id>`` -- the state and counts, rewritten on every heartbeat;
* ``job:<id>:results:<n>`` -- the per-token results in chunks of
  :data:`RESULTS_PER_CHUNK`, in the order they finished;
* ``job:<id>:cancel`` -- present once someone asked to cancel;
* ``jobs:index`` -- the ids of the newest jobs, for the listing. It is
  rewritten only under the ``jobs:index`` concurrency slot
  (:meth:`Storage.acquire_slot` with a limit of one, expiring after
  :data:`INDEX_LOCK_SECONDS`), so jobs created at once on several workers
  all stay listed.

A worker that dies stops writing heartbeats; a running job whose heartbeat is
older than :data:`ABANDONED_AFTER` seconds is shown as ``abandoned``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import trio

from grok2api.errors import StorageUnavailable
from grok2api.storage import Storage

__all__ = [
    "ABANDONED_AFTER",
    "HEARTBEAT_SECONDS",
    "JobRecord",
    "JobStore",
    "TERMINAL_STATES",
    "TokenResult",
]

#: How often the running worker writes the job's state.
HEARTBEAT_SECONDS = 1.0
#: A running job unheard of for this long belongs to a worker that died.
ABANDONED_AFTER = 20.0
#: How long a job's records are kept after its last write.
RETENTION_SECONDS = 7 * 24 * 3600.0
RESULTS_PER_CHUNK = 100
#: How many jobs the listing remembers.
INDEX_LIMIT = 200
#: The longest a worker may hold the listing's lock; a worker that dies
#: holding it blocks the others no longer than this.
INDEX_LOCK_SECONDS = 5.0
_INDEX_LOCK_RETRY = 0.02

RUNNING = "running"
TERMINAL_STATES = frozenset({"finished", "cancelled", "failed", "abandoned"})

_INDEX = "jobs:index"


@attrs.frozen
class TokenResult:
    """What a job did with one token.

    ``status`` is a short code (``enabled``, ``needs_birth_date``,
    ``token_rejected`` ...); ``error`` a sentence for the operator, empty on
    success; ``detail`` extra fields of the job's kind (``remaining``,
    ``deleted`` ...).
    """

    token_id: str
    ok: bool
    status: str
    error: str = ""
    http_status: int | None = None
    detail: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "token_id": self.token_id,
            "ok": self.ok,
            "status": self.status,
            "error": self.error,
            "http_status": self.http_status,
            **self.detail,
        }


@attrs.define
class JobRecord:
    """A job's state and counts, as stored and as the admin API shows it."""

    id: str
    kind: str
    total: int
    worker: str
    created_at: float
    state: str = RUNNING
    updated_at: float = 0.0
    finished_at: float | None = None
    done: int = 0
    ok: int = 0
    failed: int = 0
    cancel_requested: bool = False
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        names = {field.name for field in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def shown(self, now: float) -> JobRecord:
        """This record as readers should see it at ``now``."""
        if self.state == RUNNING and now - self.updated_at > ABANDONED_AFTER:
            return attrs.evolve(
                self,
                state="abandoned",
                error="The worker running this job stopped answering; the "
                "results so far are kept.",
            )
        return self


class JobStore:
    """Reads and writes job records in a storage backend."""

    def __init__(self, storage: Storage, *, lock_timeout: float = 5.0) -> None:
        self._storage = storage
        self._lock_timeout = lock_timeout

    async def _put(self, name: str, value: Any, now: float) -> None:
        await self._storage.put_expiring(
            name, json.dumps(value), now, now + RETENTION_SECONDS
        )

    async def _get(self, name: str, now: float) -> Any:
        raw = await self._storage.get_expiring(name, now)
        return None if raw is None else json.loads(raw)

    async def create(self, record: JobRecord) -> None:
        """Store a new job and add it to the listing.

        Raises:
            StorageUnavailable: the listing stayed locked by other workers
                for ``lock_timeout`` seconds; the job was not stored.
        """
        now = record.created_at
        async with self._index_locked(record.id):
            await self.save(record, now)
            index = await self._get(_INDEX, now) or []
            index = [job_id for job_id in index if job_id != record.id]
            index = index[-INDEX_LIMIT + 1 :]
            await self._put(_INDEX, [*index, record.id], now)

    @contextlib.asynccontextmanager
    async def _index_locked(self, holder: str) -> AsyncIterator[None]:
        # Storage has no atomic list append, but every backend has an atomic
        # one-slot semaphore; holding it makes the read-change-write safe.
        acquired = False
        with trio.move_on_after(self._lock_timeout):
            while not acquired:
                now = time.time()
                acquired = await self._storage.acquire_slot(
                    _INDEX, 1, holder, now, now + INDEX_LOCK_SECONDS
                )
                if not acquired:
                    await trio.sleep(_INDEX_LOCK_RETRY)
        if not acquired:
            raise StorageUnavailable(
                "The job list stayed locked by other workers for "
                f"{self._lock_timeout:g}s (timeout.storage_timeout); try again."
            )
        try:
            yield
        finally:
            with trio.CancelScope(shield=True):
                await self._storage.release_slot(_INDEX, holder)

    async def save(self, record: JobRecord, now: float) -> None:
        record.updated_at = now
        await self._put(f"job:{record.id}", record.to_json(), now)

    async def save_results(
        self, job_id: str, chunk: int, results: Sequence[TokenResult], now: float
    ) -> None:
        await self._put(
            f"job:{job_id}:results:{chunk}", [r.to_json() for r in results], now
        )

    async def get(self, job_id: str, now: float | None = None) -> JobRecord | None:
        now = time.time() if now is None else now
        data = await self._get(f"job:{job_id}", now)
        if not isinstance(data, dict):
            return None
        record = JobRecord.from_json(data).shown(now)
        if record.state == RUNNING and await self.cancel_requested(job_id, now):
            record.cancel_requested = True
        return record

    async def list(self, now: float | None = None) -> list[JobRecord]:
        """The remembered jobs, newest first."""
        now = time.time() if now is None else now
        index = await self._get(_INDEX, now) or []
        records = [await self.get(job_id, now) for job_id in reversed(index)]
        return [r for r in records if r is not None]

    async def results(
        self, job_id: str, offset: int, limit: int, now: float | None = None
    ) -> list[dict[str, Any]]:
        """A page of a job's per-token results, in the order they finished."""
        now = time.time() if now is None else now
        page: list[dict[str, Any]] = []
        chunk = offset // RESULTS_PER_CHUNK
        skip = offset % RESULTS_PER_CHUNK
        while len(page) < limit:
            stored = await self._get(f"job:{job_id}:results:{chunk}", now)
            if not stored:
                break
            page.extend(stored[skip : skip + limit - len(page)])
            if len(stored) < RESULTS_PER_CHUNK:
                break
            chunk, skip = chunk + 1, 0
        return page

    async def request_cancel(self, job_id: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        await self._put(f"job:{job_id}:cancel", True, now)

    async def cancel_requested(self, job_id: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return bool(await self._get(f"job:{job_id}:cancel", now))
