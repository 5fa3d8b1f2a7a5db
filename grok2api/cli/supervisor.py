"""Worker processes for ``grok2api serve`` when ``SERVER_WORKERS`` is above one.

The parent creates the listening sockets, then starts one Hypercorn trio
worker per slot as a fresh (spawned) process that inherits them. It serves no
requests itself; it only watches its workers:

* A worker that exits on its own is started again after a short backoff. A
  slot whose workers keep failing at start-up (or die soon after) gives up
  after a few attempts, and the whole server then stops with an error
  instead of spinning.
* SIGTERM or SIGINT stops every worker gracefully: it stops accepting, its
  in-flight requests get ``timeout.shutdown_grace`` seconds, then are
  cancelled. The parent exits 0 once all are gone. A worker that outlives
  the grace by a margin, or a second signal, is killed.
* SIGHUP re-validates the settings, then replaces the workers one at a time:
  the replacement must report ready before the old worker is told to stop,
  so capacity never drops and a broken replacement leaves the old ones
  serving.

Each worker holds one end of a socket pair whose other end the parent keeps.
The worker writes ``ready`` into it once its app has started and it
listens; the parent writes ``stop`` and closes its end to stop the worker.
The parent dying closes it too, so a worker never outlives its supervisor by
more than the grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable
from functools import partial
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import LifespanFailureError, load_application

from grok2api.cli import h11_protocol
from grok2api.cli.serve import begin_draining, listening_sockets
from grok2api.errors import Grok2APIError

__all__ = ["RestartPolicy", "supervise"]

log = logging.getLogger(__name__)

_READY = b"ready"
_STOP = b"stop"


@attrs.frozen(kw_only=True)
class RestartPolicy:
    """How the supervisor restarts workers that exit without being told to.

    Args:
        first_delay: seconds before the first restart of a slot.
        max_delay: the longest wait between restarts; the delay doubles with
            every quick failure in a row up to this.
        max_quick_failures: a slot whose workers fail this many times in a
            row, each at start-up or within ``stable_after`` seconds of
            becoming ready, stops the server with an error.
        stable_after: seconds a worker must have served before its exit no
            longer counts as a quick failure.
        stop_margin: seconds beyond the grace period a stopping worker gets
            before it is killed.
    """

    first_delay: float = 0.25
    max_delay: float = 5.0
    max_quick_failures: int = 5
    stable_after: float = 10.0
    stop_margin: float = 10.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before restarting after ``failures`` quick failures."""
        return float(min(self.max_delay, self.first_delay * 2 ** max(0, failures - 1)))


def supervise(
    config: HypercornConfig,
    *,
    policy: RestartPolicy | None = None,
    before_reload: Callable[[], None] | None = None,
    current_grace: Callable[[], float] | None = None,
) -> int:
    """Serve with ``config.workers`` worker processes until SIGTERM or SIGINT.

    Args:
        config: the Hypercorn configuration every worker serves with; its
            ``application_path`` names the app factory.
        policy: restart backoff and limits; :class:`RestartPolicy` defaults.
        current_grace: returns the shutdown grace in effect now (a runtime
            change included); the workers are given at least that long.
        before_reload: called on SIGHUP before any worker is replaced; a
            :class:`~grok2api.errors.Grok2APIError` from it cancels the reload.

    Returns:
        0 after a requested shutdown, 1 when a worker kept failing.
    """
    sockets = listening_sockets(config)
    try:
        supervisor = _Supervisor(
            config, sockets, policy or RestartPolicy(), current_grace
        )
        return trio.run(partial(supervisor.run, before_reload))
    finally:
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()


class _Worker:
    """One worker process and the parent's end of its control pipe."""

    def __init__(self, slot: int, process: SpawnProcess, control: Connection) -> None:
        self.slot = slot
        self.process = process
        self.pid = process.pid
        self.started_at = trio.current_time()
        self.ready_at: float | None = None
        self.retired = False  # replaced by a reload, not crashed
        self.exited = trio.Event()
        self._control = control

    async def wait_ready(self) -> bool:
        """Wait until the worker listens (True) or is gone (False)."""
        try:
            await trio.lowlevel.wait_readable(self._control)
            self._control.recv_bytes()
        except (trio.ClosedResourceError, EOFError, OSError):
            # Closed by stop() while starting, or the worker died: its end of
            # the pair closed with it.
            return False
        self.ready_at = trio.current_time()
        return True

    async def wait_exit(self) -> int:
        """Wait for the process to end; returns its exit code."""
        await trio.lowlevel.wait_readable(self.process.sentinel)
        self.process.join()
        code = self.process.exitcode
        self.process.close()
        self.stop()
        self.exited.set()
        assert code is not None
        return code

    def stop(self) -> None:
        """Ask the worker to shut down gracefully (idempotent)."""
        if not self._control.closed:
            # The worker takes a bare EOF for its supervisor dying.
            with contextlib.suppress(OSError):
                self._control.send_bytes(_STOP)
            # wait_ready() may be waiting on this descriptor.
            trio.lowlevel.notify_closing(self._control)
            self._control.close()

    def kill(self) -> None:
        if not self.exited.is_set():
            self.process.kill()


