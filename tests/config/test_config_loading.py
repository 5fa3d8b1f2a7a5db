from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

import grok2api.config
from grok2api.config import (
    Settings,
    check_settings,
    defaults_text,
    load_settings,
    settings_as_dict,
    validate_overrides,
)
from grok2api.config.schema import FIELDS
from grok2api.errors import ConfigError

WriteConfig = Callable[[str], Path]


def test_loading_defaults_without_a_file(data_dir: Path) -> None:
    settings = load_settings(data_dir, {})

    assert settings == Settings()
    assert settings.app.app_password == ""
    assert settings.chat.stream is False
    assert settings.security.cors_allow_origins == ()
    assert settings.network.base_url == "https://grok.com"
    assert settings.token.lease_sample_size == 16
    assert settings.models.aliases == {}


def test_loading_defaults_file_lists_every_key_with_the_schema_default() -> None:
    document = tomllib.loads(defaults_text())

    assert {name: set(table) for name, table in document.items()} == {
        name: set(fields) for name, fields in FIELDS.items()
    }
    assert document == settings_as_dict(Settings(), redact=False)


def test_loading_file_overrides_defaults(
    data_dir: Path, write_config: WriteConfig
) -> None:
    write_config(
        """
        [network]
        timeout = 30
        base_url = "http://127.0.0.1:9000"

        [chat]
        filter_tags = ["grok:render"]

        [models]
        aliases = { "gpt-4o" = "grok-4" }
        """
    )

    settings = load_settings(data_dir, {})

    assert settings.network.timeout == 30.0
    assert isinstance(settings.network.timeout, float)
    assert settings.network.base_url == "http://127.0.0.1:9000"
    assert settings.network.transport == "auto"  # untouched keys keep defaults
    assert settings.chat.filter_tags == ("grok:render",)
    assert settings.models.aliases == {"gpt-4o": "grok-4"}


def test_loading_precedence_env_over_overrides_over_file(
    data_dir: Path, write_config: WriteConfig
) -> None:
    write_config(
        """
        [security]
        rate_limit_per_minute = 10
        rate_limit_burst = 11
        max_body_size_mb = 12
        """
    )
    overrides = {"security": {"rate_limit_burst": 21, "max_body_size_mb": 22}}
    environ = {"GROK2API_SECURITY_MAX_BODY_SIZE_MB": "33", "PATH": "/bin"}

    security = load_settings(data_dir, environ, overrides).security

    assert security.rate_limit_per_minute == 10  # file only
    assert security.rate_limit_burst == 21  # overrides beat the file
    assert security.max_body_size_mb == 33  # the environment beats both


def test_loading_collects_every_problem_with_path_and_source(
    data_dir: Path, write_config: WriteConfig
) -> None:
    config_path = write_config(
        """
        [security]
        rate_limit_per_minute = "fast"
        no_such_key = 1

        [cache]
        cleanup_target_ratio = 0

        [app]
        video_format = "gif"
        app_url = "ftp://example.invalid"

        [widgets]
        size = 1
        colour = "red"
        """
    )
    environ = {"GROK2API_NETWORK_TIMEOUT": "soon", "GROK2API_RETRY_MAX_RETRY": "-1"}
    overrides = {"network": {"transport": "carrier-pigeon"}}

    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir, environ, overrides)

    source = f"(from {config_path})"
    assert sorted(caught.value.problems) == sorted(
        [
            f"security.rate_limit_per_minute: expected int, got 'fast' {source}",
            f"security.no_such_key: unknown key {source}",
            f"cache.cleanup_target_ratio: must be in (0, 1], got 0.0 {source}",
            f"app.video_format: must be one of 'html', 'url', 'markdown', got 'gif'"
            f" {source}",
            "app.app_url: must be a URL with a host and scheme http or https, got"
            f" 'ftp://example.invalid' {source}",
            f"widgets: unknown section {source}",
            "network.timeout: expected float, got 'soon'"
            " (from GROK2API_NETWORK_TIMEOUT)",
            "retry.max_retry: must be at least 0, got -1"
            " (from GROK2API_RETRY_MAX_RETRY)",
            "network.transport: must be one of 'auto', 'trio', 'httpx', 'curl_cffi',"
            " got 'carrier-pigeon' (from runtime overrides)",
        ]
    )
    assert "9 problem(s)" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[chat]\nstream = 'yes'", "chat.stream: expected bool, got 'yes'"),
        ("[token]\nbasic_quota = 1.5", "token.basic_quota: expected int, got 1.5"),
        ("[token]\nbasic_quota = true", "token.basic_quota: expected int, got True"),
        (
            "[retry]\nretry_status_codes = [401, 'x']",
            "retry.retry_status_codes: expected list of int, got [401, 'x']",
        ),
        (
            "[retry]\nretry_status_codes = [401, 99]",
            "retry.retry_status_codes: item 1 must be an HTTP status (100-599), got 99",
        ),
        (
            "[chat]\nfilter_tags = 'grok:render'",
            "chat.filter_tags: expected list of str, got 'grok:render'",
        ),
        (
            "[security]\ntrusted_proxies = ['10.0.0.0/33']",
            "security.trusted_proxies: item 0 must be an IP address or CIDR network,"
            " got '10.0.0.0/33'",
        ),
        (
            "[models]\naliases = { a = 1 }",
            "models.aliases: expected table of str, got {'a': 1}",
        ),
        (
            "[network]\nbase_proxy_url = 'ftp://proxy'",
            "network.base_proxy_url: must be a URL with a host and scheme http, https,"
            " socks4, socks4a, socks5 or socks5h, got 'ftp://proxy'",
        ),
        ("[token]\nselection_strategy = ' '", "token.selection_strategy: must not be"),
        ("timeout = 5", "timeout: expected a [timeout] table, got 5"),
    ],
)
def test_loading_rejects_bad_values(
    data_dir: Path, write_config: WriteConfig, text: str, expected: str
) -> None:
    write_config(text)

    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir, {})

    [line] = caught.value.problems
    assert line.startswith(expected)


