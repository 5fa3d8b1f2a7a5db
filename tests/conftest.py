"""Fixtures shared by the whole suite: a running Grok emulator, and gateways
started as real servers (``grok2api serve`` in a subprocess) against it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from grok2api.emulator import EmulatorControl, run_emulator_in_thread

API_KEY = "sk-test-api-key-0123456789"
ADMIN_KEY = "admin-test-password-0123456789"
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.frozen
class Emulator:
    url: str
    control: EmulatorControl


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh Grok emulator on a free loopback port."""
    with run_emulator_in_thread() as (url, control):
        yield Emulator(url, control)


@attrs.define
class Gateway:
    """A gateway server process and the ways a test talks to it."""

    url: str
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def api(self) -> str:
        return f"{self.url}/v1"

    def client(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def admin(self) -> httpx.Client:
        return self.client(ADMIN_KEY)

    def add_tokens(self, tokens: list[str], pool: str = "basic") -> None:
        with self.admin() as admin:
            response = admin.post(
                "/v1/admin/tokens", json={"tokens": tokens, "pool": pool}
            )
            assert response.status_code == 201, response.text

    def tokens(self) -> dict[str, dict[str, Any]]:
        """Every token's admin view, keyed by token id."""
        with self.admin() as admin:
            response = admin.get("/v1/admin/tokens", params={"limit": 500})
            assert response.status_code == 200, response.text
            return {t["id"]: t for t in response.json()["items"]}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli(
        self, *args: str, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(self.env, *args, input=input)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def run_cli(
    env: dict[str, str], *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grok2api.cli", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def gateway_env(
    data_dir: Path, emulator: Emulator | None, **settings: str
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GROK2API_", "SERVER_"))
    }
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(free_port()),
            "SERVER_WORKERS": "1",
            "LOG_LEVEL": "INFO",
            "GROK2API_APP_API_KEY": API_KEY,
            "GROK2API_APP_APP_PASSWORD": ADMIN_KEY,
            "GROK2API_TOKEN_AUTO_REFRESH": "false",
            "GROK2API_RETRY_RETRY_BACKOFF_BASE": "0.01",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if emulator is not None:
        env["GROK2API_NETWORK_BASE_URL"] = emulator.url
        env["GROK2API_NETWORK_ASSETS_URL"] = emulator.url
    env.update(settings)
    return env


def start_gateway(env: dict[str, str], log_path: Path, *, wait: bool = True) -> Gateway:
    url = f"http://127.0.0.1:{env['SERVER_PORT']}"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "grok2api.cli", "serve"],
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
    gateway = Gateway(url, Path(env["DATA_DIR"]), env, process, log_path)
    if wait:
        _wait_ready(gateway)
    return gateway


def _wait_ready(gateway: Gateway, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise AssertionError(f"the gateway exited at start-up:\n{gateway.log()}")
        try:
            if httpx.get(f"{gateway.url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    gateway.stop(signal.SIGKILL)
    raise AssertionError(f"the gateway did not start in {timeout}s:\n{gateway.log()}")


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def gateway_factory(tmp_path: Path, emulator: Emulator) -> Iterator[GatewayFactory]:
    """Starts gateways against the emulator; ``settings`` become env vars."""
    started: list[Gateway] = []

    def start(
        tokens: list[str] | None = None, pool: str = "basic", **settings: str
    ) -> Gateway:
        data_dir = tmp_path / f"data{len(started)}"
        gateway = start_gateway(
            gateway_env(data_dir, emulator, **settings),
            tmp_path / f"gateway{len(started)}.log",
        )
        started.append(gateway)
        if tokens:
            gateway.add_tokens(tokens, pool)
        return gateway

    yield start
    for gateway in started:
        if gateway.process.poll() is None:
            gateway.stop(signal.SIGKILL)


@pytest.fixture
def gateway(gateway_factory: GatewayFactory, emulator: Emulator) -> Gateway:
    """A one-worker gateway with two basic tokens the emulator knows."""
    for token in ("tok-a", "tok-b"):
        emulator.control.add_account(token)
    return gateway_factory(["tok-a", "tok-b"])
