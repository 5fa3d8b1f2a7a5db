"""Several OS processes share one SQLite file without overselling quota or
overrunning a shared limit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio
from grok2api_storage_local import LocalStorage

from grok2api.storage import TokenQuery

SCRIPT = Path(__file__).with_name("hammer_local_storage.py")
WORKERS = 4

# One limiter worker: opens the shared file, waits for "go" on stdin so that
# every worker starts at once, then takes from each shared limiter in turn and
# prints what it got.
LIMITER_WORKER = """
import sys
from pathlib import Path

import trio
from grok2api_storage_local import LocalStorage

NOW = 1_700_000_000.0


async def race(path, worker):
    storage = LocalStorage(Path(path), timeout=10.0)
    await storage.open()
    try:
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        rates = windows = slots = 0
        for n in range(30):
            rates += await storage.take_rate("race:rate", 20, 0.001, NOW) == 0.0
            windows += await storage.take_window("race:win", 50, 3600, NOW) == 0.0
            slots += await storage.acquire_slot(
                "race:slot", 3, f"{worker}-{n}", NOW, NOW + 60
            )
        value = await storage.put_value_if_absent("race:value", f"from-{worker}")
        print(f"rates={rates} windows={windows} slots={slots} value={value}")
    finally:
        await storage.aclose()


trio.run(race, sys.argv[1], sys.argv[2])
"""


async def _read_until_eof(stream: trio.abc.ReceiveStream) -> bytes:
    chunks = []
    while chunk := await stream.receive_some():
        chunks.append(chunk)
    return b"".join(chunks)


async def _wait_for_ready(stream: trio.abc.ReceiveStream) -> None:
    seen = b""
    while b"ready\n" not in seen:
        chunk = await stream.receive_some()
        assert chunk, f"worker exited before it was ready: {seen!r}"
        seen += chunk


async def _race_workers(commands: list[list[str]]) -> list[dict[str, str]]:
    """Start one process per command, release them together once all are
    ready, and parse the ``key=value`` words each prints last."""
    procs: list[trio.Process] = []
    outputs: list[bytes] = []
    try:
        with trio.fail_after(60):
            for command in commands:
                procs.append(
                    await trio.lowlevel.open_process(
                        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
                    )
                )
            # Hold everyone at the start line so that the workers really race.
            for proc in procs:
                assert proc.stdout is not None
                await _wait_for_ready(proc.stdout)
            for proc in procs:
                assert proc.stdin is not None
                await proc.stdin.send_all(b"go\n")
            for proc in procs:
                assert proc.stdout is not None
                outputs.append(await _read_until_eof(proc.stdout))
                assert await proc.wait() == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    return [dict(part.split("=") for part in out.decode().split()) for out in outputs]


@pytest.mark.slow
async def test_local_processes_spend_exactly_the_quota(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    results = await _race_workers(
        [[sys.executable, str(SCRIPT), str(path), str(n)] for n in range(WORKERS)]
    )

    assert sum(int(r["added"]) for r in results) == 3, "each token is new once"
    committed = [int(r["committed"]) for r in results]
    assert sum(committed) == 3 * 40
    assert sum(1 for n in committed if n) >= 2, f"workers did not overlap: {committed}"

    storage = LocalStorage(path)
    await storage.open()
    try:
        page = await storage.list_tokens(TokenQuery())
    finally:
        await storage.aclose()
    assert [(t.quota, t.reserved, t.use_count) for t in page.items] == [(0, 0, 40)] * 3


@pytest.mark.slow
async def test_local_processes_share_every_limit(tmp_path: Path) -> None:
    path = tmp_path / "limits.sqlite3"
    results = await _race_workers(
        [
            [sys.executable, "-c", LIMITER_WORKER, str(path), str(n)]
            for n in range(WORKERS)
        ]
    )

    # Each worker asks 30 times; together they ask far more than any limit.
    assert sum(int(r["rates"]) for r in results) == 20
    assert sum(int(r["windows"]) for r in results) == 50
    assert sum(int(r["slots"]) for r in results) == 3
    [winner] = {r["value"] for r in results}
    assert winner in {f"from-{n}" for n in range(WORKERS)}
