"""Request limits shared by every worker: per client address, per API key,
and the admin login throttle.

Every counter lives in storage and every step is one atomic storage call
(:meth:`Storage.take_rate`, :meth:`Storage.take_window`,
:meth:`Storage.acquire_slot`), so two workers or two hosts on a shared
backend enforce one limit together. A refused request gets a 429 with
``Retry-After``. When storage cannot answer, the request is refused with a
503 rather than let through unmetered.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import trio

from grok2api.config import Settings
from grok2api.errors import ApiError, StorageUnavailable
from grok2api.storage import ApiKeyRecord, Storage

__all__ = ["Limiter", "check_model_allowed"]

#: A concurrent-request slot outlives the longest request by this much, so a
#: worker that dies holding one frees it soon after.
_SLOT_MARGIN_SECONDS = 60.0


def _too_many(message: str, retry_after: float, code: str) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(
        429,
        f"{message} Retry after {seconds}s.",
        type="rate_limit_error",
        code=code,
        headers={"Retry-After": str(seconds)},
    )


class Limiter:
    def __init__(
        self,
        storage: Storage,
        settings: Callable[[], Settings],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._settings = settings
        self._clock = clock

    @contextmanager
    def _deadline(self) -> Iterator[None]:
        timeout = self._settings().timeout.storage_timeout
        try:
            with trio.fail_after(timeout):
                yield
        except trio.TooSlowError as exc:
            raise StorageUnavailable(
                f"storage did not answer within {timeout:g}s"
            ) from exc

    async def check_address(self, address: str) -> None:
        """The per-address token bucket (``security.rate_limit_*``)."""
        security = self._settings().security
        if not security.rate_limit_enabled:
            return
        with self._deadline():
            wait = await self._storage.take_rate(
                f"ip:{address}",
                security.rate_limit_burst,
                security.rate_limit_per_minute / 60,
                self._clock(),
            )
        if wait:
            raise _too_many(
                "Too many requests from your address.", wait, "rate_limit_exceeded"
            )

    async def refuse_if_locked_out(self, address: str) -> None:
        """A 429 while an address that guessed wrong too often is locked out
        of every admin password check, right or wrong."""
        now = self._clock()
        with self._deadline():
            until = await self._storage.get_expiring(f"login-lockout:{address}", now)
        if until is not None:
            raise _too_many(
                "Too many wrong admin passwords from your address.",
                float(until) - now,
                "login_rate_limited",
            )

    async def count_failed_login(self, address: str) -> None:
        """Count a wrong admin password (``security.login_attempts_per_minute``
        per address); past the allowance, lock the address out until a guess
        is allowed again."""
        per_minute = self._settings().security.login_attempts_per_minute
        now = self._clock()
        with self._deadline():
            wait = await self._storage.take_rate(
                f"login:{address}", per_minute, per_minute / 60, now
            )
            if wait:
                await self._storage.put_expiring(
                    f"login-lockout:{address}", str(now + wait), now, now + wait
                )
        if wait:
            raise _too_many(
                "Too many wrong admin passwords from your address.",
                wait,
                "login_rate_limited",
            )

    async def admit_key(self, key: ApiKeyRecord, holder: str) -> str | None:
        """Apply a managed key's limits to one request.

        Returns the concurrency slot the request now holds (release it with
        :meth:`release` when the response is finished), or None.
        """
        limits = key.limits
        now = self._clock()
        with self._deadline():
            if limits.requests_per_minute:
                wait = await self._storage.take_rate(
                    f"key:{key.id}:rpm",
                    limits.requests_per_minute,
                    limits.requests_per_minute / 60,
                    now,
                )
                if wait:
                    raise _too_many(
                        f"This API key allows {limits.requests_per_minute} "
                        "requests per minute.",
                        wait,
                        "key_rate_limited",
                    )
            if limits.quota:
                wait = await self._storage.take_window(
                    f"key:{key.id}:quota",
                    limits.quota,
                    limits.quota_window_seconds,
                    now,
                )
                if wait:
                    raise _too_many(
                        f"This API key's quota of {limits.quota} requests per "
                        f"{limits.quota_window_seconds}s is used up.",
                        wait,
                        "key_quota_exceeded",
                    )
            if not limits.concurrent_requests:
                return None
            bucket = f"key:{key.id}:concurrent"
            longest = self._settings().timeout.stream_total_timeout
            held = await self._storage.acquire_slot(
                bucket,
                limits.concurrent_requests,
                holder,
                now,
                now + longest + _SLOT_MARGIN_SECONDS,
            )
        if not held:
            raise _too_many(
                f"This API key allows {limits.concurrent_requests} concurrent "
                "requests.",
                1,
                "key_concurrency_exceeded",
            )
        return bucket

    async def release(self, bucket: str, holder: str) -> None:
        # Runs while the request may be cancelled: shielded, with its own
        # deadline; a slot that cannot be released expires by itself.
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._settings().timeout.storage_timeout):
                with suppress(StorageUnavailable):
                    await self._storage.release_slot(bucket, holder)


def check_model_allowed(
    key: ApiKeyRecord | None, model_id: str, requested: str | None = None
) -> None:
    """Refuse a model the calling key is not allowed to use (by its id or
    by the alias the client asked for)."""
    if key is None or not key.limits.models:
        return
    if model_id in key.limits.models or requested in key.limits.models:
        return
    raise ApiError(
        403,
        f"This API key may not use the model '{requested or model_id}'.",
        type="permission_error",
        code="model_not_allowed",
        param="model",
    )
