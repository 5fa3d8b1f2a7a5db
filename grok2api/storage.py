"""The storage interface every backend implements, and the records it exchanges.

A backend owns the token ledger and the runtime state that several workers and
hosts share. The one rule that matters most: **quota is never read-then-written
in Python.** :meth:`Storage.reserve` is a conditional update in the backend
(an ``UPDATE ... WHERE available >= cost``, a Lua script, a row lock), so any
number of workers racing for the last unit of quota produce exactly one winner.

Backends are registered through the ``register_storage_backends`` hook and
chosen by type name (``SERVER_STORAGE_TYPE``). The conformance suite in
:mod:`grok2api.testing.storage_conformance` describes the exact contract; a
third-party backend that passes it works with the rest of the gateway.

All times are Unix timestamps in seconds (floats) and are passed in by the
caller, so behaviour over time is testable without sleeping.
"""

from __future__ import annotations

import abc
import enum
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import attrs

__all__ = [
    "ApiKeyChanges",
    "ApiKeyLimits",
    "ApiKeyRecord",
    "AuditEntry",
    "CandidateOrder",
    "Chooser",
    "ExportedToken",
    "Lease",
    "NewToken",
    "PoolCounts",
    "StatsRow",
    "Storage",
    "TokenChanges",
    "TokenPage",
    "TokenQuery",
    "TokenRecord",
    "TokenStatus",
    "token_id_for",
]


