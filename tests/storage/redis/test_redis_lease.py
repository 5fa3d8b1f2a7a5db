"""The one-script lease (``choose=None``) and the script cache of the Redis
backend."""

from __future__ import annotations

import collections

import redis
import trio
from grok2api_storage_redis import RedisStorage

from grok2api.storage import (
    CandidateOrder,
    Lease,
    NewToken,
    TokenChanges,
    TokenStatus,
    token_id_for,
)

NOW = 1_700_000_000.0


def _token(
    secret: str, pool: str = "basic", quota: int = 10, window: int = 100
) -> NewToken:
    return NewToken(secret, pool, quota, quota, window)


_counter = iter(range(1_000_000))


def _id() -> str:
    return f"fast-{next(_counter)}"


async def _lease(
    storage: RedisStorage,
    order: CandidateOrder,
    *,
    pools: tuple[str, ...] = ("basic",),
    now: float = NOW,
    cost: int = 1,
    exclude: frozenset[str] = frozenset(),
    lease_id: str = "",
) -> Lease | None:
    return await storage.lease(
        list(pools),
        order,
        None,
        cost,
        exclude,
        now,
        now + 60,
        lease_id or _id(),
    )


async def test_redis_lease_takes_the_most_quota_and_reserves_it(
    redis_storage: RedisStorage,
) -> None:
    await redis_storage.add_tokens(
        [_token("low", quota=2), _token("high", quota=6), _token("mid", quota=4)], NOW
    )
    taken = []
    for _ in range(4):
        lease = await _lease(redis_storage, CandidateOrder.MOST_QUOTA, lease_id=_id())
        assert lease is not None
        taken.append(lease.token_id)
    # 6 > 4: high; then 5 > 4; then 4 = 4 (either); the quota is reserved each time.
    assert taken[:2] == [token_id_for("high")] * 2
    record = await redis_storage.get_token(token_id_for("high"))
    assert record is not None and record.reserved >= 2


async def test_redis_lease_least_recently_used_and_pool_order(
    redis_storage: RedisStorage,
) -> None:
    await redis_storage.add_tokens(
        [_token("a"), _token("b"), _token("s", pool="super")], NOW
    )
    a, b = token_id_for("a"), token_id_for("b")
    for token_id, at in ((a, NOW + 1), (b, NOW + 2)):
        lease = await redis_storage.reserve(token_id, _id(), 1, at, at + 60)
        assert lease is not None
        await redis_storage.commit(lease, at)

    order = CandidateOrder.LEAST_RECENTLY_USED
    lease = await _lease(redis_storage, order, now=NOW + 3, lease_id=_id())
    assert lease is not None and lease.token_id == a
    await redis_storage.commit(lease, NOW + 3)
    lease = await _lease(redis_storage, order, now=NOW + 4, lease_id=_id())
    assert lease is not None and lease.token_id == b

    # Nothing eligible in basic (both excluded): the next pool serves.
    lease = await _lease(
        redis_storage,
        order,
        pools=("basic", "super"),
        now=NOW + 5,
        exclude=frozenset({a, b}),
        lease_id=_id(),
    )
    assert lease is not None and (lease.token_id, lease.pool) == (
        token_id_for("s"),
        "super",
    )


async def test_redis_lease_skips_ineligible_and_finds_them_when_due(
    redis_storage: RedisStorage,
) -> None:
    await redis_storage.add_tokens(
        [_token("cool"), _token("gone"), _token("spent", quota=1)], NOW
    )
    cool, gone, spent = (token_id_for(s) for s in ("cool", "gone", "spent"))
    await redis_storage.record_failure(cool, NOW, reason="429", cooldown_until=NOW + 30)
    await redis_storage.update_token(
        gone, TokenChanges(status=TokenStatus.DISABLED), NOW
    )
    lease = await redis_storage.reserve(spent, _id(), 1, NOW, NOW + 60)
    assert lease is not None
    await redis_storage.commit(lease, NOW)  # empty until NOW + 100

    for order in CandidateOrder:
        assert await _lease(redis_storage, order, now=NOW + 29, lease_id=_id()) is None
    lease = await _lease(redis_storage, CandidateOrder.RANDOM, now=NOW + 30)
    assert lease is not None and lease.token_id == cool
    record = await redis_storage.get_token(cool)
    assert record is not None and record.status is TokenStatus.ACTIVE

    lease = await _lease(
        redis_storage,
        CandidateOrder.MOST_QUOTA,
        now=NOW + 100,
        exclude=frozenset({cool}),
        lease_id=_id(),
    )
    assert lease is not None and lease.token_id == spent, "the window refilled it"
    record = await redis_storage.get_token(spent)
    assert record is not None and (record.quota, record.reserved) == (1, 1)


