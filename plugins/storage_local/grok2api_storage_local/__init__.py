"""grok2api's ``local`` storage backend: a SQLite file in WAL mode, shared by the
worker processes of one host."""

from __future__ import annotations

from .backend import LocalStorage
from .factory import DEFAULT_FILE_NAME, create_local_storage, database_path

__all__ = ["DEFAULT_FILE_NAME", "LocalStorage", "create_local_storage", "database_path"]
