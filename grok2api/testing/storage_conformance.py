"""The conformance suite for storage backends.

A backend that passes this suite works with the rest of the gateway. To run it
against yours, subclass :class:`StorageConformance` in a test module and
provide a ``storage`` fixture that yields an **open, empty** backend and closes
it afterwards::

    import pytest
    from grok2api.testing.storage_conformance import StorageConformance

    class TestMyStorage(StorageConformance):
        @pytest.fixture
        async def storage(self, tmp_path):
            backend = MyStorage(...)
            await backend.open()
            try:
                yield backend
            finally:
                await backend.aclose()

The tests are Trio tests: install ``pytest-trio``. They are marked
``pytest.mark.trio``, so ``trio_mode`` is not required. Every time is passed
in explicitly, so a backend must take ``now`` from its arguments rather than
from a clock; the one exception is the sweep of expiring values, which waits a
fraction of a second so that a backend expiring them by its own clock (a TTL)
passes too.
"""

from __future__ import annotations

import collections
import itertools

import attrs
import pytest
import trio

from grok2api.storage import (
    ApiKeyChanges,
    ApiKeyLimits,
    ApiKeyRecord,
    AuditEntry,
    CandidateOrder,
    ExportedToken,
    Lease,
    NewToken,
    StatsRow,
    Storage,
    TokenChanges,
    TokenQuery,
    TokenRecord,
    TokenStatus,
    token_id_for,
)

__all__ = ["StorageConformance"]

NOW = 1_700_000_000.0
LEASE_SECONDS = 60.0

_lease_ids = itertools.count()


def _token(
    secret: str,
    pool: str = "basic",
    quota: int = 10,
    total: int | None = None,
    window: int = 3600,
    tags: tuple[str, ...] = (),
    note: str = "",
) -> NewToken:
    return NewToken(
        secret=secret,
        pool=pool,
        quota=quota,
        quota_total=quota if total is None else total,
        window_seconds=window,
        tags=tags,
        note=note,
    )


async def _add(storage: Storage, *tokens: NewToken, now: float = NOW) -> list[str]:
    await storage.add_tokens(tokens, now)
    return [token_id_for(token.secret) for token in tokens]


async def _reserve(
    storage: Storage, token_id: str, cost: int = 1, now: float = NOW
) -> Lease | None:
    lease_id = f"lease-{next(_lease_ids)}"
    return await storage.reserve(token_id, lease_id, cost, now, now + LEASE_SECONDS)


async def _record(storage: Storage, token_id: str) -> TokenRecord:
    record = await storage.get_token(token_id)
    assert record is not None, f"token {token_id} is missing"
    return record


def _api_key(key_id: str, created_at: float = NOW, **fields: object) -> ApiKeyRecord:
    values: dict[str, object] = {
        "id": key_id,
        "name": f"name of {key_id}",
        "digest": f"digest-{key_id}",
        "hint": f"g2a-…{key_id[-4:]}",
        "enabled": True,
        "created_at": created_at,
    }
    values.update(fields)
    return ApiKeyRecord(**values)  # type: ignore[arg-type]


def _audit(n: int, **fields: object) -> AuditEntry:
    values: dict[str, object] = {
        "at": NOW + n,
        "request_id": f"req-{n}",
        "client": "203.0.113.7",
        "key_name": "ci",
        "method": "POST",
        "path": "/v1/chat/completions",
        "model": "grok-4",
        "status": 200,
        "duration_ms": 12.5,
        "stream": n % 2 == 0,
        "token_id": "0123456789abcdef",
        "error": "",
    }
    values.update(fields)
    return AuditEntry(**values)  # type: ignore[arg-type]


async def _race(count: int, attempt: object) -> list[object]:
    """Run ``attempt(n)`` for n in range(count) at once; collect the results."""
    results: list[object] = []

    async def one(n: int) -> None:
        results.append(await attempt(n))  # type: ignore[operator]

    async with trio.open_nursery() as nursery:
        for n in range(count):
            nursery.start_soon(one, n)
    return results


def _ids(records: list[TokenRecord]) -> list[str]:
    return [record.id for record in records]


async def _ids_of(
    storage: Storage, order: CandidateOrder, **kwargs: object
) -> list[str]:
    args: dict[str, object] = {
        "pool": "basic",
        "order": order,
        "limit": 10,
        "cost": 1,
        "exclude": frozenset(),
        "now": NOW,
    }
    args.update(kwargs)
    return _ids(await storage.candidates(**args))  # type: ignore[arg-type]


