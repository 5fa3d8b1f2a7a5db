"""A real ``redis-server`` for tests: on a free loopback port, in a throwaway
folder, stopped afterwards.

::

    from grok2api.testing.redis_server import run_redis_server

    with run_redis_server() as server:
        storage = create_redis_storage(server.url, tmp_path)

The server binary comes from the Debian package ``redis-server``. When it is
missing, :class:`RedisServer` raises :class:`RedisServerMissing` rather than
letting a test skip: a storage suite that silently did not run proves nothing.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "RedisServerMissing", "run_redis_server"]

_BINARY = "redis-server"


class RedisServerMissing(RuntimeError):
    """The ``redis-server`` binary is not installed."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int, password: str | None) -> bool:
    """Whether the server on ``port`` answers PING with PONG (not LOADING)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            request = b"PING\r\n"
            if password is not None:
                secret = password.encode()
                request = (
                    b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret)
                    + request
                )
            sock.sendall(request)
            seen = b""
            while b"PONG" not in seen and b"-" not in seen:
                chunk = sock.recv(256)
                if not chunk:
                    return False
                seen += chunk
            return b"+PONG" in seen
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1``.

    Args:
        data_dir: the server's working folder (AOF files and its log).
        port: the port to listen on; a free one when None. It stays the same
            across :meth:`restart`.
        appendonly: keep an append-only file, so that data survives a
            restart; off by default (no persistence at all).
        password: require this password (``requirepass``).
        binary: the server executable; ``redis-server`` on ``PATH`` by default.

    Raises:
        RedisServerMissing: the binary cannot be found.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = False,
        password: str | None = None,
        binary: str | None = None,
    ) -> None:
        found = shutil.which(binary or _BINARY)
        if found is None:
            raise RedisServerMissing(
                f"{binary or _BINARY} is not installed; the Redis storage tests "
                "need a real server: apt-get install redis-server"
            )
        self.binary = found
        self.data_dir = data_dir
        self.port = _free_port() if port is None else port
        self.appendonly = appendonly
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """A ``redis://`` URL for db 0, with the password when there is one."""
        auth = "" if self.password is None else f":{self.password}@"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING.

        Raises:
            RuntimeError: the server exited or did not answer in ``timeout``.
        """
        if self.process is not None:
            raise RuntimeError("the redis server is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not _answers_ping(self.port, self.password):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server on port {self.port} did not start:\n{self.log()}"
                )
            # Waiting on another process; there is nothing to wait on but time.
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, which flushes the AOF); idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port and data folder."""
        self.stop()
        self.start()

    def log(self) -> str:
        """The server's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def run_redis_server(
    data_dir: Path | None = None,
    *,
    appendonly: bool = False,
    password: str | None = None,
) -> Iterator[RedisServer]:
    """A running :class:`RedisServer`, in a temporary folder unless given one."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = RedisServer(data_dir, appendonly=appendonly, password=password)
        with server:
            yield server
