"""Storage backends under load: pick-and-reserve per backend, chat by backend.

Two parts, both run by ``bench/run.py --only storage``:

* :func:`run_storage_pool_bench` drives :class:`~grok2api.pool.pool.TokenPool`
  directly (no HTTP) on each backend — local SQLite, Redis, PostgreSQL and
  MariaDB, the servers real and throwaway (``grok2api.testing``) — with one
  storage object shared by 1 or 50 Trio tasks, as a gateway worker shares it.
  One operation is ``TokenPool.lease`` then ``TokenPool.release``; both the
  lease alone and the pair are timed. The strategy is ``max_quota``, the
  default, which the backends serve in one fused storage call.
* :func:`run_storage_chat` runs non-stream chat at c=50 through gateways on
  local storage and on Redis with one and two workers.

PostgreSQL gets one more pool: 100,000 tokens added in batches of 999, which
the backend does not follow with ``ANALYZE`` (it does so after writes of
1,000 rows or more), measured before and after an explicit ``ANALYZE``, with
the plan of the quota-window refill each time. That is the state a pool is
in after an operator adds tokens a few hundred at a time, until autovacuum
analyzes the table (within about a minute by default); autovacuum is switched
off on this one table so that both points see the same planner state.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio
from grok2api_storage_local import create_local_storage
from grok2api_storage_redis import create_redis_storage
from grok2api_storage_sql import create_sql_storage
from grok2api_storage_sql.postgres import PostgresDriver

from bench import procstat
from grok2api.config import load_settings
from grok2api.errors import NoTokenAvailable, StorageUnavailable
from grok2api.models import ModelCatalog, ModelSpec
from grok2api.pool.pool import TokenPool
from grok2api.pool.strategies import BUILTIN_STRATEGIES
from grok2api.storage import NewToken, Storage
from grok2api.testing.redis_server import run_redis_server
from grok2api.testing.sql_servers import running_mariadb, running_postgres

if TYPE_CHECKING:
    from bench.run import Bench

__all__ = [
    "FULL_STORAGE",
    "QUICK_STORAGE",
    "StoragePlan",
    "render_storage_markdown",
    "run_storage_chat",
    "run_storage_pool_bench",
]

BACKENDS = ("local", "redis", "pgsql", "mysql")
#: (storage, workers) of the chat gateways, in the order they run.
SETUPS = (("local", 1), ("redis", 1), ("local", 2), ("redis", 2))
STRATEGY = "max_quota"
#: Quota so large that no run can empty a token.
_QUOTA = 1_000_000_000
#: Tokens per ``add_tokens`` call; one Redis script call must stay short.
_BATCH = {"local": 10_000, "redis": 5_000, "pgsql": 10_000, "mysql": 10_000}
#: Below the SQL backend's bulk-write threshold, so no ANALYZE follows.
_SMALL_BATCH = 999


@attrs.frozen
class StoragePlan:
    """Sizes and operation counts of one storage run."""

    sizes: tuple[int, ...]
    #: measured operations per concurrency
    ops: dict[int, int]
    #: unmeasured operations first, per concurrency
    warmup: dict[int, int]
    #: measured operations per concurrency on the unanalyzed PostgreSQL pool
    slow_ops: dict[int, int]
    chat_requests: int
    chat_concurrency: int = 50


FULL_STORAGE = StoragePlan(
    sizes=(1_000, 100_000),
    ops={1: 1_000, 50: 2_000},
    warmup={1: 100, 50: 200},
    slow_ops={1: 300, 50: 600},
    chat_requests=3_000,
)
QUICK_STORAGE = StoragePlan(
    sizes=(1_000, 100_000),
    ops={1: 100, 50: 200},
    warmup={1: 20, 50: 50},
    slow_ops={1: 50, 50: 100},
    chat_requests=200,
)


def _log(message: str) -> None:
    print(
        f"[storage {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True
    )


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


# -- servers and storages -------------------------------------------------------

#: Given a label unique within the backend, a fresh unopened storage and its URL.
FreshStorage = Callable[[str], tuple[Storage, str]]


@contextlib.contextmanager
def _backend(name: str, workdir: Path) -> Iterator[FreshStorage]:
    """Start the server ``name`` needs (none for local) and hand out storages."""
    if name == "local":

        def fresh_local(label: str) -> tuple[Storage, str]:
            folder = workdir / f"local-{label}"
            folder.mkdir(parents=True)
            return create_local_storage("", folder), str(folder)

        yield fresh_local
    elif name == "redis":
        with run_redis_server(workdir / "redis-pool") as server:
            # A key prefix per pool keeps the pools apart in one server.
            yield lambda label: (
                create_redis_storage(f"{server.url}?prefix=bench-{label}:", workdir),
                server.url,
            )
    else:
        opener = running_postgres if name == "pgsql" else running_mariadb
        with opener() as server:

            def fresh_sql(label: str) -> tuple[Storage, str]:
                url = server.create_database(f"bench_{label}")
                return create_sql_storage(url, workdir), url

            yield fresh_sql


async def _fill(storage: Storage, size: int, batch: int) -> float:
    started = time.perf_counter()
    now = time.time()
    for start in range(0, size, batch):
        tokens = [
            NewToken(
                secret=f"bench-storage-token-{index:07d}",
                pool="basic",
                quota=_QUOTA,
                quota_total=_QUOTA,
                window_seconds=72_000,
            )
            for index in range(start, min(size, start + batch))
        ]
        await storage.add_tokens(tokens, now)
    return time.perf_counter() - started


# -- one measured point ---------------------------------------------------------


async def _run_ops(
    pool: TokenPool,
    model: ModelSpec,
    concurrency: int,
    count: int,
    samples: dict[str, list[float]] | None,
    errors: dict[str, int],
) -> None:
    remaining = count

    async def one_task() -> None:
        nonlocal remaining
        # Tasks take operations from one shared budget, so the total is fixed
        # however the backend spreads its latency over the tasks.
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                lease = await pool.lease(model)
            except (StorageUnavailable, NoTokenAvailable) as exc:
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1
                continue
            leased = time.perf_counter()
            await pool.release(lease)
            if samples is not None:
                samples["lease"].append(leased - started)
                samples["pair"].append(time.perf_counter() - started)

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(one_task)


async def _measure(
    pool: TokenPool, model: ModelSpec, concurrency: int, ops: int, warmup: int
) -> dict[str, Any]:
    errors: dict[str, int] = {}
    await _run_ops(pool, model, concurrency, warmup, None, errors)
    samples: dict[str, list[float]] = {"lease": [], "pair": []}
    started = time.perf_counter()
    await _run_ops(pool, model, concurrency, ops, samples, errors)
    wall = time.perf_counter() - started
    pairs, leases = samples["pair"], samples["lease"]
    return {
        "concurrency": concurrency,
        "ops": len(pairs),
        "wall_seconds": wall,
        "ops_per_second": len(pairs) / wall if wall > 0 else float("nan"),
        "pair_p50_ms": _percentile(pairs, 0.5) * 1e3,
        "pair_p99_ms": _percentile(pairs, 0.99) * 1e3,
        "pair_mean_ms": statistics.fmean(pairs) * 1e3 if pairs else float("nan"),
        "lease_p50_ms": _percentile(leases, 0.5) * 1e3,
        "lease_p99_ms": _percentile(leases, 0.99) * 1e3,
        "errors": errors,
    }


# -- PostgreSQL evidence ----------------------------------------------------------


def _pg_evidence(url: str) -> dict[str, Any]:
    """Planner statistics of ``tokens`` and the plan of the window refill.

    The refill runs first in every ``max_quota`` lease; ``EXPLAIN ANALYZE``
    executes it inside a transaction that is rolled back.
    """
    import psycopg

    refill = PostgresDriver().roll_windows_sql(
        "pool = %(pool)s AND leasable = 1 AND window_reset_at <= %(now)s"
    )
    with psycopg.connect(url, connect_timeout=10) as conn:
        stats = conn.execute(
            "SELECT n_live_tup, n_mod_since_analyze, last_analyze, "
            "last_autoanalyze FROM pg_stat_user_tables WHERE relname = 'tokens'"
        ).fetchone()
        plan = conn.execute(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {refill}",
            {"pool": "basic", "now": time.time()},
        ).fetchone()
        conn.rollback()
    top = plan[0][0] if plan else {}
    return {
        "n_live_tup": stats[0] if stats else None,
        "n_mod_since_analyze": stats[1] if stats else None,
        "analyzed": bool(stats and (stats[2] or stats[3])),
        "refill_ms": top.get("Execution Time"),
        "refill_indexes": sorted(set(_index_names(top.get("Plan", {})))),
    }


def _index_names(node: dict[str, Any]) -> Iterator[str]:
    if "Index Name" in node:
        yield node["Index Name"]
    for child in node.get("Plans", []):
        yield from _index_names(child)


def _pg_execute(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement)


# -- the pick-and-reserve run -----------------------------------------------------


@attrs.define
class _Runner:
    plan: StoragePlan
    workdir: Path
    rows: list[dict[str, Any]] = attrs.Factory(list)

    def pool_for(self, storage: Storage) -> tuple[TokenPool, ModelSpec]:
        settings = load_settings(
            self.workdir, {"GROK2API_TOKEN_SELECTION_STRATEGY": STRATEGY}
        )
        strategies = {s.name: s for s in BUILTIN_STRATEGIES}
        model = ModelCatalog().get("grok-4")
        assert model is not None
        return TokenPool(storage, strategies, lambda: settings), model

    async def points(
        self,
        storage: Storage,
        base: dict[str, Any],
        ops: dict[int, int],
        evidence: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        pool, model = self.pool_for(storage)
        for concurrency in sorted(ops):
            before = evidence() if evidence else None
            _log(f"{base['backend']} {base['variant']} c={concurrency}")
            point = await _measure(
                pool, model, concurrency, ops[concurrency],
                self.plan.warmup[concurrency],
            )  # fmt: skip
            if evidence:
                point["pg_before"], point["pg_after"] = before, evidence()
            self.rows.append({**base, **point})

    async def backend(self, name: str, fresh: FreshStorage) -> None:
        for size in self.plan.sizes:
            storage, url = fresh(f"s{size}")
            await storage.open()
            try:
                fill = await _fill(storage, size, _BATCH[name])
                _log(f"{name} filled {size:,} tokens in {fill:.1f} s")
                base = {"backend": name, "tokens": size, "variant": "default"}
                evidence = (
                    functools.partial(_pg_evidence, url) if name == "pgsql" else None
                )
                await self.points(
                    storage, {**base, "fill_seconds": fill}, self.plan.ops, evidence
                )
            finally:
                await storage.aclose()
        if name == "pgsql":
            await self.unanalyzed_postgres(fresh)

    async def unanalyzed_postgres(self, fresh: FreshStorage) -> None:
        size = max(self.plan.sizes)
        storage, url = fresh("unanalyzed")
        await storage.open()
        try:
            # Autovacuum would analyze the table within about a minute, in the
            # middle of a point; off, both points see the same planner state.
            _pg_execute(url, "ALTER TABLE tokens SET (autovacuum_enabled = false)")
            fill = await _fill(storage, size, _SMALL_BATCH)
            _log(f"pgsql filled {size:,} tokens in batches of 999 in {fill:.1f} s")
            base = {"backend": "pgsql", "tokens": size, "fill_seconds": fill}
            evidence = functools.partial(_pg_evidence, url)
            await self.points(
                storage,
                {**base, "variant": "batches of 999, no ANALYZE"},
                self.plan.slow_ops,
                evidence,
            )
            _pg_execute(url, "ANALYZE tokens")
            await self.points(
                storage,
                {**base, "variant": "same, after ANALYZE"},
                self.plan.slow_ops,
                evidence,
            )
        finally:
            await storage.aclose()


def run_storage_pool_bench(
    plan: StoragePlan, workdir: Path, backends: tuple[str, ...] = BACKENDS
) -> dict[str, Any]:
    """Pick-and-reserve on every backend at each pool size and concurrency.

    Args:
        plan: sizes and operation counts.
        workdir: where local databases and server folders go.
        backends: which of ``local``, ``redis``, ``pgsql``, ``mysql``.

    Returns:
        ``{"strategy": ..., "rows": [...], "seconds": ...}``, a row per
        (backend, tokens, variant, concurrency) with ``ops_per_second``,
        ``pair_p50_ms``/``pair_p99_ms`` (lease + release) and
        ``lease_p50_ms``/``lease_p99_ms``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    runner = _Runner(plan, workdir)
    started = time.monotonic()
    for name in backends:
        server_started = time.monotonic()
        with _backend(name, workdir) as fresh:
            _log(f"{name} ready in {time.monotonic() - server_started:.1f} s")
            trio.run(runner.backend, name, fresh)
    return {
        "strategy": STRATEGY,
        "rows": runner.rows,
        "seconds": time.monotonic() - started,
    }


