"""A storage server restarted under steady traffic: requests in the gap get a
clear 503, the gateway recovers by itself, and no committed spend is lost."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

import httpx
import pytest
import trio

from grok2api.testing.redis_server import RedisServer
from grok2api.testing.sql_servers import SqlServer
from tests.conftest import Emulator
from tests.scenarios.conftest import (
    CHAT_PATH,
    ClusterFactory,
    Outcome,
    api_client,
    chat,
    in_thread,
    spent,
)

TOKENS = [f"tok-{i}" for i in range(3)]
CLIENTS = 4
#: ``timeout.storage_timeout``'s default; no request may hang much past it.
STORAGE_TIMEOUT = 5.0
HANG_LIMIT = STORAGE_TIMEOUT + 3.0
#: Once the server is back, every worker serves again within this time.
RECOVER_WITHIN = 3.0
SERVERS = {
    "redis": "redis_server",
    "pgsql": "postgres_server",
    "mysql": "mariadb_server",
}


class _Traffic:
    """The outcomes of the traffic so far, and a way to wait for them."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self._changed = trio.Event()

    def record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self._changed.set()
        self._changed = trio.Event()

    def count(self, status: int, since: float = 0.0) -> int:
        return sum(o.status == status and o.started >= since for o in self.outcomes)

    async def wait_for(
        self, what: str, condition: Callable[[], bool], timeout: float
    ) -> None:
        try:
            with trio.fail_after(timeout):
                while not condition():
                    await self._changed.wait()
        except trio.TooSlowError:
            recent = [(o.status, o.body[:120]) for o in self.outcomes[-5:]]
            raise AssertionError(
                f"{what} did not happen within {timeout}s; "
                f"{len(self.outcomes)} requests so far, the last ones: {recent}"
            ) from None


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "pgsql"])
async def test_scenario_storage_restart_under_traffic(
    backend: str,
    start_cluster: ClusterFactory,
    emulator: Emulator,
    request: pytest.FixtureRequest,
) -> None:
    for token in TOKENS:
        emulator.control.add_account(token, quota=1_000_000)
    emulator.control.configure(line_delay=0, answer_tokens=4, thinking_tokens=0)
    cluster = start_cluster(
        backend, instances=1, workers=2, GROK2API_TOKEN_BASIC_QUOTA="100000"
    )
    gateway = cluster[0]
    gateway.add_tokens(TOKENS)
    server: RedisServer | SqlServer = request.getfixturevalue(SERVERS[backend])

    traffic = _Traffic()
    count = traffic.count
    # Half the clients stream. A connection per request, so both workers
    # live through the outage.
    async with api_client(timeout=HANG_LIMIT, keepalive=False) as client:

        async def drive(client_no: int, stop: trio.Event) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                started = time.time()
                try:
                    outcome = await chat(
                        client,
                        cluster,
                        0,
                        stream=client_no % 2 == 1,
                        content=f"c{client_no}n{n}",
                    )
                except httpx.TransportError as exc:
                    # A hang past the limit or a dropped connection: recorded
                    # as status 0 so the assertions below name it.
                    error = repr(exc).encode()
                    outcome = Outcome(
                        0, False, 0, httpx.Headers(), error, started, time.time()
                    )
                traffic.record(outcome)

        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            for client_no in range(CLIENTS):
                nursery.start_soon(drive, client_no, stop)
            await traffic.wait_for("steady traffic", lambda: count(200) >= 10, 30)

            before = await trio.to_thread.run_sync(cluster.tokens)
            stopping = time.time()
            await in_thread(server.stop)
            stopped = time.time()
            await traffic.wait_for(
                "503s during the outage", lambda: count(503, since=stopped) >= 3, 10
            )
            await in_thread(server.start)
            back = time.time()
            await traffic.wait_for(
                "a served request after the restart",
                lambda: count(200, since=back) >= 1,
                RECOVER_WITHIN,
            )
            recovered = back + RECOVER_WITHIN
            await traffic.wait_for(
                "steady traffic after recovery",
                lambda: count(200, since=recovered) >= 10,
                RECOVER_WITHIN + 10,
            )
            stop.set()

    outcomes = traffic.outcomes
    statuses = collections.Counter(o.status for o in outcomes)
    assert set(statuses) <= {200, 503}, [
        (o.status, o.body[:300]) for o in outcomes if o.status not in (200, 503)
    ][:5]
    assert gateway.process.poll() is None, "the gateway kept running"
    for outcome in outcomes:
        if outcome.status == 200 and outcome.stream:
            # A stream that started is served whole, never cut by an error.
            assert outcome.body.endswith(b"data: [DONE]\n\n"), outcome.body[-300:]
            assert b'data: {"error"' not in outcome.body, outcome.body[-300:]
        if outcome.status == 503:
            error = outcome.error()
            assert (error["type"], error["code"]) == (
                "server_error",
                "storage_unavailable",
            )
            assert int(outcome.headers["Retry-After"]) > 0
            # Only requests that overlapped the outage, or came right after
            # it while the workers reconnected, may fail.
            assert stopping <= outcome.ended, outcome
            assert outcome.started <= recovered, outcome
    assert max(o.elapsed for o in outcomes) <= HANG_LIMIT

    after = cluster.tokens()
    served = [o for o in outcomes if o.status == 200]
    served_before = sum(o.ended < stopping for o in served)
    spent_before, spent_after = spent(before), spent(after)
    for token_id, token in after.items():
        assert spent_after[token_id] >= spent_before[token_id], "spend went back"
        assert token["use_count"] >= before[token_id]["use_count"]
        # An outage is nobody's fault: no token is penalised for it.
        assert token["status"] == "active" and token["fail_count"] == 0, token
    # Every answer finished before the outage was committed before it, and
    # no request was charged twice. Answers whose commit fell into the gap
    # leave a reservation that expires back into the pool instead.
    assert served_before <= sum(spent_after.values()) <= len(served)
    # And nothing was spent that the upstream did not serve.
    upstream_calls = emulator.control.requests(path=CHAT_PATH)
    assert sum(spent_after.values()) <= len(upstream_calls)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        "redis",
        "pgsql",
        "mysql",
    ],
)
def test_scenario_first_request_after_a_storage_restart_is_served(
    backend: str,
    start_cluster: ClusterFactory,
    emulator: Emulator,
    request: pytest.FixtureRequest,
) -> None:
    # A worker that saw no traffic during a short restart still holds
    # connections to the old server process; the server is up again, so its
    # next request must be served, not refused.
    emulator.control.add_account("tok-a", quota=1_000_000)
    emulator.control.configure(line_delay=0, answer_tokens=4, thinking_tokens=0)
    cluster = start_cluster(
        backend, instances=1, workers=1, GROK2API_TOKEN_BASIC_QUOTA="100000"
    )
    gateway = cluster[0]
    gateway.add_tokens(["tok-a"])
    server: RedisServer | SqlServer = request.getfixturevalue(SERVERS[backend])

    with gateway.client() as client:

        def status() -> int:
            body = {"model": "grok-4", "messages": [{"role": "user", "content": "x"}]}
            return client.post("/v1/chat/completions", json=body).status_code

        assert [status() for _ in range(3)] == [200] * 3
        server.restart()
        assert [status() for _ in range(3)] == [200] * 3
