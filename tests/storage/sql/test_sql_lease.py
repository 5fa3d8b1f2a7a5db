"""Pick-and-reserve in the database (``choose=None``) on both servers."""

from __future__ import annotations

import collections

import trio
from grok2api_storage_sql import SqlStorage

from grok2api.storage import CandidateOrder, Lease, NewToken, token_id_for

NOW = 1_700_000_000.0


def _token(secret: str, quota: int = 10, pool: str = "basic", **kw: int) -> NewToken:
    total = kw.get("total", quota)
    return NewToken(secret, pool, quota, total, kw.get("window", 3600))


async def _lease(
    storage: SqlStorage,
    order: CandidateOrder,
    *,
    pools: tuple[str, ...] = ("basic",),
    exclude: frozenset[str] = frozenset(),
    now: float = NOW,
    lease_id: str = "l",
    cost: int = 1,
) -> Lease | None:
    return await storage.lease(
        list(pools), order, None, cost, exclude, now, now + 60, lease_id
    )


async def test_sql_lease_takes_the_most_quota_first(sql_storage: SqlStorage) -> None:
    await sql_storage.add_tokens(
        [_token("low", 2), _token("high", 6), _token("mid", 4)], NOW
    )
    refilled = _token("refilled", 1, total=9, window=100)
    await sql_storage.add_tokens([refilled], NOW)
    spent = await sql_storage.reserve(token_id_for("refilled"), "r", 1, NOW, NOW + 9)
    assert spent is not None
    await sql_storage.commit(spent, NOW)

    first = await _lease(
        sql_storage, CandidateOrder.MOST_QUOTA, now=NOW + 50, lease_id="first"
    )
    assert first is not None and first.token_id == token_id_for("high")
    assert first.secret == "high" and first.pool == "basic"
    after = await _lease(sql_storage, CandidateOrder.MOST_QUOTA, now=NOW + 100)
    assert after is not None and after.token_id == token_id_for("refilled")
    record = await sql_storage.get_token(token_id_for("refilled"))
    assert record is not None and (record.quota, record.reserved) == (9, 1)


async def test_sql_lease_takes_the_least_recently_used_first(
    sql_storage: SqlStorage,
) -> None:
    await sql_storage.add_tokens([_token("a"), _token("b"), _token("never")], NOW)
    for secret, at in (("b", NOW + 1), ("a", NOW + 2)):
        lease = await sql_storage.reserve(token_id_for(secret), secret, 1, at, at + 9)
        assert lease is not None
        await sql_storage.commit(lease, at)

    order = CandidateOrder.LEAST_RECENTLY_USED
    taken = []
    for number in range(3):
        lease = await _lease(sql_storage, order, lease_id=f"lru-{number}", now=NOW + 5)
        assert lease is not None
        await sql_storage.commit(lease, NOW + 5 + number)
        taken.append(lease.secret)
    assert taken == ["never", "b", "a"]


async def test_sql_lease_walks_pools_skips_excluded_and_ineligible(
    sql_storage: SqlStorage,
) -> None:
    await sql_storage.add_tokens(
        [
            _token("empty", 0),
            _token("excluded"),
            _token("cooling"),
            _token("fallback", pool="super"),
        ],
        NOW,
    )
    await sql_storage.record_failure(
        token_id_for("cooling"), NOW, reason="429", cooldown_until=NOW + 30
    )
    excluded = frozenset({token_id_for("excluded")})
    for order in CandidateOrder:
        lease = await _lease(
            sql_storage,
            order,
            pools=("basic", "super"),
            exclude=excluded,
            lease_id=f"walk-{order.value}",
        )
        assert lease is not None and lease.secret == "fallback", order
        await sql_storage.release(lease)
    assert await _lease(sql_storage, CandidateOrder.RANDOM, exclude=excluded) is None
    assert (
        await _lease(sql_storage, CandidateOrder.RANDOM, cost=11, lease_id="x") is None
    )
    later = await _lease(
        sql_storage,
        CandidateOrder.RANDOM,
        exclude=excluded,
        now=NOW + 30,
        lease_id="later",
    )
    assert later is not None and later.secret == "cooling"


async def test_sql_concurrent_database_picks_never_exceed_quota(
    sql_storage: SqlStorage,
) -> None:
    quotas = {"x": 3, "y": 5, "z": 7}
    await sql_storage.add_tokens([_token(s, q) for s, q in quotas.items()], NOW)
    leases: list[Lease] = []

    async def attempt(number: int) -> None:
        order = list(CandidateOrder)[number % 3]
        lease = await _lease(sql_storage, order, lease_id=f"race-{number}")
        if lease is not None:
            leases.append(lease)

    async with trio.open_nursery() as nursery:
        for number in range(120):
            nursery.start_soon(attempt, number)

    assert len(leases) == sum(quotas.values())
    per_token = collections.Counter(lease.secret for lease in leases)
    assert per_token == quotas
    assert await sql_storage.expire_reservations(NOW + 60) == sum(quotas.values())
    for secret, quota in quotas.items():
        record = await sql_storage.get_token(token_id_for(secret))
        assert record is not None and (record.quota, record.reserved) == (quota, 0)
