"""Hook implementations of the SQL storage plugin."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from grok2api import Storage
from grok2api.hookspecs import hookimpl

from .factory import STORAGE_TYPES

if TYPE_CHECKING:
    from grok2api.plugins import PluginHost


@hookimpl
def register_storage_backends(
    host: PluginHost,
) -> Mapping[str, Callable[[str, Path], Storage]]:
    return dict(STORAGE_TYPES)
