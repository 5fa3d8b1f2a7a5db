"""Where the local backend keeps its file, read from the storage URL."""

from __future__ import annotations

from pathlib import Path

from grok2api import ConfigError

from .backend import LocalStorage

__all__ = ["DEFAULT_FILE_NAME", "create_local_storage", "database_path"]

#: The file used inside the data folder when no URL is given.
DEFAULT_FILE_NAME = "grok2api.sqlite3"

_SCHEME = "sqlite://"


def database_path(url: str, data_dir: Path) -> Path:
    """The SQLite file a storage URL names.

    An empty URL means ``data_dir/grok2api.sqlite3``. ``sqlite:///name.db``
    and a plain path name a file; as with SQLAlchemy, ``sqlite:////abs/x.db``
    is absolute. A relative path is taken inside ``data_dir``.

    Raises:
        ConfigError: the URL names another scheme or an in-memory database,
            which the workers of a host could not share.
    """
    url = url.strip()
    if not url:
        return data_dir / DEFAULT_FILE_NAME
    if url.startswith(_SCHEME):
        rest = url[len(_SCHEME) :]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(
                [f"SERVER_STORAGE_URL: expected sqlite:///path/to/file, got {url!r}"]
            )
        url = rest[1:]
    elif "://" in url:
        raise ConfigError(
            [
                "SERVER_STORAGE_URL: the local storage takes a file path or "
                f"sqlite:///path, got {url.split('://', 1)[0]}://…"
            ]
        )
    if url in ("", ":memory:") or url.startswith("file::memory:"):
        raise ConfigError(
            [
                "SERVER_STORAGE_URL: the local storage needs a file that every "
                "worker can open, not an in-memory database"
            ]
        )
    path = Path(url).expanduser()
    return path if path.is_absolute() else data_dir / path


def create_local_storage(url: str, data_dir: Path) -> LocalStorage:
    """The factory registered as the ``local`` backend; returns it unopened."""
    return LocalStorage(database_path(url, data_dir))
