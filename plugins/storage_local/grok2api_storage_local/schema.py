"""The SQLite schema of the local backend and its migrations.

The schema version lives in ``PRAGMA user_version``. :func:`migrate` reads it
inside a ``BEGIN IMMEDIATE`` transaction, so when several workers open the
same file at once exactly one of them applies the missing steps and the others
find the file already current once they get the write lock.

The candidate indexes are partial (``WHERE status IN ('active', 'cooling')``):
invalid and disabled tokens never cost a candidate walk anything, and every
candidate query repeats that exact term so SQLite can prove the index applies.
"""

from __future__ import annotations

import sqlite3

from grok2api import StorageError

__all__ = ["LEASABLE", "SCHEMA_VERSION", "migrate"]

#: The WHERE term every candidate query repeats so the partial indexes apply.
LEASABLE = "status IN ('active', 'cooling')"

_VERSION_1 = f"""
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    pool TEXT NOT NULL,
    status TEXT NOT NULL,
    quota INTEGER NOT NULL,
    quota_total INTEGER NOT NULL,
    window_seconds INTEGER NOT NULL,
    reserved INTEGER NOT NULL DEFAULT 0,
    window_reset_at REAL,
    cooldown_until REAL,
    cooldown_reason TEXT NOT NULL DEFAULT '',
    fail_count INTEGER NOT NULL DEFAULT 0,
    last_fail_at REAL,
    last_fail_reason TEXT NOT NULL DEFAULT '',
    last_used_at REAL,
    use_count INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    last_sync_at REAL,
    stale INTEGER NOT NULL DEFAULT 0,
    tags TEXT NOT NULL DEFAULT '[]',
    note TEXT NOT NULL DEFAULT '',
    rand_key REAL NOT NULL
);
CREATE INDEX tokens_by_creation ON tokens (pool, created_at);
CREATE INDEX tokens_by_status ON tokens (pool, status);
CREATE INDEX tokens_by_quota ON tokens (pool, quota - reserved) WHERE {LEASABLE};
CREATE INDEX tokens_by_window ON tokens (pool, window_reset_at) WHERE {LEASABLE};
CREATE INDEX tokens_by_use ON tokens (pool, last_used_at) WHERE {LEASABLE};
CREATE INDEX tokens_by_rand ON tokens (pool, rand_key) WHERE {LEASABLE};

CREATE TABLE reservations (
    lease_id TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    cost INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX reservations_by_expiry ON reservations (expires_at);
CREATE INDEX reservations_by_token ON reservations (token_id);

CREATE TABLE spent_leases (
    lease_id TEXT PRIMARY KEY,
    spent_at REAL NOT NULL
);
CREATE INDEX spent_leases_by_time ON spent_leases (spent_at);

CREATE TABLE config_overrides (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    data TEXT NOT NULL
);
INSERT INTO config_overrides (id, data) VALUES (1, '{{}}');

CREATE TABLE change_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO change_counter (id, version) VALUES (1, 0);
"""

#: Migration steps; step ``n`` brings the file from version ``n`` to ``n + 1``.
_STEPS: tuple[str, ...] = (_VERSION_1,)

SCHEMA_VERSION = len(_STEPS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; returns the version found.

    Runs in one ``BEGIN IMMEDIATE`` transaction. The statements are executed
    one by one rather than with ``executescript``, which would commit the
    open transaction first.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise StorageError(
                f"The database schema version {found} is newer than this grok2api "
                f"understands ({SCHEMA_VERSION}); upgrade grok2api-storage-local."
            )
        for step in _STEPS[found:]:
            for statement in _statements(step):
                conn.execute(statement)
        if found < SCHEMA_VERSION:
            # PRAGMA takes no parameters; the value is our own integer.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]
