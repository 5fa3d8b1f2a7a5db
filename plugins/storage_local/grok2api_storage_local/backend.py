"""The ``local`` storage backend: one SQLite file shared by the workers of a host.

:class:`LocalStorage` is the async face of the SQL in :mod:`.tokens`,
:mod:`.ledger`, :mod:`.keys`, :mod:`.limiters` and :mod:`.activity`; each method
hands one function to :class:`~grok2api_storage_local.database.Database`, which
runs it in a worker thread within the configured timeout. See :mod:`.database`
for the threading and timeout rules, and :mod:`.ledger` and :mod:`.limiters`
for why reservations and limits are race-free across processes.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
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

from . import activity, ledger, limiters, transfer
from . import keys as keys_sql
from . import tokens as token_sql
from .database import Database, first, immediate

__all__ = ["LocalStorage"]


class LocalStorage(Storage):
    """Tokens, ledger, runtime config, API keys, shared limiters, statistics,
    the audit log and named values in a SQLite file (WAL mode).

    Args:
        path: the database file, e.g. ``DATA_DIR/grok2api.sqlite3``.
        timeout: the most seconds one call may take, including waiting for
            another worker's write lock; beyond it the call raises
            :class:`~grok2api.errors.StorageUnavailable`.
        connections: connections (and worker threads) this process uses.
    """

    name = "local"

    def __init__(
        self, path: Path, *, timeout: float = 5.0, connections: int = 4
    ) -> None:
        self.path = path
        self._db = Database(path, timeout=timeout, connections=connections)

    def __repr__(self) -> str:
        return f"<LocalStorage {str(self.path)!r}>"

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        await self._db.open()

    async def aclose(self) -> None:
        await self._db.aclose()

    # -- tokens --------------------------------------------------------------

    async def add_tokens(self, tokens: Sequence[NewToken], now: float) -> int:
        work = functools.partial(token_sql.add_tokens, tokens=list(tokens), now=now)
        return await self._db.run(work)

    async def remove_tokens(self, token_ids: Sequence[str]) -> int:
        work = functools.partial(token_sql.remove_tokens, token_ids=list(token_ids))
        return await self._db.run(work)

    async def get_token(self, token_id: str) -> TokenRecord | None:
        return await self._db.run(
            functools.partial(token_sql.get_token, token_id=token_id)
        )

    async def list_tokens(self, query: TokenQuery) -> TokenPage:
        return await self._db.run(functools.partial(token_sql.list_tokens, query=query))

    async def token_secrets(self, token_ids: Sequence[str]) -> dict[str, str]:
        work = functools.partial(token_sql.token_secrets, token_ids=list(token_ids))
        return await self._db.run(work)

    async def export_tokens(self, offset: int, limit: int) -> list[ExportedToken]:
        work = functools.partial(transfer.export_tokens, offset=offset, limit=limit)
        return await self._db.run(work)

    async def import_tokens(self, tokens: Sequence[ExportedToken], now: float) -> int:
        work = functools.partial(transfer.import_tokens, tokens=list(tokens), now=now)
        return await self._db.run(work)

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
        work = functools.partial(
            ledger.lease_first,
            pools=pools,
            order=order,
            cost=cost,
            exclude=exclude,
            now=now,
            expires_at=expires_at,
            lease_id=lease_id,
        )
        return await self._db.run_short(work)

    async def commit(self, lease: Lease, now: float) -> None:
        await self._db.run_short(functools.partial(ledger.commit, lease=lease, now=now))

    async def release(self, lease: Lease) -> None:
        await self._db.run_short(functools.partial(ledger.release, lease=lease))

    async def expire_reservations(self, now: float) -> int:
        # The gateway sweeps reservations periodically; the same sweep keeps
        # limiter state from piling up for buckets nobody uses any more.
        return await self._db.run(functools.partial(_sweep, now=now))

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
        await self._db.run(functools.partial(keys_sql.add_api_keys, keys=list(keys)))

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        return await self._db.run(keys_sql.list_api_keys)

    async def update_api_key(
        self, key_id: str, changes: ApiKeyChanges
    ) -> ApiKeyRecord | None:
        work = functools.partial(
            keys_sql.update_api_key, key_id=key_id, changes=changes
        )
        return await self._db.run(work)

    async def remove_api_keys(self, key_ids: Sequence[str]) -> int:
        work = functools.partial(keys_sql.remove_api_keys, key_ids=list(key_ids))
        return await self._db.run(work)

    async def record_api_key_use(self, uses: dict[str, tuple[int, float]]) -> None:
        work = functools.partial(keys_sql.record_api_key_use, uses=dict(uses))
        await self._db.run(work)

    # -- limiters shared by every worker ------------------------------------

    async def take_rate(
        self, bucket: str, capacity: float, per_second: float, now: float
    ) -> float:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if per_second <= 0:
            raise ValueError(f"per_second must be positive, got {per_second}")
        work = functools.partial(
            limiters.take_rate,
            bucket=bucket,
            capacity=capacity,
            per_second=per_second,
            now=now,
        )
        return await self._db.run_short(work)

    async def take_window(
        self, bucket: str, limit: int, window_seconds: int, now: float
    ) -> float:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        work = functools.partial(
            limiters.take_window,
            bucket=bucket,
            limit=limit,
            window_seconds=window_seconds,
            now=now,
        )
        return await self._db.run_short(work)

    async def acquire_slot(
        self, bucket: str, limit: int, holder: str, now: float, expires_at: float
    ) -> bool:
        work = functools.partial(
            limiters.acquire_slot,
            bucket=bucket,
            limit=limit,
            holder=holder,
            now=now,
            expires_at=expires_at,
        )
        return await self._db.run_short(work)

    async def release_slot(self, bucket: str, holder: str) -> None:
        work = functools.partial(limiters.release_slot, bucket=bucket, holder=holder)
        await self._db.run_short(work)

    # -- statistics and the audit log ---------------------------------------

    async def add_stats(self, rows: Sequence[StatsRow]) -> None:
        await self._db.run(functools.partial(activity.add_stats, rows=list(rows)))

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
        if keep < 0:
            raise ValueError(f"keep must be non-negative, got {keep}")
        work = functools.partial(
            activity.append_audit, entries=list(entries), keep=keep
        )
        await self._db.run(work)

    async def list_audit(self, limit: int, offset: int = 0) -> list[AuditEntry]:
        work = functools.partial(activity.list_audit, limit=limit, offset=offset)
        return await self._db.run(work)

    # -- small shared values --------------------------------------------------

    async def get_value(self, name: str) -> str | None:
        return await self._db.run(functools.partial(_get_value, name=name))

    async def put_value(self, name: str, value: str) -> None:
        await self._db.run(functools.partial(_put_value, name=name, value=value))

    async def put_value_if_absent(self, name: str, value: str) -> str:
        work = functools.partial(_put_value_if_absent, name=name, value=value)
        return await self._db.run(work)

    async def put_expiring(
        self, name: str, value: str, now: float, expires_at: float
    ) -> None:
        await self._db.run(
            functools.partial(
                _put_expiring, name=name, value=value, expires_at=expires_at
            )
        )

    async def get_expiring(self, name: str, now: float) -> str | None:
        return await self._db.run(functools.partial(_get_expiring, name=name, now=now))

    async def delete_expiring(self, name: str) -> None:
        await self._db.run(functools.partial(_delete_expiring, name=name))


def _load_overrides(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    row = conn.execute("SELECT data FROM config_overrides WHERE id = 1").fetchone()
    loaded: dict[str, dict[str, Any]] = json.loads(row[0]) if row else {}
    return loaded


def _save_overrides(conn: sqlite3.Connection, text: str) -> None:
    with immediate(conn):
        conn.execute("UPDATE config_overrides SET data = ? WHERE id = 1", (text,))
        token_sql.bump_change_version(conn)


def _sweep(conn: sqlite3.Connection, now: float) -> int:
    expired = ledger.expire_reservations(conn, now)
    limiters.prune_idle(conn, now)
    with immediate(conn):
        conn.execute("DELETE FROM expiring_values WHERE expires_at <= ?", (now,))
    return expired


def _put_expiring(
    conn: sqlite3.Connection, name: str, value: str, expires_at: float
) -> None:
    with immediate(conn):
        conn.execute(
            "INSERT INTO expiring_values (name, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            "expires_at = excluded.expires_at",
            (name, value, expires_at),
        )


def _get_expiring(conn: sqlite3.Connection, name: str, now: float) -> str | None:
    row = first(
        conn.execute(
            "SELECT value FROM expiring_values WHERE name = ? AND expires_at > ?",
            (name, now),
        )
    )
    return None if row is None else str(row["value"])


def _delete_expiring(conn: sqlite3.Connection, name: str) -> None:
    with immediate(conn):
        conn.execute("DELETE FROM expiring_values WHERE name = ?", (name,))


def _get_value(conn: sqlite3.Connection, name: str) -> str | None:
    row = first(conn.execute("SELECT value FROM named_values WHERE name = ?", (name,)))
    return None if row is None else str(row["value"])


def _put_value(conn: sqlite3.Connection, name: str, value: str) -> None:
    with immediate(conn):
        conn.execute(
            "INSERT INTO named_values (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        token_sql.bump_change_version(conn)


def _put_value_if_absent(conn: sqlite3.Connection, name: str, value: str) -> str:
    # The write lock is held from the insert to the read, so the value read
    # back is the one every racing worker sees.
    with immediate(conn):
        written = conn.execute(
            "INSERT INTO named_values (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            (name, value),
        ).rowcount
        if written:
            token_sql.bump_change_version(conn)
            return value
        stored = conn.execute(
            "SELECT value FROM named_values WHERE name = ?", (name,)
        ).fetchone()
    return str(stored["value"])
