"""One upstream call through the token pool, failing over between tokens.

:func:`with_failover` is the lease-and-settle loop of every upstream call a client
waits for (chat completions, image generation): it
leases a token for the model, runs the attempt with it, and settles the lease
on every path. A success is committed; an upstream failure is settled by its
class and, when another token or another moment may help, tried again on a
token not yet used, with the same backoff and budget as chat completions; a
cancellation or a bug commits the lease if the upstream had already accepted
the call (it has charged the account) and releases it otherwise.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import trio

from grok2api.errors import FailureKind, NoTokenAvailable, UpstreamError
from grok2api.gateway import Gateway
from grok2api.models import ModelSpec
from grok2api.storage import Lease

__all__ = ["AttemptProgress", "settled_attempt", "with_failover"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@attrs.define
class AttemptProgress:
    """How far one attempt got; the attempt sets ``upstream_accepted`` once
    the upstream has taken the call and charged for it."""

    upstream_accepted: bool = False


Attempt = Callable[[Lease, AttemptProgress], Awaitable[_T]]


async def with_failover(
    gateway: Gateway,
    model: ModelSpec,
    attempt: Attempt[_T],
    *,
    tried: set[str] | None = None,
    output_started: Callable[[], bool] = lambda: False,
    before_retry: Callable[[], None] = lambda: None,
) -> _T:
    """Run ``attempt`` with a leased token until one succeeds.

    Args:
        tried: token ids not to lease (the loop adds the ones it uses).
        output_started: whether the client already got part of an answer;
            failover ends there, since the client cannot take it back.
        before_retry: forget what a failed attempt produced.

    Returns:
        the first successful attempt's result; its lease is committed.

    Raises:
        NoTokenAvailable: no token could take the call.
        UpstreamError: the last attempt's failure when failover gave up.
    """
    retry = gateway.settings.retry
    tried = set() if tried is None else tried
    last_error: UpstreamError | None = None
    budget_ends = trio.current_time() + retry.retry_budget
    for number in range(retry.max_retry + 1):
        try:
            lease = await gateway.pool.lease(model, frozenset(tried))
        except NoTokenAvailable:
            if last_error is None or last_error.kind in (
                FailureKind.TOKEN,
                FailureKind.RATE_LIMIT,
            ):
                raise
            raise last_error from None
        tried.add(lease.token_id)
        try:
            return await settled_attempt(gateway, lease, attempt)
        except UpstreamError as exc:
            await gateway.pool.settle_failure(lease, exc)
            if output_started() or not _worth_retrying(exc, retry.retry_status_codes):
                raise
            last_error = exc
            before_retry()
            log.info(
                "failover attempt=%d kind=%s token=%s",
                number + 1,
                exc.kind.value,
                lease.token_id,
            )
            if exc.kind not in (FailureKind.TOKEN, FailureKind.RATE_LIMIT):
                delay = min(
                    retry.retry_backoff_base * retry.retry_backoff_factor**number,
                    retry.retry_backoff_max,
                )
                delay = random.uniform(0, delay)
                if trio.current_time() + delay > budget_ends:
                    raise
                await trio.sleep(delay)
    assert last_error is not None
    raise last_error


async def settled_attempt(gateway: Gateway, lease: Lease, attempt: Attempt[_T]) -> _T:
    """Run one attempt and settle its lease, except after an upstream error,
    which the caller settles by its class (``TokenPool.settle_failure``)."""
    progress = AttemptProgress()
    try:
        result = await attempt(lease, progress)
    except UpstreamError:
        raise
    except BaseException:
        # Cancellation (the client went away) or a bug. Once the upstream
        # accepted the call it has counted it against the account, so the
        # ledger spends it too; before that, the reservation goes back.
        if progress.upstream_accepted:
            await gateway.pool.commit(lease)
        else:
            await gateway.pool.release(lease)
        raise
    await gateway.pool.commit(lease)
    return result


def _worth_retrying(error: UpstreamError, statuses: list[int]) -> bool:
    if error.kind is FailureKind.REQUEST:
        return False
    if error.status is not None and error.status != 200:
        return error.status in statuses
    # A connection failure, a timeout or an in-band error: only another
    # token or another moment can help.
    return True