class _Supervisor:
    def __init__(
        self,
        config: HypercornConfig,
        sockets: Sockets,
        policy: RestartPolicy,
        current_grace: Callable[[], float] | None = None,
    ) -> None:
        self._config = config
        self._current_grace = current_grace
        self._sockets = sockets
        self._policy = policy
        self._context: SpawnContext = get_context("spawn")
        self._slots: list[_Worker | None] = [None] * config.workers
        self._live: set[_Worker] = set()
        self._stopping = trio.Event()
        self._reloading = False
        self._exit_code = 0
        self._outer: trio.Nursery

    async def run(self, before_reload: Callable[[], None] | None) -> int:
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        with trio.open_signal_receiver(*signals) as received:
            # The outer nursery holds what must not outlive the workers (the
            # signal loop, the stop deadline); it is cancelled once they end.
            async with trio.open_nursery() as outer:
                self._outer = outer
                async with trio.open_nursery() as workers:
                    outer.start_soon(
                        self._serve_signals, received, workers, before_reload
                    )
                    log.info(
                        "starting %d workers on %s",
                        len(self._slots),
                        ", ".join(self._config.bind),
                    )
                    for slot in range(len(self._slots)):
                        workers.start_soon(self._serve_slot, slot)
                # Every worker is gone; stop listening for signals.
                outer.cancel_scope.cancel()
        return self._exit_code

    async def _serve_signals(
        self,
        received: trio.abc.ReceiveChannel[int],
        workers: trio.Nursery,
        before_reload: Callable[[], None] | None,
    ) -> None:
        async for signum in received:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if self._stopping.is_set() or self._reloading:
                    log.info("received SIGHUP while busy; ignored")
                else:
                    log.info("received SIGHUP; replacing workers one at a time")
                    workers.start_soon(self._reload, before_reload)
            elif self._stopping.is_set():
                log.warning("received %s again; killing the workers now", name)
                self._kill_all()
            else:
                log.info("received %s; stopping the workers gracefully", name)
                self._stop()

    def _stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        for worker in self._live:
            worker.stop()
        self._outer.start_soon(self._enforce_stop_deadline)

    async def _enforce_stop_deadline(self) -> None:
        # The workers give requests the grace period and then cancel them
        # themselves; this only catches a worker that is stuck. The grace
        # may have been raised at runtime since start-up.
        started = trio.current_time()
        grace = self._config.graceful_timeout
        if self._current_grace is not None:
            with trio.move_on_after(self._policy.stop_margin):
                try:
                    now = await trio.to_thread.run_sync(
                        self._current_grace, abandon_on_cancel=True
                    )
                    grace = max(grace, now)
                except Grok2APIError as exc:
                    log.warning(
                        "could not read the current shutdown grace (%s); using %gs",
                        exc,
                        grace,
                    )
        await trio.sleep_until(started + grace + self._policy.stop_margin)
        for worker in self._live:
            log.error(
                "worker %d pid=%d did not stop in time; killed it",
                worker.slot,
                worker.pid,
            )
        self._kill_all()

    def _kill_all(self) -> None:
        for worker in self._live:
            worker.kill()

    def _spawn(self, slot: int) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_run_worker,
            args=(self._config, self._sockets, theirs),
            name=f"grok2api-worker-{slot}",
        )
        process.start()
        theirs.close()  # the worker holds it now; its exit must read as EOF
        worker = _Worker(slot, process, ours)
        self._live.add(worker)
        log.debug("worker %d started pid=%d", slot, worker.pid)
        return worker

    async def _reap(self, worker: _Worker) -> int:
        try:
            return await worker.wait_exit()
        finally:
            self._live.discard(worker)

    async def _wait_ready(self, worker: _Worker) -> bool:
        ready = await worker.wait_ready()
        if ready:
            log.info("worker %d ready pid=%d", worker.slot, worker.pid)
        return ready

    async def _serve_slot(self, slot: int) -> None:
        failures = 0
        while not self._stopping.is_set():
            worker = self._slots[slot]
            if worker is None:
                worker = self._slots[slot] = self._spawn(slot)
                await self._wait_ready(worker)
            code = await self._reap(worker)
            if self._stopping.is_set():
                log.info("worker %d pid=%d stopped (%s)", slot, worker.pid, _how(code))
                return
            if worker.retired:
                continue  # a reload put its replacement in the slot
            self._slots[slot] = None

            now = trio.current_time()
            stable = worker.ready_at is not None and (
                now - worker.ready_at >= self._policy.stable_after
            )
            failures = 1 if stable else failures + 1
            if failures >= self._policy.max_quick_failures:
                self._give_up(worker, code, failures)
                return
            delay = self._policy.delay(failures)
            log.warning(
                "worker %d pid=%d %s (%s); starting a new one in %.2gs",
                slot,
                worker.pid,
                "exited" if worker.ready_at is not None else "failed to start",
                _how(code),
                delay,
            )
            with trio.move_on_after(delay):
                await self._stopping.wait()

    def _give_up(self, worker: _Worker, code: int, failures: int) -> None:
        log.error(
            "worker %d failed %d times in a row, at start-up or soon after "
            "(last: pid=%d, %s); stopping the server. The worker's own error "
            "is logged above.",
            worker.slot,
            failures,
            worker.pid,
            _how(code),
        )
        self._exit_code = 1
        self._stop()

    async def _reload(self, before_reload: Callable[[], None] | None) -> None:
        self._reloading = True
        try:
            if before_reload is not None:
                try:
                    # In a thread: the check may run a Trio loop of its own.
                    await trio.to_thread.run_sync(before_reload)
                except Grok2APIError as exc:
                    log.error("not reloading; the workers keep running: %s", exc)
                    return
            for slot in range(len(self._slots)):
                if not await self._replace(slot):
                    return
            log.info("reload done: every worker was replaced")
        finally:
            self._reloading = False

    async def _replace(self, slot: int) -> bool:
        old = self._slots[slot]
        if old is None or self._stopping.is_set():
            return not self._stopping.is_set()  # a restart is under way
        new = self._spawn(slot)
        ready = await self._wait_ready(new)
        if not ready or self._stopping.is_set() or self._slots[slot] is not old:
            new.stop()
            code = await self._reap(new)
            if not ready and not self._stopping.is_set():
                log.error(
                    "reload stopped: a new worker %d failed to start (%s); "
                    "the running workers keep serving",
                    slot,
                    _how(code),
                )
                return False
            return not self._stopping.is_set()
        old.retired = True
        self._slots[slot] = new
        old.stop()
        await old.exited.wait()  # one worker at a time
        return True