async def test_redis_lease_gives_expired_reservations_back_by_itself(
    redis_storage: RedisStorage,
) -> None:
    await redis_storage.add_tokens([_token("only", quota=1)], NOW)
    crashed = await _lease(redis_storage, CandidateOrder.MOST_QUOTA, lease_id=_id())
    assert crashed is not None
    assert await _lease(redis_storage, CandidateOrder.MOST_QUOTA, now=NOW + 59) is None

    # Nobody swept; the worker that held the lease is gone.
    lease = await _lease(redis_storage, CandidateOrder.MOST_QUOTA, now=NOW + 60)
    assert lease is not None and lease.token_id == crashed.token_id
    record = await redis_storage.get_token(lease.token_id)
    assert record is not None and record.reserved == 1
    assert await redis_storage.expire_reservations(NOW + 60) == 0


async def test_redis_concurrent_one_script_leases_never_exceed_quota(
    redis_storage: RedisStorage,
) -> None:
    quotas = {"x": 3, "y": 5, "z": 7}
    await redis_storage.add_tokens([_token(s, quota=q) for s, q in quotas.items()], NOW)
    leases: list[Lease] = []

    async def attempt(n: int, order: CandidateOrder) -> None:
        lease = await _lease(redis_storage, order, lease_id=f"race-{n}")
        if lease is not None:
            leases.append(lease)

    async with trio.open_nursery() as nursery:
        for n in range(150):
            nursery.start_soon(attempt, n, list(CandidateOrder)[n % 3])

    per_token = collections.Counter(lease.token_id for lease in leases)
    assert per_token == {token_id_for(s): q for s, q in quotas.items()}
    for lease in leases:
        await redis_storage.commit(lease, NOW + 1)
    for secret in quotas:
        record = await redis_storage.get_token(token_id_for(secret))
        assert record is not None and (record.quota, record.reserved) == (0, 0)


async def test_redis_scripts_reload_after_script_flush(
    redis_storage: RedisStorage, redis_url: str
) -> None:
    await redis_storage.add_tokens([_token("a", quota=5)], NOW)
    admin = redis.Redis.from_url(redis_url)
    try:
        for _ in range(2):
            admin.script_flush()
            lease = await _lease(
                redis_storage, CandidateOrder.MOST_QUOTA, lease_id=_id()
            )
            assert lease is not None
            admin.script_flush()
            await redis_storage.commit(lease, NOW)
            admin.script_flush()
            assert (
                len(
                    await redis_storage.candidates(
                        "basic", CandidateOrder.RANDOM, 5, 1, frozenset(), NOW
                    )
                )
                == 1
            )
        record = await redis_storage.get_token(token_id_for("a"))
        assert record is not None and (record.quota, record.use_count) == (3, 2)
    finally:
        admin.close()


async def test_redis_keys_hold_no_secret(
    redis_storage: RedisStorage, redis_url: str
) -> None:
    secret = "sso-a-secret-that-must-not-be-a-key"
    await redis_storage.add_tokens([_token(secret)], NOW)
    lease = await _lease(redis_storage, CandidateOrder.RANDOM, lease_id=_id())
    assert lease is not None and lease.secret == secret
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        names = admin.keys("*")
        assert names and all(name.startswith("grok2api:") for name in names)
        assert not [name for name in names if secret in name]
        assert f"grok2api:token:{token_id_for(secret)}" in names
    finally:
        admin.close()
