"""A proxy provider fed by a pool API (``proxy.proxy_pool_url``).

The pool holds one current proxy, taken from the API's latest answer. It is
fetched when first needed, again once it is ``proxy.proxy_pool_interval``
seconds old, and at once after an egress fault through it. Refreshing on
demand instead of in a background task keeps the provider free of a nursery
of its own: the call that finds the proxy due fetches it, and calls arriving
meanwhile keep using the current proxy unless it has just failed, in which
case they wait for the fetch (bounded by :data:`FETCH_TIMEOUT`).

With ``proxy.sticky_per_token``, a token stays on the proxy it first got
until an egress fault through that proxy: a Cloudflare clearance is bound to
the address it was solved from, and moving a working token to a fresh
address would only earn it a new challenge.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import Any

import httpx
import trio

from grok2api import EgressPurpose, mask_proxy_url
from grok2api_proxy_pool.answers import PoolAnswerError, proxy_candidates

__all__ = ["FETCH_TIMEOUT", "ProxyPool", "create_proxy_pool"]

log = logging.getLogger(__name__)

#: Seconds one fetch from the pool API may take, connecting included.
FETCH_TIMEOUT = 10.0
#: After a failed fetch, the next try waits this long (or the interval, when
#: that is shorter), so a broken pool API is not asked on every call.
RETRY_AFTER_FAILURE = 30.0
#: The largest answer read from the pool API.
MAX_ANSWER_BYTES = 64 * 1024
#: Proxies remembered as failed, so a list answer is not taken from the top
#: again; the oldest are forgotten first.
FAULT_MEMORY = 64
#: Tokens whose proxy is remembered under stickiness, least recent dropped.
MAX_STICKY_TOKENS = 10_000


class _FetchFailed(Exception):
    """The pool API gave no usable answer; the message is safe to log."""


class ProxyPool:
    """Rotates through the proxies a pool API hands out.

    Args:
        pool_url: the pool API; a GET returns a proxy address.
        interval: seconds a fetched proxy stays current.
        sticky: keep each token on its proxy until that proxy fails.
        fetch_timeout: seconds one fetch may take.
        http: the client for the pool API (tests pass one); a direct client
            that ignores environment proxies is made when omitted.
    """

    def __init__(
        self,
        pool_url: str,
        *,
        interval: float,
        sticky: bool = False,
        fetch_timeout: float = FETCH_TIMEOUT,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self._pool_url = pool_url
        self._interval = interval
        self._sticky = sticky
        self._fetch_timeout = fetch_timeout
        if http is None:
            http = httpx.AsyncClient(trust_env=False, follow_redirects=True)
        self._http = http
        self._current: str | None = None
        self._next_fetch = -math.inf
        self._fetching = trio.Lock()
        self._faulted: OrderedDict[str, None] = OrderedDict()
        self._bound: OrderedDict[str, str] = OrderedDict()
        self._failing = False
        self._closed = False
        self.fetches = 0

    @property
    def current(self) -> str | None:
        """The proxy calls without a sticky binding get now."""
        return self._current

    async def proxy_for(
        self, purpose: EgressPurpose, token_id: str | None
    ) -> str | None:
        """The token's bound proxy (sticky), else the current one, fetched
        first when it is due; ``None`` until the pool API has answered once."""
        if self._sticky and token_id is not None:
            bound = self._bound.get(token_id)
            if bound is not None:
                self._bound.move_to_end(token_id)
                return bound
        proxy = await self._current_proxy()
        if proxy is not None and self._sticky and token_id is not None:
            self._bound[token_id] = proxy
            if len(self._bound) > MAX_STICKY_TOKENS:
                self._bound.popitem(last=False)
        return proxy

    async def report_egress_fault(self, proxy_url: str) -> None:
        """Forget ``proxy_url``: unbind its tokens and, when it is the
        current proxy, fetch another on the next call."""
        if proxy_url in self._faulted:
            return  # a concurrent call already reported it
        self._faulted[proxy_url] = None
        if len(self._faulted) > FAULT_MEMORY:
            self._faulted.popitem(last=False)
        for token_id in [t for t, p in self._bound.items() if p == proxy_url]:
            del self._bound[token_id]
        if proxy_url == self._current:
            self._next_fetch = -math.inf
            log.info(
                "The proxy %s was refused by the upstream; fetching another from "
                "the proxy pool.",
                mask_proxy_url(proxy_url),
            )

    async def aclose(self) -> None:
        """Close the pool API client; the current proxy stays in use."""
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(2, shield=True):
            await self._http.aclose()

    # -- fetching ----------------------------------------------------------

    def _due(self) -> bool:
        return not self._closed and trio.current_time() >= self._next_fetch

    async def _current_proxy(self) -> str | None:
        if not self._due():
            return self._current
        working = self._current is not None and self._current not in self._faulted
        if self._fetching.locked() and working:
            return self._current  # another call is fetching; this one still works
        async with self._fetching:
            if self._due():  # the call we waited for may have fetched already
                await self._refresh()
        return self._current

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            candidates = await self._fetch()
        except _FetchFailed as exc:
            self._next_fetch = trio.current_time() + min(
                self._interval, RETRY_AFTER_FAILURE
            )
            self._log_failure(str(exc))
            return
        chosen = next((c for c in candidates if c not in self._faulted), candidates[0])
        # Handed out again, it gets another chance (a rotating gateway keeps
        # its address and changes the exit behind it).
        self._faulted.pop(chosen, None)
        self._next_fetch = trio.current_time() + self._interval
        if self._failing:
            self._failing = False
            log.info("The proxy pool API answers again.")
        if chosen != self._current:
            log.info("proxy pool proxy=%s", mask_proxy_url(chosen))
        self._current = chosen

    async def _fetch(self) -> list[str]:
        body = bytearray()
        try:
            with trio.fail_after(self._fetch_timeout):
                async with self._http.stream("GET", self._pool_url) as response:
                    if response.status_code != 200:
                        raise _FetchFailed(f"HTTP {response.status_code}")
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_ANSWER_BYTES:
                            raise _FetchFailed(
                                f"an answer over {MAX_ANSWER_BYTES} bytes"
                            )
        except trio.TooSlowError:
            raise _FetchFailed(f"no answer within {self._fetch_timeout:g}s") from None
        except httpx.HTTPError as exc:
            # The exception's text may quote the URL and its key; the type
            # says enough.
            raise _FetchFailed(type(exc).__name__) from None
        try:
            return proxy_candidates(bytes(body))
        except PoolAnswerError as exc:
            raise _FetchFailed(str(exc)) from None

    def _log_failure(self, reason: str) -> None:
        if self._failing:
            log.debug("proxy pool fetch_failed reason=%s", reason)
            return
        self._failing = True
        keeping = (
            f"keeping {mask_proxy_url(self._current)} until it answers again"
            if self._current
            else "until it answers, calls use the next proxy provider or the "
            "static proxy"
        )
        log.warning(
            "The proxy pool API %s failed (%s); %s.",
            mask_proxy_url(self._pool_url),
            reason,
            keeping,
        )


def create_proxy_pool(settings: Any) -> ProxyPool | None:
    """The pool ``proxy.proxy_pool_url`` asks for, or ``None`` when unset."""
    proxy = settings.proxy
    if not proxy.proxy_pool_url:
        return None
    return ProxyPool(
        proxy.proxy_pool_url,
        interval=proxy.proxy_pool_interval,
        sticky=proxy.sticky_per_token,
    )
