"""The gateway benchmark: ``.venv/bin/python bench/run.py [--quick]``.

One run starts the bundled Grok emulator and a one-worker gateway (default
INFO logging) as subprocesses, drives them with ``bench/loadgen.py`` processes,
reads the gateway's CPU, memory, threads and upstream sockets from ``/proc``,
and writes ``bench/results/<timestamp>.json`` plus a markdown report on
stdout. ``bench/README.md`` explains every figure and the targets.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make ``bench`` and ``grok2api`` importable from the repo.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attrs
import httpx

from bench import procstat
from bench.pool_bench import run_pool_bench
from bench.servers import (
    API_KEY,
    REPO,
    Emulator,
    Gateway,
    start_emulator,
    start_floor,
    start_gateway,
)
from bench.storage_bench import (
    FULL_STORAGE,
    QUICK_STORAGE,
    render_storage_markdown,
    run_storage_chat,
    run_storage_pool_bench,
)
from grok2api.upstream.statsig import fixed_statsig_id

CONVERSATION_PATH = "/rest/app-chat/conversations/new"
TOKENS = [f"bench-token-{index}" for index in range(4)]
MODEL = "grok-4"
PROMPT = "Write a few words about load testing."
ANSWER_TOKENS = 50

#: The targets of the performance issue (2 cores, one worker, INFO logging).
TARGETS = {
    "cpu_ms_per_request_nonstream": 1.5,
    "cpu_ms_per_request_stream": 2.5,
    "added_p50_ms_c1": 1.5,
    "upstream_calls_per_chat": 1.0,
    "open_streams_rss_mb": 300.0,
    "pool_ratio_100k_1k": 1.2,
}


@attrs.frozen
class Plan:
    """Request counts for one kind of run."""

    requests: dict[int, int]
    warmup: int
    procs: dict[int, int]
    open_streams: int
    open_stream_seconds: float
    pool_sizes: list[int]
    pool_leases: int
    transport_requests: int
    profile: bool


FULL = Plan(
    requests={1: 300, 50: 3000, 200: 3000},
    warmup=200,
    procs={1: 1, 50: 1, 200: 2},
    open_streams=1000,
    open_stream_seconds=20.0,
    pool_sizes=[1_000, 10_000, 100_000],
    pool_leases=2_000,
    transport_requests=3000,
    profile=True,
)
QUICK = Plan(
    requests={1: 30, 50: 150, 200: 300},
    warmup=20,
    procs={1: 1, 50: 1, 200: 1},
    open_streams=300,
    open_stream_seconds=3.0,
    pool_sizes=[1_000, 10_000, 100_000],
    pool_leases=100,
    transport_requests=120,
    profile=False,
)


# -- measuring ---------------------------------------------------------------


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


class _Sampler:
    """Samples the gateway's RSS, threads and upstream sockets in a thread."""

    def __init__(self, pid: int, upstream_port: int, period: float = 0.1) -> None:
        self.pid, self.port, self.period = pid, upstream_port, period
        self.peak_rss_kb = 0
        self.peak_threads = 0
        self.peak_connections = 0
        self.ports_seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        memory = procstat.memory(self.pid)
        self.peak_rss_kb = max(self.peak_rss_kb, memory.rss_kb)
        self.peak_threads = max(self.peak_threads, memory.threads)
        ports = procstat.established_to_port(self.pid, self.port)
        self.peak_connections = max(self.peak_connections, len(ports))
        self.ports_seen |= ports

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def __enter__(self) -> _Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _spawn_loadgen(job: dict[str, Any]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(job) + "\n")
    process.stdin.flush()
    return process