@pytest.mark.trio
class StorageConformance:
    """The behaviour every :class:`~grok2api.storage.Storage` must show."""

    # -- tokens --------------------------------------------------------------

    async def test_add_tokens_counts_new_and_keeps_known(
        self, storage: Storage
    ) -> None:
        assert await storage.add_tokens([_token("a"), _token("b")], NOW) == 2
        moved = _token("a", pool="super", quota=99)
        assert await storage.add_tokens([moved, _token("c")], NOW + 1) == 1

        record = await _record(storage, token_id_for("a"))
        assert record.pool == "super"
        assert record.quota == 10
        assert record.created_at == NOW

    async def test_get_token_returns_a_fresh_record(self, storage: Storage) -> None:
        [token_id] = await _add(storage, _token("a", quota=3, total=5, tags=("x",)))
        record = await _record(storage, token_id)

        assert record.id == token_id == token_id_for("a")
        assert record.status is TokenStatus.ACTIVE
        assert (record.quota, record.quota_total, record.reserved) == (3, 5, 0)
        assert record.tags == ("x",)
        assert record.state(NOW) == "active"
        assert await storage.get_token("no-such-token") is None

    async def test_list_tokens_filters_orders_and_pages(self, storage: Storage) -> None:
        await _add(storage, _token("sso-s1", pool="super", note="vip"), now=NOW)
        await _add(storage, _token("sso-b1", tags=("eu",)), now=NOW + 1)
        await _add(storage, _token("sso-b2", tags=("us",)), now=NOW + 2)
        await _add(storage, _token("sso-b3", tags=("eu", "us")), now=NOW + 3)
        disabled = TokenChanges(status=TokenStatus.DISABLED)
        await storage.update_token(token_id_for("sso-b2"), disabled, NOW)

        everything = await storage.list_tokens(TokenQuery())
        expected = [token_id_for(s) for s in ("sso-b1", "sso-b2", "sso-b3", "sso-s1")]
        assert _ids(everything.items) == expected
        assert everything.total == 4

        def query(**kwargs: object) -> TokenQuery:
            return TokenQuery(**kwargs)  # type: ignore[arg-type]

        async def ids(**kwargs: object) -> list[str]:
            return _ids((await storage.list_tokens(query(**kwargs))).items)

        assert await ids(pool="super") == [token_id_for("sso-s1")]
        assert await ids(status=TokenStatus.DISABLED) == [token_id_for("sso-b2")]
        assert await ids(tag="eu") == [token_id_for("sso-b1"), token_id_for("sso-b3")]
        assert await ids(search="vip") == [token_id_for("sso-s1")]
        assert await ids(search=token_id_for("sso-b3")[2:9]) == [token_id_for("sso-b3")]
        assert await ids(search="sso-b1") == [token_id_for("sso-b1")], "by raw secret"
        assert await ids(pool="basic", tag="us") == [
            token_id_for("sso-b2"),
            token_id_for("sso-b3"),
        ]

        page = await storage.list_tokens(TokenQuery(offset=1, limit=2))
        assert _ids(page.items) == expected[1:3]
        assert page.total == 4
        filtered_page = await storage.list_tokens(TokenQuery(pool="basic", limit=1))
        assert filtered_page.total == 3

    async def test_remove_tokens_drops_tokens_and_reservations(
        self, storage: Storage
    ) -> None:
        a, b = await _add(storage, _token("a"), _token("b"))
        assert await _reserve(storage, a) is not None

        assert await storage.remove_tokens([a, "no-such-token"]) == 1
        assert await storage.get_token(a) is None
        assert await storage.token_secrets([a]) == {}
        assert await _ids_of(storage, CandidateOrder.MOST_QUOTA) == [b]

        assert await storage.add_tokens([_token("a")], NOW) == 1
        assert (await _record(storage, a)).reserved == 0

    async def test_token_secrets_round_trip_and_never_in_records(
        self, storage: Storage
    ) -> None:
        secret = "sso-very-secret-value"
        [token_id] = await _add(storage, _token(secret))
        assert await storage.token_secrets([token_id, "no-such-token"]) == {
            token_id: secret
        }

        lease = await _reserve(storage, token_id)
        assert lease is not None and lease.secret == secret
        records: list[TokenRecord] = [await _record(storage, token_id)]
        records += (await storage.list_tokens(TokenQuery())).items
        records += await storage.candidates(
            "basic", CandidateOrder.RANDOM, 5, 1, frozenset(), NOW
        )
        failed = await storage.record_failure(token_id, NOW, reason="x")
        assert failed is not None
        records.append(failed)
        for record in records:
            assert not hasattr(record, "secret")
            assert secret not in repr(record)

    async def test_update_token_applies_changes(self, storage: Storage) -> None:
        [token_id] = await _add(storage, _token("a", quota=5, total=8))
        changes = TokenChanges(tags=("eu",), note="spare", quota=2)
        updated = await storage.update_token(token_id, changes, NOW)

        assert updated is not None
        assert (updated.tags, updated.note, updated.quota) == (("eu",), "spare", 2)
        assert await _record(storage, token_id) == updated
        gone = await storage.update_token("no-such-token", changes, NOW)
        assert gone is None

    async def test_update_token_reset_clears_failures_and_refills(
        self, storage: Storage
    ) -> None:
        [token_id] = await _add(storage, _token("a", quota=5, total=8))
        await storage.record_failure(
            token_id, NOW, reason="429", cooldown_until=NOW + 500, quota=0
        )
        await storage.record_failure(token_id, NOW, reason="401", invalidate_after=1)

        reset = await storage.update_token(
            token_id, TokenChanges(reset=True, note="checked"), NOW + 1
        )
        assert reset is not None
        assert reset.status is TokenStatus.ACTIVE
        assert (reset.fail_count, reset.quota, reset.note) == (0, 8, "checked")
        assert reset.state(NOW + 1) == "active"
        assert await _reserve(storage, token_id, now=NOW + 1) is not None

    # -- reserving -----------------------------------------------------------

    async def test_reserve_refuses_when_quota_would_go_short(
        self, storage: Storage
    ) -> None:
        [token_id] = await _add(storage, _token("a", quota=3))

        lease = await storage.reserve(token_id, "first", 2, NOW, NOW + 30)
        assert lease == Lease("first", token_id, "a", "basic", 2, NOW + 30)
        assert await _reserve(storage, token_id, cost=2) is None
        assert await _reserve(storage, token_id, cost=1) is not None
        assert await _reserve(storage, token_id, cost=1) is None

        record = await _record(storage, token_id)
        assert (record.quota, record.reserved, record.available) == (3, 3, 0)
        assert record.state(NOW) == "exhausted"

    async def test_reserve_respects_status_and_cooldown(self, storage: Storage) -> None:
        ok, disabled, invalid, cooling = await _add(
            storage, _token("ok"), _token("d"), _token("i"), _token("c")
        )
        await storage.update_token(
            disabled, TokenChanges(status=TokenStatus.DISABLED), NOW
        )
        await storage.record_failure(invalid, NOW, reason="401", invalidate_after=1)
        await storage.record_failure(
            cooling, NOW, reason="429", cooldown_until=NOW + 60
        )

        assert await _reserve(storage, ok) is not None
        assert await _reserve(storage, disabled) is None
        assert await _reserve(storage, invalid) is None
        assert await _reserve(storage, cooling, now=NOW + 59) is None
        assert await _reserve(storage, cooling, now=NOW + 60) is not None
        assert await _reserve(storage, "no-such-token") is None

    async def test_candidates_offer_only_leasable_tokens(
        self, storage: Storage
    ) -> None:
        ok, excluded, cooling, disabled, empty, _other = await _add(
            storage,
            _token("ok"),
            _token("excluded"),
            _token("cooling"),
            _token("disabled"),
            _token("empty", quota=1),
            _token("other", pool="super"),
        )
        await storage.record_failure(cooling, NOW, reason="429", cooldown_until=NOW + 9)
        await storage.update_token(
            disabled, TokenChanges(status=TokenStatus.DISABLED), NOW
        )
        assert await _reserve(storage, empty) is not None

        for order in CandidateOrder:
            found = await _ids_of(storage, order, exclude=frozenset({excluded}))
            assert found == [ok], order
        assert await _ids_of(storage, CandidateOrder.MOST_QUOTA, cost=11) == []
        assert len(await _ids_of(storage, CandidateOrder.RANDOM, limit=1)) == 1

    async def test_candidates_least_recently_used_order(self, storage: Storage) -> None:
        older, newer, never = await _add(storage, _token("a"), _token("b"), _token("c"))
        for token_id, at in ((newer, NOW + 1), (older, NOW + 2), (newer, NOW + 3)):
            lease = await _reserve(storage, token_id, now=at)
            assert lease is not None
            await storage.commit(lease, at)

        order = CandidateOrder.LEAST_RECENTLY_USED
        found = await _ids_of(storage, order, now=NOW + 4)
        assert found == [never, older, newer]

    async def test_candidates_most_quota_order(self, storage: Storage) -> None:
        low, high, middle, refilled = await _add(
            storage,
            _token("low", quota=2),
            _token("high", quota=6),
            _token("middle", quota=4),
            _token("refilled", quota=1, total=9, window=100),
        )
        lease = await _reserve(storage, refilled)
        assert lease is not None
        await storage.commit(lease, NOW)  # quota 0 until the window ends
        lease = await _reserve(storage, middle)  # 3 left after this reservation
        assert lease is not None

        order = CandidateOrder.MOST_QUOTA
        assert await _ids_of(storage, order, now=NOW + 50) == [high, middle, low]
        after = await _ids_of(storage, order, now=NOW + 100)
        assert after == [refilled, high, middle, low]
        assert await _ids_of(storage, order, now=NOW + 100, limit=2) == after[:2]

    async def test_candidates_random_covers_several_tokens(
        self, storage: Storage
    ) -> None:
        await _add(storage, *(_token(f"t{i}") for i in range(10)))
        firsts: set[str] = set()
        for _ in range(60):
            found = await _ids_of(storage, CandidateOrder.RANDOM, limit=3)
            assert len(found) == len(set(found)) == 3
            firsts.add(found[0])
        assert len(firsts) >= 3

    # -- settling ------------------------------------------------------------

    async def test_commit_spends_exactly_once(self, storage: Storage) -> None:
        [token_id] = await _add(storage, _token("a", quota=5, window=100))
        await storage.record_failure(token_id, NOW, reason="401", invalidate_after=3)
        lease = await _reserve(storage, token_id, cost=2)
        assert lease is not None

        await storage.commit(lease, NOW + 1)
        await storage.commit(lease, NOW + 2)

        record = await _record(storage, token_id)
        assert (record.quota, record.reserved) == (3, 0)
        assert (record.use_count, record.last_used_at) == (1, NOW + 1)
        assert record.fail_count == 0
        assert record.window_reset_at == NOW + 101, "the window starts at first use"

    async def test_commit_of_expired_lease_spends_once(self, storage: Storage) -> None:
        [token_id] = await _add(storage, _token("a", quota=5))
        lease = await _reserve(storage, token_id, cost=2)
        assert lease is not None
        assert await storage.expire_reservations(lease.expires_at) == 1

        await storage.commit(lease, lease.expires_at + 1)
        await storage.commit(lease, lease.expires_at + 2)

        record = await _record(storage, token_id)
        assert (record.quota, record.reserved, record.use_count) == (3, 0, 1)

    async def test_commit_of_unknown_lease_spends_once(self, storage: Storage) -> None:
        [token_id] = await _add(storage, _token("a", quota=5))
        lease = Lease("never-reserved", token_id, "a", "basic", 3, NOW + 10)

        await storage.commit(lease, NOW)
        await storage.commit(lease, NOW)

        record = await _record(storage, token_id)
        assert (record.quota, record.reserved) == (2, 0)

    async def test_release_gives_quota_back_once(self, storage: Storage) -> None:
        [token_id] = await _add(storage, _token("a", quota=3))
        lease = await _reserve(storage, token_id, cost=3)
        assert lease is not None
        assert await _reserve(storage, token_id) is None

        await storage.release(lease)
        await storage.release(lease)

        record = await _record(storage, token_id)
        assert (record.quota, record.reserved, record.use_count) == (3, 0, 0)
        other = await _reserve(storage, token_id, cost=3)
        assert other is not None
        await storage.commit(other, NOW)
        await storage.release(other)
        assert (await _record(storage, token_id)).quota == 0

    async def test_expired_reservations_return_to_the_pool(
        self, storage: Storage
    ) -> None:
        [token_id] = await _add(storage, _token("a", quota=3))
        early = await storage.reserve(token_id, "early", 2, NOW, NOW + 10)
        late = await storage.reserve(token_id, "late", 1, NOW, NOW + 20)
        assert early is not None and late is not None

        assert await storage.expire_reservations(NOW + 9) == 0
        assert await storage.expire_reservations(NOW + 10) == 1
        assert (await _record(storage, token_id)).reserved == 1
        assert await storage.expire_reservations(NOW + 10) == 0
        assert await _reserve(storage, token_id, cost=2, now=NOW + 11) is not None

    async def test_quota_window_refills_when_it_ends(self, storage: Storage) -> None:
        [token_id] = await _add(storage, _token("a", quota=2, window=100))
        for _ in range(2):
            lease = await _reserve(storage, token_id)
            assert lease is not None
            await storage.commit(lease, NOW)
        record = await _record(storage, token_id)
        assert (record.quota, record.window_reset_at) == (0, NOW + 100)

        assert record.state(NOW + 99) == "exhausted"
        assert await _reserve(storage, token_id, now=NOW + 99) is None
        counts = await storage.pool_counts(["basic"], 1, NOW + 99)
        assert counts.counts["exhausted"] == 1
        assert counts.earliest_reset == NOW + 100

        counts = await storage.pool_counts(["basic"], 1, NOW + 100)
        assert counts.counts["active"] == 1
        order = CandidateOrder.LEAST_RECENTLY_USED
        assert await _ids_of(storage, order, now=NOW + 100) == [token_id]
        lease = await _reserve(storage, token_id, now=NOW + 100)
        assert lease is not None
        record = await _record(storage, token_id)
        assert (record.quota, record.reserved) == (2, 1)
        await storage.commit(lease, NOW + 120)
        record = await _record(storage, token_id)
        assert (record.quota, record.window_reset_at) == (1, NOW + 220)

    # -- failures and syncs --------------------------------------------------

    async def test_record_failure_invalidates_at_threshold(
        self, storage: Storage
    ) -> None:
        token_id, at_once = await _add(storage, _token("a"), _token("b"))
        for count in (1, 2):
            record = await storage.record_failure(
                token_id, NOW + count, reason="401", invalidate_after=3
            )
            assert record is not None
            assert (record.fail_count, record.status) == (count, TokenStatus.ACTIVE)
        lease = await _reserve(storage, token_id)
        assert lease is not None
        await storage.commit(lease, NOW + 3)
        assert (await _record(storage, token_id)).fail_count == 0

        for count in (1, 2, 3):
            record = await storage.record_failure(
                token_id, NOW + 10, reason="expired", invalidate_after=3
            )
            assert record is not None and record.fail_count == count
        assert record.status is TokenStatus.INVALID
        assert (record.last_fail_at, record.last_fail_reason) == (NOW + 10, "expired")
        assert record.state(NOW + 10) == "invalid"

        blocked = await storage.record_failure(
            at_once, NOW, reason="blocked", invalidate_after=1
        )
        assert blocked is not None and blocked.status is TokenStatus.INVALID
        assert await storage.record_failure("no-such-token", NOW, reason="x") is None

    async def test_record_failure_cooldown_and_quota(self, storage: Storage) -> None:
        cooled, emptied = await _add(storage, _token("a"), _token("b", quota=5))
        record = await storage.record_failure(
            cooled, NOW, reason="429", cooldown_until=NOW + 30
        )
        assert record is not None
        assert (record.status, record.cooldown_until) == (TokenStatus.COOLING, NOW + 30)
        assert record.cooldown_reason == "429"
        assert record.fail_count == 0, "a rate limit is not a token fault"
        assert record.state(NOW + 29) == "cooling"
        assert record.state(NOW + 30) == "active"

        record = await storage.record_failure(emptied, NOW, reason="429", quota=0)
        assert record is not None
        assert (record.quota, record.state(NOW)) == (0, "exhausted")
        assert await _reserve(storage, emptied) is None
        counts = await storage.pool_counts(["basic"], 1, NOW + 1)
        assert (counts.counts["cooling"], counts.counts["exhausted"]) == (1, 1)

    async def test_record_sync_success_and_failure(self, storage: Storage) -> None:
        [token_id] = await _add(storage, _token("a", quota=5, total=5))
        stale = await storage.record_sync(
            token_id, NOW, remaining=None, total=None, window_seconds=None
        )
        assert stale is not None
        assert (stale.stale, stale.quota, stale.last_sync_at) == (True, 5, None)

        await storage.record_failure(
            token_id, NOW, reason="429", cooldown_until=NOW + 99
        )
        still_empty = await storage.record_sync(
            token_id, NOW + 1, remaining=0, total=None, window_seconds=None
        )
        assert still_empty is not None
        assert (still_empty.stale, still_empty.last_sync_at) == (False, NOW + 1)
        assert still_empty.state(NOW + 1) == "cooling"

        synced = await storage.record_sync(
            token_id, NOW + 2, remaining=70, total=80, window_seconds=72000
        )
        assert synced is not None
        assert (synced.quota, synced.quota_total, synced.window_seconds) == (
            70,
            80,
            72000,
        )
        assert synced.state(NOW + 2) == "active", "quota is back: cooldown lifted"
        assert await _reserve(storage, token_id, now=NOW + 2) is not None
        none = await storage.record_sync(
            "no-such-token", NOW, remaining=1, total=1, window_seconds=1
        )
        assert none is None

    # -- counts --------------------------------------------------------------

    async def test_pool_counts_by_state(self, storage: Storage) -> None:
        _active, cooling, exhausted, busy, invalid, disabled = await _add(
            storage,
            _token("active"),
            _token("cooling"),
            _token("exhausted", quota=1, window=300),
            _token("busy", quota=1),
            _token("invalid"),
            _token("disabled", pool="super"),
        )
        await _add(storage, _token("elsewhere", pool="other"))
        await storage.record_failure(
            cooling, NOW, reason="429", cooldown_until=NOW + 50
        )
        lease = await _reserve(storage, exhausted)
        assert lease is not None
        await storage.commit(lease, NOW)
        busy_lease = await storage.reserve(busy, "busy", 1, NOW, NOW + 400)
        assert busy_lease is not None
        await storage.record_failure(invalid, NOW, reason="401", invalidate_after=1)
        await storage.update_token(
            disabled, TokenChanges(status=TokenStatus.DISABLED), NOW
        )

        counts = await storage.pool_counts(["basic", "super"], 1, NOW + 1)
        assert counts.counts == {
            "active": 1,
            "cooling": 1,
            "exhausted": 2,
            "invalid": 1,
            "disabled": 1,
        }
        assert counts.earliest_reset == NOW + 50

        later = await storage.pool_counts(["basic"], 1, NOW + 60)
        assert (later.counts["active"], later.counts["cooling"]) == (2, 0)
        assert later.earliest_reset == NOW + 300
        nothing = await storage.pool_counts(["empty-pool"], 1, NOW)
        assert sum(nothing.counts.values()) == 0
        assert nothing.earliest_reset is None

    # -- config and the change signal ----------------------------------------

    async def test_config_overrides_round_trip(self, storage: Storage) -> None:
        assert await storage.load_config_overrides() == {}
        before = await storage.change_version()
        overrides = {"token": {"fail_threshold": 3, "tags": ["a"]}, "app": {}}

        await storage.save_config_overrides(overrides)

        assert await storage.load_config_overrides() == overrides
        assert await storage.change_version() > before
        await storage.save_config_overrides({})
        assert await storage.load_config_overrides() == {}

    async def test_change_version_follows_operator_changes_only(
        self, storage: Storage
    ) -> None:
        versions = [await storage.change_version()]

        async def bumped() -> bool:
            versions.append(await storage.change_version())
            return versions[-1] > versions[-2]

        [token_id] = await _add(storage, _token("a"))
        assert await bumped()
        await storage.update_token(token_id, TokenChanges(note="n"), NOW)
        assert await bumped()

        lease = await _reserve(storage, token_id)
        assert lease is not None
        await storage.commit(lease, NOW)
        await storage.record_failure(token_id, NOW, reason="x", invalidate_after=5)
        await storage.record_sync(
            token_id, NOW, remaining=3, total=None, window_seconds=None
        )
        await storage.expire_reservations(NOW + 999)
        assert not await bumped(), "ledger traffic must not make workers reload"

        await storage.remove_tokens([token_id])
        assert await bumped()

    # -- leasing under contention --------------------------------------------

    async def test_lease_walks_pools_in_order(self, storage: Storage) -> None:
        empty, fallback = await _add(
            storage, _token("empty", pool="basic", quota=0), _token("s", pool="super")
        )
        lease = await storage.lease(
            ["basic", "super"],
            CandidateOrder.MOST_QUOTA,
            lambda sample: 0,
            1,
            frozenset(),
            NOW,
            NOW + LEASE_SECONDS,
            "walk",
        )
        assert lease is not None
        assert (lease.token_id, lease.pool) == (fallback, "super")
        assert (await _record(storage, empty)).reserved == 0

    async def test_concurrent_leases_never_exceed_quota(self, storage: Storage) -> None:
        quotas = {"x": 3, "y": 5, "z": 7}
        await _add(storage, *(_token(s, quota=q) for s, q in quotas.items()))
        leases: list[Lease] = []

        async def attempt(n: int) -> None:
            lease = await storage.lease(
                ["basic"],
                CandidateOrder.RANDOM,
                lambda sample: 0,
                1,
                frozenset(),
                NOW,
                NOW + LEASE_SECONDS,
                f"race-{n}",
            )
            if lease is not None:
                leases.append(lease)

        async with trio.open_nursery() as nursery:
            for n in range(200):
                nursery.start_soon(attempt, n)

        assert len(leases) == sum(quotas.values())
        per_token = collections.Counter(lease.token_id for lease in leases)
        for secret, quota in quotas.items():
            token_id = token_id_for(secret)
            assert per_token[token_id] == quota
            assert (await _record(storage, token_id)).reserved == quota
        for lease in leases:
            await storage.commit(lease, NOW + 1)
        for secret in quotas:
            record = await _record(storage, token_id_for(secret))
            assert (record.quota, record.reserved) == (0, 0)

    # -- moving tokens between backends --------------------------------------

    async def test_import_then_export_round_trips_every_field(
        self, storage: Storage
    ) -> None:
        cooling = ExportedToken(
            secret="sso-cooling/+=.~",
            pool="super",
            status=TokenStatus.COOLING,
            quota=2,
            quota_total=140,
            window_seconds=7200,
            window_reset_at=NOW + 1234.5,
            cooldown_until=NOW + 600.25,
            cooldown_reason="rate_limit_with_quota",
            fail_count=3,
            last_fail_at=NOW - 10.125,
            last_fail_reason="HTTP 401",
            last_used_at=NOW - 20.5,
            use_count=41,
            created_at=NOW - 86400.75,
            last_sync_at=NOW - 30.0,
            stale=True,
            tags=("nsfw", "éclair"),
            note="moved from the reference",
        )
        plain = ExportedToken(
            secret="sso-plain",
            pool="basic",
            status=TokenStatus.DISABLED,
            quota=80,
            quota_total=80,
            window_seconds=72000,
            created_at=NOW - 5,
        )

        assert await storage.import_tokens([cooling, plain], NOW) == 2

        assert await storage.export_tokens(0, 10) == [plain, cooling]
        assert await _record(storage, cooling.id) == cooling.record()
        assert await _record(storage, plain.id) == plain.record()
        secrets = await storage.token_secrets([cooling.id, plain.id])
        assert secrets == {cooling.id: cooling.secret, plain.id: plain.secret}

    async def test_export_carries_the_ledger_and_pages_in_listing_order(
        self, storage: Storage
    ) -> None:
        ids = [
            (await _add(storage, _token(f"t{n}", pool=pool), now=NOW + n))[0]
            for n, pool in enumerate(["super", "basic", "basic", "super", "basic"])
        ]
        lease = await _reserve(storage, ids[1], cost=2)
        assert lease is not None
        await storage.commit(lease, NOW + 10)
        await storage.record_failure(
            ids[2], NOW + 11, reason="429", cooldown_until=NOW + 99, quota=0
        )
        await storage.update_token(ids[3], TokenChanges(tags=("x",), note="n"), NOW)
        held = await _reserve(storage, ids[4], cost=4)
        assert held is not None

        pages = [await storage.export_tokens(offset, 2) for offset in (0, 2, 4, 6)]

        assert [len(page) for page in pages] == [2, 2, 1, 0]
        exported = [token for page in pages for token in page]
        listed = (await storage.list_tokens(TokenQuery(limit=10))).items
        assert [token.id for token in exported] == _ids(listed)
        secrets = await storage.token_secrets(ids)
        for token, record in zip(exported, listed, strict=True):
            assert token.secret == secrets[token.id]
            # Open reservations are transient: the export leaves them out.
            assert token.record(reserved=record.reserved) == record

    async def test_import_is_idempotent(self, storage: Storage) -> None:
        tokens = [
            ExportedToken(
                secret=f"s{n}",
                pool="basic",
                status=TokenStatus.ACTIVE,
                quota=n,
                quota_total=10,
                window_seconds=3600,
                window_reset_at=NOW + n if n % 2 else None,
                created_at=NOW + n,
                tags=("a",) if n % 2 else (),
            )
            for n in range(5)
        ]
        assert await storage.import_tokens(tokens, NOW) == 5
        first = await storage.export_tokens(0, 10)
        version = await storage.change_version()

        assert await storage.import_tokens(tokens, NOW + 1) == 0

        assert await storage.export_tokens(0, 10) == first
        assert await storage.change_version() == version
        assert await storage.import_tokens([], NOW) == 0

    async def test_import_overwrites_a_known_token_and_keeps_its_leases(
        self, storage: Storage
    ) -> None:
        [token_id] = await _add(storage, _token("a", quota=10))
        lease = await _reserve(storage, token_id, cost=3)
        assert lease is not None
        version = await storage.change_version()
        moved = ExportedToken(
            secret="a",
            pool="super",
            status=TokenStatus.ACTIVE,
            quota=7,
            quota_total=20,
            window_seconds=60,
            fail_count=1,
            use_count=9,
            created_at=NOW - 100,
            tags=("t",),
            note="imported",
        )

        assert await storage.import_tokens([moved], NOW) == 0

        assert await _record(storage, token_id) == moved.record(reserved=3)
        assert await storage.change_version() > version
        await storage.release(lease)
        assert (await _record(storage, token_id)).reserved == 0

    async def test_imported_tokens_are_leasable_by_their_state(
        self, storage: Storage
    ) -> None:
        [known] = await _add(storage, _token("known", pool="basic"))

        def token(secret: str, **fields: object) -> ExportedToken:
            values: dict[str, object] = {
                "pool": "basic",
                "status": TokenStatus.ACTIVE,
                "quota": 5,
                "quota_total": 5,
                "window_seconds": 3600,
                "created_at": NOW,
            }
            values.update(fields)
            return ExportedToken(secret=secret, **values)  # type: ignore[arg-type]

        await storage.import_tokens(
            [
                token("known", pool="super", quota=9),
                token("ready", quota=3),
                token(
                    "cooling",
                    status=TokenStatus.COOLING,
                    quota=50,
                    cooldown_until=NOW + 100,
                ),
                token("spent", quota=0, window_reset_at=NOW + 200),
                token("invalid", status=TokenStatus.INVALID, quota=50),
            ],
            NOW,
        )

        most = CandidateOrder.MOST_QUOTA
        ready = token_id_for("ready")
        assert await _ids_of(storage, most) == [ready]
        assert await _ids_of(storage, most, pool="super") == [known]
        assert await _ids_of(storage, most, now=NOW + 150) == [
            token_id_for("cooling"),
            ready,
        ]
        assert await _ids_of(storage, most, now=NOW + 250) == [
            token_id_for("cooling"),
            token_id_for("spent"),
            ready,
        ]
        lease = await storage.lease(
            ["basic"], most, None, 1, frozenset(), NOW, NOW + 60, "after-import"
        )
        assert lease is not None and lease.token_id == ready

    async def test_tokens_are_stored_under_the_id_given(self, storage: Storage) -> None:
        # A wrapper may hand the backend a transformed secret (sealed at
        # rest); the id it passes along is the one to store the token under.
        token = attrs.evolve(_token("plain"), secret="transformed")
        assert token.id == token_id_for("plain")

        await storage.add_tokens([token], NOW)

        record = await _record(storage, token_id_for("plain"))
        assert await storage.token_secrets([record.id]) == {record.id: "transformed"}
        assert await storage.get_token(token_id_for("transformed")) is None
        exported = ExportedToken(
            secret="transformed-2",
            pool="basic",
            status=TokenStatus.ACTIVE,
            quota=1,
            quota_total=1,
            window_seconds=60,
            id=token_id_for("plain-2"),
        )
        await storage.import_tokens([exported], NOW)
        assert (await _record(storage, token_id_for("plain-2"))).quota == 1

    # -- API keys ------------------------------------------------------------

    async def test_api_keys_round_trip_in_creation_order(
        self, storage: Storage
    ) -> None:
        assert await storage.list_api_keys() == []
        limits = ApiKeyLimits(
            requests_per_minute=30,
            concurrent_requests=2,
            quota=1000,
            quota_window_seconds=3600,
            models=("grok-4", "grok-3"),
        )
        first = _api_key("key-b", created_at=NOW, limits=limits)
        second = _api_key("key-a", created_at=NOW + 5, enabled=False)
        version = await storage.change_version()

        await storage.add_api_keys([second, first])

        assert await storage.list_api_keys() == [first, second]
        assert await storage.change_version() > version

    async def test_update_api_key_applies_only_given_fields(
        self, storage: Storage
    ) -> None:
        await storage.add_api_keys([_api_key("key-1")])
        version = await storage.change_version()

        updated = await storage.update_api_key(
            "key-1", ApiKeyChanges(enabled=False, limits=ApiKeyLimits(quota=5))
        )

        assert updated == _api_key("key-1", enabled=False, limits=ApiKeyLimits(quota=5))
        assert await storage.list_api_keys() == [updated]
        assert await storage.change_version() > version
        renamed = await storage.update_api_key("key-1", ApiKeyChanges(name="ops"))
        assert renamed is not None
        assert (renamed.name, renamed.enabled, renamed.limits.quota) == (
            "ops",
            False,
            5,
        )
        assert await storage.update_api_key("gone", ApiKeyChanges(name="x")) is None

    async def test_remove_api_keys_counts_existing(self, storage: Storage) -> None:
        await storage.add_api_keys([_api_key("k1"), _api_key("k2"), _api_key("k3")])
        version = await storage.change_version()

        assert await storage.remove_api_keys(["k1", "k3", "nope"]) == 2

        assert [key.id for key in await storage.list_api_keys()] == ["k2"]
        assert await storage.change_version() > version

    async def test_api_key_use_adds_up_without_a_reload(self, storage: Storage) -> None:
        await storage.add_api_keys([_api_key("k1"), _api_key("k2")])
        version = await storage.change_version()

        await storage.record_api_key_use({"k1": (3, NOW + 10), "ghost": (1, NOW)})
        await storage.record_api_key_use({"k1": (2, NOW + 5), "k2": (1, NOW + 7)})

        keys = {key.id: key for key in await storage.list_api_keys()}
        assert (keys["k1"].use_count, keys["k1"].last_used_at) == (5, NOW + 10)
        assert (keys["k2"].use_count, keys["k2"].last_used_at) == (1, NOW + 7)
        assert await storage.change_version() == version

    # -- limiters --------------------------------------------------------------

    async def test_take_rate_is_a_token_bucket(self, storage: Storage) -> None:
        async def take(at: float) -> float:
            return await storage.take_rate("ip:a", 2, 1.0, at)

        assert await take(NOW) == 0.0
        assert await take(NOW) == 0.0
        assert await take(NOW) == pytest.approx(1.0, abs=0.01)
        assert await take(NOW + 0.5) == pytest.approx(0.5, abs=0.01)
        assert await take(NOW + 1.0) == 0.0
        assert await take(NOW + 1.0) > 0
        # A long idle refills to capacity, never beyond it.
        assert await take(NOW + 100) == 0.0
        assert await take(NOW + 100) == 0.0
        assert await take(NOW + 100) > 0
        # Buckets are independent.
        assert await storage.take_rate("ip:b", 1, 1.0, NOW + 100) == 0.0

    async def test_take_window_counts_per_aligned_window(
        self, storage: Storage
    ) -> None:
        window_end = (NOW // 60 + 1) * 60

        assert await storage.take_window("key:q", 2, 60, NOW) == 0.0
        assert await storage.take_window("key:q", 2, 60, NOW + 1) == 0.0
        assert await storage.take_window("key:q", 2, 60, NOW + 2) == pytest.approx(
            window_end - NOW - 2
        )
        assert await storage.take_window("key:q", 2, 60, window_end) == 0.0
        assert await storage.take_window("key:other", 1, 60, NOW + 2) == 0.0

    async def test_slots_limit_holders_and_expire(self, storage: Storage) -> None:
        async def acquire(holder: str, at: float = NOW, ttl: float = 60) -> bool:
            return await storage.acquire_slot("key:c", 2, holder, at, at + ttl)

        assert await acquire("a")
        assert await acquire("b", ttl=1)
        assert not await acquire("c")
        assert await acquire("a"), "the same holder renews its slot"
        await storage.release_slot("key:c", "a")
        await storage.release_slot("key:c", "a")
        assert await acquire("c")
        assert not await acquire("d", at=NOW + 0.5)
        assert await acquire("d", at=NOW + 2), "b's slot expired"
        assert await storage.acquire_slot("key:other", 1, "a", NOW, NOW + 60)

    async def test_limiters_hold_under_contention(self, storage: Storage) -> None:
        rates = await _race(
            60, lambda n: storage.take_rate("race:rate", 10, 0.001, NOW)
        )
        windows = await _race(
            60, lambda n: storage.take_window("race:window", 7, 3600, NOW)
        )
        slots = await _race(
            60,
            lambda n: storage.acquire_slot(
                "race:slot", 4, f"holder-{n}", NOW, NOW + 60
            ),
        )

        assert rates.count(0.0) == 10
        assert windows.count(0.0) == 7
        assert slots.count(True) == 4

    # -- statistics and audit ---------------------------------------------------

    async def test_stats_rows_add_up(self, storage: Storage) -> None:
        hour = NOW - NOW % 3600

        def row(value: str, start: float = hour, **counts: object) -> StatsRow:
            return StatsRow("hour", start, "model", value, **counts)  # type: ignore[arg-type]

        await storage.add_stats(
            [
                row("grok-4", requests=2, successes=1, failures=1, latency_ms=30.0),
                row("grok-3", requests=1, successes=1, latency_ms=5.0),
                StatsRow("hour", hour, "total", "", 3, 2, 1, 35.0),
                StatsRow("day", hour, "model", "grok-4", 1, 1, 0, 1.0),
            ]
        )
        await _race(
            20,
            lambda n: storage.add_stats(
                [row("grok-4", requests=1, successes=1, latency_ms=0.5)]
            ),
        )
        await storage.add_stats([row("grok-4", start=hour - 3600, requests=9)])

        assert await storage.read_stats("hour", "model", hour) == [
            row("grok-3", requests=1, successes=1, latency_ms=5.0),
            row("grok-4", requests=22, successes=21, failures=1, latency_ms=40.0),
        ]
        assert len(await storage.read_stats("hour", "model", hour - 3600)) == 3
        assert await storage.read_stats("hour", "total", 0) == [
            StatsRow("hour", hour, "total", "", 3, 2, 1, 35.0)
        ]

        assert await storage.prune_stats("hour", hour) == 1
        assert len(await storage.read_stats("hour", "model", 0)) == 2
        assert len(await storage.read_stats("day", "model", 0)) == 1

    async def test_audit_log_is_a_ring_newest_first(self, storage: Storage) -> None:
        await storage.append_audit([_audit(n) for n in range(3)], keep=4)
        await storage.append_audit(
            [_audit(n, status=429, error="rate_limit_error") for n in range(3, 6)],
            keep=4,
        )

        entries = await storage.list_audit(10)

        assert [entry.request_id for entry in entries] == [
            "req-5",
            "req-4",
            "req-3",
            "req-2",
        ]
        assert entries[0] == _audit(5, status=429, error="rate_limit_error")
        assert await storage.list_audit(2, offset=1) == entries[1:3]
        await storage.append_audit([_audit(9)], keep=0)
        assert await storage.list_audit(10) == []

    # -- named values -------------------------------------------------------------

    async def test_named_values(self, storage: Storage) -> None:
        assert await storage.get_value("admin.password") is None
        version = await storage.change_version()

        await storage.put_value("admin.password", "hash-1")

        assert await storage.get_value("admin.password") == "hash-1"
        assert await storage.change_version() > version
        version = await storage.change_version()
        assert await storage.put_value_if_absent("admin.password", "hash-2") == "hash-1"
        assert await storage.change_version() == version
        await storage.put_value("admin.password", "hash-3")
        assert await storage.get_value("admin.password") == "hash-3"

    async def test_put_value_if_absent_has_one_winner(self, storage: Storage) -> None:
        results = await _race(
            30, lambda n: storage.put_value_if_absent("session.key", f"key-{n}")
        )

        assert len(set(results)) == 1
        assert await storage.get_value("session.key") == results[0]

    # -- short-lived values ------------------------------------------------------

    async def test_expiring_values(self, storage: Storage) -> None:
        version = await storage.change_version()
        assert await storage.get_expiring("conv:a", NOW) is None

        await storage.put_expiring("conv:a", "first", NOW, NOW + 60)
        await storage.put_expiring("conv:b", "other", NOW, NOW + 60)

        assert await storage.get_expiring("conv:a", NOW + 59) == "first"
        assert await storage.get_expiring("conv:a", NOW + 60) is None
        await storage.put_expiring("conv:a", "second", NOW + 61, NOW + 120)
        assert await storage.get_expiring("conv:a", NOW + 61) == "second"
        await storage.delete_expiring("conv:a")
        await storage.delete_expiring("conv:a")
        assert await storage.get_expiring("conv:a", NOW) is None
        assert await storage.get_expiring("conv:b", NOW) == "other"
        assert await storage.change_version() == version

    async def test_expired_values_are_swept(self, storage: Storage) -> None:
        await storage.put_expiring("gone", "x", NOW, NOW + 0.05)
        await storage.put_expiring("kept", "y", NOW, NOW + 3600)

        # The sweep's clock, or the backend's own clock for a TTL: either
        # way the first value is gone for good, even for a reader whose
        # clock lags behind.
        await trio.sleep(0.2)
        await storage.expire_reservations(NOW + 1)

        assert await storage.get_expiring("gone", NOW) is None
        assert await storage.get_expiring("kept", NOW + 1) == "y"
