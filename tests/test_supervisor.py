"""``grok2api serve`` with several workers: crashes, shutdown, reloads.

Every test runs the real command; worker processes are found as the server's
children in /proc.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import (
    API_KEY,
    Emulator,
    Gateway,
    GatewayFactory,
    gateway_env,
    start_gateway,
)

pytestmark = pytest.mark.slow

CHAT = "/rest/app-chat/conversations/new"
TOKENS = ["tok-a", "tok-b", "tok-c"]


def worker_pids(server_pid: int) -> set[int]:
    """The live worker processes of a server (not the resource tracker)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # it ended while we looked
        # The command name may hold spaces; the fields after it do not.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == server_pid and state != "Z" and b"spawn_main" in cmdline:
            pids.add(int(entry.name))
    return pids


def open_sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd").iterdir()
    return sum(1 for fd in fds if os.readlink(fd).startswith("socket:"))


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, gateway: Gateway
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} did not happen in {timeout}s:\n{gateway.log()}"
            )
        time.sleep(0.05)


def two_workers(gateway: Gateway) -> set[int]:
    wait_for(
        lambda: len(worker_pids(gateway.process.pid)) == 2,
        10,
        "two workers",
        gateway,
    )
    pids = worker_pids(gateway.process.pid)
    wait_for(
        lambda: all(f"ready pid={pid}" in gateway.log() for pid in pids),
        20,
        "both workers ready",
        gateway,
    )
    return pids


def chat_body(i: int, *, stream: bool) -> dict[str, object]:
    return {
        "model": "grok-4",
        "stream": stream,
        "messages": [{"role": "user", "content": f"request #{i:03d}"}],
    }


async def chat(client: httpx.AsyncClient, i: int, *, stream: bool) -> bool:
    """Whether request ``i`` got a complete answer."""
    try:
        async with client.stream(
            "POST", "/v1/chat/completions", json=chat_body(i, stream=stream)
        ) as response:
            body = await response.aread()
    except httpx.TransportError:
        return False
    if response.status_code != 200:
        return False
    if stream:
        return body.rstrip().endswith(b"data: [DONE]")
    return bool(json.loads(body)["choices"][0]["message"]["content"])


