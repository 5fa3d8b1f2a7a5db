"""Many concurrent requests over two workers never spend more quota than exists."""

from __future__ import annotations

import collections

import httpx
import pytest
import trio

from tests.conftest import API_KEY, Emulator, GatewayFactory

TOKENS = ["tok-a", "tok-b", "tok-c"]
QUOTA = 20
REQUESTS = 200


@pytest.mark.slow
async def test_200_concurrent_requests_on_2_workers_spend_exactly_the_quota(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    for token in TOKENS:
        emulator.control.add_account(token, quota=10_000)
    emulator.control.configure(line_delay=0.01, answer_tokens=4, thinking_tokens=0)
    gateway = gateway_factory(
        TOKENS,
        SERVER_WORKERS="2",
        GROK2API_TOKEN_BASIC_QUOTA=str(QUOTA),
        # Every 429 here must come from the quota, not the per-address limit.
        GROK2API_SECURITY_RATE_LIMIT_ENABLED="false",
    )

    statuses: collections.Counter[int] = collections.Counter()
    limits = httpx.Limits(max_connections=REQUESTS)
    async with httpx.AsyncClient(
        base_url=gateway.url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
        limits=limits,
    ) as client:

        async def one(i: int) -> None:
            response = await client.post(
                "/v1/chat/completions",
                json={
                    "model": "grok-4",
                    "stream": i % 2 == 0,
                    "messages": [{"role": "user", "content": f"n{i}"}],
                },
            )
            await response.aread()
            statuses[response.status_code] += 1

        async with trio.open_nursery() as nursery:
            for i in range(REQUESTS):
                nursery.start_soon(one, i)

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
    # Both workers took requests against the one shared pool (which of them
    # got the few that quota allowed is up to the kernel).
    pids = {
        line.split()[2]
        for line in gateway.log().splitlines()
        if "grok2api.access: POST /v1/chat/completions " in line
    }
    assert len(pids) == 2
