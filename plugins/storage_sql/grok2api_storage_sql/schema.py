"""The SQL schema, shared by PostgreSQL and MySQL/MariaDB, and its versions.

Each migration step is a list of statements. :mod:`.postgres` and
:mod:`.mysql` run the missing steps under a database lock
(``pg_advisory_xact_lock`` / ``GET_LOCK``) and record each step in the
``schema_version`` table, one row per version with the version as its primary
key: when several workers start at once, one applies the steps and the others
find them recorded once they get the lock, and a step recorded twice would be
a duplicate-key error rather than a silent double migration.

Selection indexes: two stored generated columns make every candidate walk an
index range. ``leasable`` is 1 for ``active`` and ``cooling`` tokens (a
disabled or invalid token is never walked over), ``avail`` is ``quota -
reserved``. Each index starts with ``(pool, leasable)`` and ends with the
column the walk orders by, so picking the first eligible token reads a few
index entries whatever the size of the pool.

Version 2 adds the gateway's own shared state: ``api_keys`` (managed keys by
digest, never the key), the limiter tables (``rate_buckets``,
``window_counters``, ``slot_buckets`` and ``slot_holders``, whose rows every
worker updates in place and the reservation sweeper deletes once they
expire), ``request_stats`` (counters per time bucket and dimension),
``audit_log`` (a ring of finished requests, trimmed on every append) and
``named_values`` (small secrets such as the admin password hash).

Version 3 adds ``expiring_values``: short-lived values such as conversation
bindings, each with the time it expires, which the reservation sweeper deletes
once that has passed.
"""

from __future__ import annotations

from grok2api.errors import StorageError

__all__ = ["SCHEMA_VERSION", "check_version", "schema_steps"]

# {ts} is the timestamp type, {seq} the insertion counter column, {serial_key}
# the type of an insertion counter that is the primary key, {text_key}
# a string type that can be a key, {nulls_first} how an index puts NULL first,
# {table} the table options, {insert_ignore} and {on_conflict} an insert that
# skips an existing row (so a half-applied step can run again on MariaDB,
# where DDL cannot be rolled back). These differ between the dialects.
_VERSION_1 = (
    """CREATE TABLE IF NOT EXISTS tokens (
        id VARCHAR(64) NOT NULL PRIMARY KEY,
        {seq},
        secret TEXT NOT NULL,
        pool {text_key} NOT NULL,
        status VARCHAR(16) NOT NULL,
        quota BIGINT NOT NULL,
        quota_total BIGINT NOT NULL,
        window_seconds BIGINT NOT NULL,
        reserved BIGINT NOT NULL DEFAULT 0,
        window_reset_at {ts} NULL,
        cooldown_until {ts} NULL,
        cooldown_reason TEXT NOT NULL DEFAULT '',
        fail_count BIGINT NOT NULL DEFAULT 0,
        last_fail_at {ts} NULL,
        last_fail_reason TEXT NOT NULL DEFAULT '',
        last_used_at {ts} NULL,
        use_count BIGINT NOT NULL DEFAULT 0,
        created_at {ts} NOT NULL,
        last_sync_at {ts} NULL,
        stale SMALLINT NOT NULL DEFAULT 0,
        tags TEXT NOT NULL DEFAULT '[]',
        note TEXT NOT NULL DEFAULT '',
        rand_key {ts} NOT NULL,
        leasable SMALLINT GENERATED ALWAYS AS
            (CASE WHEN status IN ('active', 'cooling') THEN 1 ELSE 0 END) STORED,
        avail BIGINT GENERATED ALWAYS AS (quota - reserved) STORED
    ){table}""",
    "CREATE INDEX IF NOT EXISTS tokens_by_creation ON tokens (pool, created_at, seq)",
    "CREATE INDEX IF NOT EXISTS tokens_by_quota ON tokens (pool, leasable, avail)",
    "CREATE INDEX IF NOT EXISTS tokens_by_window "
    "ON tokens (pool, leasable, window_reset_at)",
    "CREATE INDEX IF NOT EXISTS tokens_by_use "
    "ON tokens (pool, leasable, last_used_at{nulls_first})",
    "CREATE INDEX IF NOT EXISTS tokens_by_rand ON tokens (pool, leasable, rand_key)",
    """CREATE TABLE IF NOT EXISTS reservations (
        lease_id {text_key} NOT NULL PRIMARY KEY,
        token_id VARCHAR(64) NOT NULL,
        cost BIGINT NOT NULL,
        expires_at {ts} NOT NULL
    ){table}""",
    "CREATE INDEX IF NOT EXISTS reservations_by_expiry ON reservations (expires_at)",
    "CREATE INDEX IF NOT EXISTS reservations_by_token ON reservations (token_id)",
    """CREATE TABLE IF NOT EXISTS spent_leases (
        lease_id {text_key} NOT NULL PRIMARY KEY,
        spent_at {ts} NOT NULL
    ){table}""",
    "CREATE INDEX IF NOT EXISTS spent_leases_by_time ON spent_leases (spent_at)",
    """CREATE TABLE IF NOT EXISTS config_overrides (
        id INTEGER NOT NULL PRIMARY KEY,
        data {long_text} NOT NULL
    ){table}""",
    "{insert_ignore} INTO config_overrides (id, data) VALUES (1, '{{}}'){on_conflict}",
    """CREATE TABLE IF NOT EXISTS change_counter (
        id INTEGER NOT NULL PRIMARY KEY,
        version BIGINT NOT NULL
    ){table}""",
    "{insert_ignore} INTO change_counter (id, version) VALUES (1, 0){on_conflict}",
)

