"""The token pool: leases tokens for models and settles them by outcome.

Every request follows the same life: :meth:`TokenPool.lease` picks a token and
reserves the model's cost in one conditional storage step (or
:meth:`TokenPool.lease_token` reserves it on a token the caller names); the
request then ends in exactly one of :meth:`~TokenPool.commit` (the upstream
served it), :meth:`~TokenPool.release` (it failed before the upstream charged,
or the client went away) or :meth:`~TokenPool.settle_failure` (an upstream
error, penalising the token only when the error says it was the token's fault).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

import trio

from grok2api.config import Settings
from grok2api.errors import (
    FailureKind,
    NoTokenAvailable,
    StorageUnavailable,
    TokenRejected,
    UpstreamError,
    UpstreamRateLimited,
)
from grok2api.models import ModelSpec
from grok2api.pool.importing import checked_secret
from grok2api.pool.strategies import SelectionStrategy
from grok2api.storage import Lease, NewToken, Storage

__all__ = ["TokenPool"]

log = logging.getLogger(__name__)


class TokenPool:
    """Leases and settles tokens over a storage backend.

    Args:
        storage: the open backend.
        strategies: every registered strategy by name.
        settings: returns the current settings on each call.
        clock: wall-clock time in seconds; tests pass a fake one.
    """

    def __init__(
        self,
        storage: Storage,
        strategies: dict[str, SelectionStrategy],
        settings: Callable[[], Settings],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self._strategies = strategies
        self._settings = settings
        self._clock = clock

    def strategy(self) -> SelectionStrategy:
        name = self._settings().token.selection_strategy
        return self._strategies[name]

    def new_token(
        self, secret: str, pool: str, *, tags: Sequence[str] = (), note: str = ""
    ) -> NewToken:
        """A :class:`NewToken` with the configured quota defaults of its pool.

        Raises:
            ValueError: the secret cannot be a token (see ``checked_secret``).
        """
        token_settings = self._settings().token
        quota = getattr(token_settings, f"{pool}_quota")
        hours = getattr(token_settings, f"{pool}_window_hours")
        return NewToken(
            secret=checked_secret(secret),
            pool=pool,
            quota=quota,
            quota_total=quota,
            window_seconds=int(hours * 3600),
            tags=tuple(tags),
            note=note,
        )

    async def lease(
        self, model: ModelSpec, exclude: frozenset[str] = frozenset()
    ) -> Lease:
        """Pick a token for ``model`` and reserve its cost.

        Raises:
            NoTokenAvailable: no token in the model's pools can take it now;
                ``retry_after`` says when one will, if that is known.
        """
        strategy = self.strategy()
        token_settings = self._settings().token
        timeout = self._settings().timeout.storage_timeout
        now = self._clock()
        with _storage_deadline(timeout):
            lease = await self.storage.lease(
                model.pools,
                strategy.order,
                strategy.choose,
                model.cost,
                exclude,
                now,
                now + token_settings.reservation_ttl_sec,
                uuid.uuid4().hex,
                sample_size=strategy.sample_size or token_settings.lease_sample_size,
            )
            if lease is not None:
                log.debug(
                    "lease token=%s model=%s cost=%d",
                    lease.token_id,
                    model.id,
                    model.cost,
                )
                return lease
            counts = await self.storage.pool_counts(model.pools, model.cost, now)
        retry_after = None
        if counts.earliest_reset is not None:
            retry_after = max(1.0, counts.earliest_reset - now)
        raise NoTokenAvailable(model.id, counts.counts, retry_after)

    async def lease_token(self, model: ModelSpec, token_id: str) -> Lease | None:
        """Reserve ``model``'s cost on one particular token.

        For continuing an upstream conversation, which lives in one account.
        The lease is settled like any other.

        Returns:
            The lease, or ``None`` when the token is gone, is not in one of
            the model's pools, or cannot take the request now (status,
            cooldown, quota).
        """
        token_settings = self._settings().token
        timeout = self._settings().timeout.storage_timeout
        now = self._clock()
        with _storage_deadline(timeout):
            record = await self.storage.get_token(token_id)
            if record is None or record.pool not in model.pools:
                return None
            lease = await self.storage.reserve(
                token_id,
                uuid.uuid4().hex,
                model.cost,
                now,
                now + token_settings.reservation_ttl_sec,
            )
        log.debug(
            "lease token=%s model=%s cost=%d chosen=bound leased=%s",
            token_id,
            model.id,
            model.cost,
            lease is not None,
        )
        return lease

    async def commit(self, lease: Lease) -> None:
        """The upstream served the request: spend the reservation."""
        async with self._settling(lease, "commit"):
            await self.storage.commit(lease, self._clock())

    async def release(self, lease: Lease) -> None:
        """Nothing was spent: give the reservation back."""
        async with self._settling(lease, "release"):
            await self.storage.release(lease)

    @asynccontextmanager
    async def _settling(self, lease: Lease, what: str) -> AsyncIterator[None]:
        # Settling must happen even while the request is being cancelled (a
        # client disconnect), so it is shielded, with its own deadline. If
        # storage is down, the request has already got its answer; the
        # reservation then expires by itself, which gives the quota back.
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = (
                trio.current_time() + self._settings().timeout.storage_timeout
            )
            try:
                yield
            except StorageUnavailable as exc:
                log.error(
                    "could not %s the lease of token=%s (%s); its reservation will "
                    "expire at %.0f",
                    what,
                    lease.token_id,
                    exc,
                    lease.expires_at,
                )
        if scope.cancelled_caught:
            log.error(
                "could not %s the lease of token=%s in time; its reservation will "
                "expire at %.0f",
                what,
                lease.token_id,
                lease.expires_at,
            )

    async def settle_failure(self, lease: Lease, error: UpstreamError) -> None:
        """Settle a lease whose upstream call failed, penalising the token only
        for its own faults (invalid credentials, rate limits)."""
        token_settings = self._settings().token
        now = self._clock()
        async with self._settling(lease, "settle"):
            if error.charged and error.kind not in (
                FailureKind.TOKEN,
                FailureKind.RATE_LIMIT,
            ):
                await self.storage.commit(lease, now)
            else:
                await self.storage.release(lease)
            if isinstance(error, TokenRejected):
                threshold = 1 if error.blocked else token_settings.fail_threshold
                await self.storage.record_failure(
                    lease.token_id,
                    now,
                    reason=_reason(error),
                    invalidate_after=threshold,
                )
            elif isinstance(error, UpstreamRateLimited):
                await self.storage.record_failure(
                    lease.token_id,
                    now,
                    reason=_reason(error),
                    **self._cooldown(error, now),
                )
        log.info(
            "upstream failure kind=%s status=%s token=%s",
            error.kind.value,
            error.status,
            lease.token_id,
        )

    async def record_token_fault(self, token_id: str, error: TokenRejected) -> None:
        """Count a token fault met by a call that held no lease: an admin
        call on one named token, which spends no quota. It counts towards
        ``token.fail_threshold`` like a fault met while serving a request
        (a blocked account invalidates the token at once).

        Raises:
            StorageUnavailable: the fault could not be recorded.
        """
        token_settings = self._settings().token
        threshold = 1 if error.blocked else token_settings.fail_threshold
        with _storage_deadline(self._settings().timeout.storage_timeout):
            await self.storage.record_failure(
                token_id,
                self._clock(),
                reason=_reason(error),
                invalidate_after=threshold,
            )
        log.info(
            "token fault status=%s blocked=%s token=%s",
            error.status,
            error.blocked,
            token_id,
        )

    def _cooldown(self, error: UpstreamRateLimited, now: float) -> dict[str, object]:
        token_settings = self._settings().token
        if error.remaining == 0:
            wait = error.retry_after or token_settings.cooldown_429_empty_sec
            return {"cooldown_until": now + wait, "quota": 0}
        wait = error.retry_after or token_settings.cooldown_429_quota_sec
        return {"cooldown_until": now + wait}


def _reason(error: UpstreamError) -> str:
    status = f" {error.status}" if error.status else ""
    return f"{error.kind.value}{status}"


@contextmanager
def _storage_deadline(timeout: float) -> Iterator[None]:
    try:
        with trio.fail_after(timeout):
            yield
    except trio.TooSlowError as exc:
        raise StorageUnavailable(f"storage did not answer within {timeout:g}s") from exc
