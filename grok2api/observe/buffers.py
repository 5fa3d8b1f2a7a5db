"""What one worker has recorded but not yet written to storage.

Requests are folded into per-bucket counters as they finish; the flusher
takes everything, writes it, and gives back what storage refused so the next
flush tries again. Every buffer is bounded, so a long storage outage costs a
fixed amount of memory and, past it, the newest detail rather than the
worker.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping

import attrs

from grok2api.observe.requests import FinishedRequest
from grok2api.storage import AuditEntry, StatsRow

__all__ = [
    "DIMENSIONS",
    "PERIODS",
    "PendingAudit",
    "PendingKeyUses",
    "PendingStats",
    "bucket_start",
]

#: Bucket length in seconds of each period.
PERIODS: dict[str, int] = {"hour": 3600, "day": 86400}
#: The dimensions a request is counted along.
DIMENSIONS = ("total", "model", "key", "token")

_RowKey = tuple[str, float, str, str]


def bucket_start(at: float, seconds: int) -> float:
    """The first second of the bucket of length ``seconds`` holding ``at``
    (buckets are aligned to the Unix epoch, so days are UTC days)."""
    return float(int(at // seconds) * seconds)


@attrs.define
class _Counts:
    requests: int = 0
    successes: int = 0
    failures: int = 0
    latency_ms: float = 0.0

    def add(self, other: _Counts) -> None:
        self.requests += other.requests
        self.successes += other.successes
        self.failures += other.failures
        self.latency_ms += other.latency_ms


class PendingStats:
    """Counter deltas per period bucket, dimension and value.

    Args:
        max_rows: how many distinct rows may wait; a request that would add
            another row beyond that is not counted in it (see ``dropped``).
    """

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        #: Row updates lost because the buffer was full.
        self.dropped = 0
        self._rows: dict[_RowKey, _Counts] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, request: FinishedRequest) -> None:
        counts = _Counts(
            requests=1,
            successes=int(request.succeeded),
            failures=int(not request.succeeded),
            latency_ms=request.duration_ms,
        )
        values = {
            "total": "",
            "model": request.model,
            "key": request.key_name,
            "token": request.token_id,
        }
        for period, seconds in PERIODS.items():
            start = bucket_start(request.at, seconds)
            for dimension in DIMENSIONS:
                value = values[dimension]
                if dimension == "total" or value:
                    self._add((period, start, dimension, value), counts)

    def take(self) -> list[StatsRow]:
        """Every waiting delta as rows; the buffer is empty afterwards."""
        rows, self._rows = self._rows, {}
        return [
            StatsRow(
                period=period,
                start=start,
                dimension=dimension,
                value=value,
                **attrs.asdict(counts),
            )
            for (period, start, dimension, value), counts in rows.items()
        ]

    def give_back(self, rows: Iterable[StatsRow]) -> None:
        """Return rows that could not be written, merged with newer deltas."""
        for row in rows:
            counts = _Counts(row.requests, row.successes, row.failures, row.latency_ms)
            self._add((row.period, row.start, row.dimension, row.value), counts)

    def _add(self, key: _RowKey, counts: _Counts) -> None:
        row = self._rows.get(key)
        if row is None:
            if len(self._rows) >= self.max_rows:
                self.dropped += 1
                return
            row = self._rows[key] = _Counts()
        row.add(counts)


class PendingKeyUses:
    """Uses per managed API key id: how many, and the latest time.

    Args:
        max_keys: how many distinct keys may wait; uses of further keys are
            not counted (see ``dropped``).
    """

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.dropped = 0
        self._uses: dict[str, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._uses)

    def add(self, key_id: str, at: float, count: int = 1) -> None:
        known = self._uses.get(key_id)
        if known is None:
            if len(self._uses) >= self.max_keys:
                self.dropped += count
                return
            self._uses[key_id] = (count, at)
        else:
            self._uses[key_id] = (known[0] + count, max(known[1], at))

    def take(self) -> dict[str, tuple[int, float]]:
        uses, self._uses = self._uses, {}
        return uses

    def give_back(self, uses: Mapping[str, tuple[int, float]]) -> None:
        for key_id, (count, at) in uses.items():
            self.add(key_id, at, count)


class PendingAudit:
    """Audit entries in arrival order, at most the ``keep`` newest.

    Storage trims its log to the newest ``stats.log_max_entries`` anyway, so
    entries older than that could never survive a write.
    """

    def __init__(self, keep: int) -> None:
        self._entries: collections.deque[AuditEntry] = collections.deque(maxlen=keep)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def keep(self) -> int:
        return self._entries.maxlen or 0

    def resize(self, keep: int) -> None:
        """Follow a change of ``stats.log_max_entries``, keeping the newest."""
        if keep != self.keep:
            self._entries = collections.deque(self._entries, maxlen=keep)

    def add(self, entry: AuditEntry) -> None:
        self._entries.append(entry)

    def take(self) -> list[AuditEntry]:
        entries = list(self._entries)
        self._entries.clear()
        return entries

    def give_back(self, entries: Iterable[AuditEntry]) -> None:
        """Return entries that could not be written; they are older than any
        entry added since, so newer ones win when there is no room."""
        self._entries = collections.deque([*entries, *self._entries], maxlen=self.keep)
