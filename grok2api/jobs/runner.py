"""Running jobs in the background, with progress every worker can read.

A job is started by an admin request and then runs as a task of the
gateway's nursery, never on the request path: the request answers ``202``
with the job's id at once. The job walks its tokens in batches
(``performance.<kind>_batch_size``) with bounded concurrency
(``performance.<kind>_max_concurrent``); a watcher task beside the work
writes the state to storage every heartbeat and polls the cancel flag, so a
cancel sent to any worker stops the work within half a second. Whatever
finished by then stays recorded.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
import weakref
from collections.abc import Sequence

import attrs
import trio

from grok2api.config import Settings
from grok2api.errors import Grok2APIError, StorageUnavailable
from grok2api.gateway import Gateway
from grok2api.jobs.operations import (
    Operation,
    clear_assets,
    enable_nsfw,
    failed_result,
    refresh_quota,
)
from grok2api.jobs.store import (
    HEARTBEAT_SECONDS,
    RESULTS_PER_CHUNK,
    JobRecord,
    JobStore,
    TokenResult,
)

__all__ = ["JOB_KINDS", "JobLimits", "JobRunner", "job_limits", "job_runner"]

log = logging.getLogger(__name__)

#: Job kind -> the prefix of its ``performance`` settings.
JOB_KINDS = {"refresh": "usage", "nsfw": "nsfw", "assets_clear": "assets"}
#: How often the running worker looks for a cancel request.
CANCEL_POLL_SECONDS = 0.5
#: The last state write of a job, shielded from cancellation, gets this long.
FINAL_WRITE_SECONDS = 5.0

_WORKER = f"{socket.gethostname()}/{os.getpid()}"


@attrs.frozen
class JobLimits:
    batch_size: int
    max_concurrent: int
    max_tokens: int
    #: The settings' prefix, for error messages: ``performance.nsfw``.
    setting: str


def job_limits(kind: str, settings: Settings) -> JobLimits:
    prefix = JOB_KINDS[kind]
    performance = settings.performance
    return JobLimits(
        getattr(performance, f"{prefix}_batch_size"),
        getattr(performance, f"{prefix}_max_concurrent"),
        getattr(performance, f"{prefix}_max_tokens"),
        f"performance.{prefix}",
    )


class _Progress:
    """A running job's record and results, and what is not yet stored."""

    def __init__(self, record: JobRecord, store: JobStore) -> None:
        self.record = record
        self.store = store
        self.results: list[TokenResult] = []
        self.scope = trio.CancelScope()
        self._dirty: set[int] = set()

    def add(self, result: TokenResult) -> None:
        self.results.append(result)
        self._dirty.add((len(self.results) - 1) // RESULTS_PER_CHUNK)
        self.record.done += 1
        if result.ok:
            self.record.ok += 1
        else:
            self.record.failed += 1

    def cancel(self) -> None:
        self.record.cancel_requested = True
        self.scope.cancel()

    async def flush(self) -> None:
        # Results finish while the writes wait on storage; the record stored
        # is the one taken with the results, so its counts never run ahead
        # of the results a reader can page through.
        now = time.time()
        snapshot = attrs.evolve(self.record)
        results = self.results[: snapshot.done]
        dirty, self._dirty = self._dirty, set()
        try:
            for chunk in sorted(dirty):
                start = chunk * RESULTS_PER_CHUNK
                await self.store.save_results(
                    snapshot.id, chunk, results[start : start + RESULTS_PER_CHUNK], now
                )
            await self.store.save(snapshot, now)
        except BaseException:
            self._dirty |= dirty
            raise


class JobRunner:
    """Starts and cancels one worker's jobs; reads anyone's from storage."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.store = JobStore(
            gateway.storage,
            lock_timeout=gateway.settings.timeout.storage_timeout,
        )
        self._running: dict[str, _Progress] = {}

    async def start(self, kind: str, token_ids: Sequence[str]) -> JobRecord:
        """Record a new job and start it in the gateway's nursery."""
        if kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        record = JobRecord(
            id="job_" + secrets.token_hex(8),
            kind=kind,
            total=len(token_ids),
            worker=_WORKER,
            created_at=time.time(),
        )
        await self.store.create(record)
        progress = _Progress(record, self.store)
        self._running[record.id] = progress
        self.gateway.nursery.start_soon(self._run, progress, list(token_ids))
        log.info("job started id=%s kind=%s tokens=%d", record.id, kind, record.total)
        return attrs.evolve(record)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Ask the job to stop, wherever it runs. None for an unknown job."""
        record = await self.store.get(job_id)
        if record is None or record.state != "running":
            return record
        await self.store.request_cancel(job_id)
        local = self._running.get(job_id)
        if local is not None:
            local.cancel()
        record.cancel_requested = True
        return record

    async def _run(self, progress: _Progress, token_ids: list[str]) -> None:
        record = progress.record
        state = "failed"
        error = (
            "The worker shut down before the job finished; the results so far are kept."
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch, progress)
                with progress.scope:
                    await self._work(progress, token_ids)
                nursery.cancel_scope.cancel()
            # A cancel that came after the last token finished changes nothing.
            cancelled = progress.scope.cancelled_caught
            state, error = ("cancelled" if cancelled else "finished"), ""
        except Exception:
            log.exception("job %s failed; its results so far are kept", record.id)
            error = "The job stopped on an unexpected error; see the gateway log."
        finally:
            self._running.pop(record.id, None)
            record.state, record.error = state, error
            record.finished_at = time.time()
            with trio.CancelScope(shield=True), trio.move_on_after(FINAL_WRITE_SECONDS):
                try:
                    await progress.flush()
                except StorageUnavailable as exc:
                    log.error("could not store the end of job %s: %s", record.id, exc)
            log.info(
                "job ended id=%s kind=%s state=%s done=%d ok=%d failed=%d",
                record.id,
                record.kind,
                state,
                record.done,
                record.ok,
                record.failed,
            )

    async def _watch(self, progress: _Progress) -> None:
        """Heartbeat and cancel polling, until the work's nursery ends."""
        next_beat = trio.current_time()
        while True:
            try:
                if await self.store.cancel_requested(progress.record.id):
                    progress.cancel()
                if trio.current_time() >= next_beat:
                    next_beat = trio.current_time() + HEARTBEAT_SECONDS
                    await progress.flush()
            except StorageUnavailable as exc:
                log.warning("job %s: storage unavailable: %s", progress.record.id, exc)
            await trio.sleep(CANCEL_POLL_SECONDS)

    async def _work(self, progress: _Progress, token_ids: list[str]) -> None:
        gateway = self.gateway
        kind = progress.record.kind
        limits = job_limits(kind, gateway.settings)
        calls = trio.CapacityLimiter(limits.max_concurrent)
        tokens = calls
        operation: Operation
        if kind == "nsfw":
            operation = enable_nsfw
        elif kind == "refresh":
            operation = refresh_quota
        else:
            # Each token's list and delete calls take the limit themselves.
            operation = clear_assets(calls)
            tokens = trio.CapacityLimiter(limits.batch_size)
        for start in range(0, len(token_ids), limits.batch_size):
            batch = token_ids[start : start + limits.batch_size]
            found = await gateway.storage.token_secrets(batch)
            async with trio.open_nursery() as nursery:
                for token_id in batch:
                    nursery.start_soon(
                        self._one, progress, operation, tokens, token_id, found
                    )

    async def _one(
        self,
        progress: _Progress,
        operation: Operation,
        limiter: trio.CapacityLimiter,
        token_id: str,
        found: dict[str, str],
    ) -> None:
        secret = found.get(token_id)
        if secret is None:
            progress.add(
                TokenResult(
                    token_id, False, "no_such_token", "There is no token with this id."
                )
            )
            return
        async with limiter:
            try:
                result = await operation(self.gateway, token_id, secret)
            except Grok2APIError as exc:
                result = await failed_result(self.gateway, token_id, exc)
            except Exception:
                log.exception("job %s: token %s failed", progress.record.id, token_id)
                result = TokenResult(
                    token_id,
                    False,
                    "internal_error",
                    "The gateway failed on this token; see its log.",
                )
        progress.add(result)


_RUNNERS: weakref.WeakKeyDictionary[Gateway, JobRunner] = weakref.WeakKeyDictionary()


def job_runner(gateway: Gateway) -> JobRunner:
    """The job runner of this worker's gateway."""
    runner = _RUNNERS.get(gateway)
    if runner is None:
        runner = _RUNNERS[gateway] = JobRunner(gateway)
    return runner
