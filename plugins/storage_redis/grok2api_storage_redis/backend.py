"""The ``redis`` storage backend: one Redis server shared by every worker and
host of a deployment.

:class:`RedisStorage` turns each ledger operation into one Lua script call
(see :mod:`.scripts` for the scripts and the indexes they keep, and
:mod:`.keys` for the key layout); :mod:`.client` explains how the synchronous
redis-py client is used from Trio and where its errors are translated. API keys
and named values (:mod:`.admin`), short-lived values (:mod:`.expiring`), the
shared limiters (:mod:`.limiters`), statistics (:mod:`.stats`) and the audit log
(:mod:`.audit`) keep their scripts and encodings in modules of their own;
:mod:`.migrations` upgrades an older key layout when the storage opens.

Scripts are registered as redis-py :class:`~redis.commands.core.Script`
objects: they are sent by SHA1 (``EVALSHA``) and loaded again when the server
answers ``NOSCRIPT``, which it does after a restart or ``SCRIPT FLUSH``.

Only a single Redis server (or a primary behind failover) is supported: the
scripts compute key names from their arguments, which Redis Cluster forbids.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script

from grok2api import (
    ApiKeyChanges,
    ApiKeyRecord,
    AuditEntry,
    CandidateOrder,
    Chooser,
    ExportedToken,
    Lease,
    NewToken,
    PoolCounts,
    StatsRow,
    Storage,
    TokenChanges,
    TokenPage,
    TokenQuery,
    TokenRecord,
)

from . import admin, audit, expiring, limiters, scripts, stats, transfer
from .client import RedisClient
from .keys import DEFAULT_PREFIX, Keys
from .listing import list_tokens, load_records
from .migrations import migrate
from .records import record_from_fields

__all__ = ["SPENT_LEASE_RETENTION", "RedisStorage"]

#: Seconds a committed lease id is remembered so that a repeat is a no-op.
SPENT_LEASE_RETENTION = 24 * 3600

# Expired reservations given back per script call, so that a sweep after a
# long outage never holds Redis for long.
_EXPIRE_BATCH = 500

# Tokens one pool_counts script call looks at.
_COUNT_SLICE = 2000

_STATES = ("active", "cooling", "exhausted", "invalid", "disabled")


def _arg(value: float | int | None) -> str:
    """A number as a script argument; ``''`` stands for None."""
    return "" if value is None else repr(value)


class RedisStorage(Storage):
    """Tokens, ledger and runtime config in Redis.

    Args:
        pool: a redis-py connection pool with ``connections`` connections,
            ``decode_responses=True`` and retries switched off (see
            :func:`~grok2api_storage_redis.factory.create_redis_storage`).
        prefix: put before every key, so several deployments can share a db.
        timeout: the most seconds a call may wait for a free connection; the
            pool's socket timeouts bound each round trip.
        connections: calls (and worker threads) this process runs at once.
    """

    name = "redis"

    def __init__(
        self,
        pool: redis.ConnectionPool,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 5.0,
        connections: int = 8,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if connections < 1:
            raise ValueError(f"connections must be at least 1, got {connections!r}")
        kwargs = pool.connection_kwargs
        where = f"{kwargs.get('host', kwargs.get('path'))}:{kwargs.get('port', '')}"
        self.keys = Keys(prefix)
        self._client = RedisClient(
            pool, where=where, timeout=timeout, connections=connections
        )
        self._scripts = {
            name: self._client.redis.register_script(scripts.PRELUDE + body)
            for name, body in (
                ("add_tokens", scripts.ADD_TOKENS),
                ("remove_tokens", scripts.REMOVE_TOKENS),
                ("update_token", scripts.UPDATE_TOKEN),
                ("candidates", scripts.CANDIDATES),
                ("reserve", scripts.RESERVE),
                ("lease", scripts.LEASE),
                ("commit", scripts.COMMIT),
                ("release", scripts.RELEASE),
                ("expire", scripts.EXPIRE),
                ("record_failure", scripts.RECORD_FAILURE),
                ("record_sync", scripts.RECORD_SYNC),
                ("pool_counts", scripts.POOL_COUNTS),
                ("import_tokens", transfer.IMPORT_TOKENS),
                ("list_api_keys", admin.LIST_API_KEYS),
                ("update_api_key", admin.UPDATE_API_KEY),
                ("remove_api_keys", admin.REMOVE_API_KEYS),
                ("record_api_key_use", admin.RECORD_API_KEY_USE),
                ("put_value_if_absent", admin.PUT_VALUE_IF_ABSENT),
                ("take_rate", limiters.TAKE_RATE),
                ("take_window", limiters.TAKE_WINDOW),
                ("acquire_slot", limiters.ACQUIRE_SLOT),
                ("prune_stats", stats.PRUNE_STATS),
                ("append_audit", audit.APPEND_AUDIT),
            )
        }

    def __repr__(self) -> str:
        return f"<RedisStorage {self._client.where} prefix={self.keys.prefix!r}>"

    @property
    def pool(self) -> redis.ConnectionPool:
        """The redis-py connection pool (for tests and diagnostics)."""
        return self._client.pool

    async def _script(self, name: str, *args: str) -> Any:
        script: Script = self._scripts[name]
        return await self._client.run(
            lambda r: script(args=(self.keys.prefix, *args), client=r)
        )

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        self._client.closed = False
        await self._client.run(self._prepare)

    def _prepare(self, r: redis.Redis) -> None:
        migrate(r, self.keys)
        # Loaded up front so that the first requests do not each pay for it.
        for script in self._scripts.values():
            script.sha = r.script_load(script.script)

    async def aclose(self) -> None:
        if not self._client.closed:
            await self._client.aclose()

    # -- tokens --------------------------------------------------------------

    async def add_tokens(self, tokens: Sequence[NewToken], now: float) -> int:
        args: list[str] = [repr(now)]
        for token in tokens:
            args += [
                token.id,
                token.secret,
                token.pool,
                str(token.quota),
                str(token.quota_total),
                str(token.window_seconds),
                json.dumps(list(token.tags)),
                token.note,
                repr(random.random()),
            ]
        if not tokens:
            return 0
        return int(await self._script("add_tokens", *args))

    async def remove_tokens(self, token_ids: Sequence[str]) -> int:
        if not token_ids:
            return 0
        return int(await self._script("remove_tokens", *token_ids))

    async def get_token(self, token_id: str) -> TokenRecord | None:
        values = await self._client.run(
            lambda r: r.hmget(self.keys.token(token_id), scripts.RECORD_FIELDS)
        )
        return record_from_fields(values)

    async def list_tokens(self, query: TokenQuery) -> TokenPage:
        return await self._client.run(lambda r: list_tokens(r, self.keys, query))

    async def token_secrets(self, token_ids: Sequence[str]) -> dict[str, str]:
        ids = list(token_ids)

        def read(r: redis.Redis) -> list[str | None]:
            pipe = r.pipeline(transaction=False)
            for token_id in ids:
                pipe.hget(self.keys.token(token_id), "secret")
            return pipe.execute()

        secrets = await self._client.run(read)
        return {i: s for i, s in zip(ids, secrets, strict=True) if s is not None}

    async def export_tokens(self, offset: int, limit: int) -> list[ExportedToken]:
        return await self._client.run(
            lambda r: transfer.export_page(r, self.keys, offset, limit)
        )

    async def import_tokens(self, tokens: Sequence[ExportedToken], now: float) -> int:
        if not tokens:
            return 0
        args = transfer.import_args(tokens)
        return int(await self._script("import_tokens", repr(now), *args))

    async def update_token(
        self, token_id: str, changes: TokenChanges, now: float
    ) -> TokenRecord | None:
        fields: dict[str, Any] = {}
        if changes.reset:
            fields["reset"] = True
        if changes.status is not None:
            fields["status"] = changes.status.value
        if changes.tags is not None:
            fields["tags"] = json.dumps(list(changes.tags))
        if changes.note is not None:
            fields["note"] = changes.note
        if changes.quota is not None:
            fields["quota"] = changes.quota
        if not fields:
            return await self.get_token(token_id)
        values = await self._script(
            "update_token", token_id, repr(now), json.dumps(fields)
        )
        return None if values is None else record_from_fields(values)

    async def pool_counts(
        self, pools: Sequence[str], cost: int, now: float
    ) -> PoolCounts:
        # TODO: this reads every token of the pools (in slices, so that Redis
        # is never held for long); about a second for 100,000 tokens. Counting
        # from the indexes would make it cheap.
        script: Script = self._scripts["pool_counts"]
        args = (self.keys.prefix, str(cost), repr(now))

        def count(r: redis.Redis) -> PoolCounts:
            counts = dict.fromkeys(_STATES, 0)
            earliest: float | None = None
            for pool in dict.fromkeys(pools):
                for start in itertools.count(0, _COUNT_SLICE):
                    stop = str(start + _COUNT_SLICE - 1)
                    *numbers, first, seen = script(
                        args=(*args, pool, str(start), stop), client=r
                    )
                    for state, n in zip(_STATES, numbers, strict=True):
                        counts[state] += int(n)
                    if first is not None:
                        at = float(first)
                        earliest = at if earliest is None else min(earliest, at)
                    if int(seen) < _COUNT_SLICE:
                        break
            return PoolCounts(counts=counts, earliest_reset=earliest)

        return await self._client.run(count)

    # -- the ledger ----------------------------------------------------------

    async def candidates(
        self,
        pool: str,
        order: CandidateOrder,
        limit: int,
        cost: int,
        exclude: frozenset[str],
        now: float,
    ) -> list[TokenRecord]:
        rows = await self._script(
            "candidates",
            pool,
            order.value,
            str(max(0, limit)),
            str(cost),
            repr(now),
            repr(random.random()),
            *sorted(exclude),
        )
        return [r for r in map(record_from_fields, rows) if r is not None]

    async def reserve(
        self, token_id: str, lease_id: str, cost: int, now: float, expires_at: float
    ) -> Lease | None:
        if cost < 0:
            raise ValueError(f"cost must be non-negative, got {cost}")
        got = await self._script(
            "reserve",
            token_id,
            lease_id,
            str(cost),
            repr(now),
            repr(expires_at),
            repr(random.random()),
        )
        if got is None:
            return None
        secret, pool = got
        return Lease(lease_id, token_id, secret, pool, cost, expires_at)

    async def lease(
        self,
        pools: Sequence[str],
        order: CandidateOrder,
        choose: Chooser | None,
        cost: int,
        exclude: frozenset[str],
        now: float,
        expires_at: float,
        lease_id: str,
        sample_size: int = 16,
        attempts: int = 8,
    ) -> Lease | None:
        """Pick and reserve in one script when ``choose`` is None.

        The script walks the pools in order, takes the first eligible token
        in ``order`` from the pool's index and reserves ``cost`` on it, all
        in one atomic step, so there is no lost race to retry. A ``choose``
        function needs the sample in Python, so it takes the default path
        (:meth:`candidates`, then a conditional :meth:`reserve`).
        """
        if choose is not None:
            return await super().lease(
                pools,
                order,
                choose,
                cost,
                exclude,
                now,
                expires_at,
                lease_id,
                sample_size,
                attempts,
            )
        if cost < 0:
            raise ValueError(f"cost must be non-negative, got {cost}")
        got = await self._script(
            "lease",
            repr(now),
            repr(expires_at),
            lease_id,
            str(cost),
            order.value,
            repr(random.random()),
            repr(random.random()),
            str(len(pools)),
            *pools,
            *sorted(exclude),
        )
        if got is None:
            return None
        token_id, secret, pool = got
        return Lease(lease_id, token_id, secret, pool, cost, expires_at)

    async def commit(self, lease: Lease, now: float) -> None:
        await self._script(
            "commit",
            lease.lease_id,
            lease.token_id,
            str(lease.cost),
            repr(now),
            str(SPENT_LEASE_RETENTION),
        )

    async def release(self, lease: Lease) -> None:
        await self._script("release", lease.lease_id)

    async def expire_reservations(self, now: float) -> int:
        total = 0
        while True:
            count, more = await self._script("expire", repr(now), str(_EXPIRE_BATCH))
            total += int(count)
            if not more:
                return total

    async def record_failure(
        self,
        token_id: str,
        now: float,
        *,
        reason: str,
        invalidate_after: int | None = None,
        cooldown_until: float | None = None,
        quota: int | None = None,
    ) -> TokenRecord | None:
        values = await self._script(
            "record_failure",
            token_id,
            repr(now),
            reason,
            _arg(invalidate_after),
            _arg(cooldown_until),
            _arg(quota),
        )
        return None if values is None else record_from_fields(values)

    async def record_sync(
        self,
        token_id: str,
        now: float,
        *,
        remaining: int | None,
        total: int | None,
        window_seconds: int | None,
    ) -> TokenRecord | None:
        values = await self._script(
            "record_sync",
            token_id,
            repr(now),
            _arg(remaining),
            _arg(total),
            _arg(window_seconds),
        )
        return None if values is None else record_from_fields(values)

    # -- runtime configuration and change signal ----------------------------

    async def load_config_overrides(self) -> dict[str, dict[str, Any]]:
        text = await self._client.run(lambda r: r.get(self.keys.config_overrides))
        loaded: dict[str, dict[str, Any]] = json.loads(text) if text else {}
        return loaded

    async def save_config_overrides(self, overrides: dict[str, dict[str, Any]]) -> None:
        # Serialised here, so a value JSON cannot hold fails before any write.
        text = json.dumps(overrides)

        def save(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.set(self.keys.config_overrides, text)
            pipe.incr(self.keys.change_version)
            pipe.execute()

        await self._client.run(save)

    async def change_version(self) -> int:
        value = await self._client.run(lambda r: r.get(self.keys.change_version))
        return int(value or 0)

    # -- API keys ------------------------------------------------------------

    async def add_api_keys(self, keys: Sequence[ApiKeyRecord]) -> None:
        if not keys:
            return
        records = list(keys)
        await self._client.run(lambda r: admin.add_api_keys(r, self.keys, records))

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        rows = await self._script("list_api_keys")
        return [k for k in map(admin.api_key_from_fields, rows) if k is not None]

    async def update_api_key(
        self, key_id: str, changes: ApiKeyChanges
    ) -> ApiKeyRecord | None:
        args = admin.change_args(changes)
        if not args:
            values = await self._client.run(
                lambda r: r.hmget(self.keys.api_key(key_id), admin.API_KEY_FIELDS)
            )
        else:
            values = await self._script("update_api_key", key_id, *args)
        return None if values is None else admin.api_key_from_fields(values)

    async def remove_api_keys(self, key_ids: Sequence[str]) -> int:
        if not key_ids:
            return 0
        return int(await self._script("remove_api_keys", *key_ids))

    async def record_api_key_use(self, uses: dict[str, tuple[int, float]]) -> None:
        if uses:
            await self._script("record_api_key_use", *admin.use_args(uses))

    # -- limiters shared by every worker ------------------------------------

    async def take_rate(
        self, bucket: str, capacity: float, per_second: float, now: float
    ) -> float:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        if per_second <= 0:
            raise ValueError(f"per_second must be positive, got {per_second!r}")
        wait = await self._script(
            "take_rate",
            bucket,
            repr(float(capacity)),
            repr(float(per_second)),
            repr(now),
        )
        return float(wait)

    async def take_window(
        self, bucket: str, limit: int, window_seconds: int, now: float
    ) -> float:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds!r}")
        wait = await self._script(
            "take_window", bucket, str(limit), str(window_seconds), repr(now)
        )
        return float(wait)

    async def acquire_slot(
        self, bucket: str, limit: int, holder: str, now: float, expires_at: float
    ) -> bool:
        got = await self._script(
            "acquire_slot", bucket, str(limit), holder, repr(now), repr(expires_at)
        )
        return bool(got)

    async def release_slot(self, bucket: str, holder: str) -> None:
        await self._client.run(lambda r: r.zrem(self.keys.slots(bucket), holder))

    # -- statistics and the audit log ---------------------------------------

    async def add_stats(self, rows: Sequence[StatsRow]) -> None:
        if not rows:
            return
        batch = list(rows)
        await self._client.run(lambda r: stats.add_stats(r, self.keys, batch))

    async def read_stats(
        self, period: str, dimension: str, since: float
    ) -> list[StatsRow]:
        return await self._client.run(
            lambda r: stats.read_stats(r, self.keys, period, dimension, since)
        )

    async def prune_stats(self, period: str, before: float) -> int:
        return int(await self._script("prune_stats", period, repr(float(before))))

    async def append_audit(self, entries: Sequence[AuditEntry], keep: int) -> None:
        if keep < 0:
            raise ValueError(f"keep must be non-negative, got {keep!r}")
        await self._script("append_audit", *audit.append_args(entries, keep))

    async def list_audit(self, limit: int, offset: int = 0) -> list[AuditEntry]:
        return await self._client.run(
            lambda r: audit.list_audit(r, self.keys, limit, offset)
        )

    # -- small shared values --------------------------------------------------

    async def get_value(self, name: str) -> str | None:
        value: str | None = await self._client.run(
            lambda r: r.hget(self.keys.values, name)
        )
        return value

    async def put_value(self, name: str, value: str) -> None:
        await self._client.run(lambda r: admin.put_value(r, self.keys, name, value))

    async def put_value_if_absent(self, name: str, value: str) -> str:
        stored: str = await self._script("put_value_if_absent", name, value)
        return stored

    # -- short-lived shared values -------------------------------------------

    async def put_expiring(
        self, name: str, value: str, now: float, expires_at: float
    ) -> None:
        await self._client.run(
            lambda r: expiring.put_expiring(r, self.keys, name, value, now, expires_at)
        )

    async def get_expiring(self, name: str, now: float) -> str | None:
        return await self._client.run(
            lambda r: expiring.get_expiring(r, self.keys, name, now)
        )

    async def delete_expiring(self, name: str) -> None:
        await self._client.run(lambda r: r.delete(self.keys.expiring(name)))

    # -- helpers for tests and tools ----------------------------------------

    async def records(self, token_ids: Sequence[str]) -> list[TokenRecord]:
        """The records of several tokens in one pipelined read."""
        ids = list(token_ids)
        return await self._client.run(lambda r: load_records(r, self.keys, ids))