def token_id_for(secret: str) -> str:
    """The stable public id of a token: safe to log, show and put in URLs."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]


class TokenStatus(enum.Enum):
    """The stored status of a token.

    ``cooling`` is stored while a cooldown is set; whether a token is usable
    also depends on ``cooldown_until`` and on its quota (see
    :meth:`TokenRecord.state`).
    """

    ACTIVE = "active"
    COOLING = "cooling"
    INVALID = "invalid"
    DISABLED = "disabled"


class CandidateOrder(enum.Enum):
    """Which index a backend walks to offer selection candidates.

    A selection strategy names one of these; the backend returns up to
    ``limit`` eligible tokens in that order, using an index so that the cost
    does not grow with the size of the pool.
    """

    #: Most available quota first.
    MOST_QUOTA = "most_quota"
    #: Least recently used first (never used counts as oldest).
    LEAST_RECENTLY_USED = "least_recently_used"
    #: A uniformly random sample of eligible tokens.
    RANDOM = "random"


def _id_of_secret(token: NewToken | ExportedToken) -> str:
    return token_id_for(token.secret)


@attrs.frozen
class NewToken:
    """A token to add to a pool. ``secret`` is the raw sso value.

    ``id`` is derived from the secret; a backend stores the token under it
    and never derives it again from ``secret``, which may arrive sealed
    (:mod:`grok2api.security.sealing`).
    """

    secret: str = attrs.field(repr=False)
    pool: str
    quota: int
    quota_total: int
    window_seconds: int
    tags: tuple[str, ...] = ()
    note: str = ""
    id: str = attrs.field(
        default=attrs.Factory(_id_of_secret, takes_self=True), kw_only=True
    )


@attrs.frozen
class TokenRecord:
    """One token as stored, without its secret."""

    id: str
    pool: str
    status: TokenStatus
    quota: int
    quota_total: int
    window_seconds: int
    reserved: int = 0
    window_reset_at: float | None = None
    cooldown_until: float | None = None
    cooldown_reason: str = ""
    fail_count: int = 0
    last_fail_at: float | None = None
    last_fail_reason: str = ""
    last_used_at: float | None = None
    use_count: int = 0
    created_at: float = 0.0
    last_sync_at: float | None = None
    stale: bool = False
    tags: tuple[str, ...] = ()
    note: str = ""

    @property
    def available(self) -> int:
        """Quota not yet spent nor reserved."""
        return max(0, self.quota - self.reserved)

    def state(self, now: float, cost: int = 1) -> str:
        """The effective state at ``now`` for a request costing ``cost``.

        One of ``disabled``, ``invalid``, ``cooling``, ``exhausted`` and
        ``active``; only ``active`` tokens may be leased.
        """
        if self.status is TokenStatus.DISABLED:
            return "disabled"
        if self.status is TokenStatus.INVALID:
            return "invalid"
        if self.cooldown_until is not None and self.cooldown_until > now:
            return "cooling"
        quota = self.quota
        if self.window_reset_at is not None and self.window_reset_at <= now:
            quota = self.quota_total
        if quota - self.reserved < cost:
            return "exhausted"
        return "active"


@attrs.frozen
class ExportedToken:
    """One token with its secret and its whole ledger state, for moving tokens
    between backends (:meth:`Storage.export_tokens`, :meth:`Storage.import_tokens`).

    It holds every :class:`TokenRecord` field except ``reserved``: open
    reservations belong to requests in flight on the source and are not moved.
    ``secret`` is the raw token; never log it.
    """

    secret: str = attrs.field(repr=False)
    pool: str
    status: TokenStatus
    quota: int
    quota_total: int
    window_seconds: int
    window_reset_at: float | None = None
    cooldown_until: float | None = None
    cooldown_reason: str = ""
    fail_count: int = 0
    last_fail_at: float | None = None
    last_fail_reason: str = ""
    last_used_at: float | None = None
    use_count: int = 0
    created_at: float = 0.0
    last_sync_at: float | None = None
    stale: bool = False
    tags: tuple[str, ...] = ()
    note: str = ""
    #: The token's public id, derived from the secret (see :class:`NewToken`).
    id: str = attrs.field(
        default=attrs.Factory(_id_of_secret, takes_self=True), kw_only=True
    )

    @classmethod
    def ledger_fields(cls) -> tuple[str, ...]:
        """The names of every field but ``secret`` and ``id``: what an import
        writes."""
        return tuple(
            f.name for f in attrs.fields(cls) if f.name not in ("secret", "id")
        )

    @classmethod
    def from_record(cls, record: TokenRecord, secret: str) -> ExportedToken:
        """The exported form of a stored record and its secret."""
        fields = attrs.asdict(record, recurse=False)
        del fields["reserved"]
        return cls(secret=secret, **fields)

    def record(self, reserved: int = 0) -> TokenRecord:
        """The :class:`TokenRecord` this token is stored as."""
        fields = attrs.asdict(self, recurse=False)
        del fields["secret"]
        return TokenRecord(reserved=reserved, **fields)


@attrs.frozen
class Lease:
    """A token picked for one request, with its cost reserved.

    ``secret`` is the only place the raw token travels inside the gateway;
    never log it. The lease must end in exactly one of
    :meth:`Storage.commit` or :meth:`Storage.release`; an abandoned lease
    expires by itself at ``expires_at``.
    """

    lease_id: str
    token_id: str
    secret: str
    pool: str
    cost: int
    expires_at: float


@attrs.frozen
class TokenQuery:
    """A page of tokens for listings. ``None`` fields do not filter."""

    pool: str | None = None
    status: TokenStatus | None = None
    tag: str | None = None
    search: str | None = None
    offset: int = 0
    limit: int = 50


@attrs.frozen
class TokenPage:
    items: list[TokenRecord]
    total: int


@attrs.frozen
class TokenChanges:
    """An operator's edit of a token. ``None`` fields are left unchanged.

    ``reset`` clears failures and cooldowns, refills the quota to
    ``quota_total`` and makes the token active (before the other fields
    apply).
    """

    status: TokenStatus | None = None
    tags: tuple[str, ...] | None = None
    note: str | None = None
    quota: int | None = None
    reset: bool = False


@attrs.frozen
class PoolCounts:
    """How many tokens of some pools are in each effective state.

    ``earliest_reset`` is the earliest time at which a cooling or exhausted
    token becomes usable again, if any is known.
    """

    counts: dict[str, int]
    earliest_reset: float | None


@attrs.frozen
class ApiKeyLimits:
    """Optional limits of one API key; ``None`` means unlimited.

    ``quota`` counts requests per fixed window of ``quota_window_seconds``
    (windows start at multiples of the length since the epoch). ``models``
    empty allows every model.
    """

    requests_per_minute: int | None = None
    concurrent_requests: int | None = None
    quota: int | None = None
    quota_window_seconds: int = 86_400
    models: tuple[str, ...] = ()


@attrs.frozen
class ApiKeyRecord:
    """A managed API key as stored: never the key itself.

    ``digest`` is the hex SHA-256 of the key (keys are long random strings,
    so a plain digest cannot be reversed by guessing); ``hint`` is what an
    operator sees to recognise it (its prefix and last characters).
    """

    id: str
    name: str
    digest: str
    hint: str
    enabled: bool
    created_at: float
    limits: ApiKeyLimits = ApiKeyLimits()
    use_count: int = 0
    last_used_at: float | None = None


@attrs.frozen
class ApiKeyChanges:
    """An operator's edit of a key. ``None`` fields are left unchanged."""

    name: str | None = None
    enabled: bool | None = None
    limits: ApiKeyLimits | None = None


