"""The gateway's services for one worker, and how they start and stop.

:func:`open_gateway` loads plugins, opens storage and the upstream client, and
starts the worker's background services in a nursery it owns; everything is
closed in reverse order when the block exits. The app (``grok2api.app``)
opens one gateway per worker for its whole lifetime; the CLI opens one without
a server to work on the configured storage.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from grok2api import draining
from grok2api.config import ServerOptions, Settings, load_settings
from grok2api.draining import Drain
from grok2api.errors import ApiError, ConfigError, PluginError, StorageUnavailable
from grok2api.filters import TextFilter
from grok2api.media import MediaCache
from grok2api.models import ModelCatalog
from grok2api.observe import FaultCountingPool, Recorder
from grok2api.plugins import PluginHost, Plugins, StorageFactory, load_plugins
from grok2api.pool.refresh import serve_refresher
from grok2api.proxies import ProxyProviders
from grok2api.security.auth import Authenticator
from grok2api.security.sealing import SealedStorage, Sealer
from grok2api.storage import Storage
from grok2api.upstream import UpstreamClient, UpstreamOptions

__all__ = [
    "Gateway",
    "check_installation",
    "current_gateway",
    "open_gateway",
    "open_storage",
    "upstream_options",
]

log = logging.getLogger(__name__)

#: How often a worker checks whether another worker changed shared state.
CHANGE_POLL_SECONDS = 1.0
#: How often abandoned reservations are swept back into the pool (at most;
#: half the reservation TTL when that is shorter).
EXPIRY_SWEEP_SECONDS = 30.0


class Gateway:
    """The services one worker uses to serve requests."""

    def __init__(
        self,
        *,
        options: ServerOptions,
        settings: Settings,
        plugins: Plugins,
        storage: Storage,
        upstream: UpstreamClient,
        nursery: trio.Nursery,
        environ: Mapping[str, str],
    ) -> None:
        self.options = options
        self.plugins = plugins
        self.storage = storage
        self.upstream = upstream
        self.nursery = nursery
        self.environ = dict(environ)
        self._settings = settings
        self._listeners: list[Callable[[Settings], None]] = []
        self._filter_specs = plugins.response_filters()
        self.models = _catalog(settings)
        self.recorder = Recorder(
            storage, lambda: self.settings, lambda model: model in self.models
        )
        self.pool = FaultCountingPool(
            storage,
            plugins.selection_strategies(),
            lambda: self.settings,
            faults=self.recorder.metrics.upstream_faults,
        )
        self.auth = Authenticator(storage, lambda: self.settings, self.environ)
        #: In-flight chat completions, ended cleanly just before shutdown
        #: would cut them.
        self.drain = Drain()
        self.media = MediaCache(
            Path(options.data_dir) / "media",
            storage,
            upstream=lambda: self.upstream,
            settings=lambda: self.settings,
            proxies=lambda: self.auth.proxies,
        )
        self._media_slots = trio.CapacityLimiter(
            settings.performance.media_max_concurrent
        )
        self.on_settings(self._resize_media_slots)
        self.check_settings(settings)

    def _resize_media_slots(self, settings: Settings) -> None:
        self._media_slots.total_tokens = settings.performance.media_max_concurrent

    @asynccontextmanager
    async def media_generation(self) -> AsyncIterator[None]:
        """Hold one of this worker's ``performance.media_max_concurrent``
        slots for an image or video generation call.

        Raises:
            ApiError: 503 when no slot freed up within
                ``timeout.stream_first_timeout``.
        """
        wait = self._settings.timeout.stream_first_timeout
        # Each call is its own borrower: one request may hold several slots.
        borrower = object()
        with trio.move_on_after(wait) as waited:
            await self._media_slots.acquire_on_behalf_of(borrower)
        if waited.cancelled_caught:
            raise ApiError(
                503,
                f"All {self._media_slots.total_tokens} image and video "
                f"generation slots stayed busy for {wait:g}s "
                "(performance.media_max_concurrent); try again shortly.",
                type="server_error",
                code="media_capacity_exceeded",
            )
        try:
            yield
        finally:
            self._media_slots.release_on_behalf_of(borrower)

    async def read_quota(self, secret: str) -> tuple[int, int | None, int | None]:
        """One token's quota as the upstream reports it: remaining, total, window."""
        limits = await self.upstream.rate_limits(secret)
        return limits.remaining, limits.total, limits.window_seconds

    @property
    def settings(self) -> Settings:
        """The current settings; a runtime change swaps the whole object."""
        return self._settings

    def new_filters(self) -> list[TextFilter]:
        """Fresh response filter instances for one answer, in chain order."""
        created = (spec.create(self._settings) for spec in self._filter_specs)
        return [f for f in created if f is not None]

    def on_settings(self, listener: Callable[[Settings], None]) -> None:
        """Call ``listener`` with the settings now and after every change."""
        self._listeners.append(listener)
        listener(self._settings)

    async def reload_settings(self) -> None:
        """Re-read runtime overrides, API keys and the admin password from
        storage and apply them."""
        overrides = await self.storage.load_config_overrides()
        settings = load_settings(self.options.data_dir, self.environ, overrides)
        self.check_settings(settings)
        self.models = _catalog(settings)
        await self._replace_upstream(settings)
        self._settings = settings
        for listener in self._listeners:
            listener(settings)
        await self.auth.reload()
        log.debug("settings reloaded")

    async def _replace_upstream(self, settings: Settings) -> None:
        options = upstream_options(settings)
        proxies = self.upstream.proxies
        if settings.proxy != self._settings.proxy:
            factories = self.plugins.proxy_provider_factories()
            proxies = await ProxyProviders.create(factories, settings)
        if options == self.upstream.options and proxies is self.upstream.proxies:
            return
        retired = self.upstream
        self.upstream = UpstreamClient(options, proxies=proxies)
        # Answers in flight keep streaming over the old client (and its
        # proxies); they close once none of them can still be running.
        self.nursery.start_soon(
            self._retire,
            retired,
            settings.timeout.stream_total_timeout,
            proxies is not retired.proxies,
        )

    async def _retire(
        self, client: UpstreamClient, after: float, with_proxies: bool
    ) -> None:
        try:
            await trio.sleep(after)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()
                if with_proxies:
                    await client.proxies.aclose()

    def check_settings(self, settings: Settings) -> None:
        """Raise :class:`PluginError` when the settings name a missing plugin,
        :class:`ConfigError` when a model alias points nowhere."""
        _check_strategy(self.plugins, settings)
        _catalog(settings)

    async def serve_change_watcher(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Reload settings whenever another worker or the CLI changed them."""
        seen = await self.storage.change_version()
        task_status.started()
        while True:
            await trio.sleep(CHANGE_POLL_SECONDS)
            try:
                version = await self.storage.change_version()
                if version != seen:
                    seen = version
                    await self.reload_settings()
            except StorageUnavailable as exc:
                # An outage, not a bad change: the next poll tries again.
                log.warning(
                    "could not check for shared settings changes (%s); "
                    "keeping the current settings",
                    exc,
                )
            except Exception:
                log.exception(
                    "could not apply a shared settings change; "
                    "keeping the current settings"
                )

    async def serve_reservation_sweeper(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            # A short reservation TTL needs sweeping more often than that,
            # or a crashed worker's quota stays locked for up to 30 s more.
            ttl = self.settings.token.reservation_ttl_sec
            await trio.sleep(min(EXPIRY_SWEEP_SECONDS, ttl / 2))
            try:
                expired = await self.storage.expire_reservations(time.time())
                if expired:
                    log.warning("released %d abandoned quota reservations", expired)
            except Exception:
                log.exception("sweeping expired reservations failed; will try again")


def upstream_options(settings: Settings) -> UpstreamOptions:
    """The upstream client's options, taken from the settings."""
    return UpstreamOptions(
        base_url=settings.network.base_url,
        assets_url=settings.network.assets_url,
        transport=settings.network.transport,
        browser=settings.security.browser,
        user_agent=settings.security.user_agent,
        cf_clearance=settings.security.cf_clearance,
        dynamic_statsig=settings.chat.dynamic_statsig,
        proxy_url=settings.network.base_proxy_url,
        asset_proxy_url=settings.network.asset_proxy_url,
        request_timeout=settings.network.timeout,
        connect_timeout=settings.network.connect_timeout,
        first_frame_timeout=settings.timeout.stream_first_timeout,
        idle_timeout=settings.timeout.stream_idle_timeout,
        total_timeout=settings.timeout.stream_total_timeout,
        max_connections=settings.network.max_connections,
        temporary=settings.chat.temporary,
        disable_memory=settings.chat.disable_memory,
    )


def check_installation(options: ServerOptions, settings: Settings) -> None:
    """Check that the plugins the settings name are installed, before any
    worker starts.

    Raises:
        PluginError: the storage backend or selection strategy is missing.
    """
    plugins = load_plugins(PluginHost(settings, options.data_dir))
    _storage_factory(plugins, options)
    _check_strategy(plugins, settings)
    _catalog(settings)


def _storage_factory(plugins: Plugins, options: ServerOptions) -> StorageFactory:
    factories = plugins.storage_factories()
    factory = factories.get(options.storage_type)
    if factory is None:
        raise PluginError(
            f"SERVER_STORAGE_TYPE is {options.storage_type!r}, but the installed "
            f"storage backends are {sorted(factories)}; install its plugin (e.g. "
            f"grok2api-storage-{options.storage_type}) or choose another."
        )
    return factory


def _catalog(settings: Settings) -> ModelCatalog:
    try:
        return ModelCatalog(aliases=settings.models.aliases)
    except ValueError as exc:
        raise ConfigError([f"models.aliases: {exc}"]) from exc


def _check_strategy(plugins: Plugins, settings: Settings) -> None:
    known = plugins.selection_strategies()
    name = settings.token.selection_strategy
    if name not in known:
        raise PluginError(
            f"token.selection_strategy is {name!r}, but the installed strategies "
            f"are {sorted(known)}; install the plugin or fix the name."
        )


@asynccontextmanager
async def open_storage(
    options: ServerOptions, settings: Settings, extra_plugins: tuple[object, ...] = ()
) -> AsyncIterator[tuple[Storage, Plugins]]:
    """Load plugins and open the configured storage backend."""
    plugins = load_plugins(PluginHost(settings, options.data_dir), extra_plugins)
    factory = _storage_factory(plugins, options)
    storage = factory(options.storage_url, options.data_dir)
    await storage.open()
    sealed = SealedStorage(storage, Sealer(settings.security.secret_key))
    plugins.host.storage = sealed
    try:
        await sealed.check_key()
        yield sealed, plugins
    finally:
        with trio.CancelScope(shield=True):
            await storage.aclose()


@asynccontextmanager
async def open_gateway(
    options: ServerOptions,
    environ: Mapping[str, str] | None = None,
    *,
    background: bool = True,
    extra_plugins: tuple[object, ...] = (),
) -> AsyncIterator[Gateway]:
    """Open every service of one worker; close them all on exit.

    Raises:
        ConfigError: the configuration is invalid.
        PluginError: a plugin or a named backend/strategy is missing.
    """
    environ = dict(os.environ if environ is None else environ)
    data_dir = Path(options.data_dir)
    base_settings = load_settings(data_dir, environ)
    async with open_storage(options, base_settings, extra_plugins) as (
        storage,
        plugins,
    ):
        settings = load_settings(
            data_dir, environ, await storage.load_config_overrides()
        )
        plugins.host.settings = settings
        proxies = await ProxyProviders.create(
            plugins.proxy_provider_factories(), settings
        )
        upstreams = [UpstreamClient(upstream_options(settings), proxies=proxies)]
        try:
            async with trio.open_nursery() as nursery:
                gateway = Gateway(
                    options=options,
                    settings=settings,
                    plugins=plugins,
                    storage=storage,
                    upstream=upstreams[0],
                    nursery=nursery,
                    environ=environ,
                )
                await plugins.startup()
                if background:
                    await nursery.start(gateway.recorder.serve_flusher)
                    await nursery.start(gateway.serve_change_watcher)
                    await nursery.start(gateway.serve_reservation_sweeper)
                    await nursery.start(gateway.media.serve_cleaner)
                    await nursery.start(
                        serve_refresher,
                        storage,
                        gateway.read_quota,
                        lambda: gateway.settings,
                    )
                try:
                    with draining.registered(
                        gateway.drain,
                        lambda: gateway.settings.timeout.shutdown_grace,
                        nursery,
                    ):
                        yield gateway
                finally:
                    # A runtime change may have replaced the first client.
                    upstreams.append(gateway.upstream)
                    nursery.cancel_scope.cancel()
                    with trio.CancelScope(shield=True), trio.move_on_after(5):
                        await plugins.shutdown()
        finally:
            with trio.CancelScope(shield=True):
                for client in {id(c): c for c in upstreams}.values():
                    await client.aclose()
                for providers in {id(c.proxies): c.proxies for c in upstreams}.values():
                    await providers.aclose()


def current_gateway() -> Gateway:
    """The gateway of the worker serving the current request."""
    from quart import current_app

    return current_app.extensions["grok2api"]  # type: ignore[no-any-return]
