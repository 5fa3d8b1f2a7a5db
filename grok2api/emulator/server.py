"""Running the emulator: inside a Trio program, or in a thread for sync code."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from functools import partial
from urllib.parse import urlsplit

import hypercorn.trio
import trio
from hypercorn.config import Config

from .app import StreamAborted, create_app
from .client import EmulatorControl
from .state import EmulatorState

__all__ = ["run_emulator_in_thread", "serve_emulator"]

logger = logging.getLogger(__name__)


class _DropScriptedAborts(logging.Filter):
    """Keep the deliberate ``cut`` aborts out of the server's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BaseExceptionGroup):
            _, rest = exc.split(StreamAborted)
            return rest is not None
        return not isinstance(exc, StreamAborted)


_server_log = logging.getLogger(__name__ + ".hypercorn")
_server_log.addFilter(_DropScriptedAborts())


def _hypercorn_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.errorlog = _server_log
    config.accesslog = None
    # Open streams (stalls) are only test fixtures; do not hold shutdown long.
    config.graceful_timeout = 1.0
    return config


async def serve_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    state: EmulatorState | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the emulator until cancelled.

    Args:
        host: address to bind; keep it on loopback.
        port: port to bind; 0 picks a free one.
        state: the state to serve; a fresh :class:`EmulatorState` if omitted.
        task_status: receives the bound port once the socket listens.
    """
    app = create_app(state)
    config = _hypercorn_config(host, port)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn.trio.serve, app, config))
        bound = urlsplit(binds[0]).port
        if bound is None:
            raise RuntimeError(f"could not read the bound port from {binds!r}")
        logger.info("emulator listening on %s", binds[0])
        task_status.started(bound)


@contextlib.contextmanager
def run_emulator_in_thread(
    host: str = "127.0.0.1", port: int = 0, *, state: EmulatorState | None = None
) -> Iterator[tuple[str, EmulatorControl]]:
    """Run an emulator in a background thread for the duration of a block.

    Args:
        host: address to bind.
        port: port to bind; 0 picks a free one.
        state: the state to serve. Touch it only through the control API
            while the block runs: it belongs to the emulator's thread.

    Yields:
        the base URL and an :class:`EmulatorControl` bound to it.
    """
    ready: queue.Queue[tuple[int, trio.lowlevel.TrioToken, trio.CancelScope]] = (
        queue.Queue()
    )
    failures: list[BaseException] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(
                    partial(serve_emulator, host, port, state=state)
                )
                ready.put((bound, trio.lowlevel.current_trio_token(), scope))

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # handed to the caller's thread below
            failures.append(exc)

    thread = threading.Thread(target=target, name="grok-emulator", daemon=True)
    thread.start()
    while True:
        try:
            bound, trio_token, scope = ready.get(timeout=0.05)
            break
        except queue.Empty:
            if not thread.is_alive():
                raise RuntimeError("the emulator failed to start") from (
                    failures[0] if failures else None
                )

    url_host = f"[{host}]" if ":" in host else host
    base_url = f"http://{url_host}:{bound}"
    control = EmulatorControl(base_url)
    try:
        yield base_url, control
    finally:
        control.close()
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(scope.cancel, trio_token=trio_token)
        thread.join(10)
        if failures:
            raise RuntimeError("the emulator thread failed") from failures[0]