@attrs.frozen
class StatsRow:
    """Request counters of one time bucket along one dimension.

    ``period`` is ``hour`` or ``day`` and ``start`` the bucket's first second;
    ``dimension`` is ``total`` (``value`` empty), ``model``, ``key`` (the key's
    name) or ``token`` (the token id). Writing a row adds its counters to the
    stored row of the same bucket, dimension and value.
    """

    period: str
    start: float
    dimension: str
    value: str
    requests: int = 0
    successes: int = 0
    failures: int = 0
    latency_ms: float = 0.0


@attrs.frozen
class AuditEntry:
    """One finished API request, as the audit log keeps it.

    ``token_id`` is the public token id, never the token; ``error`` is the
    error class (``rate_limit_error``), empty on success.
    """

    at: float
    request_id: str
    client: str
    key_name: str
    method: str
    path: str
    model: str
    status: int
    duration_ms: float
    stream: bool
    token_id: str = ""
    error: str = ""


#: A strategy's choice among candidates: the index of the one to try first.
Chooser = Callable[[Sequence[TokenRecord]], int | None]


class Storage(abc.ABC):
    """What every storage backend provides.

    Every method may raise :class:`grok2api.errors.StorageUnavailable` when
    the backend cannot be reached; none may leave a half-applied change.
    """

    #: The type name the backend is registered under (``local``, ``redis``).
    name: str = ""

    # -- lifecycle -----------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create or migrate the schema. Safe to call from
        several workers at once."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections. Idempotent."""

    # -- tokens --------------------------------------------------------------

    @abc.abstractmethod
    async def add_tokens(self, tokens: Sequence[NewToken], now: float) -> int:
        """Add tokens; a secret already stored keeps its record (and may move
        pool). Returns how many were new."""

    @abc.abstractmethod
    async def remove_tokens(self, token_ids: Sequence[str]) -> int:
        """Delete tokens and their open reservations. Returns how many existed."""

    @abc.abstractmethod
    async def get_token(self, token_id: str) -> TokenRecord | None:
        """One token's record, or None."""

    @abc.abstractmethod
    async def list_tokens(self, query: TokenQuery) -> TokenPage:
        """A filtered page of tokens, ordered by pool then creation time."""

    @abc.abstractmethod
    async def token_secrets(self, token_ids: Sequence[str]) -> dict[str, str]:
        """The raw secrets of some tokens, for export and background jobs."""

    @abc.abstractmethod
    async def update_token(
        self, token_id: str, changes: TokenChanges, now: float
    ) -> TokenRecord | None:
        """Apply an operator's edit atomically. None when the token is gone."""

    @abc.abstractmethod
    async def export_tokens(self, offset: int, limit: int) -> list[ExportedToken]:
        """A page of every token with its secret and ledger state.

        Pages follow the order of :meth:`list_tokens` (pool, then creation
        time), so walking ``offset`` up by ``limit`` until a short page visits
        every token once while nothing is added or removed meanwhile. Open
        reservations are not exported.
        """

    @abc.abstractmethod
    async def import_tokens(self, tokens: Sequence[ExportedToken], now: float) -> int:
        """Store tokens with their ledger state, in one atomic step per call.

        A new secret is added as given; a known one takes every exported field
        (pool, status, quota and window, cooldown, failures, counters, tags,
        note, ``created_at``) and keeps its open reservations. Importing the
        same tokens again changes nothing. The change version moves when
        anything was written. ``now`` places the tokens in the backend's
        selection indexes.

        Returns:
            How many tokens were new.
        """

    @abc.abstractmethod
    async def pool_counts(
        self, pools: Sequence[str], cost: int, now: float
    ) -> PoolCounts:
        """Count tokens by effective state (see :meth:`TokenRecord.state`)."""

    # -- the ledger ----------------------------------------------------------

    @abc.abstractmethod
    async def candidates(
        self,
        pool: str,
        order: CandidateOrder,
        limit: int,
        cost: int,
        exclude: frozenset[str],
        now: float,
    ) -> list[TokenRecord]:
        """Up to ``limit`` tokens of ``pool`` that could be leased for ``cost``
        at ``now``, walked in ``order`` through an index. Read-only."""

    @abc.abstractmethod
    async def reserve(
        self, token_id: str, lease_id: str, cost: int, now: float, expires_at: float
    ) -> Lease | None:
        """Atomically reserve ``cost`` on a token if it is still leasable.

        The check (status, cooldown, ``quota - reserved >= cost``, after rolling
        an elapsed quota window) and the write are one atomic step in the
        backend. Returns the lease, or None when another request got there
        first or the token stopped being eligible.
        """

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
        """Pick a token with ``choose`` and reserve ``cost`` on it.

        ``choose=None`` means "the first eligible token in ``order``", which a
        backend can do in one atomic round trip (a Lua script, one ``UPDATE``
        of the row a subquery picks); the built-in strategies all but
        ``weighted`` work that way. With a ``choose`` function the default
        walks the pools in order, offers it a sample of candidates and
        reserves its choice; a lost race is retried with a fresh sample. The
        guarantee is the same either way because the reservation is
        conditional.
        """
        for pool in pools:
            tried: set[str] = set()
            for _ in range(attempts):
                sample = await self.candidates(
                    pool, order, sample_size, cost, exclude | tried, now
                )
                if not sample:
                    break
                index = 0 if choose is None else choose(sample)
                if index is None:
                    break
                chosen = sample[index]
                lease = await self.reserve(chosen.id, lease_id, cost, now, expires_at)
                if lease is not None:
                    return lease
                tried.add(chosen.id)
        return None

    @abc.abstractmethod
    async def commit(self, lease: Lease, now: float) -> None:
        """Spend a reservation: quota and reserved drop by its cost, the use
        counters and ``last_used_at`` move, and the failure count is cleared.
        Committing an expired or unknown lease still spends the quota once
        (the upstream served the request); committing twice is a no-op."""

    @abc.abstractmethod
    async def release(self, lease: Lease) -> None:
        """Give a reservation back unspent. Idempotent."""

    @abc.abstractmethod
    async def expire_reservations(self, now: float) -> int:
        """Release every reservation whose lease expired. Returns the count."""

    @abc.abstractmethod
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
        """Record a token fault or rate limit in one atomic step.

        With ``invalidate_after`` set, the consecutive failure count grows by
        one and the token becomes ``invalid`` when it reaches that number
        (``1`` invalidates at once). With ``cooldown_until`` set, the token is
        ``cooling`` until then; with ``quota`` set, its remaining quota is
        overwritten (a 429 saying the window is used up sets ``0``).
        """

    @abc.abstractmethod
    async def record_sync(
        self,
        token_id: str,
        now: float,
        *,
        remaining: int | None,
        total: int | None,
        window_seconds: int | None,
    ) -> TokenRecord | None:
        """Store quota read from the upstream's rate-limits endpoint.

        ``remaining=None`` means the refresh failed: the token is marked
        ``stale`` and nothing else changes. A successful sync clears
        ``stale``, sets ``last_sync_at`` and, when quota is back, lifts a
        rate-limit cooldown.
        """

    # -- runtime configuration and change signal ----------------------------

    @abc.abstractmethod
    async def load_config_overrides(self) -> dict[str, dict[str, Any]]:
        """The runtime config changes made through the admin API."""

    @abc.abstractmethod
    async def save_config_overrides(self, overrides: dict[str, dict[str, Any]]) -> None:
        """Replace the runtime config changes atomically and bump the change
        version."""

    @abc.abstractmethod
    async def change_version(self) -> int:
        """A number that grows whenever shared state that workers cache
        (config, token statuses set by an operator) changes. Workers poll it
        cheaply to know when to reload."""

    # -- API keys ------------------------------------------------------------

    @abc.abstractmethod
    async def add_api_keys(self, keys: Sequence[ApiKeyRecord]) -> None:
        """Store new keys (ids and digests are new) and bump the change
        version, so every worker's key cache reloads."""

    @abc.abstractmethod
    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""

    @abc.abstractmethod
    async def update_api_key(
        self, key_id: str, changes: ApiKeyChanges
    ) -> ApiKeyRecord | None:
        """Apply an edit atomically and bump the change version. None when
        the key is gone."""

    @abc.abstractmethod
    async def remove_api_keys(self, key_ids: Sequence[str]) -> int:
        """Delete keys and bump the change version. Returns how many existed."""

    @abc.abstractmethod
    async def record_api_key_use(self, uses: dict[str, tuple[int, float]]) -> None:
        """Add ``count`` to each key's use count and move its ``last_used_at``
        forward to ``at`` (``uses`` maps key id to ``(count, at)``). Unknown
        ids are ignored. Does not bump the change version."""

    # -- limiters shared by every worker ------------------------------------

    @abc.abstractmethod
    async def take_rate(
        self, bucket: str, capacity: float, per_second: float, now: float
    ) -> float:
        """Take one unit from a token bucket, atomically.

        A bucket not seen before (or idle long enough to refill) starts full
        at ``capacity`` and refills at ``per_second``. Returns ``0.0`` when a
        unit was taken, else the seconds until one will be available (nothing
        is taken then).
        """

    @abc.abstractmethod
    async def take_window(
        self, bucket: str, limit: int, window_seconds: int, now: float
    ) -> float:
        """Count one use in the fixed window containing ``now``, atomically.

        Windows start at multiples of ``window_seconds`` since the epoch.
        Returns ``0.0`` when the use fit under ``limit``, else the seconds
        until the window ends (nothing is counted then).
        """

    @abc.abstractmethod
    async def acquire_slot(
        self, bucket: str, limit: int, holder: str, now: float, expires_at: float
    ) -> bool:
        """Hold one of ``limit`` concurrent slots, atomically.

        Holders whose ``expires_at`` has passed do not count (a crashed worker
        cannot leak slots). Acquiring again with the same ``holder`` renews it.
        """

    @abc.abstractmethod
    async def release_slot(self, bucket: str, holder: str) -> None:
        """Give a slot back. Idempotent."""

    # -- statistics and the audit log ---------------------------------------

    @abc.abstractmethod
    async def add_stats(self, rows: Sequence[StatsRow]) -> None:
        """Add each row's counters to the stored row of the same ``period``,
        ``start``, ``dimension`` and ``value`` (created at zero), atomically
        per row, so workers flushing at the same time lose nothing."""

    @abc.abstractmethod
    async def read_stats(
        self, period: str, dimension: str, since: float
    ) -> list[StatsRow]:
        """Stored rows of one period and dimension with ``start >= since``,
        ordered by ``start`` then ``value``."""

    @abc.abstractmethod
    async def prune_stats(self, period: str, before: float) -> int:
        """Delete rows of ``period`` that start before ``before``. Returns the
        count."""

    @abc.abstractmethod
    async def append_audit(self, entries: Sequence[AuditEntry], keep: int) -> None:
        """Append entries and trim the log to the newest ``keep`` (by ``at``;
        ``keep=0`` keeps nothing)."""

    @abc.abstractmethod
    async def list_audit(self, limit: int, offset: int = 0) -> list[AuditEntry]:
        """Entries newest first."""

    # -- small shared values --------------------------------------------------

    @abc.abstractmethod
    async def get_value(self, name: str) -> str | None:
        """A named value (the admin password hash, the session signing key),
        or None."""

    @abc.abstractmethod
    async def put_value(self, name: str, value: str) -> None:
        """Store a named value and bump the change version."""

    @abc.abstractmethod
    async def put_value_if_absent(self, name: str, value: str) -> str:
        """Store ``value`` unless ``name`` already has one, atomically; return
        the value stored afterwards (the winner when workers race). Bumps the
        change version when it wrote."""

    # -- short-lived shared values ---------------------------------------------

    @abc.abstractmethod
    async def put_expiring(
        self, name: str, value: str, now: float, expires_at: float
    ) -> None:
        """Store (or replace) a value that stops existing at ``expires_at``.

        For state every worker may need for a while and nobody needs for
        long (conversation bindings). Does not bump the change version. An
        expired value is removed by the backend, so these never pile up:
        by the periodic :meth:`expire_reservations` sweep, or by a TTL of
        ``expires_at - now`` seconds on the backend's own clock.
        """

    @abc.abstractmethod
    async def get_expiring(self, name: str, now: float) -> str | None:
        """The value of ``name`` if it is stored and ``now < expires_at``."""

    @abc.abstractmethod
    async def delete_expiring(self, name: str) -> None:
        """Forget a value. Idempotent."""
