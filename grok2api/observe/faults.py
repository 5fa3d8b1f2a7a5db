"""Counting upstream failures where the pool settles them.

Every failed upstream attempt, including those failover hides from the
client, ends in :meth:`TokenPool.settle_failure` with an error that already
says whose fault it was; counting there sees each attempt exactly once.
"""

from __future__ import annotations

from typing import Any

from grok2api.errors import UpstreamError
from grok2api.observe.exposition import Counter
from grok2api.pool.pool import TokenPool
from grok2api.storage import Lease

__all__ = ["FaultCountingPool"]


class FaultCountingPool(TokenPool):
    """A :class:`TokenPool` that counts each settled failure by kind and pool.

    Args:
        faults: a counter labelled ``(kind, pool)``.
        *args, **kwargs: as for :class:`TokenPool`.
    """

    def __init__(self, *args: Any, faults: Counter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._faults = faults

    async def settle_failure(self, lease: Lease, error: UpstreamError) -> None:
        self._faults.inc(error.kind.value, lease.pool)
        await super().settle_failure(lease, error)
