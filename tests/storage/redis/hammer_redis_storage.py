"""One worker process of the multi-process Redis ledger test.

Usage: ``python hammer_redis_storage.py REDIS_URL WORKER_NUMBER``. Opens the
shared Redis, adds the shared tokens, prints ``ready`` and waits for a line on
stdin, so that every worker starts leasing at the same moment; then leases and
commits until no quota is left and prints ``added=<n> committed=<n>``. Even
workers lease with the one-script path (``choose=None``), odd ones through
candidates and a conditional reserve, so both race each other.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio
from grok2api_storage_redis import create_redis_storage

from grok2api.storage import CandidateOrder, NewToken

#: The tokens every worker adds; together they hold 3 * 40 units.
SECRETS = ("hammer-a", "hammer-b", "hammer-c")
QUOTA = 40
NOW = 1_700_000_000.0


async def hammer(url: str, worker: int) -> None:
    storage = create_redis_storage(url, Path("."), timeout=10.0)
    await storage.open()
    try:
        tokens = [NewToken(s, "basic", QUOTA, QUOTA, 3600) for s in SECRETS]
        added = await storage.add_tokens(tokens, NOW)
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        orders = list(CandidateOrder)
        committed = 0
        for n in range(10_000):
            lease = await storage.lease(
                ["basic"],
                orders[n % len(orders)],
                None if worker % 2 == 0 else (lambda sample: 0),
                1,
                frozenset(),
                NOW,
                NOW + 600,
                f"worker-{worker}-{n}",
            )
            if lease is None:
                counts = await storage.pool_counts(["basic"], 1, NOW)
                if counts.counts["active"] == 0:
                    break
                continue
            await storage.commit(lease, NOW)
            committed += 1
        print(f"added={added} committed={committed}")
    finally:
        await storage.aclose()


if __name__ == "__main__":
    trio.run(hammer, sys.argv[1], int(sys.argv[2]))
