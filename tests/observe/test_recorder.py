"""The recorder: requests folded into statistics, key uses and the audit log,
flushed to storage, kept through a storage outage, flushed at shutdown."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest
import trio
import trio.testing

from grok2api.config import Settings
from grok2api.models import ModelCatalog
from grok2api.observe import Recorder
from grok2api.storage import Storage

from .conftest import TEN_O_CLOCK, MemoryStatsStorage, finished, settings_with


def make_recorder(
    storage: MemoryStatsStorage, settings: Settings | None = None, **kwargs: Any
) -> Recorder:
    current = settings or settings_with(flush_interval_sec=1.0)
    catalog = ModelCatalog()
    return Recorder(
        cast(Storage, storage),
        lambda: current,
        lambda model: model in catalog,
        clock=lambda: TEN_O_CLOCK + 30,
        **kwargs,
    )


async def test_recorder_counters_add_up_across_two_flushes(
    storage: MemoryStatsStorage,
) -> None:
    recorder = make_recorder(storage)
    recorder.record(finished(1))
    recorder.record(finished(2, status=429, error="rate_limit_error"))
    await recorder.flush()
    recorder.record(finished(3, duration_ms=50.0))
    await recorder.flush()

    total = storage.row("hour", "total")
    assert (total.requests, total.successes, total.failures) == (3, 2, 1)
    assert total.latency_ms == 250.0
    assert total.start == TEN_O_CLOCK
    assert storage.row("day", "total").start == TEN_O_CLOCK - 10 * 3600
    assert storage.row("hour", "model", "grok-4").requests == 3
    assert storage.row("day", "key", "ci").failures == 1
    assert storage.row("hour", "token", "0123456789abcdef").successes == 2
    assert storage.key_uses == {"key-ci": (3, TEN_O_CLOCK + 3)}
    assert [e.request_id for e in storage.audit] == [f"{n:016x}" for n in (1, 2, 3)]
    assert storage.audit[1].error == "rate_limit_error"
    assert recorder.statistics().pending_rows == 0


async def test_recorder_leaves_out_dimensions_a_request_does_not_have(
    storage: MemoryStatsStorage,
) -> None:
    recorder = make_recorder(storage)
    recorder.record(
        finished(
            model="",
            key_name="",
            key_id="",
            token_id="",
            status=401,
            error="authentication_error",
        )
    )
    recorder.record(finished(model="no-such-model", token_id=""))
    await recorder.flush()
    assert {key[2] for key in storage.rows} == {"total", "key"}
    assert storage.row("hour", "total").failures == 1
    assert "record_api_key_use" in storage.calls
    assert storage.key_uses == {"key-ci": (1, TEN_O_CLOCK)}
    # The audit log keeps what the client asked for, even an unknown model.
    assert storage.audit[1].model == "no-such-model"


async def test_recorder_records_only_api_routes(storage: MemoryStatsStorage) -> None:
    recorder = make_recorder(storage)
    for path in ("/v1/admin/tokens", "/health", "/metrics", "/v1/models", "/x"):
        recorder.record(finished(path=path, method="GET", model=""))
    recorder.record(finished(path="/v1/images/generations", model="grok-imagine-1.0"))
    await recorder.flush()
    assert storage.row("hour", "total").requests == 1
    assert [e.path for e in storage.audit] == ["/v1/images/generations"]
    # Metrics still count every request.
    assert recorder.metrics.requests.value("/health", "", "2xx") == 1


async def test_recorder_with_stats_disabled_writes_nothing(
    storage: MemoryStatsStorage,
) -> None:
    recorder = make_recorder(storage, settings_with(enabled=False))
    recorder.record(finished())
    await recorder.flush()
    assert storage.calls == {}
    assert recorder.metrics.requests.value("/v1/chat/completions", "grok-4", "2xx")


async def test_recorder_audit_keeps_the_newest_log_max_entries(
    storage: MemoryStatsStorage,
) -> None:
    recorder = make_recorder(storage, settings_with(log_max_entries=3))
    for n in range(5):
        recorder.record(finished(n))
    await recorder.flush()
    for n in range(5, 7):
        recorder.record(finished(n))
    await recorder.flush()
    assert [e.request_id for e in storage.audit] == [f"{n:016x}" for n in (4, 5, 6)]


async def test_recorder_without_audit_entries_writes_no_audit(
    storage: MemoryStatsStorage,
) -> None:
    recorder = make_recorder(storage, settings_with(log_max_entries=0))
    recorder.record(finished())
    await recorder.flush()
    assert "append_audit" not in storage.calls
    assert storage.row("hour", "total").requests == 1


def recorder_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "grok2api.observe.recorder" and r.levelno == logging.WARNING
    ]


async def test_recorder_keeps_deltas_through_an_outage_and_logs_it_once(
    storage: MemoryStatsStorage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "grok2api.observe.recorder")
    recorder = make_recorder(storage)
    storage.failing = True
    for n in range(3):
        recorder.record(finished(n))
        await recorder.flush()
    assert storage.rows == {}
    assert recorder.statistics().failing
    assert recorder.statistics().pending_audit == 3
    assert recorder.metrics.stats_flush_failures.value() == 3
    warnings = recorder_warnings(caplog)
    assert len(warnings) == 1 and "the test storage is down" in warnings[0].message

    storage.failing = False
    recorder.record(finished(3))
    await recorder.flush()
    assert storage.row("hour", "total").requests == 4
    assert storage.key_uses == {"key-ci": (4, TEN_O_CLOCK + 3)}
    assert [e.request_id for e in storage.audit] == [f"{n:016x}" for n in range(4)]
    assert not recorder.statistics().failing
    assert any("reach storage again" in r.message for r in caplog.records)

    # A second outage is logged again.
    storage.failing = True
    recorder.record(finished(4))
    await recorder.flush()
    assert len(recorder_warnings(caplog)) == 2


async def test_recorder_buffers_are_bounded_during_an_outage(
    storage: MemoryStatsStorage,
) -> None:
    recorder = make_recorder(
        storage, settings_with(log_max_entries=5), max_pending_rows=16
    )
    storage.failing = True
    for n in range(40):
        # A new token per request: eight new rows each, the buffer fills up.
        recorder.record(finished(n, token_id=f"{n:016x}"))
        await recorder.flush()
    left = recorder.statistics()
    assert left.pending_rows == 16
    assert left.pending_audit == 5
    assert left.dropped > 0
    assert recorder.metrics.stats_dropped.value() == left.dropped

    storage.failing = False
    await recorder.flush()
    # The rows that fitted were kept whole: every request counted in them.
    assert storage.row("hour", "total").requests == 40
    assert [e.request_id for e in storage.audit] == [f"{n:016x}" for n in range(35, 40)]


async def test_recorder_treats_a_storage_that_hangs_as_failing(
    storage: MemoryStatsStorage, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = make_recorder(storage)
    storage.hanging = True
    recorder.record(finished())
    started = trio.current_time()
    await recorder.flush()
    # The first write waits out the storage timeout; the others are not tried.
    assert trio.current_time() - started == pytest.approx(5.0)
    assert storage.calls == {"add_stats": 1}
    left = recorder.statistics()
    assert left.failing
    assert (left.pending_rows, left.pending_key_uses, left.pending_audit) == (8, 1, 1)


async def test_recorder_one_broken_write_does_not_hold_up_the_others(
    storage: MemoryStatsStorage,
) -> None:
    recorder = make_recorder(storage)
    storage.broken = {"add_stats"}
    recorder.record(finished())
    await recorder.flush()
    assert storage.key_uses == {"key-ci": (1, TEN_O_CLOCK)}
    assert len(storage.audit) == 1
    assert recorder.statistics().pending_rows == 8
    storage.broken = set()
    await recorder.flush()
    assert storage.row("hour", "total").requests == 1
    assert len(storage.audit) == 1


async def test_recorder_cancelled_flush_gives_everything_back(
    storage: MemoryStatsStorage,
) -> None:
    recorder = make_recorder(storage)
    storage.hanging = True
    recorder.record(finished())
    with trio.move_on_after(0.05):
        await recorder.flush()
    left = recorder.statistics()
    assert (left.pending_rows, left.pending_key_uses, left.pending_audit) == (8, 1, 1)


async def test_recorder_flusher_flushes_periodically_and_at_shutdown(
    storage: MemoryStatsStorage, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = make_recorder(storage)
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.serve_flusher)
        recorder.record(finished(1))
        await trio.sleep(1.5)
        assert storage.row("hour", "total").requests == 1
        recorder.record(finished(2))
        nursery.cancel_scope.cancel()
    # The request recorded just before the cancel was flushed on the way out.
    assert storage.row("hour", "total").requests == 2
    assert [p for p, _ in storage.pruned] == ["hour", "day"]


async def test_recorder_prunes_buckets_past_their_retention(
    storage: MemoryStatsStorage,
) -> None:
    recorder = make_recorder(
        storage, settings_with(hourly_retention=2, daily_retention=3)
    )
    await recorder.prune()
    day = TEN_O_CLOCK - 10 * 3600
    assert storage.pruned == [("hour", TEN_O_CLOCK - 3600), ("day", day - 2 * 86400)]
