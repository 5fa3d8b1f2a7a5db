"""A small pool of synchronous SQL connections, used from Trio.

Why threads: Trio has no native async driver for PostgreSQL or MySQL (asyncpg
and aiomysql are asyncio-only, and running them through an asyncio bridge
would put a second event loop in every worker). The mature synchronous
drivers, psycopg 3 and PyMySQL, are therefore called from worker threads with
:func:`trio.to_thread.run_sync`. A storage call is short (a handful of
statements on an indexed row), so a thread hop costs a few tens of
microseconds against a network round trip that costs far more.

Each process keeps a pool of at most ``connections`` connections and a
:class:`trio.CapacityLimiter` of the same size: a caller that holds the
limiter is guaranteed a connection, and a connection is never used by two
threads at once. Connections are made lazily, so a backend opened while the
server is down only fails the calls made during the outage.

Every call is bounded by ``timeout``, counted from when it is made:

* waiting for a free connection is cancelled at the deadline;
* connecting is bounded by the driver's connect timeout;
* every statement is bounded by a server-side statement and lock timeout,
  and PyMySQL's socket reads and writes by their own timeouts.

Once a thread has started, Trio cannot interrupt it; the thread finishes,
hands its connection back or discards it, and only then does the caller see
the result. So a call that fails has rolled back its transaction, which keeps
the promise that a failed call wrote nothing.

Errors: each driver's exceptions become grok2api errors at exactly one place,
:meth:`Driver.translate` (see :mod:`.postgres` and :mod:`.mysql`); this
module only asks it. A connection that failed with an outage is closed, and
so are the idle ones, which were made to the same server and are most likely
dead too; the next call connects afresh, so a database restart needs no
gateway restart.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import trio

from grok2api.errors import StorageError, StorageUnavailable

from .urls import ConnectionSpec

__all__ = ["Database", "Driver", "Row", "Session"]

T = TypeVar("T")
Row = dict[str, Any]
Params = Mapping[str, Any]

#: How often a deadlock or serialisation failure is retried within one call.
_RETRIES = 3


class _StaleConnection(Exception):
    """A connection taken from the pool turned out to be dead."""

    def __init__(self, error: StorageError) -> None:
        super().__init__(str(error))
        self.error = error


class Session(abc.ABC):
    """One open connection, with the few operations the SQL modules need.

    Statements use ``%(name)s`` placeholders, which both drivers bind on the
    client side; a literal percent sign is written ``%%``.
    """

    @abc.abstractmethod
    def execute(self, sql: str, params: Params | None = None) -> int:
        """Run a statement; returns the number of rows it matched."""

    @abc.abstractmethod
    def one(self, sql: str, params: Params | None = None) -> Row | None:
        """The first row of a query, or None."""

    @abc.abstractmethod
    def all(self, sql: str, params: Params | None = None) -> list[Row]:
        """Every row of a query."""

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """A transaction, committed on success and rolled back on error."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection; never raises."""


class Driver(abc.ABC):
    """What differs between PostgreSQL and MySQL/MariaDB: connecting, errors,
    and the few pieces of SQL the two dialects spell differently."""

    #: ``postgresql`` or ``mysql``.
    name: str = ""
    #: The ``ORDER BY`` term that walks least recently used first.
    lru_order: str = ""

    @abc.abstractmethod
    def connect(self, spec: ConnectionSpec, timeout: float) -> Session:
        """A new connection with its session timeouts set to ``timeout``."""

    @abc.abstractmethod
    def translate(self, exc: BaseException) -> StorageError | None:
        """The grok2api error for a driver error, or None if it is not one."""

    @abc.abstractmethod
    def is_retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a deadlock or serialisation failure whose
        transaction was rolled back and may simply run again."""

    @abc.abstractmethod
    def migrate(self, session: Session, timeout: float) -> int:
        """Create or migrate the schema under a lock; returns the version
        found before."""

    @abc.abstractmethod
    def ignore_duplicates(self, insert: str) -> str:
        """``insert`` (an ``INSERT INTO ... VALUES ...``) made to skip rows
        whose primary key exists; its row count is then the rows added."""

    @abc.abstractmethod
    def on_conflict_update(self, key: str) -> str:
        """The clause after an ``INSERT ... VALUES`` that turns it into an
        upsert on the unique ``key`` columns; the assignments follow it.

        In the assignments, a stored column is written qualified with its
        table (``request_stats.requests``) and the inserted value as
        :meth:`inserted` spells it. No assignment may read a column that an
        earlier one writes: MySQL applies them left to right.
        """

    @abc.abstractmethod
    def inserted(self, column: str) -> str:
        """The value an upsert tried to insert into ``column``."""

    @abc.abstractmethod
    def roll_windows_sql(self, elapsed: str) -> str:
        """An ``UPDATE`` that refills the tokens matching ``elapsed`` (their
        quota window ran out), walking the window index."""

    @abc.abstractmethod
    def analyze_sql(self) -> str:
        """The statement that refreshes the planner's statistics of
        ``tokens``, run after bulk writes so the walks keep their indexes."""

    @abc.abstractmethod
    def use_index(self, index: str) -> str:
        """A hint placed after ``FROM tokens`` that makes a walk follow
        ``index`` (empty where the planner needs none)."""

    @abc.abstractmethod
    def has_tag(self, params: dict[str, Any], tag: str) -> str:
        """A condition true when the row's JSON ``tags`` list holds ``tag``."""

    @abc.abstractmethod
    def pick_and_reserve(
        self,
        session: Session,
        *,
        eligible: str,
        order: str,
        index: str,
        reserve: str,
        params: Params,
        skip_locked: bool,
    ) -> Row | None:
        """Inside a transaction, lock the first row matching ``eligible`` in
        ``order`` (walking ``index``) and apply the ``reserve`` assignments.

        Returns the row's ``id``, ``secret`` and ``pool``, or None.
        """


