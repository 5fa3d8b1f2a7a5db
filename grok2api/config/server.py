"""Process options read from the environment before anything else.

These are the reference project's variables (``SERVER_HOST``, ``SERVER_PORT``,
``SERVER_WORKERS``, ``SERVER_STORAGE_TYPE``, ``SERVER_STORAGE_URL``,
``DATA_DIR``, ``LOG_LEVEL``): they decide where the server binds, where the
data directory and storage are, and so must be known before the settings can
be loaded. An empty variable counts as unset, as compose files often leave
them blank.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from grok2api.config.redaction import mask_url
from grok2api.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@attrs.frozen(kw_only=True)
class ServerOptions:
    """Bind address, worker count, storage and data directory."""

    host: str = "0.0.0.0"
    port: int = 8000
    workers: int = 1
    #: A storage backend name offered by a plugin (``local``, ``redis``, ...).
    storage_type: str = "local"
    #: The storage DSN; it may hold a password, so ``repr`` masks it.
    storage_url: str = attrs.field(default="", repr=lambda url: repr(mask_url(url)))
    data_dir: Path = Path("./data")
    log_level: str = "INFO"


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else f"must be in [1, 65535], got {value}"


def _workers(value: int) -> str | None:
    return None if value >= 1 else f"must be at least 1, got {value}"


def _log_level(value: str) -> str | None:
    if value in LOG_LEVELS:
        return None
    return f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}"


# Variable -> (attribute, parse, check); parse raises ValueError on bad text.
_VARIABLES: dict[str, tuple[str, Callable[[str], Any], Callable[[Any], str | None]]] = {
    "SERVER_HOST": ("host", str.strip, lambda _: None),
    "SERVER_PORT": ("port", int, _port),
    "SERVER_WORKERS": ("workers", int, _workers),
    "SERVER_STORAGE_TYPE": (
        "storage_type",
        lambda s: s.strip().lower(),
        lambda _: None,
    ),
    "SERVER_STORAGE_URL": ("storage_url", str.strip, lambda _: None),
    "DATA_DIR": ("data_dir", Path, lambda _: None),
    "LOG_LEVEL": ("log_level", lambda s: s.strip().upper(), _log_level),
}


def server_options_from_env(environ: Mapping[str, str]) -> ServerOptions:
    """Read :class:`ServerOptions` from the environment.

    Args:
        environ: the environment (usually ``os.environ``).

    Raises:
        ConfigError: with a line per bad variable, e.g.
            ``SERVER_PORT: expected int, got 'http'``.
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, (attribute, parse, check) in _VARIABLES.items():
        text = environ.get(name, "")
        if not text.strip():
            continue
        try:
            value = parse(text)
        except ValueError:
            problems.append(f"{name}: expected int, got {text!r}")
            continue
        reason = check(value)
        if reason:
            problems.append(f"{name}: {reason}")
            continue
        values[attribute] = value
    if problems:
        raise ConfigError(problems)
    return ServerOptions(**values)
