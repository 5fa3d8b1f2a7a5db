"""grok2api's SQL storage backend: PostgreSQL (``pgsql``) and MySQL/MariaDB
(``mysql``), shared by every worker on every host."""

from __future__ import annotations

from .backend import SqlStorage
from .factory import STORAGE_TYPES, create_sql_storage
from .urls import ConnectionSpec, Dialect, SslMode, parse_storage_url

__all__ = [
    "ConnectionSpec",
    "Dialect",
    "SqlStorage",
    "SslMode",
    "STORAGE_TYPES",
    "create_sql_storage",
    "parse_storage_url",
]
