"""The core's built-in plugin: the four selection strategies and the tag filter.

Registered through the ``grok2api`` entry-point group like any third-party
plugin; only ``@hookimpl`` functions live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grok2api.filters import ResponseFilter, TagFilter
from grok2api.hookspecs import hookimpl
from grok2api.plugins import PluginHost
from grok2api.pool.strategies import BUILTIN_STRATEGIES, SelectionStrategy


@hookimpl
def register_selection_strategies(host: PluginHost) -> Sequence[SelectionStrategy]:
    return BUILTIN_STRATEGIES


def _tag_filter(settings: Any) -> TagFilter | None:
    tags = list(settings.chat.filter_tags)
    return TagFilter(tags) if tags else None


@hookimpl
def register_response_filters(host: PluginHost) -> Sequence[ResponseFilter]:
    return [ResponseFilter("filter_tags", 100, _tag_filter)]