# -- chat throughput by backend and workers ---------------------------------------


def run_storage_chat(bench: Bench, plan: StoragePlan) -> list[dict[str, Any]]:
    """Non-stream chat at ``plan.chat_concurrency`` on local and Redis storage.

    Gateways: local with 1 and 2 workers, Redis with 1 and 2 workers, each
    fresh, against the run's emulator. ``redis_cpu_ms_per_request`` is the
    Redis server's CPU over the warm-up and the measured requests.
    """
    rows = []
    with run_redis_server() as redis_server:
        assert redis_server.process is not None
        redis_pid = redis_server.process.pid
        for storage, workers in SETUPS:
            name = f"chat-{storage}-{workers}w"
            settings = {
                "SERVER_WORKERS": str(workers),
                "SERVER_STORAGE_TYPE": storage,
                # Every Redis gateway gets keys of its own; local: the default
                # file in its own data folder.
                "SERVER_STORAGE_URL": (
                    f"{redis_server.url}?prefix={name}:" if storage == "redis" else ""
                ),
            }
            _log(f"chat: {storage}, {workers} worker(s)")
            gateway = bench.new_gateway(name, settings)
            redis_cpu = procstat.cpu_seconds(redis_pid)
            try:
                job = bench.gateway_job(
                    False, plan.chat_concurrency, plan.chat_requests
                )
                result = bench.measure_gateway(gateway, job, 1)
            finally:
                gateway.stop()
            redis_cpu = procstat.cpu_seconds(redis_pid) - redis_cpu
            answered = result["statuses"].get("200", 0) + job["warmup"]
            rows.append(
                {
                    "storage": storage,
                    "workers": workers,
                    "concurrency": plan.chat_concurrency,
                    **result,
                    "redis_cpu_ms_per_request": (
                        redis_cpu / answered * 1e3
                        if storage == "redis" and answered
                        else None
                    ),
                }
            )
    return rows


