"""Hook implementations of the ``redis`` storage plugin."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from grok2api import Storage
from grok2api.hookspecs import hookimpl

from .factory import create_redis_storage

if TYPE_CHECKING:
    from grok2api.plugins import PluginHost


@hookimpl
def register_storage_backends(
    host: PluginHost,
) -> Mapping[str, Callable[[str, Path], Storage]]:
    return {"redis": create_redis_storage}