def _expect(process: subprocess.Popen[str], event: str) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"a load generator exited before {event!r}")
    message: dict[str, Any] = json.loads(line)
    if event and message.get("event") != event:
        raise RuntimeError(f"expected {event!r} from a load generator, got {line!r}")
    return message


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_load(
    job: dict[str, Any],
    procs: int,
    *,
    on_ready: Callable[[], None] = lambda: None,
    on_event: Callable[[dict[str, Any]], None] = lambda message: None,
) -> dict[str, Any]:
    """Run one scenario on ``procs`` load generators and merge their results.

    ``on_ready`` runs after every generator finished its warm-up and right
    before they are released, so measurements start exactly there.
    """
    concurrencies = _split(job["concurrency"], procs)
    requests = _split(job["requests"], procs)
    warmups = _split(job.get("warmup", 0), procs)
    children = [
        _spawn_loadgen({**job, "concurrency": c, "requests": r, "warmup": w})
        for c, r, w in zip(concurrencies, requests, warmups, strict=True)
    ]
    try:
        for child in children:
            _expect(child, "ready")
        on_ready()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        early: list[dict[str, Any]] = []
        if job.get("mode") == "hold":
            # Streams that fail never "open": then no all_open comes at all.
            message = _expect(children[0], "")
            if message["event"] == "all_open":
                on_event(message)
            else:
                early.append(message)
        results = early + [_expect(child, "result") for child in children[len(early) :]]
    finally:
        for child in children:
            if child.poll() is None:
                child.wait(30)
    latencies = [v for r in results for v in r["latencies"]]
    ttfbs = [v for r in results for v in r["ttfbs"]]
    statuses: dict[str, int] = {}
    for result in results:
        for status, count in result["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
    return {
        "requests": len(latencies),
        "wall_seconds": wall,
        "rps": len(latencies) / wall if wall > 0 else float("nan"),
        "p50_ms": _percentile(latencies, 0.5) * 1e3,
        "p99_ms": _percentile(latencies, 0.99) * 1e3,
        "mean_ms": statistics.fmean(latencies) * 1e3 if latencies else float("nan"),
        "ttfb_p50_ms": _percentile(ttfbs, 0.5) * 1e3,
        "ttfb_p99_ms": _percentile(ttfbs, 0.99) * 1e3,
        "statuses": statuses,
        "incomplete": sum(r["incomplete"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "error_samples": [s for r in results for s in r["error_samples"]][:5],
        "peak_open": sum(r["peak_open"] for r in results),
    }


# -- scenarios ----------------------------------------------------------------


@attrs.define
class Bench:
    """The processes of one run and the jobs that drive them."""

    emulator: Emulator
    workdir: Path
    plan: Plan
    upstream_body: str = ""

    def gateway_job(self, stream: bool, concurrency: int, requests: int) -> dict:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": stream,
        }
        return {
            "host": "127.0.0.1",
            "port": 0,
            "path": "/v1/chat/completions",
            "headers": {"Authorization": f"Bearer {API_KEY}"},
            "body": json.dumps(body),
            "concurrency": concurrency,
            "requests": requests,
            "warmup": min(self.plan.warmup, max(requests // 5, concurrency)),
            "done_marker": "[DONE]" if stream else '"finish_reason": "stop"',
        }

    def direct_job(self, concurrency: int, requests: int) -> dict:
        # The headers the emulator checks: both sso cookies and a statsig id.
        token = TOKENS[0]
        return {
            "host": "127.0.0.1",
            "port": self.emulator.port,
            "path": CONVERSATION_PATH,
            "headers": {
                "Cookie": f"sso={token}; sso-rw={token}",
                "x-statsig-id": fixed_statsig_id("x1:"),
            },
            "body": self.upstream_body,
            "concurrency": concurrency,
            "requests": requests,
            "warmup": min(self.plan.warmup, max(requests // 5, concurrency)),
            "done_marker": "",
        }

    def new_gateway(
        self, name: str, settings: dict[str, str] | None = None, **kwargs: Any
    ) -> Gateway:
        gateway = start_gateway(
            self.emulator,
            self.workdir / f"data-{name}",
            self.workdir / f"gateway-{name}.log",
            settings=settings,
            **kwargs,
        )
        gateway.add_tokens(TOKENS)
        return gateway

    def capture_upstream_body(self, gateway: Gateway) -> None:
        """Take the exact chat body the gateway sends, for the direct runs."""
        job = self.gateway_job(False, 1, 1)
        job["port"], job["warmup"] = gateway.port, 0
        self.emulator.control.clear_requests()
        run_load(job, 1)
        records = self.emulator.control.requests(
            path=CONVERSATION_PATH, min_count=1, settled=True
        )
        self.upstream_body = json.dumps(records[-1]["body"])

    def upstream_calls(self) -> int:
        records = self.emulator.control.requests(
            path=CONVERSATION_PATH, settled=True, timeout=30
        )
        return len(records)

    def measure_gateway(
        self, gateway: Gateway, job: dict[str, Any], procs: int
    ) -> dict[str, Any]:
        """Run ``job`` against ``gateway`` with CPU, memory and socket readings."""
        job = {**job, "port": gateway.port}
        marks: dict[str, Any] = {}
        sampler = _Sampler(gateway.pid, self.emulator.port)

        def on_ready() -> None:
            self.emulator.control.clear_requests()
            marks["ports_before"] = procstat.established_to_port(
                gateway.pid, self.emulator.port
            )
            marks["time_wait_before"] = procstat.time_wait_pairs(self.emulator.port)
            marks["cpu_before"] = procstat.cpu_seconds(gateway.pid)
            sampler.__enter__()

        try:
            result = run_load(job, procs, on_ready=on_ready)
        finally:
            if "cpu_before" in marks:
                sampler.__exit__()
        cpu = procstat.cpu_seconds(gateway.pid) - marks["cpu_before"]
        ports_after = procstat.established_to_port(gateway.pid, self.emulator.port)
        memory = procstat.memory(gateway.pid)
        closed = (
            procstat.time_wait_pairs(self.emulator.port) - marks["time_wait_before"]
        )
        calls = self.upstream_calls()
        served = result["statuses"].get("200", 0)
        result.update(
            {
                "cpu_seconds": cpu,
                "cpu_ms_per_request": cpu / served * 1e3 if served else None,
                "peak_rss_mb": memory.hwm_kb / 1024,
                "rss_mb_after": memory.rss_kb / 1024,
                "peak_threads": sampler.peak_threads,
                "upstream_calls": calls,
                "upstream_calls_per_chat": calls / served if served else None,
                "upstream_connections_before": len(marks["ports_before"]),
                "upstream_connections_after": len(ports_after),
                "upstream_connections_peak": sampler.peak_connections,
                "upstream_connections_distinct_seen": len(
                    sampler.ports_seen | marks["ports_before"] | ports_after
                ),
                # Connections opened during the run: idle pooled ones from an
                # earlier scenario are not new, so they do not count.
                "upstream_connections_new": len(
                    (sampler.ports_seen | ports_after) - marks["ports_before"]
                ),
                # Connections closed during the run, by who closed them.
                "upstream_closed_by_gateway": sum(
                    1 for _, remote in closed if remote == self.emulator.port
                ),
                "upstream_closed_by_upstream": sum(
                    1 for local, _ in closed if local == self.emulator.port
                ),
            }
        )
        return result

    def measure_direct(self, job: dict[str, Any], procs: int) -> dict[str, Any]:
        """Run ``job`` against the emulator, reading the emulator's CPU.

        The emulator's CPU per request is the machine's yardstick: the VM's
        speed drifts between runs, and the gateway's CPU divided by it moves
        far less than either does alone.
        """
        result = _measure_cpu(
            job, procs, self.emulator.process.pid, self.emulator.control.clear_requests
        )
        result["upstream_calls"] = self.upstream_calls()
        return result


def _measure_cpu(
    job: dict[str, Any],
    procs: int,
    pid: int,
    before: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Run ``job`` and add the CPU that process ``pid`` spent per answer."""
    marks: dict[str, float] = {}

    def on_ready() -> None:
        before()
        marks["cpu_before"] = procstat.cpu_seconds(pid)

    result = run_load(job, procs, on_ready=on_ready)
    cpu = procstat.cpu_seconds(pid) - marks["cpu_before"]
    served = result["statuses"].get("200", 0)
    result["cpu_seconds"] = cpu
    result["cpu_ms_per_request"] = cpu / served * 1e3 if served else None
    return result


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_chat_scenarios(bench: Bench, gateway: Gateway) -> list[dict[str, Any]]:
    """Non-stream and stream, c = 1, 50, 200, direct and via the gateway."""
    scenarios = []
    for stream in (False, True):
        for concurrency, requests in bench.plan.requests.items():
            procs = bench.plan.procs[concurrency]
            kind = "stream" if stream else "non-stream"
            direct_cpu = None
            for target in ("direct", "gateway"):
                _log(f"{kind} c={concurrency} n={requests} {target}")
                if target == "direct":
                    job = bench.direct_job(concurrency, requests)
                    result = bench.measure_direct(job, procs)
                    direct_cpu = result["cpu_ms_per_request"]
                else:
                    job = bench.gateway_job(stream, concurrency, requests)
                    result = bench.measure_gateway(gateway, job, procs)
                    cpu = result["cpu_ms_per_request"]
                    result["cpu_vs_emulator"] = (
                        cpu / direct_cpu if cpu and direct_cpu else None
                    )
                scenarios.append(
                    {
                        "kind": kind,
                        "target": target,
                        "concurrency": concurrency,
                        "load_processes": procs,
                        **result,
                    }
                )
    return scenarios


def run_floor(
    bench: Bench, gateway: Gateway, scenarios: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The server stack alone (``bench/floor.py``) answering the gateway's bytes.

    Non-stream and stream at c = 1 and 50, beside the gateway's rows of the
    same scenario: the difference is the gateway's own work.
    """
    answers = {}
    for kind, stream in (("non_stream", False), ("stream", True)):
        job = bench.gateway_job(stream, 1, 1)
        response = httpx.post(
            f"{gateway.url}{job['path']}",
            content=job["body"],
            headers={**job["headers"], "Content-Type": "application/json"},
            timeout=30,
        )
        response.raise_for_status()
        answers[kind] = response.text
    answers_path = bench.workdir / "floor-answers.json"
    answers_path.write_text(json.dumps(answers))
    floor = start_floor(answers_path, bench.workdir / "floor.log")
    rows = []
    try:
        for stream in (False, True):
            kind = "stream" if stream else "non-stream"
            for concurrency in (1, 50):
                requests = bench.plan.requests[concurrency]
                _log(f"floor: {kind} c={concurrency} n={requests}")
                job = bench.gateway_job(stream, concurrency, requests)
                job["port"] = floor.port
                result = _measure_cpu(job, bench.plan.procs[concurrency], floor.pid)
                gateway_row = next(
                    r
                    for r in scenarios
                    if r["target"] == "gateway"
                    and r["kind"] == kind
                    and r["concurrency"] == concurrency
                )
                gateway_cpu = gateway_row["cpu_ms_per_request"]
                floor_cpu = result["cpu_ms_per_request"]
                result["gateway_cpu_ms_per_request"] = gateway_cpu
                result["gateway_own_cpu_ms"] = (
                    gateway_cpu - floor_cpu if gateway_cpu and floor_cpu else None
                )
                rows.append({"kind": kind, "concurrency": concurrency, **result})
    finally:
        floor.stop()
    return rows


def run_open_streams(bench: Bench) -> dict[str, Any]:
    """Hold ``plan.open_streams`` slow streams open and read the gateway's RSS."""
    count, seconds = bench.plan.open_streams, bench.plan.open_stream_seconds
    # preamble (a few lines) + answer tokens + closing lines
    lines = ANSWER_TOKENS + 6
    bench.emulator.control.configure(line_delay=seconds / lines)
    # The default pool (200 upstream connections) would queue 800 of the
    # 1,000 streams; this scenario is about memory per open stream.
    gateway = bench.new_gateway(
        "open-streams", {"GROK2API_NETWORK_MAX_CONNECTIONS": str(count + 100)}
    )
    try:
        idle = procstat.memory(gateway.pid)
        job = bench.gateway_job(True, count, count)
        job.update(
            {"port": gateway.port, "warmup": 0, "mode": "hold", "stagger": 0.001}
        )
        at_open: dict[str, Any] = {}
        sampler = _Sampler(gateway.pid, bench.emulator.port, period=0.25)

        def on_event(message: dict[str, Any]) -> None:
            at_open["client_streams_open"] = message["open_now"]
            memory = procstat.memory(gateway.pid)
            at_open["rss_mb"] = memory.rss_kb / 1024
            at_open["threads"] = memory.threads
            at_open["upstream_connections"] = len(
                procstat.established_to_port(gateway.pid, bench.emulator.port)
            )

        with sampler:
            result = run_load(job, 1, on_event=on_event)
        memory = procstat.memory(gateway.pid)
    finally:
        gateway.stop()
        bench.emulator.control.configure(line_delay=0.0)
    return {
        "streams": count,
        "stream_seconds_target": seconds,
        "max_connections_setting": count + 100,
        "idle_rss_mb": idle.rss_kb / 1024,
        "rss_mb_all_open": at_open.get("rss_mb"),
        "threads_all_open": at_open.get("threads"),
        "upstream_connections_all_open": at_open.get("upstream_connections"),
        "all_opened": bool(at_open),
        "client_streams_open_at_last_open": at_open.get("client_streams_open"),
        "client_streams_peak_open": result["peak_open"],
        "statuses": result["statuses"],
        "peak_rss_mb_sampled": sampler.peak_rss_kb / 1024,
        "peak_rss_mb_hwm": memory.hwm_kb / 1024,
        "completed": result["statuses"].get("200", 0) - result["incomplete"],
        "ttfb_p50_ms": result["ttfb_p50_ms"],
        "ttfb_p99_ms": result["ttfb_p99_ms"],
        "p50_ms": result["p50_ms"],
        "errors": result["errors"],
        "error_samples": result["error_samples"],
        "incomplete": result["incomplete"],
    }


def run_transports(bench: Bench) -> list[dict[str, Any]]:
    """Stream at c=50 on fresh gateways with each upstream transport."""
    rows = []
    for transport in ("trio", "httpx", "curl_cffi"):
        _log(f"transport {transport}: stream c=50")
        gateway = bench.new_gateway(
            f"transport-{transport}", {"GROK2API_NETWORK_TRANSPORT": transport}
        )
        try:
            job = bench.gateway_job(True, 50, bench.plan.transport_requests)
            rows.append(
                {"transport": transport, **bench.measure_gateway(gateway, job, 1)}
            )
        finally:
            gateway.stop()
    return rows


def run_profile(bench: Bench, results_dir: Path, stamp: str) -> dict[str, Any]:
    """Non-stream c=50 on a gateway under cProfile; the top 15 by cumulative."""
    profile_path = results_dir / f"{stamp}-nonstream-c50.prof"
    gateway = bench.new_gateway("profile", profile_to=profile_path)
    try:
        job = bench.gateway_job(False, 50, bench.plan.requests[50])
        result = bench.measure_gateway(gateway, job, 1)
    finally:
        code = gateway.stop()
    if not profile_path.exists():
        return {"error": f"no profile written (gateway exit code {code})"}
    text = io.StringIO()
    pstats.Stats(str(profile_path), stream=text).sort_stats("cumulative").print_stats(
        15
    )
    tottime = io.StringIO()
    pstats.Stats(str(profile_path), stream=tottime).sort_stats("tottime").print_stats(
        15
    )
    ours = io.StringIO()
    pstats.Stats(str(profile_path), stream=ours).sort_stats("cumulative").print_stats(
        r"grok2api", 15
    )
    return {
        "file": str(profile_path),
        "top_cumulative_grok2api": ours.getvalue(),
        "requests": result["requests"],
        "cpu_ms_per_request_under_profile": result["cpu_ms_per_request"],
        "top_cumulative": text.getvalue(),
        "top_tottime": tottime.getvalue(),
    }


# -- report -------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def derive_checks(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Compare the figures with the issue's targets (measured, not asserted)."""
    rows = report["scenarios"]

    def pick(kind: str, target: str, concurrency: int) -> dict[str, Any]:
        return next(
            r
            for r in rows
            if r["kind"] == kind
            and r["target"] == target
            and r["concurrency"] == concurrency
        )

    checks = []
    for kind, key in (
        ("non-stream", "cpu_ms_per_request_nonstream"),
        ("stream", "cpu_ms_per_request_stream"),
    ):
        worst_row = max(
            (pick(kind, "gateway", c) for c in report["plan"]["requests"]),
            key=lambda row: row["cpu_ms_per_request"] or float("inf"),
        )
        worst = worst_row["cpu_ms_per_request"] or float("inf")
        multiple = worst_row.get("cpu_vs_emulator")
        yardstick = f", {multiple:.1f}x the emulator's" if multiple else ""
        checks.append(
            {
                "check": f"CPU per request, {kind} (worst concurrency{yardstick}), ms",
                "target": f"<= {TARGETS[key]}",
                "measured": worst,
                "ok": worst <= TARGETS[key],
            }
        )
    for kind in ("non-stream", "stream"):
        added = pick(kind, "gateway", 1)["p50_ms"] - pick(kind, "direct", 1)["p50_ms"]
        checks.append(
            {
                "check": f"added p50 latency at c=1, {kind}, ms",
                "target": f"<= {TARGETS['added_p50_ms_c1']}",
                "measured": added,
                "ok": added <= TARGETS["added_p50_ms_c1"],
            }
        )
    gateway_rows = [r for r in rows if r["target"] == "gateway"]
    per_chat = [r["upstream_calls_per_chat"] for r in gateway_rows]
    checks.append(
        {
            "check": "upstream calls per chat (min..max over scenarios)",
            "target": "== 1",
            "measured": f"{min(per_chat):.3f}..{max(per_chat):.3f}",
            "ok": all(abs(v - 1.0) < 1e-9 for v in per_chat),
        }
    )
    # Reuse: far fewer connections opened than calls made, and the gateway
    # itself closing (almost) none; the emulator closes idle ones after 5 s.
    reused = all(
        r["upstream_connections_new"] <= max(r["concurrency"], r["requests"] // 20)
        and r["upstream_closed_by_gateway"] <= max(2, r["requests"] // 100)
        for r in gateway_rows
    )
    checks.append(
        {
            "check": "upstream connections reused (opened / closed by gateway / "
            "closed by upstream, per scenario)",
            "target": "bounded",
            "measured": ", ".join(
                f"{r['kind'][:3]} c={r['concurrency']}: "
                f"{r['upstream_connections_new']}/{r['upstream_closed_by_gateway']}"
                f"/{r['upstream_closed_by_upstream']}"
                for r in gateway_rows
            ),
            "ok": reused,
        }
    )
    streams = report["open_streams"]
    rss = streams.get("rss_mb_all_open")
    checks.append(
        {
            "check": f"RSS with {streams['streams']} open streams, MB",
            "target": f"< {TARGETS['open_streams_rss_mb']}",
            "measured": rss,
            "ok": rss is not None and rss < TARGETS["open_streams_rss_mb"],
        }
    )
    for name, points in report["pool"]["strategies"].items():
        ratio = points["ratio_p50"]["value"]
        checks.append(
            {
                "check": f"pick-and-reserve {name}, p50 100k / 1k "
                f"(mean ratio {points['ratio_mean']['value']:.2f})",
                "target": f"<= {TARGETS['pool_ratio_100k_1k']}",
                "measured": ratio,
                "ok": ratio <= TARGETS["pool_ratio_100k_1k"],
            }
        )
    return checks


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables."""
    out = [
        f"# grok2api benchmark {report['started']} ({report['mode']})",
        "",
        f"Machine: {report['machine']['cpus']} CPUs, Python "
        f"{report['machine']['python']}; one gateway worker, LOG_LEVEL=INFO.",
        "",
        "## Chat scenarios",
        "",
        "CPU ms/req is the gateway's on gateway rows and the emulator's on "
        "direct rows; x emulator divides the first by the second.",
        "",
        "| kind | target | c | n | req/s | p50 ms | p99 ms | TTFB p50 ms "
        "| CPU ms/req | x emulator | peak RSS MB | upstream calls/chat "
        "| upstream conns (peak/new) | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["scenarios"]:
        gateway = r["target"] == "gateway"
        conns = (
            f"{r['upstream_connections_peak']}/{r['upstream_connections_new']}"
            if gateway
            else "-"
        )
        bad = (
            r["errors"] + r["incomplete"] + r["requests"] - r["statuses"].get("200", 0)
        )
        out.append(
            f"| {r['kind']} | {r['target']} | {r['concurrency']} | {r['requests']} "
            f"| {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {_fmt(r['ttfb_p50_ms']) if r['kind'] == 'stream' else '-'} "
            f"| {_fmt(r.get('cpu_ms_per_request'))} "
            f"| {_fmt(r.get('cpu_vs_emulator'), 2) if gateway else '-'} "
            f"| {_fmt(r.get('peak_rss_mb'), 1)} "
            f"| {_fmt(r.get('upstream_calls_per_chat'), 3) if gateway else '-'} "
            f"| {conns} | {bad} |"
        )
    out += [
        "",
        "## Serving floor",
        "",
        "The gateway's server stack answering the same requests with the "
        "gateway's captured bytes and no other work (`bench/floor.py`).",
        "",
        "| kind | c | req/s | p50 ms | floor CPU ms/req | gateway CPU ms/req "
        "| gateway's own work ms/req |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report.get("floor", []):
        out.append(
            f"| {r['kind']} | {r['concurrency']} | {r['rps']:.0f} "
            f"| {r['p50_ms']:.2f} | {_fmt(r.get('cpu_ms_per_request'))} "
            f"| {_fmt(r.get('gateway_cpu_ms_per_request'))} "
            f"| {_fmt(r.get('gateway_own_cpu_ms'))} |"
        )
    out += ["", "## Targets", "", "| check | target | measured | met |"]
    out.append("|---|---|---|---|")
    for check in report["checks"]:
        out.append(
            f"| {check['check']} | {check['target']} | {_fmt(check['measured'])} "
            f"| {'yes' if check['ok'] else '**MISS**'} |"
        )
    streams = report["open_streams"]
    out += [
        "",
        "## Open streams",
        "",
        f"{streams['streams']} streams of ~{streams['stream_seconds_target']:g} s "
        f"(network.max_connections={streams['max_connections_setting']}): "
        f"idle RSS {_fmt(streams['idle_rss_mb'], 1)} MB, RSS with all open "
        f"{_fmt(streams['rss_mb_all_open'], 1)} MB (client streams open then: "
        f"{streams['client_streams_open_at_last_open']}, most at once: "
        f"{streams['client_streams_peak_open']}), peak "
        f"{_fmt(streams['peak_rss_mb_sampled'], 1)} MB, threads "
        f"{streams['threads_all_open']}, upstream connections "
        f"{streams['upstream_connections_all_open']}, completed "
        f"{streams['completed']}, statuses {streams['statuses']}, errors "
        f"{streams['errors']}, TTFB p50/p99 "
        f"{_fmt(streams['ttfb_p50_ms'], 0)}/{_fmt(streams['ttfb_p99_ms'], 0)} ms.",
        "",
        "## Pick-and-reserve (TokenPool.lease on local storage)",
        "",
        "| strategy | tokens | mean µs | p50 µs | p99 µs |",
        "|---|---|---|---|---|",
    ]
    for name, points in report["pool"]["strategies"].items():
        for size in report["pool"]["sizes"]:
            p = points[str(size)]
            out.append(
                f"| {name} | {size:,} | {p['mean_us']:.0f} | {p['p50_us']:.0f} "
                f"| {p['p99_us']:.0f} |"
            )
        out.append(
            f"| {name} | ratio 100k/1k | {points['ratio_mean']['value']:.2f} "
            f"| {points['ratio_p50']['value']:.2f} "
            f"| {points['ratio_p99']['value']:.2f} |"
        )
    out += [
        "",
        "## Upstream transport, stream c=50",
        "",
        "| transport | req/s | p50 ms | p99 ms | CPU ms/req | peak threads "
        "| peak RSS MB | upstream conns (peak/new) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["transports"]:
        out.append(
            f"| {r['transport']} | {r['rps']:.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {_fmt(r['cpu_ms_per_request'])} "
            f"| {r['peak_threads']} | {_fmt(r['peak_rss_mb'], 1)} "
            f"| {r['upstream_connections_peak']}/{r['upstream_connections_new']} |"
        )
    profile = report.get("profile")
    if profile and "top_cumulative" in profile:
        out += [
            "",
            "## Profile: gateway, non-stream c=50 (cProfile, top 15 cumulative)",
            "",
            "```",
            profile["top_cumulative"].strip(),
            "```",
            "",
            "Top 15 by internal time:",
            "",
            "```",
            profile["top_tottime"].strip(),
            "```",
            "",
            "Top 15 cumulative among grok2api's own functions:",
            "",
            "```",
            profile["top_cumulative_grok2api"].strip(),
            "```",
        ]
    return "\n".join(out) + "\n"


def run_storage(
    bench: Bench, report: dict[str, Any], results_dir: Path, quick: bool
) -> int:
    """``--only storage``: chat by backend and workers, then pick-and-reserve
    per backend; writes ``<stamp>-storage.json`` and prints the tables."""
    plan = QUICK_STORAGE if quick else FULL_STORAGE
    began = time.monotonic()
    report["plan"] = attrs.asdict(plan)
    report["chat"] = run_storage_chat(bench, plan)
    report["pool"] = run_storage_pool_bench(plan, bench.workdir / "storage")
    report["seconds"] = time.monotonic() - began
    path = results_dir / f"{report['started']}-storage.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    sys.stdout.write(render_storage_markdown(report))
    _log(f"results in {path} ({report['seconds']:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the cProfile run"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep data dirs and server logs here"
    )
    parser.add_argument(
        "--only",
        choices=["open-streams", "storage"],
        help="run only this part (for investigating one figure)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "started": stamp,
        "mode": "quick" if args.quick else "full",
        "machine": {
            "cpus": len(__import__("os").sched_getaffinity(0)),
            "python": sys.version.split()[0],
        },
        "plan": attrs.asdict(plan),
        "targets": TARGETS,
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grok2api-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        emulator = start_emulator(TOKENS, workdir / "emulator.log", ANSWER_TOKENS)
        try:
            bench = Bench(emulator, workdir, plan)
            if args.only == "open-streams":
                result = run_open_streams(bench)
                sys.stdout.write(json.dumps(result, indent=2) + "\n")
                return 0
            if args.only == "storage":
                return run_storage(bench, report, args.results_dir, args.quick)
            gateway = bench.new_gateway("main")
            try:
                bench.capture_upstream_body(gateway)
                report["scenarios"] = run_chat_scenarios(bench, gateway)
                report["floor"] = run_floor(bench, gateway, report["scenarios"])
            finally:
                gateway.stop()
            _log(f"{plan.open_streams} open streams")
            report["open_streams"] = run_open_streams(bench)
            report["transports"] = run_transports(bench)
            if plan.profile and not args.no_profile:
                _log("profile: non-stream c=50 under cProfile")
                report["profile"] = run_profile(bench, args.results_dir, stamp)
        finally:
            emulator.stop()
    _log("pick-and-reserve")
    report["pool"] = run_pool_bench(
        plan.pool_sizes, leases=plan.pool_leases, warmup=min(100, plan.pool_leases)
    )
    report["checks"] = derive_checks(report)
    report["seconds"] = time.monotonic() - began
    path = args.results_dir / f"{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    sys.stdout.write(render_markdown(report))
    _log(f"results in {path} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