def _how(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


# -- inside a worker process ---------------------------------------------------


def _run_worker(config: HypercornConfig, sockets: Sockets, control: Connection) -> None:
    # SIGHUP is the supervisor's to act on; a terminal hang-up must not kill
    # workers. SIGTERM and SIGINT are ignored until the server listens, then
    # stop this worker gracefully (see _until_stopped), which covers a
    # service manager that signals every process of the group at once.
    for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.listen(config.backlog)
    app = _StartupWatch(
        load_application(config.application_path, config.wsgi_max_body_size)
    )
    try:
        trio.run(_serve_worker, app, config, sockets, control)
    except* LifespanFailureError:
        # The app has logged why; a traceback of Hypercorn's would only hide it.
        log.error("worker pid=%d could not start; see the error above", os.getpid())
        raise SystemExit(1) from None


class _StartupWatch:
    """Wraps the ASGI app to see whether its start-up really completed.

    Hypercorn starts listening even when the app's start-up failed, and only
    then tears the worker down; the supervisor must not take that for ready.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self.started = False

    async def __call__(
        self, scope: Any, receive: Any, send: Any, *spawn_args: Any
    ) -> None:
        async def watched(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.started = True
            await send(message)

        lifespan = scope["type"] == "lifespan"
        await self._app(scope, receive, watched if lifespan else send, *spawn_args)


async def _serve_worker(
    app: _StartupWatch,
    config: HypercornConfig,
    sockets: Sockets,
    control: Connection,
) -> None:
    h11_protocol.install()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(
                worker_serve,
                app,
                config,
                sockets=sockets,
                shutdown_trigger=partial(_until_stopped, config, control),
            )
        )
        if not app.started:
            raise LifespanFailureError("startup", "the app did not report ready")
        # A broken pipe means the supervisor is gone; _until_stopped saw it too.
        with contextlib.suppress(BrokenPipeError):
            control.send_bytes(_READY)


async def _until_stopped(config: HypercornConfig, control: Connection) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait_for_supervisor, control, nursery.cancel_scope)
        nursery.start_soon(_wait_for_signal, nursery.cancel_scope)
    await begin_draining(config)


async def _wait_for_supervisor(control: Connection, done: trio.CancelScope) -> None:
    # The supervisor writes only to say stop; an end of file without that
    # means it died, and serving on unwatched is worse than stopping.
    await trio.lowlevel.wait_readable(control)
    try:
        control.recv_bytes()
        log.info("worker stopping: asked by the supervisor")
    except (EOFError, OSError):
        log.warning("worker stopping: its supervisor is gone")
    done.cancel()


async def _wait_for_signal(done: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
        async for signum in received:
            log.info("worker stopping: received %s", signal.Signals(signum).name)
            done.cancel()
            return
