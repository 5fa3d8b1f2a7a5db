"""Fixtures for the load and fault scenarios: real storage servers started once
per session, a fresh namespace on one of them per test, and clusters of
gateway instances (real ``grok2api serve`` processes) that share it."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from grok2api.testing.redis_server import RedisServer, run_redis_server
from grok2api.testing.sql_servers import SqlServer, running_mariadb, running_postgres
from tests.conftest import (
    API_KEY,
    Emulator,
    Gateway,
    free_port,
    gateway_env,
    start_gateway,
)

#: Every storage backend the scenarios run against (``SERVER_STORAGE_TYPE``).
BACKENDS = ["local", "redis", "pgsql", "mysql"]
CHAT_PATH = "/rest/app-chat/conversations/new"

_namespaces = itertools.count()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One ``redis-server`` with an append-only file, so a restart keeps data."""
    folder = tmp_path_factory.mktemp("redis")
    with run_redis_server(folder, appendonly=True) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[SqlServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[SqlServer]:
    with running_mariadb() as server:
        yield server


def storage_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The ``SERVER_STORAGE_*`` variables for a fresh, empty namespace.

    Servers start lazily, so a run that selects only the local backend
    needs none of them.
    """
    namespace = f"scenario{next(_namespaces)}"
    if backend == "local":
        return {"SERVER_STORAGE_TYPE": "local"}
    if backend == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        url = f"{redis.url}?prefix={namespace}:"
        return {"SERVER_STORAGE_TYPE": "redis", "SERVER_STORAGE_URL": url}
    name = "postgres_server" if backend == "pgsql" else "mariadb_server"
    sql: SqlServer = request.getfixturevalue(name)
    return {
        "SERVER_STORAGE_TYPE": backend,
        "SERVER_STORAGE_URL": sql.create_database(namespace),
    }


@attrs.define
class Cluster:
    """Gateway instances over one storage (and one data dir, for local)."""

    gateways: list[Gateway]

    def __getitem__(self, index: int) -> Gateway:
        return self.gateways[index]

    def tokens(self) -> dict[str, dict[str, Any]]:
        return self.gateways[0].tokens()


ClusterFactory = Callable[..., Cluster]


@pytest.fixture
def start_cluster(
    tmp_path: Path, emulator: Emulator, request: pytest.FixtureRequest
) -> Iterator[ClusterFactory]:
    """Starts ``instances`` gateways on ``backend`` with ``workers`` each.

    They start together (so schema creation and migrations race, as they
    would on a real deployment) and share one data dir; ``settings`` become
    environment variables of every instance.
    """
    started: list[Gateway] = []

    def start(
        backend: str, *, instances: int = 2, workers: int = 1, **settings: str
    ) -> Cluster:
        shared = {
            **storage_settings(backend, request),
            "SERVER_WORKERS": str(workers),
            # Hundreds of requests from one address are the point here, not
            # something for the per-address limit to stop.
            "GROK2API_SECURITY_RATE_LIMIT_ENABLED": "false",
            **settings,
        }
        data_dir = tmp_path / "data"
        gateways = []
        for _ in range(instances):
            index = len(started)
            env = gateway_env(data_dir, emulator, **shared)
            # No instance has bound its port yet, so the kernel may offer
            # the same free port twice.
            while env["SERVER_PORT"] in {g.env["SERVER_PORT"] for g in started}:
                env["SERVER_PORT"] = str(free_port())
            gateway = start_gateway(env, tmp_path / f"gateway{index}.log", wait=False)
            started.append(gateway)
            gateways.append(gateway)
        for gateway in gateways:
            _wait_healthy(gateway)
        return Cluster(gateways)

    yield start
    for gateway in started:
        if gateway.process.poll() is None:
            gateway.process.send_signal(signal.SIGTERM)
    for gateway in started:
        try:
            gateway.process.wait(20)
        except subprocess.TimeoutExpired:
            gateway.process.kill()
            gateway.process.wait()


def _wait_healthy(gateway: Gateway, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise AssertionError(
                f"the gateway exited at start-up with {gateway.process.returncode}:"
                f"\n{gateway.log()}"
            )
        try:
            if httpx.get(f"{gateway.url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        # Waiting on another process to bind its port.
        time.sleep(0.05)
    raise AssertionError(f"the gateway did not start in {timeout}s:\n{gateway.log()}")


@attrs.frozen
class Outcome:
    """One chat request as the client saw it."""

    instance: int
    stream: bool
    status: int
    headers: httpx.Headers
    body: bytes
    started: float
    ended: float

    @property
    def elapsed(self) -> float:
        return self.ended - self.started

    def error(self) -> dict[str, Any]:
        """The OpenAI error envelope's ``error`` object."""
        envelope = httpx.Response(self.status, content=self.body).json()
        assert set(envelope) == {"error"}, envelope
        error: dict[str, Any] = envelope["error"]
        assert {"message", "type", "code"} <= set(error), error
        return error


def api_client(
    connections: int = 100, timeout: float = 60, *, keepalive: bool = True
) -> httpx.AsyncClient:
    """An API client; without keep-alive every request opens a connection,
    which spreads requests over a gateway's workers."""
    return httpx.AsyncClient(
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=connections,
            max_keepalive_connections=None if keepalive else 0,
        ),
    )


async def chat(
    client: httpx.AsyncClient,
    cluster: Cluster,
    instance: int,
    *,
    stream: bool = False,
    model: str = "grok-4",
    content: str = "hello",
) -> Outcome:
    """Send one chat completion to instance ``instance`` and read it whole."""
    started = time.time()
    response = await client.post(
        f"{cluster[instance].api}/chat/completions",
        json={
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": content}],
        },
    )
    body = await response.aread()
    return Outcome(
        instance, stream, response.status_code, response.headers, body,
        started, time.time(),
    )  # fmt: skip


def spent(tokens: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Quota spent per token id."""
    return {tid: t["quota_total"] - t["quota"] for tid, t in tokens.items()}


async def in_thread(work: Callable[[], object]) -> None:
    """Run a blocking call (a server stop or start) off the event loop."""
    await trio.to_thread.run_sync(work)
