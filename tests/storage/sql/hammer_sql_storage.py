"""One worker process of the multi-process SQL tests.

Usage: ``python hammer_sql_storage.py URL WORKER MODE``. Every mode opens the
storage (racing the other workers through schema creation) after printing
``ready`` and reading a line from stdin, so that all workers start together.

* ``open``: only open and close; prints ``opened``.
* ``hammer``: add the shared tokens, then lease and commit until no quota is
  left; even workers let the database pick (``choose=None``), odd ones choose
  from samples. Prints ``added=<n> committed=<n>``.
"""

from __future__ import annotations

import sys

import trio
from grok2api_storage_sql import SqlStorage, parse_storage_url

from grok2api.storage import CandidateOrder, NewToken

#: The tokens every worker adds; together they hold 3 * 40 units.
SECRETS = ("hammer-a", "hammer-b", "hammer-c")
QUOTA = 40
NOW = 1_700_000_000.0


async def main(url: str, worker: int, mode: str) -> None:
    storage = SqlStorage(parse_storage_url(url), timeout=20.0)
    print("ready", flush=True)
    await trio.to_thread.run_sync(sys.stdin.readline)
    await storage.open()
    try:
        if mode == "open":
            print("opened", flush=True)
            return
        tokens = [NewToken(s, "basic", QUOTA, QUOTA, 3600) for s in SECRETS]
        added = await storage.add_tokens(tokens, NOW)
        choose = None if worker % 2 == 0 else (lambda sample: 0)
        order = list(CandidateOrder)[worker % len(CandidateOrder)]
        committed = 0
        for n in range(10_000):
            lease = await storage.lease(
                ["basic"],
                order,
                choose,
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
        print(f"added={added} committed={committed}", flush=True)
    finally:
        await storage.aclose()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]), sys.argv[3])
