"""Connections to the SQLite file, the threads that use them, and the one place
where :mod:`sqlite3` errors become grok2api errors.

Trio has no asynchronous SQLite driver, so every storage call is a plain
function run in a worker thread with :func:`trio.to_thread.run_sync`, except
the few short writes every request makes, which :meth:`Database.run_short`
tries on the event loop first (see there). Each
process keeps a **small pool of connections** (four by default) rather than one
connection per thread: Trio's thread cache decides which thread runs a call,
and a thread-local connection would outlive the thread or leak when the cache
retires it. A :class:`trio.CapacityLimiter` of the pool's size admits callers,
so a caller that holds the limiter is guaranteed a free connection, and no
connection is ever used by two threads at once.

Every call is bounded by the ``timeout`` given to :class:`Database`, counted
from when the call is made:

* waiting for a connection is cancelled at the deadline;
* SQLite's busy handler waits for another process's write lock only until the
  deadline (``PRAGMA busy_timeout`` is set to the time left);
* a progress handler interrupts a statement that runs past the deadline.

Once a thread has started, Trio cannot cancel it: the thread always finishes
and hands its connection back, so a caller cancelled meanwhile never leaves a
connection behind. A call that runs out of time raises
:class:`~grok2api.errors.StorageUnavailable` with its transaction rolled back,
which keeps the promise that a failed call wrote nothing.

Writes use ``BEGIN IMMEDIATE`` (see :func:`immediate`): the write lock is taken
up front, so two processes never both read and then fail to upgrade to a
write, which under WAL would fail at once instead of waiting.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import trio

from grok2api import StorageError, StorageUnavailable

from .schema import migrate

__all__ = ["Database", "first", "immediate", "snapshot"]

T = TypeVar("T")

# Primary result codes that mean "not now" rather than "bad data".
_OUTAGE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_READONLY,
    }
)

# How many virtual machine steps run between two deadline checks.
_PROGRESS_STEPS = 2000

#: The longest a call made with :meth:`Database.run_short` may hold the event
#: loop before it is rolled back and handed to a worker thread (seconds).
INLINE_BUDGET = 0.005
_INLINE_PROGRESS_STEPS = 500
# "Not now" answers after which the same call is simply run in a thread.
_RETRY_IN_THREAD = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT}
)


class _Connection(sqlite3.Connection):
    """A connection that knows its busy timeout.

    Every inline call wants no waiting at all; a pragma statement per call
    to say so again would cost as much as a small query.
    """

    busy_timeout_ms = -1

    def wait_when_busy(self, milliseconds: int) -> None:
        if milliseconds != self.busy_timeout_ms:
            self.execute(f"PRAGMA busy_timeout = {milliseconds}")
            self.busy_timeout_ms = milliseconds


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: the write lock is taken before the first read."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    # Interrupting a COMMIT half way would leave the caller unsure whether it
    # happened; the work is done, so let it finish.
    conn.set_progress_handler(None, 0)
    conn.execute("COMMIT")


@contextlib.contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction, so several SELECTs see the same state."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


class Database:
    """A pool of SQLite connections to one file, used from Trio.

    Args:
        path: the database file; its folder is created on :meth:`open`.
        timeout: the most seconds one call may take, waiting included.
        connections: how many connections (and threads) this process uses.
    """

    def __init__(
        self, path: Path, *, timeout: float = 5.0, connections: int = 4
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if connections < 1:
            raise ValueError(f"connections must be at least 1, got {connections!r}")
        self.path = path
        self.timeout = timeout
        self._admit = trio.CapacityLimiter(connections)
        self._short_writes = trio.CapacityLimiter(1)
        # Never contended: it only keeps these calls off Trio's shared default
        # thread limiter, whose other users could otherwise delay us.
        self._threads = trio.CapacityLimiter(connections)
        self._lock = threading.Lock()
        self._free: list[_Connection] = []
        self._closed = False

    async def open(self) -> None:
        """Create the folder and file, switch to WAL and migrate the schema."""
        self._closed = False
        try:
            await trio.to_thread.run_sync(self._create_private_file)
        except OSError as exc:
            raise StorageUnavailable(
                f"The local storage folder {self.path.parent} cannot be created: {exc}"
            ) from exc
        await self.run(self._prepare)

    def _create_private_file(self) -> None:
        # The file holds account tokens: only the owner may read it. SQLite
        # gives its -wal and -shm files the main file's permissions.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))

    async def aclose(self) -> None:
        """Close the idle connections; busy ones close when their call ends."""
        with self._lock:
            self._closed = True
            idle, self._free = self._free, []
        for conn in idle:
            conn.close()

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` in a worker thread within the timeout.

        Raises:
            StorageUnavailable: the database is closed, locked by another
                process for longer than the timeout, or cannot be opened.
            StorageError: SQLite rejected the call for another reason.
        """
        if self._closed:
            raise StorageUnavailable("The local storage is closed.")
        deadline = time.monotonic() + self.timeout
        admitted = False
        with trio.move_on_after(self.timeout):
            await self._admit.acquire()
            admitted = True
        if not admitted:
            raise StorageUnavailable(
                f"The local storage had no free connection within {self.timeout} s; "
                "try again later."
            )
        try:
            return await trio.to_thread.run_sync(
                functools.partial(self._call, work, deadline), limiter=self._threads
            )
        finally:
            self._admit.release()

    async def run_short(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run a short write that every request makes (a lease, a commit, a
        limiter step) on the event loop when SQLite can do it at once, and in
        a worker thread otherwise.

        A thread round trip costs more CPU than these statements do. So the
        call first runs here without waiting for SQLite: another process
        holding the write lock, or a statement running past
        ``INLINE_BUDGET``, rolls it back untouched, and it runs again
        through :meth:`run` with the usual timeout. The loop is never
        blocked longer than the budget.

        These writes take turns within the process. SQLite admits one writer
        at a time anyway, and without turns a write sent to a thread holds
        the file's lock long enough that the next ones find it locked and
        go to threads too, until every write of a busy worker pays the
        round trip.
        """
        if self._closed:
            raise StorageUnavailable("The local storage is closed.")
        deadline = trio.current_time() + self.timeout
        await _take(self._short_writes, deadline)
        try:
            await _take(self._admit, deadline)
            try:
                done, result = self._call_inline(work)
            finally:
                self._admit.release()
            if done:
                return result  # type: ignore[return-value]
            return await self.run(work)
        finally:
            self._short_writes.release()

    def _call_inline(
        self, work: Callable[[sqlite3.Connection], T]
    ) -> tuple[bool, T | None]:
        try:
            conn = self._checkout()
        except sqlite3.Error:
            return False, None
        try:
            conn.wait_when_busy(0)
            conn.set_progress_handler(
                functools.partial(_past, time.monotonic() + INLINE_BUDGET),
                _INLINE_PROGRESS_STEPS,
            )
            try:
                return True, work(conn)
            finally:
                conn.set_progress_handler(None, 0)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _RETRY_IN_THREAD:
                return False, None
            raise _translate(exc) from exc
        finally:
            self._checkin(conn)

    # -- worker thread side -------------------------------------------------

    def _call(self, work: Callable[[sqlite3.Connection], T], deadline: float) -> T:
        try:
            conn = self._checkout()
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        try:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageUnavailable(
                    f"The local storage did not answer within {self.timeout} s."
                )
            conn.wait_when_busy(max(1, int(left * 1000)))
            conn.set_progress_handler(
                functools.partial(_past, deadline), _PROGRESS_STEPS
            )
            try:
                return work(conn)
            finally:
                conn.set_progress_handler(None, 0)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        finally:
            self._checkin(conn)

    def _checkout(self) -> _Connection:
        with self._lock:
            if self._free:
                return self._free.pop()
        # The limiter guarantees the pool never grows past its size.
        conn = sqlite3.connect(
            self.path,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
        conn.row_factory = sqlite3.Row
        # NORMAL is durable across application crashes in WAL mode; only a
        # power loss can drop the last transactions.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _checkin(self, conn: _Connection) -> None:
        with self._lock:
            if not self._closed:
                self._free.append(conn)
                return
        conn.close()

    def _prepare(self, conn: sqlite3.Connection) -> None:
        mode = switch_to_wal(conn, self.timeout)
        if str(mode).lower() != "wal":
            raise StorageError(
                f"The local storage at {self.path} cannot use WAL mode "
                f"(got {mode!r}); put DATA_DIR on a local disk."
            )
        migrate(conn)


def switch_to_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """Turn on WAL mode for the file of ``conn``; returns the mode it has now.

    WAL mode is stored in the file, so usually it is already on. Turning it
    on needs the file to itself, and SQLite answers "locked" at once (no busy
    wait) to all but one of several connections trying at the same moment,
    as workers starting together on a new file do; those try again until
    ``timeout`` seconds have passed.
    """
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    deadline = time.monotonic() + timeout
    while mode.lower() != "wal":
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        else:
            break
    return mode


async def _take(limiter: trio.CapacityLimiter, deadline: float) -> None:
    """Take a slot of ``limiter`` by ``deadline`` (Trio time).

    Raises:
        StorageUnavailable: no slot came free in time.
    """
    # Uncontended, a slot is taken without a trip through the scheduler.
    try:
        limiter.acquire_nowait()
        return
    except trio.WouldBlock:
        pass
    with trio.move_on_at(deadline):
        await limiter.acquire()
        return
    raise StorageUnavailable(
        "The local storage had no free connection in time; try again later."
    )


def _past(deadline: float) -> int:
    return 1 if time.monotonic() > deadline else 0


def _translate(exc: sqlite3.Error) -> StorageError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _OUTAGE_CODES:
        return StorageUnavailable(
            f"The local storage is unavailable ({exc}); try again later."
        )
    return StorageError(f"The local storage failed: {exc}")


def first(cursor: sqlite3.Cursor) -> sqlite3.Row | None:
    """The first row of a statement, run to completion.

    A half-read ``RETURNING`` statement would still be active at ``COMMIT``;
    reading every row finishes it.
    """
    rows = cursor.fetchall()
    return rows[0] if rows else None
