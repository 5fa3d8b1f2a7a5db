"""Many concurrent requests over two gateway processes sharing one token pool
never spend more quota than exists."""

from __future__ import annotations

import collections
import signal
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import (
    API_KEY,
    Emulator,
    GatewayFactory,
    gateway_env,
    start_gateway,
)

TOKENS = ["tok-a", "tok-b", "tok-c"]
QUOTA = 20
REQUESTS = 200


@pytest.mark.slow
async def test_200_concurrent_requests_on_2_workers_spend_exactly_the_quota(
    gateway_factory: GatewayFactory, emulator: Emulator, tmp_path: Path
) -> None:
    for token in TOKENS:
        emulator.control.add_account(token, quota=10_000)
    emulator.control.configure(line_delay=0.01, answer_tokens=4, thinking_tokens=0)
    settings = {
        "GROK2API_TOKEN_BASIC_QUOTA": str(QUOTA),
        # Every 429 here must come from the quota, not the per-address limit.
        "GROK2API_SECURITY_RATE_LIMIT_ENABLED": "false",
    }
    gateway = gateway_factory(TOKENS, **settings)
    # A second process on the same data folder: which worker of one server
    # accepts a connection is the kernel's choice, so two servers with their
    # own ports are the sure way to have both take half of the requests.
    second = start_gateway(
        gateway_env(gateway.data_dir, emulator, **settings),
        tmp_path / "second.log",
    )

    statuses: collections.Counter[int] = collections.Counter()
    by_process: collections.Counter[int] = collections.Counter()
    limits = httpx.Limits(max_connections=REQUESTS)
    try:
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=60,
            limits=limits,
        ) as client:

            async def one(i: int) -> None:
                server = (gateway, second)[i % 2]
                response = await client.post(
                    server.url + "/v1/chat/completions",
                    json={
                        "model": "grok-4",
                        "stream": i % 4 < 2,
                        "messages": [{"role": "user", "content": f"n{i}"}],
                    },
                )
                await response.aread()
                statuses[response.status_code] += 1
                by_process[i % 2] += response.status_code == 200

            async with trio.open_nursery() as nursery:
                for i in range(REQUESTS):
                    nursery.start_soon(one, i)
    finally:
        second.stop(signal.SIGKILL)

    served = statuses[200]
    upstream_calls = len(
        emulator.control.requests(path="/rest/app-chat/conversations/new")
    )
    tokens = gateway.tokens().values()
    spent = sum(t["quota_total"] - t["quota"] for t in tokens)
    assert statuses[200] + statuses[429] == REQUESTS, statuses
    assert served == spent == upstream_calls == QUOTA * len(TOKENS)
    assert all(t["quota"] == 0 and t["reserved"] == 0 for t in tokens)
    assert {t["use_count"] for t in tokens} == {QUOTA}
    # Both processes served requests from the one shared pool.
    assert by_process[0] > 0 and by_process[1] > 0, by_process
