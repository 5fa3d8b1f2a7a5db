"""Measure pick-and-reserve cost against pool size on real servers.

Usage: ``python tests/storage/sql/bench_sql_lease.py``. Starts a throwaway
PostgreSQL and MariaDB, fills a pool with 1,000 and then 100,000 tokens, and
times 1,000 sequential lease + release pairs per order, with the database
picking (``choose=None``) and with a chooser (candidates + reserve).
"""

from __future__ import annotations

import time

import trio
from grok2api_storage_sql import SqlStorage, parse_storage_url

from grok2api.storage import CandidateOrder, NewToken
from grok2api.testing.sql_servers import SqlServer, running_mariadb, running_postgres

NOW = 1_700_000_000.0
LEASES = 1_000


async def _fill(storage: SqlStorage, size: int, start: int) -> None:
    for base in range(start, size, 10_000):
        batch = [
            NewToken(f"bench-{n}", "basic", 50 + n % 50, 100, 3600)
            for n in range(base, min(size, base + 10_000))
        ]
        await storage.add_tokens(batch, NOW)


async def _time_leases(
    storage: SqlStorage, order: CandidateOrder, chooser: bool, tag: str
) -> float:
    choose = (lambda sample: 0) if chooser else None
    began = time.perf_counter()
    for n in range(LEASES):
        lease = await storage.lease(
            ["basic"], order, choose, 1, frozenset(), NOW, NOW + 60, f"{tag}-{n}"
        )
        assert lease is not None
        await storage.release(lease)
    return time.perf_counter() - began


async def bench(server: SqlServer) -> None:
    url = server.create_database("bench")
    storage = SqlStorage(parse_storage_url(url), timeout=120.0)
    await storage.open()
    try:
        filled = 0
        for size in (1_000, 100_000):
            await _fill(storage, size, filled)
            filled = size
            for order in CandidateOrder:
                for chooser in (False, True):
                    tag = f"{size}-{order.value}-{chooser}"
                    seconds = await _time_leases(storage, order, chooser, tag)
                    how = "chooser" if chooser else "db pick"
                    print(
                        f"{server.kind:10} tokens={size:>7} {order.value:20} "
                        f"{how:8} {LEASES} lease+release: {seconds:6.2f} s "
                        f"({seconds / LEASES * 1000:.2f} ms each)",
                        flush=True,
                    )
    finally:
        await storage.aclose()


def main() -> None:
    for running in (running_postgres, running_mariadb):
        with running() as server:
            trio.run(bench, server)


if __name__ == "__main__":
    main()
