"""The ``pgsql`` / ``mysql`` storage backend: a PostgreSQL or MySQL/MariaDB
server shared by every worker on every host.

:class:`SqlStorage` is the async face of the SQL in :mod:`.tokens`,
:mod:`.ledger`, :mod:`.transfer`, :mod:`.api_keys`, :mod:`.limiters`,
:mod:`.activity`, :mod:`.named_values` and :mod:`.expiring_values`; each
method hands one function to :class:`~grok2api_storage_sql.database.Database`,
which runs it in a worker thread within the configured timeout (see
:mod:`.database` for why threads, and for the timeout and reconnection rules).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

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

from . import (
    activity,
    api_keys,
    expiring_values,
    ledger,
    limiters,
    named_values,
    transfer,
)
from . import tokens as token_sql
from .database import Database, Driver, Session
from .mysql import MySQLDriver
from .postgres import PostgresDriver
from .urls import ConnectionSpec, Dialect

__all__ = ["SqlStorage"]


#: Writes of at least this many tokens refresh the planner statistics.
_BULK_ROWS = 1000


class SqlStorage(Storage):
    """Tokens, ledger, runtime config, API keys, limiters, statistics, the
    audit log, named and short-lived values on a PostgreSQL or MySQL/MariaDB
    server.

    Args:
        spec: where to connect (see
            :func:`~grok2api_storage_sql.urls.parse_storage_url`).
        timeout: the most seconds one call may take, waiting for a connection
            and for row locks included; beyond it the call raises
            :class:`~grok2api.errors.StorageUnavailable`.
        connections: connections (and worker threads) this process uses.
    """

    def __init__(
        self, spec: ConnectionSpec, *, timeout: float = 5.0, connections: int = 4
    ) -> None:
        self.spec = spec
        driver: Driver = (
            PostgresDriver() if spec.dialect is Dialect.POSTGRESQL else MySQLDriver()
        )
        self.name = "pgsql" if spec.dialect is Dialect.POSTGRESQL else "mysql"
        self._driver = driver
        self._db = Database(driver, spec, timeout=timeout, connections=connections)

    def __repr__(self) -> str:
        return f"<SqlStorage {self.spec.redacted()!r}>"

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        await self._db.open()

    async def aclose(self) -> None:
        await self._db.aclose()

    # -- tokens --------------------------------------------------------------

    async def add_tokens(self, tokens: Sequence[NewToken], now: float) -> int:
        added = await self._db.run(
            functools.partial(
                token_sql.add_tokens, driver=self._driver, tokens=list(tokens), now=now
            )
        )
        await self._after_bulk_write(len(tokens))
        return added

    async def _after_bulk_write(self, rows: int) -> None:
        # Without statistics for a freshly filled table, PostgreSQL's planner
        # walks the wrong index for the quota-window refill (a lease went
        # from 3 ms to 20 ms at 100,000 tokens); a big write refreshes them.
        if rows >= _BULK_ROWS:
            await self._db.run(
                lambda session: session.execute(self._driver.analyze_sql())
            )

    async def remove_tokens(self, token_ids: Sequence[str]) -> int:
        work = functools.partial(token_sql.remove_tokens, token_ids=list(token_ids))
        return await self._db.run(work)

    async def get_token(self, token_id: str) -> TokenRecord | None:
        work = functools.partial(token_sql.get_token, token_id=token_id)
        return await self._db.run(work)

    async def list_tokens(self, query: TokenQuery) -> TokenPage:
        work = functools.partial(
            token_sql.list_tokens, driver=self._driver, query=query
        )
        return await self._db.run(work)

    async def token_secrets(self, token_ids: Sequence[str]) -> dict[str, str]:
        work = functools.partial(token_sql.token_secrets, token_ids=list(token_ids))
        return await self._db.run(work)

    async def export_tokens(self, offset: int, limit: int) -> list[ExportedToken]:
        work = functools.partial(transfer.export_tokens, offset=offset, limit=limit)
        return await self._db.run(work)

    async def import_tokens(self, tokens: Sequence[ExportedToken], now: float) -> int:
        work = functools.partial(
            transfer.import_tokens, driver=self._driver, tokens=list(tokens), now=now
        )
        added = await self._db.run(work)
        await self._after_bulk_write(len(tokens))
        return added

    async def update_token(
        self, token_id: str, changes: TokenChanges, now: float
    ) -> TokenRecord | None:
        work = functools.partial(
            token_sql.update_token, token_id=token_id, changes=changes, now=now
        )
        return await self._db.run(work)

    async def pool_counts(
        self, pools: Sequence[str], cost: int, now: float
    ) -> PoolCounts:
        work = functools.partial(
            token_sql.pool_counts, pools=list(pools), cost=cost, now=now
        )
        return await self._db.run(work)

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
        work = functools.partial(
            ledger.candidates,
            driver=self._driver,
            pool=pool,
            order=order,
            limit=limit,
            cost=cost,
            exclude=exclude,
            now=now,
        )
        return await self._db.run(work)

    async def reserve(
        self, token_id: str, lease_id: str, cost: int, now: float, expires_at: float
    ) -> Lease | None:
        if cost < 0:
            raise ValueError(f"cost must be non-negative, got {cost}")
        work = functools.partial(
            ledger.reserve,
            token_id=token_id,
            lease_id=lease_id,
            cost=cost,
            now=now,
            expires_at=expires_at,
        )
        return await self._db.run(work)

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
        """Pick and reserve in the database when ``choose`` is None (one
        transaction per pool and walk, with the picked row locked); otherwise
        offer samples to ``choose`` and reserve its choice conditionally."""
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
                sample_size=sample_size,
                attempts=attempts,
            )
        if cost < 0:
            raise ValueError(f"cost must be non-negative, got {cost}")
        work = functools.partial(
            ledger.lease,
            driver=self._driver,
            pools=list(pools),
            order=order,
            cost=cost,
            exclude=exclude,
            now=now,
            expires_at=expires_at,
            lease_id=lease_id,
        )
        return await self._db.run(work)

    async def commit(self, lease: Lease, now: float) -> None:
        work = functools.partial(
            ledger.commit, driver=self._driver, lease=lease, now=now
        )
        await self._db.run(work)

    async def release(self, lease: Lease) -> None:
        await self._db.run(functools.partial(ledger.release, lease=lease))

    async def expire_reservations(self, now: float) -> int:
        """Release expired reservations and delete limiter state and
        short-lived values that have expired (see
        :func:`.limiters.expire_limiters`)."""

        def sweep(session: Session) -> int:
            # The deletes first: after a deadlock the whole sweep runs again,
            # and released reservations, once committed, would count as none.
            limiters.expire_limiters(session, now)
            expiring_values.expire_values(session, now)
            return ledger.expire_reservations(session, now)

        return await self._db.run(sweep)

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
        work = functools.partial(
            ledger.record_failure,
            token_id=token_id,
            now=now,
            reason=reason,
            invalidate_after=invalidate_after,
            cooldown_until=cooldown_until,
            quota=quota,
        )
        return await self._db.run(work)

    async def record_sync(
        self,
        token_id: str,
        now: float,
        *,
        remaining: int | None,
        total: int | None,
        window_seconds: int | None,
    ) -> TokenRecord | None:
        work = functools.partial(
            ledger.record_sync,
            token_id=token_id,
            now=now,
            remaining=remaining,
            total=total,
            window_seconds=window_seconds,
        )
        return await self._db.run(work)

    # -- runtime configuration and change signal ----------------------------

    async def load_config_overrides(self) -> dict[str, dict[str, Any]]:
        return await self._db.run(_load_overrides)

    async def save_config_overrides(self, overrides: dict[str, dict[str, Any]]) -> None:
        # Serialised here, so a value JSON cannot hold fails before any write.
        text = json.dumps(overrides)
        await self._db.run(functools.partial(_save_overrides, text=text))

    async def change_version(self) -> int:
        return await self._db.run(token_sql.change_version)

    # -- API keys ------------------------------------------------------------

    async def add_api_keys(self, keys: Sequence[ApiKeyRecord]) -> None:
        await self._db.run(functools.partial(api_keys.add_api_keys, keys=list(keys)))

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        return await self._db.run(api_keys.list_api_keys)

    async def update_api_key(
        self, key_id: str, changes: ApiKeyChanges
    ) -> ApiKeyRecord | None:
        work = functools.partial(
            api_keys.update_api_key, key_id=key_id, changes=changes
        )
        return await self._db.run(work)

    async def remove_api_keys(self, key_ids: Sequence[str]) -> int:
        work = functools.partial(api_keys.remove_api_keys, key_ids=list(key_ids))
        return await self._db.run(work)

    async def record_api_key_use(self, uses: dict[str, tuple[int, float]]) -> None:
        work = functools.partial(api_keys.record_api_key_use, uses=dict(uses))
        await self._db.run(work)

    # -- limiters shared by every worker ------------------------------------

    async def take_rate(
        self, bucket: str, capacity: float, per_second: float, now: float
    ) -> float:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        if per_second <= 0:
            raise ValueError(f"per_second must be positive, got {per_second}")
        work = functools.partial(
            limiters.take_rate,
            driver=self._driver,
            bucket=bucket,
            capacity=capacity,
            per_second=per_second,
            now=now,
        )
        return await self._db.run(work)

    async def take_window(
        self, bucket: str, limit: int, window_seconds: int, now: float
    ) -> float:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        work = functools.partial(
            limiters.take_window,
            driver=self._driver,
            bucket=bucket,
            limit=limit,
            window_seconds=window_seconds,
            now=now,
        )
        return await self._db.run(work)

    async def acquire_slot(
        self, bucket: str, limit: int, holder: str, now: float, expires_at: float
    ) -> bool:
        work = functools.partial(
            limiters.acquire_slot,
            driver=self._driver,
            bucket=bucket,
            limit=limit,
            holder=holder,
            now=now,
            expires_at=expires_at,
        )
        return await self._db.run(work)

    async def release_slot(self, bucket: str, holder: str) -> None:
        work = functools.partial(limiters.release_slot, bucket=bucket, holder=holder)
        await self._db.run(work)

    # -- statistics and the audit log ---------------------------------------

    async def add_stats(self, rows: Sequence[StatsRow]) -> None:
        work = functools.partial(
            activity.add_stats, driver=self._driver, rows=list(rows)
        )
        await self._db.run(work)

    async def read_stats(
        self, period: str, dimension: str, since: float
    ) -> list[StatsRow]:
        work = functools.partial(
            activity.read_stats, period=period, dimension=dimension, since=since
        )
        return await self._db.run(work)

    async def prune_stats(self, period: str, before: float) -> int:
        work = functools.partial(activity.prune_stats, period=period, before=before)
        return await self._db.run(work)

    async def append_audit(self, entries: Sequence[AuditEntry], keep: int) -> None:
        work = functools.partial(
            activity.append_audit, entries=list(entries), keep=keep
        )
        await self._db.run(work)

    async def list_audit(self, limit: int, offset: int = 0) -> list[AuditEntry]:
        work = functools.partial(activity.list_audit, limit=limit, offset=offset)
        return await self._db.run(work)

    # -- small shared values --------------------------------------------------

    async def get_value(self, name: str) -> str | None:
        return await self._db.run(functools.partial(named_values.get_value, name=name))

    async def put_value(self, name: str, value: str) -> None:
        work = functools.partial(
            named_values.put_value, driver=self._driver, name=name, value=value
        )
        await self._db.run(work)

    async def put_value_if_absent(self, name: str, value: str) -> str:
        work = functools.partial(
            named_values.put_value_if_absent,
            driver=self._driver,
            name=name,
            value=value,
        )
        return await self._db.run(work)

    # -- short-lived shared values -------------------------------------------

    async def put_expiring(
        self, name: str, value: str, now: float, expires_at: float
    ) -> None:
        work = functools.partial(
            expiring_values.put_expiring,
            driver=self._driver,
            name=name,
            value=value,
            expires_at=expires_at,
        )
        await self._db.run(work)

    async def get_expiring(self, name: str, now: float) -> str | None:
        work = functools.partial(expiring_values.get_expiring, name=name, now=now)
        return await self._db.run(work)

    async def delete_expiring(self, name: str) -> None:
        work = functools.partial(expiring_values.delete_expiring, name=name)
        await self._db.run(work)


def _load_overrides(session: Session) -> dict[str, dict[str, Any]]:
    row = session.one("SELECT data FROM config_overrides WHERE id = 1")
    loaded: dict[str, dict[str, Any]] = json.loads(row["data"]) if row else {}
    return loaded


def _save_overrides(session: Session, text: str) -> None:
    with session.transaction():
        session.execute(
            "UPDATE config_overrides SET data = %(data)s WHERE id = 1", {"data": text}
        )
        token_sql.bump_change_version(session)
