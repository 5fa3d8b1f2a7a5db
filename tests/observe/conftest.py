"""An in-memory stand-in for the statistics side of storage, and helpers
that build finished requests and settings for the recorder's tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio

from grok2api.config import Settings
from grok2api.errors import StorageError, StorageUnavailable
from grok2api.observe import FinishedRequest
from grok2api.storage import (
    AuditEntry,
    PoolCounts,
    StatsRow,
    TokenPage,
    TokenQuery,
    TokenRecord,
)

#: 2026-01-01T10:00:00Z, the start of an hour and of a day's eleventh hour.
TEN_O_CLOCK = 1_767_261_600.0


class MemoryStatsStorage:
    """Keeps statistics, key uses and the audit log in dicts.

    ``failing`` makes every call raise :class:`StorageUnavailable`;
    ``hanging`` makes every call wait forever (a storage that stopped
    answering); methods named in ``broken`` raise :class:`StorageError`.
    ``calls`` counts the calls by method name.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, float, str, str], StatsRow] = {}
        self.audit: list[AuditEntry] = []
        self.key_uses: dict[str, tuple[int, float]] = {}
        self.pruned: list[tuple[str, float]] = []
        self.tokens: list[TokenRecord] = []
        self.failing = False
        self.hanging = False
        self.broken: set[str] = set()
        self.calls: dict[str, int] = {}

    async def _answer(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        await trio.lowlevel.checkpoint()
        if self.hanging:
            await trio.sleep_forever()
        if self.failing:
            raise StorageUnavailable("the test storage is down")
        if method in self.broken:
            raise StorageError(f"{method} is broken in the test storage")

    async def add_stats(self, rows: Sequence[StatsRow]) -> None:
        await self._answer("add_stats")
        for row in rows:
            key = (row.period, row.start, row.dimension, row.value)
            old = self.rows.get(
                key,
                attrs.evolve(row, requests=0, successes=0, failures=0, latency_ms=0.0),
            )
            self.rows[key] = attrs.evolve(
                old,
                requests=old.requests + row.requests,
                successes=old.successes + row.successes,
                failures=old.failures + row.failures,
                latency_ms=old.latency_ms + row.latency_ms,
            )

    async def prune_stats(self, period: str, before: float) -> int:
        await self._answer("prune_stats")
        self.pruned.append((period, before))
        doomed = [k for k in self.rows if k[0] == period and k[1] < before]
        for key in doomed:
            del self.rows[key]
        return len(doomed)

    async def record_api_key_use(self, uses: dict[str, tuple[int, float]]) -> None:
        await self._answer("record_api_key_use")
        for key_id, (count, at) in uses.items():
            known = self.key_uses.get(key_id, (0, 0.0))
            self.key_uses[key_id] = (known[0] + count, max(known[1], at))

    async def append_audit(self, entries: Sequence[AuditEntry], keep: int) -> None:
        await self._answer("append_audit")
        self.audit.extend(entries)
        self.audit.sort(key=lambda entry: entry.at)
        self.audit = self.audit[len(self.audit) - keep :] if keep else []

    async def pool_counts(
        self, pools: Sequence[str], cost: int, now: float
    ) -> PoolCounts:
        await self._answer("pool_counts")
        counts: dict[str, int] = {}
        for token in self.tokens:
            if token.pool in pools:
                state = token.state(now, cost)
                counts[state] = counts.get(state, 0) + 1
        return PoolCounts(counts, None)

    async def list_tokens(self, query: TokenQuery) -> TokenPage:
        await self._answer("list_tokens")
        matching = [t for t in self.tokens if t.pool == query.pool]
        return TokenPage(
            matching[query.offset : query.offset + query.limit], len(matching)
        )

    def row(self, period: str, dimension: str, value: str = "") -> StatsRow:
        """The one stored row of ``period`` and ``dimension`` with ``value``."""
        found = [
            row
            for (p, _, d, v), row in self.rows.items()
            if (p, d, v) == (period, dimension, value)
        ]
        assert len(found) == 1, found
        return found[0]


@pytest.fixture
def storage() -> MemoryStatsStorage:
    return MemoryStatsStorage()


def settings_with(**stats: Any) -> Settings:
    """The default settings with some ``[stats]`` keys changed."""
    settings = Settings()
    return attrs.evolve(settings, stats=attrs.evolve(settings.stats, **stats))


def finished(n: int = 0, **fields: Any) -> FinishedRequest:
    """A successful chat completion ``n`` seconds after ten o'clock."""
    values: dict[str, Any] = {
        "at": TEN_O_CLOCK + n,
        "request_id": f"{n:016x}",
        "client": "203.0.113.9",
        "method": "POST",
        "path": "/v1/chat/completions",
        "status": 200,
        "duration_ms": 100.0,
        "model": "grok-4",
        "key_name": "ci",
        "key_id": "key-ci",
        "token_id": "0123456789abcdef",
    }
    values.update(fields)
    return FinishedRequest(**values)
