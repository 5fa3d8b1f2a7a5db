"""One worker's recorder: it counts finished requests and flushes them.

Statistics, API key usage and the audit log are shared by every worker, but
writing to storage once per request would put a round trip on every answer.
Each worker therefore folds requests into buffers in memory and a background
task adds the deltas to storage every ``stats.flush_interval_sec``
(:meth:`Storage.add_stats` adds rather than overwrites, so workers flushing at
the same moment lose nothing). The task flushes once more, shielded, when the
gateway closes.

When storage fails, the deltas stay in the buffers for the next flush. The
buffers are bounded, so an outage costs a fixed amount of memory; the outage
is logged when it starts and when it ends, not at every flush.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

import attrs
import trio

from grok2api.config import Settings
from grok2api.errors import StorageUnavailable
from grok2api.observe.buffers import (
    PERIODS,
    PendingAudit,
    PendingKeyUses,
    PendingStats,
    bucket_start,
)
from grok2api.observe.metrics import GatewayMetrics, PoolGauges
from grok2api.observe.requests import FinishedRequest, is_recorded_route
from grok2api.storage import Storage

__all__ = ["Recorder", "RecorderStatistics"]

log = logging.getLogger(__name__)

#: Distinct statistics rows one worker keeps while storage is unavailable. A
#: request touches at most eight (two periods, four dimensions), and rows of
#: one bucket are shared by every request in it.
MAX_PENDING_ROWS = 20_000
#: Distinct API keys whose use counts wait for storage.
MAX_PENDING_KEYS = 10_000
#: How often buckets past their retention are deleted.
PRUNE_INTERVAL = 600.0


@attrs.frozen
class RecorderStatistics:
    """What waits to be written, and what was lost to full buffers."""

    pending_rows: int
    pending_key_uses: int
    pending_audit: int
    dropped: int
    failing: bool


class Recorder:
    """Records finished requests into metrics, statistics and the audit log.

    Args:
        storage: the open backend the buffers are flushed to.
        settings: returns the current settings on each call.
        known_model: whether a model id is in the catalogue; other values
            are left out of metric labels and statistics.
        metrics: the metrics to count into; a fresh set by default.
        max_pending_rows: statistics rows kept while storage is failing.
        clock: wall-clock time in seconds; tests pass a fake one.
    """

    def __init__(
        self,
        storage: Storage,
        settings: Callable[[], Settings],
        known_model: Callable[[str], bool],
        *,
        metrics: GatewayMetrics | None = None,
        max_pending_rows: int = MAX_PENDING_ROWS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._settings = settings
        self._known_model = known_model
        self._clock = clock
        self.metrics = metrics or GatewayMetrics()
        self.pool_gauges = PoolGauges(storage, settings, self.metrics, clock)
        self._stats = PendingStats(max_pending_rows)
        self._uses = PendingKeyUses(MAX_PENDING_KEYS)
        self._audit = PendingAudit(settings().stats.log_max_entries)
        self._failed_attempts = 0
        self._dropped_before_outage = 0

    def record(self, request: FinishedRequest) -> None:
        """Count one finished request. Never waits and never fails."""
        model = request.model if self._known_model(request.model) else ""
        self.metrics.count_request(request, model)
        stats = self._settings().stats
        if not stats.enabled or not is_recorded_route(request.path):
            return
        dropped = self._dropped()
        self._stats.add(attrs.evolve(request, model=model))
        if request.key_id:
            self._uses.add(request.key_id, request.at)
        self._audit.resize(stats.log_max_entries)
        if stats.log_max_entries:
            self._audit.add(request.audit_entry())
        lost = self._dropped() - dropped
        if lost:
            self.metrics.stats_dropped.inc(amount=lost)

    def statistics(self) -> RecorderStatistics:
        return RecorderStatistics(
            pending_rows=len(self._stats),
            pending_key_uses=len(self._uses),
            pending_audit=len(self._audit),
            dropped=self._dropped(),
            failing=self._failed_attempts > 0,
        )

    def _dropped(self) -> int:
        return self._stats.dropped + self._uses.dropped

    async def render_metrics(self) -> str:
        """The exposition text, with token gauges at most a few seconds old."""
        await self.pool_gauges.refresh()
        return self.metrics.render()

    async def flush(self) -> None:
        """Write everything recorded since the last flush.

        What storage refuses (or does not take within the storage timeout)
        goes back into the buffers for the next flush; once storage is
        unavailable, the remaining writes are not tried. If the flush is
        cancelled, whatever it had not written yet goes back too.
        """
        keep = self._settings().stats.log_max_entries
        rows = self._stats.take()
        uses = self._uses.take()
        entries = self._audit.take()
        writes: list[tuple[object, Callable[[], Awaitable[None]], Callable[[], None]]]
        writes = [
            (
                rows,
                partial(self._storage.add_stats, rows),
                partial(self._stats.give_back, rows),
            ),
            (
                uses,
                partial(self._storage.record_api_key_use, uses),
                partial(self._uses.give_back, uses),
            ),
            (
                entries,
                partial(self._storage.append_audit, entries, keep),
                partial(self._audit.give_back, entries),
            ),
        ]
        attempted = False
        unreachable = False
        problem: str | None = None
        for index, (batch, write, give_back) in enumerate(writes):
            if not batch:
                continue
            if unreachable:
                # Asking an unreachable storage again would only wait out
                # another timeout (and at shutdown, delay the exit).
                give_back()
                continue
            attempted = True
            try:
                await self._bounded(write)
            except Exception as exc:
                give_back()
                problem = problem or _describe(exc)
                unreachable = isinstance(exc, StorageUnavailable)
            except BaseException:
                for _, _, unwritten in writes[index:]:
                    unwritten()
                raise
        if attempted:
            self._note(problem)

    async def prune(self) -> None:
        """Delete buckets older than ``stats.hourly_retention`` hours and
        ``stats.daily_retention`` days (the current bucket counts as one)."""
        stats = self._settings().stats
        now = self._clock()
        retention = {"hour": stats.hourly_retention, "day": stats.daily_retention}
        problem: str | None = None
        for period, seconds in PERIODS.items():
            before = bucket_start(now, seconds) - (retention[period] - 1) * seconds
            try:
                await self._bounded(partial(self._storage.prune_stats, period, before))
            except Exception as exc:
                problem = problem or _describe(exc)
        self._note(problem)

    async def serve_flusher(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Flush every ``stats.flush_interval_sec`` and prune every ten
        minutes until cancelled, then flush one last time."""
        task_status.started()
        next_prune = trio.current_time()
        try:
            while True:
                await trio.sleep(self._settings().stats.flush_interval_sec)
                await self.flush()
                due = trio.current_time() >= next_prune
                if due and self._settings().stats.enabled:
                    await self.prune()
                    next_prune = trio.current_time() + PRUNE_INTERVAL
        finally:
            # The gateway is closing; each write still gets the storage
            # timeout, and the shield keeps the closing cancel from cutting
            # it short.
            with trio.CancelScope(shield=True):
                await self.flush()
            left = self.statistics()
            if left.pending_rows or left.pending_key_uses or left.pending_audit:
                log.error(
                    "storage did not take the last statistics at shutdown; lost "
                    "%d statistics rows, %d key use counts and %d audit entries",
                    left.pending_rows,
                    left.pending_key_uses,
                    left.pending_audit,
                )

    async def _bounded(self, write: Callable[[], Awaitable[object]]) -> None:
        timeout = self._settings().timeout.storage_timeout
        try:
            with trio.fail_after(timeout):
                await write()
        except trio.TooSlowError as exc:
            raise StorageUnavailable(
                f"storage did not answer within {timeout:g}s"
            ) from exc

    def _note(self, problem: str | None) -> None:
        if problem is None:
            if self._failed_attempts:
                log.info(
                    "statistics reach storage again after %d failed attempts; "
                    "%d updates were lost meanwhile to full buffers",
                    self._failed_attempts,
                    self._dropped() - self._dropped_before_outage,
                )
                self._failed_attempts = 0
            return
        self.metrics.stats_flush_failures.inc()
        self._failed_attempts += 1
        if self._failed_attempts == 1:
            self._dropped_before_outage = self._dropped()
            log.warning(
                "could not write statistics to storage (%s); keeping them in "
                "memory (at most %d rows) and retrying at every flush",
                problem,
                self._stats.max_rows,
            )


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
