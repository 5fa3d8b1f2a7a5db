"""Ending in-flight chat completions cleanly when the server shuts down.

On SIGTERM Hypercorn stops accepting, gives in-flight requests its graceful
timeout, then cancels whatever is left: a stream stops mid-answer and a
client still waiting gets no answer at all. A little before that moment each
gateway of the process cancels its own in-flight completions instead, so
each still ends the way the API promises: a 503 envelope when nothing was
sent yet, an error event and ``[DONE]`` after the first byte.

The grace is ``timeout.shutdown_grace`` as the gateway has it when the
shutdown begins, so a runtime change made through the admin API counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio

__all__ = ["Drain", "begin_shutdown", "registered"]

#: The most a completion is ended before the server's own deadline, leaving
#: time to write its last bytes.
_END_EARLY_MAX = 1.0


class Drain:
    """The in-flight completions of one gateway, ended together on shutdown."""

    def __init__(self) -> None:
        self._scopes: set[trio.CancelScope] = set()
        self._idle: trio.Event | None = None
        self.ended = False

    @contextmanager
    def guard(self) -> Iterator[trio.CancelScope]:
        """One completion in flight for as long as the block runs.

        Enter the scope it yields around the work a shutdown may end; its
        ``cancelled_caught`` then says the shutdown ended it, and the rest
        of the block writes the answer's end.
        """
        scope = trio.CancelScope()
        if self.ended:
            scope.cancel()
        self._scopes.add(scope)
        try:
            yield scope
        finally:
            self._scopes.discard(scope)
            if not self._scopes and self._idle is not None:
                self._idle.set()

    def end_all(self) -> None:
        self.ended = True
        for scope in list(self._scopes):
            scope.cancel()

    async def wait_until_idle(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, until no completion is in flight."""
        if not self._scopes:
            return
        self._idle = trio.Event()
        with trio.move_on_after(timeout):
            await self._idle.wait()


class _Registered:
    def __init__(
        self, drain: Drain, grace: Callable[[], float], nursery: trio.Nursery
    ) -> None:
        self.drain = drain
        self.grace = grace
        self.nursery = nursery


_OPEN: set[_Registered] = set()


@contextmanager
def registered(
    drain: Drain, grace: Callable[[], float], nursery: trio.Nursery
) -> Iterator[None]:
    """Let :func:`begin_shutdown` reach ``drain`` while the block runs.

    Args:
        grace: returns the seconds in-flight work gets once shutdown began.
        nursery: where the wait until the end of the grace runs.
    """
    entry = _Registered(drain, grace, nursery)
    _OPEN.add(entry)
    try:
        yield
    finally:
        _OPEN.discard(entry)


async def begin_shutdown() -> float | None:
    """Start the grace period of every open gateway in this process.

    A grace too short to end answers before it runs out ends them at once,
    and returns once their ends are written (or after at most a second):
    the server's own cancellation, which starts when this returns, would
    otherwise cut them first.

    Returns:
        the longest grace among them (the server should wait that long),
        or None when no gateway is open.
    """
    longest: float | None = None
    for entry in list(_OPEN):
        grace = entry.grace()
        if grace < _END_EARLY_MAX:
            entry.drain.end_all()
            await entry.drain.wait_until_idle(_END_EARLY_MAX)
        else:
            entry.nursery.start_soon(
                _end_before_deadline,
                entry.drain,
                grace - min(_END_EARLY_MAX, grace / 5),
            )
        longest = grace if longest is None else max(longest, grace)
    return longest


async def _end_before_deadline(drain: Drain, delay: float) -> None:
    await trio.sleep(delay)
    drain.end_all()
