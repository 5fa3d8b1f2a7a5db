"""The SQLite schema of the local backend and its migrations.

The schema version lives in ``PRAGMA user_version``. :func:`migrate` reads it
inside a ``BEGIN IMMEDIATE`` transaction, so when several workers open the
same file at once exactly one of them applies the missing steps and the others
find the file already current once they get the write lock.

The candidate indexes are partial (``WHERE status IN ('active', 'cooling')``):
invalid and disabled tokens never cost a candidate walk anything, and every
candidate query repeats that exact term so SQLite can prove the index applies.

Version 2 adds what the gateway shares besides the ledger: managed API keys
(their digests, never the keys), the state of the shared limiters, request
statistics per hour and day, the audit log and small named values. Limiter
rows carry the time after which they mean nothing any more (a refilled rate
bucket, a finished window, an expired slot), indexed so that
:func:`~grok2api_storage_local.limiters.prune_idle` deletes them cheaply.
"""

from __future__ import annotations

import sqlite3

from grok2api import StorageError

__all__ = ["LEASABLE", "SCHEMA_VERSION", "STEPS", "migrate"]

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

# ``full_at`` is when a rate bucket is full again: from then on the row says
# no more than its absence would. Stats rows are keyed in the order they are
# read (a period and dimension, then time); the audit log's rowid breaks ties
# between entries of the same ``at`` in the order they were appended.
_VERSION_2 = """
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    created_at REAL NOT NULL,
    requests_per_minute INTEGER,
    concurrent_requests INTEGER,
    quota INTEGER,
    quota_window_seconds INTEGER NOT NULL,
    models TEXT NOT NULL DEFAULT '[]',
    use_count INTEGER NOT NULL DEFAULT 0,
    last_used_at REAL
);
CREATE INDEX api_keys_by_creation ON api_keys (created_at);

CREATE TABLE rate_buckets (
    bucket TEXT PRIMARY KEY,
    full_at REAL NOT NULL
);
CREATE INDEX rate_buckets_by_full ON rate_buckets (full_at);

CREATE TABLE window_counts (
    bucket TEXT NOT NULL,
    window_start REAL NOT NULL,
    window_end REAL NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
) WITHOUT ROWID;
CREATE INDEX window_counts_by_end ON window_counts (window_end);

CREATE TABLE slots (
    bucket TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (bucket, holder)
) WITHOUT ROWID;
CREATE INDEX slots_by_expiry ON slots (expires_at);

CREATE TABLE stats (
    period TEXT NOT NULL,
    dimension TEXT NOT NULL,
    start REAL NOT NULL,
    value TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    successes INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    latency_ms REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (period, dimension, start, value)
) WITHOUT ROWID;
CREATE INDEX stats_by_start ON stats (period, start);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    request_id TEXT NOT NULL,
    client TEXT NOT NULL,
    key_name TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    model TEXT NOT NULL,
    status INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    stream INTEGER NOT NULL,
    token_id TEXT NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (at);

CREATE TABLE named_values (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
"""

# Version 3: short-lived values (conversation bindings), removed by the
# periodic sweep once expired.
_VERSION_3 = """
CREATE TABLE expiring_values (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX expiring_values_by_expiry ON expiring_values (expires_at);
"""

# Every request writes a reservation and a spent lease. Keyed by lease id
# without a separate rowid, each table is one b-tree fewer, so one page
# fewer to write per transaction.
_VERSION_4 = """
CREATE TABLE reservations_keyed (
    lease_id TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    cost INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
INSERT INTO reservations_keyed (lease_id, token_id, cost, expires_at)
    SELECT lease_id, token_id, cost, expires_at FROM reservations;
DROP TABLE reservations;
ALTER TABLE reservations_keyed RENAME TO reservations;
CREATE INDEX reservations_by_expiry ON reservations (expires_at);
CREATE INDEX reservations_by_token ON reservations (token_id);
CREATE TABLE spent_leases_keyed (
    lease_id TEXT PRIMARY KEY,
    spent_at REAL NOT NULL
) WITHOUT ROWID;
INSERT INTO spent_leases_keyed (lease_id, spent_at)
    SELECT lease_id, spent_at FROM spent_leases;
DROP TABLE spent_leases;
ALTER TABLE spent_leases_keyed RENAME TO spent_leases;
CREATE INDEX spent_leases_by_time ON spent_leases (spent_at)
"""

#: Migration steps; step ``n`` brings the file from version ``n`` to ``n + 1``.
#: A step is only ever appended: files in the field were built by the others.
STEPS: tuple[str, ...] = (_VERSION_1, _VERSION_2, _VERSION_3, _VERSION_4)

SCHEMA_VERSION = len(STEPS)


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
        for step in STEPS[found:]:
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
