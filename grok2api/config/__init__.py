"""The gateway's configuration: schema, loading and display.

Settings are frozen attrs classes, one per TOML section, loaded by
:func:`load_settings` from (lowest precedence first) the packaged defaults,
``DATA_DIR/config.toml``, runtime overrides and ``GROK2API_<SECTION>_<KEY>``
environment variables. :func:`server_options_from_env` reads the process
options (bind address, storage, data directory) that come before it.
"""

from __future__ import annotations

from grok2api.config.loading import (
    CONFIG_FILE_NAME,
    SettingsReport,
    check_settings,
    defaults_text,
    ensure_config_file,
    load_settings,
    validate_overrides,
)
from grok2api.config.redaction import (
    SECRET_KEYS,
    mask_secret,
    mask_url,
    settings_as_dict,
)
from grok2api.config.schema import (
    AppSettings,
    CacheSettings,
    ChatSettings,
    ImageSettings,
    ModelsSettings,
    NetworkSettings,
    PerformanceSettings,
    ProxySettings,
    RetrySettings,
    SecuritySettings,
    Settings,
    StatsSettings,
    TimeoutSettings,
    TokenSettings,
)
from grok2api.config.server import ServerOptions, server_options_from_env

__all__ = [
    # loading
    "load_settings",
    "check_settings",
    "SettingsReport",
    "ensure_config_file",
    "validate_overrides",
    "defaults_text",
    "CONFIG_FILE_NAME",
    # display
    "settings_as_dict",
    "SECRET_KEYS",
    "mask_secret",
    "mask_url",
    # process options
    "ServerOptions",
    "server_options_from_env",
    # schema
    "Settings",
    "AppSettings",
    "NetworkSettings",
    "SecuritySettings",
    "ChatSettings",
    "RetrySettings",
    "TimeoutSettings",
    "ImageSettings",
    "TokenSettings",
    "CacheSettings",
    "ProxySettings",
    "StatsSettings",
    "PerformanceSettings",
    "ModelsSettings",
]