# ``wait`` in the limiter tables is the answer of the latest take on the row
# (0 when it was granted): the upsert that decides also records its decision,
# so one statement both takes and reports.
_VERSION_2 = (
    """CREATE TABLE IF NOT EXISTS api_keys (
        id {text_key} NOT NULL PRIMARY KEY,
        {seq},
        name TEXT NOT NULL,
        digest VARCHAR(128) NOT NULL,
        hint TEXT NOT NULL,
        enabled SMALLINT NOT NULL,
        created_at {ts} NOT NULL,
        requests_per_minute BIGINT NULL,
        concurrent_requests BIGINT NULL,
        quota BIGINT NULL,
        quota_window_seconds BIGINT NOT NULL,
        models TEXT NOT NULL,
        use_count BIGINT NOT NULL DEFAULT 0,
        last_used_at {ts} NULL
    ){table}""",
    "CREATE UNIQUE INDEX IF NOT EXISTS api_keys_by_digest ON api_keys (digest)",
    "CREATE INDEX IF NOT EXISTS api_keys_by_creation ON api_keys (created_at, seq)",
    """CREATE TABLE IF NOT EXISTS rate_buckets (
        bucket {text_key} NOT NULL PRIMARY KEY,
        full_at {ts} NOT NULL,
        wait {ts} NOT NULL
    ){table}""",
    "CREATE INDEX IF NOT EXISTS rate_buckets_by_expiry ON rate_buckets (full_at)",
    """CREATE TABLE IF NOT EXISTS window_counters (
        bucket {text_key} NOT NULL PRIMARY KEY,
        window_end {ts} NOT NULL,
        used BIGINT NOT NULL,
        wait {ts} NOT NULL
    ){table}""",
    "CREATE INDEX IF NOT EXISTS window_counters_by_expiry "
    "ON window_counters (window_end)",
    """CREATE TABLE IF NOT EXISTS slot_buckets (
        bucket {text_key} NOT NULL PRIMARY KEY,
        expires_at {ts} NOT NULL
    ){table}""",
    "CREATE INDEX IF NOT EXISTS slot_buckets_by_expiry ON slot_buckets (expires_at)",
    """CREATE TABLE IF NOT EXISTS slot_holders (
        bucket {text_key} NOT NULL,
        holder {text_key} NOT NULL,
        expires_at {ts} NOT NULL,
        PRIMARY KEY (bucket, holder)
    ){table}""",
    "CREATE INDEX IF NOT EXISTS slot_holders_by_expiry ON slot_holders (expires_at)",
    """CREATE TABLE IF NOT EXISTS request_stats (
        period VARCHAR(16) NOT NULL,
        dimension VARCHAR(16) NOT NULL,
        period_start {ts} NOT NULL,
        dimension_value {text_key} NOT NULL,
        requests BIGINT NOT NULL,
        successes BIGINT NOT NULL,
        failures BIGINT NOT NULL,
        latency_ms {ts} NOT NULL,
        PRIMARY KEY (period, dimension, period_start, dimension_value)
    ){table}""",
    """CREATE TABLE IF NOT EXISTS audit_log (
        seq {serial_key},
        finished_at {ts} NOT NULL,
        request_id TEXT NOT NULL,
        client TEXT NOT NULL,
        key_name TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        model TEXT NOT NULL,
        status INTEGER NOT NULL,
        duration_ms {ts} NOT NULL,
        stream SMALLINT NOT NULL,
        token_id TEXT NOT NULL,
        error TEXT NOT NULL
    ){table}""",
    "CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (finished_at, seq)",
    """CREATE TABLE IF NOT EXISTS named_values (
        name {text_key} NOT NULL PRIMARY KEY,
        content {long_text} NOT NULL
    ){table}""",
)

_VERSION_3 = (
    """CREATE TABLE IF NOT EXISTS expiring_values (
        name {text_key} NOT NULL PRIMARY KEY,
        content {long_text} NOT NULL,
        expires_at {ts} NOT NULL
    ){table}""",
    "CREATE INDEX IF NOT EXISTS expiring_values_by_expiry "
    "ON expiring_values (expires_at)",
)

_STEPS: tuple[tuple[str, ...], ...] = (_VERSION_1, _VERSION_2, _VERSION_3)

#: The version the steps bring a database to.
SCHEMA_VERSION = len(_STEPS)


def schema_steps(**spelling: str) -> list[list[str]]:
    """The migration steps with the dialect's spellings filled in."""
    return [[statement.format(**spelling) for statement in step] for step in _STEPS]


def check_version(found: int) -> None:
    """Refuse a database that a newer grok2api has already migrated."""
    if found > SCHEMA_VERSION:
        raise StorageError(
            f"The database schema version {found} is newer than this grok2api "
            f"understands ({SCHEMA_VERSION}); upgrade grok2api-storage-sql."
        )
