"""Start and stop the processes a benchmark run measures: emulator and gateway.

Both run as real subprocesses on loopback, exactly as an operator would start
them (``python -m grok2api.emulator``, ``python -m grok2api.cli serve``), so
the gateway's CPU and memory can be read from ``/proc`` without the load
generator or the emulator mixed in.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import httpx

from grok2api.emulator import EmulatorControl

__all__ = [
    "ADMIN_KEY",
    "API_KEY",
    "Emulator",
    "Floor",
    "Gateway",
    "free_port",
    "start_emulator",
    "start_floor",
    "start_gateway",
]

API_KEY = "sk-bench-api-key-0123456789"
ADMIN_KEY = "admin-bench-password-0123456789"
REPO = Path(__file__).resolve().parent.parent
#: Big enough that no run, however long, drains a token.
HUGE_QUOTA = 1_000_000_000


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@attrs.define
class Emulator:
    """A running emulator process and its control client."""

    url: str
    process: subprocess.Popen[bytes]
    control: EmulatorControl

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 0)

    def stop(self) -> None:
        self.control.close()
        _stop(self.process)


def start_emulator(tokens: list[str], log_path: Path, answer_tokens: int) -> Emulator:
    """Start ``python -m grok2api.emulator`` with ``tokens`` as huge accounts.

    Raises:
        RuntimeError: it exited or did not print its address in time.
    """
    command = [sys.executable, "-m", "grok2api.emulator", "--port", "0"]
    for token in tokens:
        command += ["--account", f"{token}:basic:{HUGE_QUOTA}"]
    command += ["--answer-tokens", str(answer_tokens), "--thinking-tokens", "0"]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log_file, cwd=REPO
        )
    assert process.stdout is not None
    prefix = b"Grok emulator listening on "
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator exited; see {log_path}")
        if line.startswith(prefix):
            url = line[len(prefix) :].decode().strip()
            control = EmulatorControl(url)
            # The default log keeps 10,000 records; a run counts more calls.
            control.configure(log_limit=1_000_000)
            return Emulator(url, process, control)
    process.kill()
    raise RuntimeError("the emulator did not report its address in 30 s")


@attrs.define
class Gateway:
    """A running ``grok2api serve`` process."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 0)

    def add_tokens(self, tokens: list[str]) -> None:
        response = httpx.post(
            f"{self.url}/v1/admin/tokens",
            json={"tokens": tokens, "pool": "basic"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=30,
        )
        response.raise_for_status()

    def stop(self) -> int:
        return _stop(self.process)


def start_gateway(
    emulator: Emulator,
    data_dir: Path,
    log_path: Path,
    *,
    settings: dict[str, str] | None = None,
    profile_to: Path | None = None,
) -> Gateway:
    """Start a one-worker gateway wired to ``emulator`` and wait for ``/health``.

    Args:
        emulator: the upstream.
        data_dir: a fresh ``DATA_DIR``.
        log_path: where its stdout and stderr (the INFO log) go.
        settings: extra environment, e.g. ``GROK2API_NETWORK_TRANSPORT``.
        profile_to: run it under ``cProfile`` writing the stats here on exit.

    Raises:
        RuntimeError: it exited or did not answer in time.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GROK2API_", "SERVER_"))
    }
    port = free_port()
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(port),
            "SERVER_WORKERS": "1",
            "LOG_LEVEL": "INFO",
            "GROK2API_NETWORK_BASE_URL": emulator.url,
            "GROK2API_NETWORK_ASSETS_URL": emulator.url,
            "GROK2API_APP_API_KEY": API_KEY,
            "GROK2API_APP_APP_PASSWORD": ADMIN_KEY,
            "GROK2API_TOKEN_AUTO_REFRESH": "false",
            "GROK2API_TOKEN_BASIC_QUOTA": str(HUGE_QUOTA),
            # The load comes from one address; the per-address limit (on by
            # default) would turn the benchmark into a measure of 429s.
            "GROK2API_SECURITY_RATE_LIMIT_ENABLED": "false",
            **(settings or {}),
        }
    )
    command = [sys.executable]
    if profile_to is not None:
        command += ["-m", "cProfile", "-o", str(profile_to)]
    command += ["-m", "grok2api.cli", "serve"]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=log_file, cwd=REPO
        )
    gateway = Gateway(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited at start-up; see {log_path}")
        try:
            if httpx.get(f"{gateway.url}/health", timeout=1).status_code == 200:
                return gateway
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the gateway did not start in 60 s; see {log_path}")


@attrs.define
class Floor:
    """A running ``bench.floor`` process: the server stack without the gateway."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int:
        return _stop(self.process)


def start_floor(answers_path: Path, log_path: Path) -> Floor:
    """Start ``python -m bench.floor`` answering with the bytes in ``answers_path``.

    Raises:
        RuntimeError: it exited or did not answer in time.
    """
    port = free_port()
    command = [sys.executable, "-m", "bench.floor", "--port", str(port)]
    command += ["--answers", str(answers_path)]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=log_file, cwd=REPO)
    floor = Floor(port, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the floor server exited at start-up; see {log_path}")
        try:
            httpx.post(f"http://127.0.0.1:{port}/", content=b"{}", timeout=1)
            return floor
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the floor server did not answer in 60 s; see {log_path}")