def test_loading_accepts_a_strategy_name_from_a_plugin(
    data_dir: Path, write_config: WriteConfig
) -> None:
    write_config("[token]\nselection_strategy = 'my_plugin_strategy'")

    assert load_settings(data_dir, {}).token.selection_strategy == "my_plugin_strategy"


def test_loading_toml_syntax_error_names_file_and_line(
    data_dir: Path, write_config: WriteConfig
) -> None:
    config_path = write_config("[app]\napi_key = 'ok'\nbroken = \n")

    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir, {})

    [line] = caught.value.problems
    assert line.startswith(f"{config_path}: invalid TOML: ")
    assert "line 3" in line


def test_loading_report_returns_warnings(
    data_dir: Path, write_config: WriteConfig
) -> None:
    write_config("[app]\npublic_enabled = true")

    report = check_settings(data_dir, {})

    assert report.settings == Settings()
    assert report.warnings == (
        "app.public_enabled: is not used by grok2api and is ignored"
        f" (from {data_dir / 'config.toml'})",
    )


def test_loading_logs_warnings(
    data_dir: Path, write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    write_config("[app]\npublic_enabled = true")

    load_settings(data_dir, {})

    assert "app.public_enabled: is not used" in caplog.text


def test_validate_overrides_reports_problems_without_a_source() -> None:
    problems = validate_overrides(
        {
            "security": {"rate_limit_per_minute": "fast", "rate_limit_burst": 5},
            "app": {"app_key": "old-name"},
            "stats": 3,
        }
    )

    assert problems == [
        "stats: expected a [stats] table, got 3",
        "security.rate_limit_per_minute: expected int, got 'fast'",
        "app.app_key: unknown key",
    ]


def test_validate_overrides_accepts_a_valid_partial_update() -> None:
    assert validate_overrides({"chat": {"stream": True}, "proxy": {}}) == []


def test_settings_are_frozen() -> None:
    settings = Settings()

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.app.api_key = "changed"  # type: ignore[misc]


def test_settings_validate_when_built_by_hand() -> None:
    with pytest.raises(ValueError, match="must be at least 1, got 0"):
        grok2api.config.SecuritySettings(rate_limit_per_minute=0)


def test_package_exports_every_public_name() -> None:
    for name in grok2api.config.__all__:
        assert hasattr(grok2api.config, name), name
    assert {"load_settings", "ensure_config_file", "ServerOptions"} <= set(
        grok2api.config.__all__
    )


def test_a_secret_of_the_wrong_type_is_not_shown_in_the_problem(
    data_dir: Path, write_config: WriteConfig
) -> None:
    write_config(
        """
        [app]
        api_key = ["sk-must-not-be-shown"]

        [security]
        cf_clearance = ["clearance-must-not-be-shown"]
        secret_key = 4242
        """
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir, {}, {"app": {"api_key": ["sk-override"]}})

    message = str(caught.value)
    assert "app.api_key: expected str, got list (value hidden)" in message
    assert "security.secret_key: expected str, got int (value hidden)" in message
    for secret in ("sk-must-not-be-shown", "clearance-must-not-be-shown", "4242"):
        assert secret not in message
    assert "sk-override" not in message