# -- report --------------------------------------------------------------------------


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def render_storage_markdown(report: dict[str, Any]) -> str:
    """The storage run as markdown tables."""
    out = [
        f"# grok2api storage benchmark {report['started']} ({report['mode']})",
        "",
        f"Machine: {report['machine']['cpus']} CPUs, Python "
        f"{report['machine']['python']}.",
        "",
        f"## Pick-and-reserve ({report['pool']['strategy']}, TokenPool.lease "
        "+ release)",
        "",
        "| backend | tokens | variant | c | ops | ops/s | pair p50 ms "
        "| pair p99 ms | lease p50 ms | lease p99 ms | errors | fill s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["pool"]["rows"]:
        out.append(
            f"| {r['backend']} | {r['tokens']:,} | {r['variant']} "
            f"| {r['concurrency']} | {r['ops']} | {r['ops_per_second']:,.0f} "
            f"| {_num(r['pair_p50_ms'])} | {_num(r['pair_p99_ms'])} "
            f"| {_num(r['lease_p50_ms'])} | {_num(r['lease_p99_ms'])} "
            f"| {r['errors'] or 0} | {_num(r['fill_seconds'], 1)} |"
        )
    evidence = [r for r in report["pool"]["rows"] if "pg_before" in r]
    if evidence:
        out += [
            "",
            "PostgreSQL window refill (EXPLAIN ANALYZE, before / after each point):",
            "",
            "| pool | c | analyzed | n_mod_since_analyze | refill ms "
            "| refill indexes |",
            "|---|---|---|---|---|---|",
        ]
        for r in evidence:
            for when in ("pg_before", "pg_after"):
                e = r[when]
                out.append(
                    f"| {r['tokens']:,} {r['variant']} ({when[3:]}) "
                    f"| {r['concurrency']} "
                    f"| {e['analyzed']} | {e['n_mod_since_analyze']} "
                    f"| {_num(e['refill_ms'], 3)} | {', '.join(e['refill_indexes'])} |"
                )
    out += [
        "",
        "## Chat, non-stream, by storage and workers",
        "",
        "| storage | workers | c | n | req/s | p50 ms | p99 ms | gateway CPU "
        "ms/req | Redis CPU ms/req | non-200 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["chat"]:
        bad = r["requests"] - r["statuses"].get("200", 0) + r["errors"]
        out.append(
            f"| {r['storage']} | {r['workers']} | {r['concurrency']} "
            f"| {r['requests']} | {r['rps']:.0f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {_num(r['cpu_ms_per_request'])} "
            f"| {_num(r['redis_cpu_ms_per_request'])} | {bad} |"
        )
    return "\n".join(out) + "\n"
