"""The metrics: the text exposition, the gateway's metric set, the token
gauges read from storage, and upstream faults counted where the pool settles
them."""

from __future__ import annotations

from typing import cast

import pytest
import trio
import trio.testing

from grok2api.errors import EgressBlocked, TokenRejected
from grok2api.observe import FaultCountingPool, GatewayMetrics, PoolGauges
from grok2api.observe.exposition import Counter, Gauge, Histogram, render
from grok2api.pool.strategies import BUILTIN_STRATEGIES
from grok2api.storage import Lease, Storage, TokenRecord, TokenStatus

from .conftest import TEN_O_CLOCK, MemoryStatsStorage, finished, settings_with
from .promtext import parse


def test_exposition_renders_families_the_parser_accepts() -> None:
    requests = Counter("demo_requests_total", "Requests.\nTwo lines.", ("route",))
    requests.inc('/a "quoted" \\ path\n')
    requests.inc("/b", amount=2)
    latency = Histogram("demo_seconds", "Latency.", ("route",), buckets=(0.1, 1))
    for value in (0.05, 0.1, 0.5, 3):
        latency.observe(value, "/a")
    flat = Gauge("demo_up", "Up.")
    flat.set(1)

    text = render([requests, latency, flat], {requests: {"worker": "7"}})
    families = parse(text)

    assert families["demo_requests_total"].type == "counter"
    assert families["demo_requests_total"].help == "Requests.\\nTwo lines."
    assert families["demo_requests_total"].value(route='/a "quoted" \\ path\n') == 1
    assert families["demo_requests_total"].value(route="/b", worker="7") == 2
    buckets = {
        labels["le"]: value
        for name, labels, value in families["demo_seconds"].samples
        if name == "demo_seconds_bucket"
    }
    assert buckets == {"0.1": 2, "1": 3, "+Inf": 4}
    samples = {name: value for name, _, value in families["demo_seconds"].samples}
    assert samples["demo_seconds_count"] == 4
    assert samples["demo_seconds_sum"] == pytest.approx(3.65)
    assert families["demo_up"].value() == 1


def test_exposition_refuses_misuse() -> None:
    counter = Counter("demo_total", "Demo.", ("a", "b"))
    with pytest.raises(ValueError, match="cannot go down"):
        counter.inc("x", "y", amount=-1)
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc("x")
    with pytest.raises(ValueError, match="increasing"):
        Histogram("demo_seconds", "Demo.", buckets=(1, 0.5))


def test_exposition_gauge_replace_drops_missing_label_sets() -> None:
    gauge = Gauge("demo_tokens", "Demo.", ("state",))
    gauge.replace({("active",): 2, ("cooling",): 1})
    gauge.replace({("active",): 3})
    assert [labels for _, labels, _ in gauge.samples()] == [{"state": "active"}]


def test_gateway_metrics_label_every_process_metric_with_the_worker() -> None:
    metrics = GatewayMetrics(worker="4242")
    metrics.count_request(finished(duration_ms=1500.0), "grok-4")
    metrics.count_request(
        finished(path="/v1/admin/tokens/abc", status=404, model=""), ""
    )
    metrics.count_request(finished(path="/random/probe", status=404, model=""), "")
    metrics.tokens.replace({("basic", "active"): 2})

    families = parse(metrics.render())

    requests = families["grok2api_requests_total"]
    assert (
        requests.value(route="/v1/chat/completions", model="grok-4", status_class="2xx")
        == 1
    )
    assert requests.value(route="/v1/admin", status_class="4xx") == 1
    assert requests.value(route="other", status_class="4xx") == 1
    assert {labels["worker"] for _, labels, _ in requests.samples} == {"4242"}
    latency = families["grok2api_request_duration_seconds"]
    assert latency.type == "histogram"
    sums = {
        labels["route"]: v for n, labels, v in latency.samples if n.endswith("_sum")
    }
    assert sums["/v1/chat/completions"] == pytest.approx(1.5)
    tokens = families["grok2api_tokens"]
    assert tokens.samples == [
        ("grok2api_tokens", {"pool": "basic", "state": "active"}, 2)
    ]


