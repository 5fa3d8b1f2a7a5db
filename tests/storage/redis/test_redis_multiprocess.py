"""Several OS processes share one Redis without overselling quota."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio
from grok2api_storage_redis import create_redis_storage

from grok2api.storage import TokenQuery

SCRIPT = Path(__file__).with_name("hammer_redis_storage.py")
WORKERS = 4


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


@pytest.mark.slow
async def test_redis_processes_spend_exactly_the_quota(
    redis_url: str, tmp_path: Path
) -> None:
    procs: list[trio.Process] = []
    outputs: list[bytes] = []
    try:
        with trio.fail_after(60):
            for number in range(WORKERS):
                procs.append(
                    await trio.lowlevel.open_process(
                        [sys.executable, str(SCRIPT), redis_url, str(number)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
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

    results = [
        dict(part.split("=") for part in out.decode().split()) for out in outputs
    ]
    assert sum(int(r["added"]) for r in results) == 3, "each token is new once"
    committed = [int(r["committed"]) for r in results]
    assert sum(committed) == 3 * 40
    assert sum(1 for n in committed if n) >= 2, f"workers did not overlap: {committed}"

    storage = create_redis_storage(redis_url, tmp_path)
    await storage.open()
    try:
        page = await storage.list_tokens(TokenQuery())
    finally:
        await storage.aclose()
    assert [(t.quota, t.reserved, t.use_count) for t in page.items] == [(0, 0, 40)] * 3
