"""The plugin manager: loads hook implementations and resolves what they offer.

Plugins are found through the ``grok2api`` entry-point group; the core's own
built-ins are registered there too (``grok2api.builtins``), so they go through
exactly the path a third-party plugin does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from grok2api import hookspecs
from grok2api.errors import PluginError

if TYPE_CHECKING:
    from grok2api.filters import ResponseFilter
    from grok2api.pool.strategies import SelectionStrategy
    from grok2api.proxies import ProxyProviderFactory
    from grok2api.storage import Storage

__all__ = ["PluginHost", "Plugins", "StorageFactory", "load_plugins"]

log = logging.getLogger(__name__)

StorageFactory = Callable[[str, Path], "Storage"]


@attrs.define
class PluginHost:
    """What every hook receives first.

    Attributes:
        settings: the loaded configuration (``grok2api.config.Settings``).
        data_dir: the data directory (``DATA_DIR``).
        storage: the open storage backend; ``None`` during registration hooks.
    """

    settings: Any
    data_dir: Path
    storage: Storage | None = None


async def resolve(value: Any) -> Any:
    """Await a hook result when it is awaitable (implementations may be sync
    or async). ``inspect.isawaitable`` is the check that is right under Trio."""
    if inspect.isawaitable(value):
        return await value
    return value


class Plugins:
    """The loaded plugins and what they offer, merged and checked."""

    def __init__(self, manager: pluggy.PluginManager, host: PluginHost) -> None:
        self.manager = manager
        self.host = host

    def names(self) -> list[str]:
        """The registered plugin names, for the start-up log."""
        return sorted(name for name, _ in self.manager.list_name_plugin() if name)

    def storage_factories(self) -> dict[str, StorageFactory]:
        return self._merge_named(
            self.manager.hook.register_storage_backends(host=self.host),
            "storage backend",
        )

    def proxy_provider_factories(self) -> dict[str, ProxyProviderFactory]:
        return self._merge_named(
            self.manager.hook.register_proxy_providers(host=self.host), "proxy provider"
        )

    def selection_strategies(self) -> dict[str, SelectionStrategy]:
        strategies: dict[str, SelectionStrategy] = {}
        for offered in self.manager.hook.register_selection_strategies(host=self.host):
            for strategy in offered or ():
                if strategy.name in strategies:
                    raise PluginError(
                        "two plugins offer a selection strategy named "
                        f"{strategy.name!r}"
                    )
                strategies[strategy.name] = strategy
        return strategies

    def response_filters(self) -> list[ResponseFilter]:
        filters: list[ResponseFilter] = []
        for offered in self.manager.hook.register_response_filters(host=self.host):
            filters.extend(offered or ())
        return sorted(filters, key=lambda f: (f.order, f.name))

    async def startup(self) -> None:
        for result in self.manager.hook.startup(host=self.host):
            await resolve(result)

    async def shutdown(self) -> None:
        for result in self.manager.hook.shutdown(host=self.host):
            await resolve(result)

    @staticmethod
    def _merge_named(
        results: Sequence[Mapping[str, Any] | None], what: str
    ) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for offered in results:
            for name, factory in (offered or {}).items():
                if name in merged:
                    raise PluginError(f"two plugins offer a {what} named {name!r}")
                merged[name] = factory
        return merged


def load_plugins(host: PluginHost, extra: Sequence[object] = ()) -> Plugins:
    """Load every installed plugin, plus ``extra`` modules or objects.

    Raises:
        PluginError: a plugin failed to import, or implements a hook that
            does not exist (a misspelt name is caught here, at start-up).
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    try:
        manager.load_setuptools_entrypoints(hookspecs.PROJECT)
        for plugin in extra:
            manager.register(plugin)
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} is invalid: {exc}") from exc
    except ImportError as exc:
        raise PluginError(f"a grok2api plugin failed to import: {exc}") from exc
    if not manager.has_plugin("builtins"):
        # Running from a source tree that was never installed: the entry
        # point is missing, but the built-ins must be there all the same.
        from grok2api import builtins

        manager.register(builtins, name="builtins")
    log.debug(
        "plugins loaded names=%s",
        ",".join(n for n, _ in manager.list_name_plugin() if n),
    )
    return Plugins(manager, host)
