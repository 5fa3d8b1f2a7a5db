"""Hook implementations of the ``local`` storage plugin."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from grok2api import Storage, hookimpl

from .factory import create_local_storage

if TYPE_CHECKING:
    from grok2api import PluginHost


@hookimpl
def register_storage_backends(
    host: PluginHost,
) -> Mapping[str, Callable[[str, Path], Storage]]:
    return {"local": create_local_storage}