class Database:
    """A bounded pool of connections to one server, used from Trio.

    Args:
        driver: the dialect's driver.
        spec: where to connect.
        timeout: the most seconds one call may take, waiting included.
        connections: how many connections (and threads) this process uses.
    """

    def __init__(
        self,
        driver: Driver,
        spec: ConnectionSpec,
        *,
        timeout: float = 5.0,
        connections: int = 4,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if connections < 1:
            raise ValueError(f"connections must be at least 1, got {connections!r}")
        self.driver = driver
        self.spec = spec
        self.timeout = timeout
        self._admit = trio.CapacityLimiter(connections)
        # Never contended: it keeps these calls off Trio's shared default
        # thread limiter, whose other users could otherwise delay us.
        self._threads = trio.CapacityLimiter(connections)
        self._lock = threading.Lock()
        # Idle connections with the monotonic time they were handed back.
        self._free: list[tuple[Session, float]] = []
        self._closed = True

    async def open(self) -> None:
        """Connect once and bring the schema up to date."""
        self._closed = False
        await self.run(lambda session: self.driver.migrate(session, self.timeout))

    async def aclose(self) -> None:
        """Close the idle connections; busy ones close when their call ends."""
        with self._lock:
            self._closed = True
            idle, self._free = self._free, []
        for session, _ in idle:
            session.close()

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a worker thread within the timeout.

        ``work`` must keep its writes inside :meth:`Session.transaction`
        blocks: after a deadlock it may run again.

        Raises:
            StorageUnavailable: the storage is closed, the server cannot be
                reached, or the call ran out of time.
            StorageError: the server rejected the call for another reason.
        """
        if self._closed:
            raise StorageUnavailable("The SQL storage is closed.")
        deadline = time.monotonic() + self.timeout
        admitted = False
        with trio.move_on_after(self.timeout):
            await self._admit.acquire()
            admitted = True
        if not admitted:
            raise StorageUnavailable(
                f"The SQL storage had no free connection within {self.timeout} s; "
                "try again later."
            )
        try:
            return await trio.to_thread.run_sync(
                functools.partial(self._call, work, deadline), limiter=self._threads
            )
        finally:
            self._admit.release()

    # -- worker thread side -------------------------------------------------

    def _call(self, work: Callable[[Session], T], deadline: float) -> T:
        try:
            return self._call_once(work, deadline)
        except _StaleConnection as stale:
            # A pooled connection died with the server (a restart): the
            # server rolled its transaction back, so the work runs again on a
            # new connection, once.
            if time.monotonic() > deadline:
                raise stale.error from stale
            return self._call_once(work, deadline)

    def _call_once(self, work: Callable[[Session], T], deadline: float) -> T:
        for attempt in range(_RETRIES + 1):
            with self._session() as session:
                if time.monotonic() > deadline:
                    raise StorageUnavailable(
                        f"The SQL storage did not answer within {self.timeout} s."
                    )
                try:
                    return work(session)
                except Exception as exc:
                    if attempt < _RETRIES and self.driver.is_retryable(exc):
                        continue
                    raise
        raise AssertionError("unreachable")  # the loop returns or raises

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        session = None
        reused = False
        try:
            session, reused = self._checkout()
            yield session
        except Exception as exc:
            error = self.driver.translate(exc)
            if error is None:
                if session is not None:
                    self._checkin(session)
                raise
            if isinstance(error, StorageUnavailable):
                # A dead connection is dropped, and the idle ones with it:
                # they were made to the same server and are most likely dead.
                if session is not None:
                    session.close()
                self._drop_idle()
                if reused:
                    raise _StaleConnection(error) from exc
            elif session is not None:
                self._checkin(session)
            raise error from exc
        else:
            self._checkin(session)

    def _checkout(self) -> tuple[Session, bool]:
        """A connection, and whether it was reused from the pool."""
        with self._lock:
            if self._free:
                return self._free.pop()[0], True
        # The limiter guarantees the pool never grows past its size.
        return self.driver.connect(self.spec, self.timeout), False

    def _checkin(self, session: Session) -> None:
        with self._lock:
            if not self._closed:
                self._free.append((session, time.monotonic()))
                return
        session.close()

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._free = self._free, []
        for session, _ in idle:
            session.close()