async def test_supervisor_restarts_a_killed_worker_and_loses_no_quota(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    for token in TOKENS:
        emulator.control.add_account(token, quota=10_000)
    emulator.control.configure(line_delay=0.03, answer_tokens=15, thinking_tokens=0)
    gateway = gateway_factory(
        TOKENS, SERVER_WORKERS="2", GROK2API_TOKEN_RESERVATION_TTL_SEC="3"
    )
    workers = two_workers(gateway)
    results: dict[int, bool] = {}

    async with httpx.AsyncClient(
        base_url=gateway.url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
        limits=httpx.Limits(max_connections=100),
    ) as client:

        async def one(i: int) -> None:
            results[i] = await chat(client, i, stream=i % 2 == 0)

        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(one, i)
            # Kill one worker while both have streams open upstream.
            await trio.to_thread.run_sync(
                lambda: emulator.control.requests(path=CHAT, min_count=20)
            )
            # The busier worker (client plus upstream connections) surely
            # has requests in flight.
            victim = max(workers, key=open_sockets)
            (survivor,) = workers - {victim}
            os.kill(victim, signal.SIGKILL)
        # The surviving worker answers at once; nothing waits for the restart.
        async with trio.open_nursery() as nursery:
            for i in range(40, 60):
                nursery.start_soon(one, i)

    failed = {i for i, ok in results.items() if not ok}
    assert 0 < len(failed) < 40 and not failed & set(range(40, 60))
    wait_for(
        lambda: len(worker_pids(gateway.process.pid) - {survivor}) == 1,
        10,
        "a new worker",
        gateway,
    )
    (new,) = worker_pids(gateway.process.pid) - {survivor}
    assert new != victim
    wait_for(lambda: f"ready pid={new}" in gateway.log(), 10, "its start", gateway)
    assert f"pid={victim} exited (killed by SIGKILL)" in gateway.log()

    # The killed worker's open reservations expire back into the pool.
    wait_for(
        lambda: all(t["reserved"] == 0 for t in gateway.tokens().values()),
        10,
        "reservations expiring",
        gateway,
    )
    records = emulator.control.requests(path=CHAT, settled=True)
    by_request: dict[int, list[dict[str, object]]] = {}
    for record in records:
        i = int(re.findall(r"request #(\d{3})", json.dumps(record["body"]))[0])
        by_request.setdefault(i, []).append(record)
    # Every answered request reached the upstream, and was charged, once.
    for i, ok in results.items():
        if ok:
            assert [(r["outcome"], r["charged"]) for r in by_request[i]] == [
                ("completed", 1)
            ]
        else:
            assert len(by_request.get(i, [])) <= 1
    succeeded = len(results) - len(failed)
    # The ledger spent exactly what was served, plus a conversation the
    # upstream finished just before the kill if the worker committed it.
    finished_unseen = sum(
        1 for i in failed for r in by_request.get(i, []) if r["outcome"] == "completed"
    )
    tokens = gateway.tokens().values()
    spent = sum(t["quota_total"] - t["quota"] for t in tokens)
    assert succeeded <= spent <= succeeded + finished_unseen


def test_sigterm_stops_every_worker_after_in_flight_streams(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    emulator.control.configure(line_delay=0.2, answer_tokens=8, thinking_tokens=0)
    gateway = gateway_factory(
        ["tok-a"], SERVER_WORKERS="2", GROK2API_TIMEOUT_SHUTDOWN_GRACE="10"
    )
    workers = two_workers(gateway)
    text, _ = stream_then_sigterm(gateway)
    assert text.rstrip().endswith("data: [DONE]")
    assert gateway.process.wait(20) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{gateway.url}/health", timeout=1)
    listing = gateway.cli("tokens", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    (token,) = json.loads(listing.stdout)
    assert token["use_count"] == 1 and token["reserved"] == 0


def stream_then_sigterm(gateway: Gateway) -> tuple[str, float]:
    """Start a stream, SIGTERM the server after its first chunk; returns the
    whole stream as received and when the signal went."""
    with (
        gateway.client() as client,
        client.stream(
            "POST", "/v1/chat/completions", json=chat_body(1, stream=True)
        ) as response,
    ):
        chunks = response.iter_bytes()
        first = next(chunks)
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        return (first + b"".join(chunks)).decode(), signalled


def first_config(tmp_path: Path, text: str) -> Path:
    """The config file the first gateway of ``gateway_factory`` starts with."""
    config = tmp_path / "data0" / "config.toml"
    config.parent.mkdir()
    config.write_text(text)
    return config


def test_a_grace_raised_at_runtime_holds_for_every_worker(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    # Started with half a second of grace, raised to 12 s at runtime: the
    # supervisor (10 s past the grace it knows) must not kill the workers
    # before their own grace ends the answer.
    first_config(tmp_path, "[timeout]\nshutdown_grace = 0.5\n")
    emulator.control.add_account("tok-a")
    emulator.control.configure(line_delay=1.0, answer_tokens=40, thinking_tokens=0)
    gateway = gateway_factory(["tok-a"], SERVER_WORKERS="2")
    with gateway.admin() as admin:
        raised = admin.patch(
            "/v1/admin/config", json={"timeout": {"shutdown_grace": 12}}
        )
    assert raised.status_code == 200, raised.text
    time.sleep(1.5)  # the other worker picks the change up within a second
    text, signalled = stream_then_sigterm(gateway)
    assert '"code": "server_shutting_down"' in text
    assert text.rstrip().endswith("data: [DONE]")
    assert 10.5 < time.monotonic() - signalled < 14
    assert gateway.process.wait(20) == 0
    assert "did not stop in time" not in gateway.log()
    (token,) = json.loads(gateway.cli("tokens", "list", "--json").stdout)
    assert token["reserved"] == 0


def install_plugin_that_cannot_start(folder: Path) -> None:
    """A plugin installed as a distribution would be: a module and the
    metadata that registers it in the ``grok2api`` entry-point group."""
    info = folder / "cannot_start-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cannot-start\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[grok2api]\ncannot_start = cannot_start\n")
    (folder / "cannot_start.py").write_text(
        "from grok2api.hookspecs import hookimpl\n\n\n"
        "@hookimpl\n"
        "def startup(host):\n"
        "    raise RuntimeError('this plugin cannot start')\n"
    )


def test_workers_that_cannot_start_stop_the_server_with_an_error(
    tmp_path: Path, emulator: Emulator
) -> None:
    # The parent checks settings, plugins and storage, but only a worker
    # runs the plugins' startup hooks: an installed plugin whose hook fails
    # fails every start.
    plugin_folder = tmp_path / "site"
    install_plugin_that_cannot_start(plugin_folder)
    env = gateway_env(tmp_path / "data", emulator, SERVER_WORKERS="2")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(plugin_folder), *filter(None, [env.get("PYTHONPATH")])]
    )
    started = time.monotonic()
    gateway = start_gateway(env, tmp_path / "gateway.log", wait=False)
    try:
        code = gateway.process.wait(60)
    finally:
        gateway.stop(signal.SIGKILL)
    elapsed = time.monotonic() - started

    log = gateway.log()
    assert code == 1, log
    assert "failed 5 times in a row" in log
    assert "this plugin cannot start" in log  # the cause, from the worker
    # Backoff between attempts (0.25 + 0.5 + 1 + 2 s), not a tight loop.
    assert elapsed > 3.75
    assert 4 <= log.count("failed to start (exit code") <= 8
    assert not worker_pids(gateway.process.pid)


def test_sighup_replaces_workers_one_at_a_time(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(["tok-a"], SERVER_WORKERS="2")
    old = two_workers(gateway)

    gateway.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "reload done" not in gateway.log():
        assert time.monotonic() < deadline, gateway.log()
        # Capacity never drops: every new connection is answered meanwhile.
        # (A kept-alive idle one may be closed as its worker stops.)
        assert httpx.get(f"{gateway.url}/health", timeout=5).status_code == 200
        assert 2 <= len(worker_pids(gateway.process.pid)) <= 3

    new = two_workers(gateway)
    assert not new & old
    assert gateway.stop() == 0


def test_a_reload_with_a_key_that_cannot_open_the_tokens_keeps_the_workers(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    config = first_config(tmp_path, '[security]\nsecret_key = "the key that sealed"\n')
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(["tok-a"], SERVER_WORKERS="2")
    workers = two_workers(gateway)
    config.write_text('[security]\nsecret_key = "another key"\n')

    gateway.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "not reloading" in gateway.log(), 20, "a refusal", gateway)

    assert "sealed with another security.secret_key" in gateway.log()
    assert "Traceback" not in gateway.log()
    assert worker_pids(gateway.process.pid) == workers
    with gateway.client() as client:
        answer = client.post("/v1/chat/completions", json=chat_body(1, stream=False))
    assert answer.status_code == 200, answer.text
