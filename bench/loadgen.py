"""A lean HTTP/1.1 load generator, run as its own process by ``bench/run.py``.

It speaks just enough HTTP/1.1 (keep-alive, ``Content-Length`` and chunked
bodies) over raw Trio sockets to cost a fraction of what a full client would,
so that on a 2-core machine the gateway, not the load generator, is what the
numbers describe.

Protocol on stdin/stdout, one JSON object per line:

1. the parent writes the job (see :class:`Job`);
2. the child opens its connections, runs ``warmup`` requests and answers
   ``{"event": "ready"}``;
3. the parent writes ``go``; the child runs ``requests`` requests with
   ``concurrency`` connections and answers ``{"event": "result", ...}``.

In ``hold`` mode every connection sends one streaming request, the child
reports ``{"event": "all_open"}`` once each of them has received its first
body byte, then reads them all to the end.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import attrs
import trio

__all__ = ["Job", "main"]


@attrs.frozen
class Job:
    """One load generator's work.

    Attributes:
        host: server address.
        port: server port.
        path: request path.
        headers: extra request headers.
        body: the JSON body, already encoded.
        concurrency: connections, each with one request in flight.
        requests: measured requests in total (``hold``: ignored).
        warmup: unmeasured requests first.
        done_marker: text the end of every body must contain, or empty.
        mode: ``closed`` (a closed loop per connection) or ``hold``.
        stagger: ``hold`` only: seconds between opening two connections.
    """

    host: str
    port: int
    path: str
    headers: dict[str, str]
    body: str
    concurrency: int
    requests: int
    warmup: int = 0
    done_marker: str = ""
    mode: str = "closed"
    stagger: float = 0.0


class _Closed(Exception):
    """The server closed the connection."""


class _Connection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise _Closed("connection closed by the server")
        self.buffer += data

    async def read_until(self, marker: bytes) -> bytes:
        while True:
            index = self.buffer.find(marker)
            if index >= 0:
                end = index + len(marker)
                data = bytes(self.buffer[:end])
                del self.buffer[:end]
                return data
            await self._fill()

    async def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def first_byte(self) -> None:
        if not self.buffer:
            await self._fill()


@attrs.define
class _Outcome:
    status: int
    latency: float
    ttfb: float
    size: int
    complete: bool
    keep_alive: bool


class _Runner:
    def __init__(self, job: Job) -> None:
        self.job = job
        head = [f"POST {job.path} HTTP/1.1", f"Host: {job.host}:{job.port}"]
        head += [f"{name}: {value}" for name, value in job.headers.items()]
        body = job.body.encode()
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        self.marker = job.done_marker.encode()
        self.latencies: list[float] = []
        self.ttfbs: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors: list[str] = []
        self.incomplete = 0
        self.bytes = 0
        self.opened = 0
        self.finished = 0
        self.peak_open = 0
        self.open_at_last = 0
        self.all_open = trio.Event()

    async def _connect(self) -> _Connection:
        stream = await trio.open_tcp_stream(self.job.host, self.job.port)
        return _Connection(stream)

    async def _exchange(self, conn: _Connection, on_first_byte: Any = None) -> _Outcome:
        started = time.perf_counter()
        await conn.stream.send_all(self.request)
        head = await conn.read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        await conn.first_byte()
        ttfb = time.perf_counter() - started
        if on_first_byte is not None:
            on_first_byte()
        size, tail = 0, b""
        if "content-length" in headers:
            tail = await conn.read_exact(int(headers["content-length"]))
            size = len(tail)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                line = await conn.read_until(b"\r\n")
                length = int(line.split(b";")[0], 16)
                if length == 0:
                    await conn.read_until(b"\r\n")
                    break
                chunk = (await conn.read_exact(length + 2))[:-2]
                size += len(chunk)
                tail = (tail + chunk)[-256:]
        latency = time.perf_counter() - started
        complete = status == 200 and (not self.marker or self.marker in tail)
        keep_alive = headers.get("connection", "").lower() != "close"
        return _Outcome(status, latency, ttfb, size, complete, keep_alive)

    def _record(self, outcome: _Outcome) -> None:
        key = str(outcome.status)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        self.latencies.append(outcome.latency)
        self.ttfbs.append(outcome.ttfb)
        self.bytes += outcome.size
        if not outcome.complete:
            self.incomplete += 1

    async def _one(self, holder: list[_Connection | None], measure: bool) -> None:
        # A keep-alive connection may have been closed by the server while
        # idle (between warm-up and the run); retry such a request once on a
        # fresh connection.
        for attempt in range(2):
            conn = holder[0]
            if conn is None:
                conn = holder[0] = await self._connect()
            try:
                outcome = await self._exchange(conn)
            except (_Closed, trio.BrokenResourceError, OSError) as exc:
                holder[0] = None
                if attempt == 1:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    return
                continue
            if not outcome.keep_alive:
                await conn.stream.aclose()
                holder[0] = None
            if measure:
                self._record(outcome)
            return

    async def _closed_loop(
        self, holder: list[_Connection | None], counter: list[int], measure: bool
    ) -> None:
        while counter[0] > 0:
            counter[0] -= 1
            await self._one(holder, measure)

    async def run_phase(
        self, holders: list[list[_Connection | None]], total: int, measure: bool
    ) -> None:
        counter = [total]
        async with trio.open_nursery() as nursery:
            for holder in holders:
                nursery.start_soon(self._closed_loop, holder, counter, measure)

    async def _hold_one(self, index: int) -> None:
        await trio.sleep(index * self.job.stagger)

        def opened() -> None:
            self.opened += 1
            self.peak_open = max(self.peak_open, self.opened - self.finished)
            if self.opened == self.job.concurrency:
                self.open_at_last = self.opened - self.finished
                self.all_open.set()

        try:
            conn = await self._connect()
            outcome = await self._exchange(conn, opened)
            await conn.stream.aclose()
        except (_Closed, trio.BrokenResourceError, OSError, ValueError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.finished += 1
        self._record(outcome)

    async def hold(self) -> None:
        async with trio.open_nursery() as nursery:
            for index in range(self.job.concurrency):
                nursery.start_soon(self._hold_one, index)
            with trio.move_on_after(120):
                await self.all_open.wait()
                # How many were still open when the last one opened: with a
                # slow gateway the first streams may already have ended.
                _emit({"event": "all_open", "open_now": self.open_at_last})


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _main(job: Job) -> None:
    runner = _Runner(job)
    if job.mode == "hold":
        await _wait_for_go()
        started = time.monotonic()
        await runner.hold()
    else:
        holders: list[list[_Connection | None]] = [
            [None] for _ in range(job.concurrency)
        ]
        if job.warmup:
            await runner.run_phase(holders, job.warmup, measure=False)
        await _wait_for_go()
        started = time.monotonic()
        await runner.run_phase(holders, job.requests, measure=True)
        for holder in holders:
            if holder[0] is not None:
                await holder[0].stream.aclose()
    ended = time.monotonic()
    _emit(
        {
            "event": "result",
            "started": started,
            "ended": ended,
            "latencies": [round(v, 6) for v in runner.latencies],
            "ttfbs": [round(v, 6) for v in runner.ttfbs],
            "statuses": runner.statuses,
            "incomplete": runner.incomplete,
            "errors": len(runner.errors),
            "error_samples": runner.errors[:5],
            "bytes": runner.bytes,
            "peak_open": runner.peak_open,
        }
    )


async def _wait_for_go() -> None:
    _emit({"event": "ready"})
    line = await trio.to_thread.run_sync(sys.stdin.readline)
    if line.strip() != "go":
        raise SystemExit(f"expected 'go' on stdin, got {line!r}")


def main() -> None:
    """Read a :class:`Job` from stdin's first line and run it."""
    job = Job(**json.loads(sys.stdin.readline()))
    trio.run(_main, job)


if __name__ == "__main__":
    main()
