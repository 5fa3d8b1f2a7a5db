"""500 concurrent chat requests over two gateway instances sharing one storage
never spend more quota than exists, on every backend."""

from __future__ import annotations

import collections

import pytest
import trio

from tests.conftest import Emulator
from tests.scenarios.conftest import (
    BACKENDS,
    CHAT_PATH,
    ClusterFactory,
    Outcome,
    api_client,
    chat,
    spent,
)

TOKENS = [f"tok-{i}" for i in range(5)]
QUOTA = 20
REQUESTS = 500
# Local storage is SQLite on one host: two instances of one worker each
# already put two processes on one database file.
WORKERS = {"local": 1, "redis": 2, "pgsql": 2, "mysql": 2}


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
async def test_scenario_500_requests_over_2_instances_spend_exactly_the_quota(
    backend: str, start_cluster: ClusterFactory, emulator: Emulator
) -> None:
    for token in TOKENS:
        emulator.control.add_account(token, quota=1_000_000)
    emulator.control.configure(line_delay=0, answer_tokens=4, thinking_tokens=0)
    workers = WORKERS[backend]
    cluster = start_cluster(
        backend, instances=2, workers=workers, GROK2API_TOKEN_BASIC_QUOTA=str(QUOTA)
    )
    cluster[0].add_tokens(TOKENS)

    outcomes: list[Outcome] = []
    async with api_client(connections=REQUESTS) as client:

        async def one(i: int) -> None:
            # Alternate instances, and streaming within each instance.
            outcome = await chat(
                client, cluster, i % 2, stream=(i // 2) % 2 == 0, content=f"n{i}"
            )
            outcomes.append(outcome)

        async with trio.open_nursery() as nursery:
            for i in range(REQUESTS):
                nursery.start_soon(one, i)

    statuses = collections.Counter(o.status for o in outcomes)
    served = [o for o in outcomes if o.status == 200]
    assert statuses == {200: QUOTA * len(TOKENS), 429: REQUESTS - len(served)}, [
        o.body[:300] for o in outcomes if o.status not in (200, 429)
    ][:5]
    for outcome in outcomes:
        if outcome.status == 429:
            assert outcome.error()["type"] == "rate_limit_error"
            assert int(outcome.headers["Retry-After"]) > 0
        elif outcome.stream:
            assert outcome.body.endswith(b"data: [DONE]\n\n"), outcome.body[-200:]
        else:
            assert outcome.body.startswith(b'{"id"'), outcome.body[:200]
    # Two processes at least raced for the quota. Which worker of an
    # instance accepts a connection is the kernel's choice, so the test does
    # not insist that every worker served.
    assert {o.instance for o in served} == {0, 1}, "both instances served"

    upstream_calls = emulator.control.requests(path=CHAT_PATH, settled=True)
    tokens = cluster.tokens()
    assert len(tokens) == len(TOKENS)
    assert len(served) == sum(spent(tokens).values()) == len(upstream_calls)
    for token in tokens.values():
        assert token["quota"] == 0, token
        assert token["reserved"] == 0, token
        assert token["use_count"] == QUOTA, token
