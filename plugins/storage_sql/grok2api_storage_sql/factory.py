"""The factories registered for the SQL backend's type names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from grok2api.errors import ConfigError

from .backend import SqlStorage
from .urls import Dialect, parse_storage_url

__all__ = ["STORAGE_TYPES", "create_sql_storage"]


def create_sql_storage(url: str, data_dir: Path) -> SqlStorage:
    """Any SQL storage URL; returns the backend unopened.

    ``data_dir`` is unused: everything lives on the server.

    Raises:
        ConfigError: the URL is missing or malformed.
    """
    if not url.strip():
        raise ConfigError(
            [
                "SERVER_STORAGE_URL: the SQL storage needs a server URL, e.g. "
                "postgresql://user:password@db.example:5432/grok2api"
            ]
        )
    return SqlStorage(parse_storage_url(url))


def _factory_for(dialect: Dialect, type_name: str) -> Callable[[str, Path], SqlStorage]:
    def create(url: str, data_dir: Path) -> SqlStorage:
        storage = create_sql_storage(url, data_dir)
        if storage.spec.dialect is not dialect:
            raise ConfigError(
                [
                    f"SERVER_STORAGE_TYPE is {type_name!r} but SERVER_STORAGE_URL "
                    f"names a {storage.spec.dialect.value} server; make them agree"
                ]
            )
        return storage

    create.__name__ = f"create_{type_name}_storage"
    return create


#: Type names (``SERVER_STORAGE_TYPE``) and their factories.
STORAGE_TYPES: dict[str, Callable[[str, Path], SqlStorage]] = {
    "mysql": _factory_for(Dialect.MYSQL, "mysql"),
    "mariadb": _factory_for(Dialect.MYSQL, "mariadb"),
    "pgsql": _factory_for(Dialect.POSTGRESQL, "pgsql"),
    "postgresql": _factory_for(Dialect.POSTGRESQL, "postgresql"),
}
