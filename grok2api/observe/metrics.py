"""The gateway's Prometheus metrics, and the token gauges read from storage.

Request, stream and upstream-fault metrics count what *this process* saw:
with several workers, each has its own and labels them ``worker="<pid>"``,
and a scrape reaches whichever worker accepts the connection. The token
gauges describe the shared pool, so they carry no worker label and every
worker reports the same numbers.

No label ever holds a token id, a key or a key name: labels are routes from a
fixed list, model ids from the catalogue, pools, states and failure kinds.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import trio

from grok2api.config import Settings
from grok2api.models import POOLS
from grok2api.observe.exposition import Counter, Gauge, Histogram, Metric, render
from grok2api.observe.requests import FinishedRequest, route_label
from grok2api.storage import Storage, TokenQuery, TokenRecord

__all__ = ["GatewayMetrics", "PoolGauges"]

log = logging.getLogger(__name__)

#: Upper bounds (s) of the latency buckets: from a fast rejection to a long
#: streamed answer.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: How long the token gauges are reused before storage is asked again.
POOL_GAUGES_MAX_AGE = 5.0
_TOKEN_PAGE = 500


class GatewayMetrics:
    """Every metric one worker exports."""

    def __init__(self, worker: str | None = None) -> None:
        self.worker = worker or str(os.getpid())
        self.requests = Counter(
            "grok2api_requests_total",
            "HTTP requests answered, by route, model and status class.",
            ("route", "model", "status_class"),
        )
        self.request_seconds = Histogram(
            "grok2api_request_duration_seconds",
            "Time from receiving a request to the end of its response.",
            ("route",),
            buckets=LATENCY_BUCKETS,
        )
        self.requests_in_flight = Gauge(
            "grok2api_requests_in_flight", "Requests being handled now."
        )
        self.open_streams = Gauge(
            "grok2api_open_streams", "Server-sent event responses being sent now."
        )
        self.upstream_faults = Counter(
            "grok2api_upstream_faults_total",
            "Failed upstream attempts by whose fault they were, and the pool of "
            "the token used; failover may have hidden them from the client.",
            ("kind", "pool"),
        )
        self.stats_flush_failures = Counter(
            "grok2api_stats_flush_failures_total",
            "Statistics writes and prunes that storage refused (retried later).",
        )
        self.stats_dropped = Counter(
            "grok2api_stats_dropped_total",
            "Statistics updates lost because the buffer was full during a "
            "storage outage.",
        )
        self.tokens = Gauge(
            "grok2api_tokens",
            "Tokens by pool and effective state, from shared storage.",
            ("pool", "state"),
        )
        self.token_quota_remaining = Gauge(
            "grok2api_token_quota_remaining",
            "Quota units usable right now, summed over the active tokens of a pool.",
            ("pool",),
        )
        self.storage_up = Gauge(
            "grok2api_storage_up",
            "1 when storage answered the last read of the token gauges, else 0.",
        )
        self._per_worker: list[Metric] = [
            self.requests,
            self.request_seconds,
            self.requests_in_flight,
            self.open_streams,
            self.upstream_faults,
            self.stats_flush_failures,
            self.stats_dropped,
        ]
        self._shared: list[Metric] = [
            self.tokens,
            self.token_quota_remaining,
            self.storage_up,
        ]

    def count_request(self, request: FinishedRequest, model: str) -> None:
        """Count a finished request; ``model`` is its model id when it is in
        the catalogue, else empty."""
        route = route_label(request.path)
        status_class = f"{request.status // 100}xx"
        self.requests.inc(route, model, status_class)
        self.request_seconds.observe(request.duration_ms / 1000, route)

    def render(self) -> str:
        """Every metric in the text exposition format."""
        worker = {"worker": self.worker}
        return render(
            [*self._per_worker, *self._shared],
            {metric: worker for metric in self._per_worker},
        )


class PoolGauges:
    """Fills the token gauges from storage, at most every few seconds.

    Counting states is one indexed query per pool; summing quota walks the
    token listing, which is why a scrape reuses a recent reading.
    """

    def __init__(
        self,
        storage: Storage,
        settings: Callable[[], Settings],
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._read_at: float | None = None
        self._failing = False
        self._lock = trio.Lock()

    async def refresh(self) -> None:
        """Read the pools again unless the last reading is recent enough."""
        async with self._lock:
            now = trio.current_time()
            if self._read_at is not None and now - self._read_at < POOL_GAUGES_MAX_AGE:
                return
            timeout = self._settings().timeout.storage_timeout
            try:
                with trio.fail_after(timeout):
                    counts, quota = await self._read()
            except trio.TooSlowError:
                self._storage_down(f"no answer within {timeout:g}s")
            except Exception as exc:
                self._storage_down(str(exc) or type(exc).__name__)
            else:
                self._metrics.tokens.replace(counts)
                self._metrics.token_quota_remaining.replace(quota)
                self._metrics.storage_up.set(1)
                if self._failing:
                    self._failing = False
                    log.info("token pools readable again for /metrics")
            self._read_at = trio.current_time()

    def _storage_down(self, reason: str) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "could not read the token pools for /metrics (%s); "
                "reporting grok2api_storage_up 0 until storage answers",
                reason,
            )
        self._metrics.tokens.replace({})
        self._metrics.token_quota_remaining.replace({})
        self._metrics.storage_up.set(0)

    async def _read(
        self,
    ) -> tuple[dict[tuple[str, ...], float], dict[tuple[str, ...], float]]:
        now = self._clock()
        counts: dict[tuple[str, ...], float] = {}
        quota: dict[tuple[str, ...], float] = {}
        for pool in POOLS:
            pool_counts = await self._storage.pool_counts([pool], 1, now)
            for state, n in pool_counts.counts.items():
                counts[(pool, state)] = n
            quota[(pool,)] = await self._usable_quota(pool, now)
        return counts, quota

    async def _usable_quota(self, pool: str, now: float) -> int:
        total = 0
        offset = 0
        while True:
            page = await self._storage.list_tokens(
                TokenQuery(pool=pool, offset=offset, limit=_TOKEN_PAGE)
            )
            total += sum(_usable(token, now) for token in page.items)
            offset += len(page.items)
            if len(page.items) < _TOKEN_PAGE or offset >= page.total:
                return total


def _usable(token: TokenRecord, now: float) -> int:
    if token.state(now) != "active":
        return 0
    quota = token.quota
    if token.window_reset_at is not None and token.window_reset_at <= now:
        quota = token.quota_total  # the window rolls over at the next lease
    return max(0, quota - token.reserved)
