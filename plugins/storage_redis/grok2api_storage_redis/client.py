"""How calls reach Redis from Trio, and the one place where redis-py errors
become grok2api errors.

redis-py has no Trio support (its asyncio client needs an asyncio loop), so
every storage call is a plain function run with the **synchronous** client in
a worker thread (:func:`trio.to_thread.run_sync`). The cost is a thread hop
per call, measured in the benchmark; the gain is that the event loop never
blocks on a socket and that no second event loop runs beside Trio's.

Threads and connections are sized together. A :class:`trio.CapacityLimiter`
of ``connections`` admits callers, and redis-py's ``ConnectionPool`` holds the
same number of connections, so a thread that runs always finds one free and
the pool never has to refuse. The threads run under a second limiter of the
same size that is never contended; it only keeps these calls off Trio's
default thread limiter, which other parts of the gateway share.

Every call is bounded by ``timeout``, counted from when it is made: waiting
for admission is cancelled at the deadline, and each socket operation of the
running thread is bounded by redis-py's socket timeouts (a thread cannot be
cancelled once started, so it always finishes and hands its connection back).

Retries are switched off in redis-py: a command whose reply was lost may have
run, and re-sending a non-idempotent script would apply it twice. A failed
call raises :class:`~grok2api.errors.StorageUnavailable`; every write is one
script or one ``MULTI`` block, so it either applied entirely or not at all.
redis-py drops a connection that failed and opens a new one on next use,
which is how the backend recovers from a Redis restart by itself.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TypeVar

import redis
import redis.exceptions
import trio

from grok2api.errors import StorageError, StorageUnavailable

__all__ = ["RedisClient", "translate"]

T = TypeVar("T")

# Not a connection problem, although redis-py files them under ConnectionError.
_REFUSED = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
)
# "Not now": the server is gone, loading its data, or cannot take writes.
_OUTAGES = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ClusterDownError,
)


def translate(exc: redis.exceptions.RedisError, where: str) -> StorageError:
    """The grok2api error for a redis-py error raised while talking to ``where``."""
    if isinstance(exc, _REFUSED):
        return StorageError(
            f"Redis at {where} refused our credentials ({exc}); check the password "
            "in SERVER_STORAGE_URL."
        )
    if isinstance(exc, _OUTAGES):
        return StorageUnavailable(
            f"Redis at {where} is unavailable ({exc}); try again later."
        )
    return StorageError(f"Redis at {where} failed: {exc}")


class RedisClient:
    """The synchronous redis-py client, used from Trio through worker threads.

    Args:
        pool: the connection pool; its size must be ``connections``.
        where: how to name the server in error messages (no password).
        timeout: the most seconds a call may wait to be admitted.
        connections: how many calls (and threads) run at once.
    """

    def __init__(
        self,
        pool: redis.ConnectionPool,
        *,
        where: str,
        timeout: float,
        connections: int,
    ) -> None:
        self.pool = pool
        self.redis = redis.Redis(connection_pool=pool)
        self.where = where
        self.timeout = timeout
        self._admit = trio.CapacityLimiter(connections)
        self._threads = trio.CapacityLimiter(connections)
        self.closed = True

    async def run(self, work: Callable[[redis.Redis], T]) -> T:
        """Run ``work(client)`` in a worker thread within the timeout.

        Raises:
            StorageUnavailable: Redis cannot be reached, timed out or is
                loading; or this client is closed or saturated.
            StorageError: Redis rejected the call for another reason.
        """
        if self.closed:
            raise StorageUnavailable("The Redis storage is closed.")
        deadline = time.monotonic() + self.timeout
        admitted = False
        with trio.move_on_after(self.timeout):
            await self._admit.acquire()
            admitted = True
        if not admitted:
            raise StorageUnavailable(
                f"The Redis storage had no free connection within {self.timeout} s; "
                "try again later."
            )
        try:
            return await trio.to_thread.run_sync(
                functools.partial(self._call, work, deadline), limiter=self._threads
            )
        finally:
            self._admit.release()

    def _call(self, work: Callable[[redis.Redis], T], deadline: float) -> T:
        if time.monotonic() > deadline:
            raise StorageUnavailable(
                f"The Redis storage did not answer within {self.timeout} s."
            )
        try:
            return work(self.redis)
        except redis.exceptions.RedisError as exc:
            raise translate(exc, self.where) from exc

    async def aclose(self) -> None:
        """Close every pooled connection. Idempotent."""
        self.closed = True
        await trio.to_thread.run_sync(self.pool.disconnect)