def _token(n: int, pool: str = "basic", **fields: object) -> TokenRecord:
    values: dict[str, object] = {
        "id": f"{n:016x}",
        "pool": pool,
        "status": TokenStatus.ACTIVE,
        "quota": 10,
        "quota_total": 80,
        "window_seconds": 72000,
    }
    values.update(fields)
    return TokenRecord(**values)  # type: ignore[arg-type]


async def test_pool_gauges_count_states_and_usable_quota(
    storage: MemoryStatsStorage, autojump_clock: trio.testing.MockClock
) -> None:
    storage.tokens = [
        _token(1, reserved=3),
        _token(2, window_reset_at=TEN_O_CLOCK - 1),  # the window rolled over
        _token(3, status=TokenStatus.DISABLED),
        _token(4, cooldown_until=TEN_O_CLOCK + 60),
        _token(5, pool="super", quota=0),
    ]
    metrics = GatewayMetrics(worker="1")
    gauges = PoolGauges(
        cast(Storage, storage), settings_with, metrics, clock=lambda: TEN_O_CLOCK
    )
    await gauges.refresh()

    assert metrics.tokens.value("basic", "active") == 2
    assert metrics.tokens.value("basic", "disabled") == 1
    assert metrics.tokens.value("basic", "cooling") == 1
    assert metrics.tokens.value("super", "exhausted") == 1
    assert metrics.token_quota_remaining.value("basic") == 7 + 80
    assert metrics.token_quota_remaining.value("super") == 0
    assert metrics.storage_up.value() == 1

    # A scrape right after reuses the reading; a later one reads again.
    calls = dict(storage.calls)
    await gauges.refresh()
    assert storage.calls == calls
    await trio.sleep(6)
    await gauges.refresh()
    assert storage.calls["pool_counts"] == 2 * calls["pool_counts"]


async def test_pool_gauges_report_storage_down_instead_of_failing(
    storage: MemoryStatsStorage, autojump_clock: trio.testing.MockClock
) -> None:
    storage.tokens = [_token(1)]
    metrics = GatewayMetrics(worker="1")
    gauges = PoolGauges(cast(Storage, storage), settings_with, metrics)
    await gauges.refresh()
    storage.hanging = True
    await trio.sleep(6)
    await gauges.refresh()
    families = parse(metrics.render())
    assert families["grok2api_storage_up"].value() == 0
    assert families["grok2api_tokens"].samples == []
    # The worker's own metrics are still there.
    assert families["grok2api_requests_in_flight"].value(worker="1") == 0


class _SettlingStorage(MemoryStatsStorage):
    """Just enough ledger for :meth:`TokenPool.settle_failure`."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[str] = []

    async def release(self, lease: Lease) -> None:
        await self._answer("release")

    async def commit(self, lease: Lease, now: float) -> None:
        await self._answer("commit")

    async def record_failure(self, token_id: str, now: float, **kw: object) -> None:
        await self._answer("record_failure")
        self.failures.append(token_id)


async def test_fault_counting_pool_counts_each_failure_by_kind_and_pool() -> None:
    storage = _SettlingStorage()
    metrics = GatewayMetrics(worker="1")
    pool = FaultCountingPool(
        cast(Storage, storage),
        {s.name: s for s in BUILTIN_STRATEGIES},
        settings_with,
        faults=metrics.upstream_faults,
    )
    lease = Lease("l1", "0123456789abcdef", "secret-token", "super", 1, 0.0)
    await pool.settle_failure(lease, EgressBlocked("challenge", status=403))
    await pool.settle_failure(lease, EgressBlocked("challenge", status=403))
    await pool.settle_failure(lease, TokenRejected("expired", status=401))

    assert metrics.upstream_faults.value("egress", "super") == 2
    assert metrics.upstream_faults.value("token", "super") == 1
    assert storage.failures == ["0123456789abcdef"]  # the pool still settles
    text = metrics.render()
    assert "0123456789abcdef" not in text and "secret-token" not in text
