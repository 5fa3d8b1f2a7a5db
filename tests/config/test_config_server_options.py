from __future__ import annotations

from pathlib import Path

import pytest

from grok2api.config import ServerOptions, server_options_from_env
from grok2api.errors import ConfigError


def test_server_options_defaults() -> None:
    options = server_options_from_env({})

    assert options == ServerOptions(
        host="0.0.0.0",
        port=8000,
        workers=1,
        storage_type="local",
        storage_url="",
        data_dir=Path("./data"),
        log_level="INFO",
    )


def test_server_options_read_the_reference_variables() -> None:
    options = server_options_from_env(
        {
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": "9000",
            "SERVER_WORKERS": "4",
            "SERVER_STORAGE_TYPE": "Redis",
            "SERVER_STORAGE_URL": "redis://:pw@127.0.0.1:6379/0",
            "DATA_DIR": "/srv/grok",
            "LOG_LEVEL": "debug",
        }
    )

    assert (options.host, options.port, options.workers) == ("127.0.0.1", 9000, 4)
    assert options.storage_type == "redis"
    assert options.storage_url == "redis://:pw@127.0.0.1:6379/0"
    assert options.data_dir == Path("/srv/grok")
    assert options.log_level == "DEBUG"
    assert ":pw@" not in repr(options)


def test_server_options_empty_variables_count_as_unset() -> None:
    options = server_options_from_env({"SERVER_PORT": "", "SERVER_STORAGE_TYPE": " "})

    assert (options.port, options.storage_type) == (8000, "local")


def test_server_options_collect_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        server_options_from_env(
            {"SERVER_PORT": "http", "SERVER_WORKERS": "0", "LOG_LEVEL": "loud"}
        )

    assert caught.value.problems == [
        "SERVER_PORT: expected int, got 'http'",
        "SERVER_WORKERS: must be at least 1, got 0",
        "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
    ]


def test_server_options_port_range() -> None:
    with pytest.raises(ConfigError, match="SERVER_PORT: must be in"):
        server_options_from_env({"SERVER_PORT": "70000"})
