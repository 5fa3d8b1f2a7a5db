"""Pick-and-reserve cost of the token pool as the pool grows.

Runs the core's :class:`~grok2api.pool.pool.TokenPool` directly on the local
SQLite backend (no HTTP, no gateway) and times :meth:`TokenPool.lease` for each
strategy at each pool size. Every lease is committed afterwards, as a served
chat would be, so ``lru`` and ``max_quota`` see the ledger move like in
production; only the lease itself is timed. All the pools are filled first,
then the sizes take turns in slices of each strategy's leases.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from grok2api_storage_local import create_local_storage

from grok2api.config import load_settings
from grok2api.models import ModelCatalog
from grok2api.pool.pool import TokenPool
from grok2api.pool.strategies import BUILTIN_STRATEGIES
from grok2api.storage import NewToken

__all__ = ["run_pool_bench"]

#: Quota so large that no lease in a run can empty a token.
_QUOTA = 1_000_000_000
_INSERT_BATCH = 10_000


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


async def _fill(storage: Any, size: int) -> None:
    now = time.time()
    for start in range(0, size, _INSERT_BATCH):
        batch = [
            NewToken(
                secret=f"bench-pool-token-{index:07d}",
                pool="basic",
                quota=_QUOTA,
                quota_total=_QUOTA,
                window_seconds=72_000,
            )
            for index in range(start, min(size, start + _INSERT_BATCH))
        ]
        await storage.add_tokens(batch, now)


#: Each (strategy, size) point is timed in this many slices, the sizes taking
#: turns slice by slice: the VM's speed drifts within a minute, and timing
#: one size after the other would put that drift into the ratio.
_ROUNDS = 10


async def _leases(pool: TokenPool, model: Any, count: int) -> list[float]:
    samples: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        lease = await pool.lease(model)
        samples.append(time.perf_counter() - started)
        await pool.commit(lease)
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "mean_us": statistics.fmean(samples) * 1e6,
        "p50_us": _percentile(samples, 0.50) * 1e6,
        "p99_us": _percentile(samples, 0.99) * 1e6,
        "leases": float(len(samples)),
    }


async def _bench(
    sizes: list[int], strategies: list[str], leases: int, warmup: int
) -> dict[str, Any]:
    results: dict[str, Any] = {"sizes": sizes, "leases_per_point": leases}
    by_strategy: dict[str, dict[str, dict[str, float]]] = {s: {} for s in strategies}
    model = ModelCatalog().get("grok-4")
    assert model is not None
    with contextlib.ExitStack() as folders:
        storages = {}
        for size in sizes:
            data_dir = Path(
                folders.enter_context(
                    tempfile.TemporaryDirectory(prefix="grok2api-pool-bench-")
                )
            )
            storage = create_local_storage("", data_dir)
            await storage.open()
            storages[size] = (data_dir, storage)
            started = time.perf_counter()
            await _fill(storage, size)
            results.setdefault("fill_seconds", {})[str(size)] = (
                time.perf_counter() - started
            )
        try:
            for strategy in strategies:
                pools = {}
                for size, (data_dir, storage) in storages.items():
                    settings = load_settings(
                        data_dir, {"GROK2API_TOKEN_SELECTION_STRATEGY": strategy}
                    )
                    pools[size] = TokenPool(
                        storage,
                        {s.name: s for s in BUILTIN_STRATEGIES},
                        lambda settings=settings: settings,
                    )
                    await _leases(pools[size], model, warmup)
                samples: dict[int, list[float]] = {size: [] for size in sizes}
                for round_index in range(_ROUNDS):
                    share = leases // _ROUNDS + (round_index < leases % _ROUNDS)
                    for size in sizes:
                        samples[size] += await _leases(pools[size], model, share)
                for size in sizes:
                    by_strategy[strategy][str(size)] = _summary(samples[size])
        finally:
            for _, storage in storages.values():
                await storage.aclose()
    for points in by_strategy.values():
        small, large = points[str(sizes[0])], points[str(sizes[-1])]
        points["ratio_mean"] = {"value": large["mean_us"] / small["mean_us"]}
        points["ratio_p50"] = {"value": large["p50_us"] / small["p50_us"]}
        points["ratio_p99"] = {"value": large["p99_us"] / small["p99_us"]}
    results["strategies"] = by_strategy
    return results


def run_pool_bench(
    sizes: list[int] | None = None,
    strategies: list[str] | None = None,
    *,
    leases: int = 2_000,
    warmup: int = 100,
) -> dict[str, Any]:
    """Time ``TokenPool.lease`` per strategy and pool size.

    Args:
        sizes: pool sizes, smallest first; the ratio compares the last to the
            first.
        strategies: built-in strategy names.
        leases: timed leases per (strategy, size).
        warmup: untimed leases before those.

    Returns:
        ``{"strategies": {name: {size: {mean_us, p50_us, p99_us}, "ratio_mean":
        {"value": ...}, "ratio_p99": {...}}}, "fill_seconds": {...}}``.
    """
    return trio.run(
        _bench,
        sizes or [1_000, 10_000, 100_000],
        strategies or ["max_quota", "random", "lru"],
        leases,
        warmup,
    )
