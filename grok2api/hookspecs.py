"""Hook specifications: the contracts between the core and its plugins.

A plugin is a module of ``@hookimpl`` functions, found through the
``grok2api`` entry-point group. The built-ins (local storage, the selection
strategies, the tag filter) are plugins too and use exactly these hooks.

Implementations may be plain functions or ``async def``; the core awaits
whatever is awaitable. Every hook receives the :class:`~grok2api.plugins.PluginHost`
first. ``docs/plugins.md`` documents each hook with a worked example, and a
test fails when a hook below is missing there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from grok2api.filters import ResponseFilter
    from grok2api.plugins import PluginHost, StorageFactory
    from grok2api.pool.strategies import SelectionStrategy
    from grok2api.proxies import ProxyProviderFactory

__all__ = ["hookimpl", "hookspec"]

PROJECT = "grok2api"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- storage ------------------------------------------------------------------


@hookspec
def register_storage_backends(host: PluginHost) -> Mapping[str, StorageFactory] | None:
    """Offer storage backends by type name.

    Args:
        host: the plugin host; ``host.settings`` is the loaded configuration.

    Returns:
        A mapping from type name (the value of ``SERVER_STORAGE_TYPE``, e.g.
        ``"local"``) to a factory called as ``factory(url, data_dir)`` that
        returns an unopened :class:`~grok2api.storage.Storage`. ``None`` means
        the plugin offers none. Two plugins offering the same name is an error
        at start-up.
    """


# -- token selection ----------------------------------------------------------


@hookspec
def register_selection_strategies(
    host: PluginHost,
) -> Sequence[SelectionStrategy] | None:
    """Offer token selection strategies.

    Args:
        host: the plugin host.

    Returns:
        Strategies, each with a unique ``name``; ``token.selection_strategy``
        picks one by that name. ``None`` means the plugin offers none.
    """


# -- proxies ------------------------------------------------------------------


@hookspec
def register_proxy_providers(
    host: PluginHost,
) -> Mapping[str, ProxyProviderFactory] | None:
    """Offer proxy providers by name.

    Args:
        host: the plugin host.

    Returns:
        A mapping from provider name to a factory called as
        ``factory(settings)``; the factory returns a provider, or ``None``
        when the configuration does not ask for it. The first provider that
        returns a proxy for a call wins; with none, calls go direct (or
        through ``network.base_proxy_url``). ``None`` means the plugin offers
        none.
    """


# -- response filters ---------------------------------------------------------


@hookspec
def register_response_filters(host: PluginHost) -> Sequence[ResponseFilter] | None:
    """Offer filters over the answer text as it streams.

    Args:
        host: the plugin host.

    Returns:
        Filters; the core runs them in ascending ``order`` (ties by name),
        each seeing the previous one's output, on every chat answer, streamed
        or not. Reasoning text is not filtered. ``None`` means the plugin
        offers none.
    """


# -- lifecycle ----------------------------------------------------------------


@hookspec
def startup(host: PluginHost) -> Awaitable[None] | None:
    """Called once per worker after storage is open, before serving.

    Args:
        host: the plugin host; ``host.storage`` is open.

    Returns:
        Nothing, or an awaitable the core awaits. An exception stops start-up.
    """


@hookspec
def shutdown(host: PluginHost) -> Awaitable[None] | None:
    """Called once per worker after the last request, before storage closes.

    Args:
        host: the plugin host.

    Returns:
        Nothing, or an awaitable the core awaits (with a short deadline).
    """
