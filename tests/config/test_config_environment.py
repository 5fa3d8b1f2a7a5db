from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from grok2api.config import check_settings, load_settings
from grok2api.config.environment import parse_env_value, variable_name
from grok2api.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "text", "section", "key", "expected"),
    [
        ("GROK2API_CHAT_STREAM", "true", "chat", "stream", True),
        ("GROK2API_CHAT_STREAM", "YES", "chat", "stream", True),
        ("GROK2API_CHAT_STREAM", "1", "chat", "stream", True),
        ("GROK2API_CHAT_THINKING", "false", "chat", "thinking", False),
        ("GROK2API_CHAT_THINKING", "No", "chat", "thinking", False),
        ("GROK2API_CHAT_THINKING", "0", "chat", "thinking", False),
        ("GROK2API_TOKEN_BASIC_QUOTA", " 40 ", "token", "basic_quota", 40),
        ("GROK2API_NETWORK_TIMEOUT", "2.5", "network", "timeout", 2.5),
        ("GROK2API_NETWORK_TIMEOUT", "7", "network", "timeout", 7.0),
        ("GROK2API_APP_API_KEY", "sk-abc", "app", "api_key", "sk-abc"),
        (
            "GROK2API_NETWORK_BASE_URL",
            "http://127.0.0.1:1",
            "network",
            "base_url",
            "http://127.0.0.1:1",
        ),
        (
            "GROK2API_CHAT_FILTER_TAGS",
            "a, b ,c",
            "chat",
            "filter_tags",
            ("a", "b", "c"),
        ),
        (
            "GROK2API_CHAT_FILTER_TAGS",
            '["a,b", "c"]',
            "chat",
            "filter_tags",
            ("a,b", "c"),
        ),
        ("GROK2API_CHAT_FILTER_TAGS", "", "chat", "filter_tags", ()),
        (
            "GROK2API_RETRY_RETRY_STATUS_CODES",
            "502, 503",
            "retry",
            "retry_status_codes",
            (502, 503),
        ),
        (
            "GROK2API_RETRY_RETRY_STATUS_CODES",
            "[500]",
            "retry",
            "retry_status_codes",
            (500,),
        ),
        (
            "GROK2API_MODELS_ALIASES",
            '{"gpt-4o": "grok-4"}',
            "models",
            "aliases",
            {"gpt-4o": "grok-4"},
        ),
        (
            "GROK2API_SECURITY_TRUSTED_PROXIES",
            "10.0.0.0/8,::1",
            "security",
            "trusted_proxies",
            ("10.0.0.0/8", "::1"),
        ),
    ],
)
def test_environment_values_are_parsed_by_type(
    data_dir: Path, name: str, text: str, section: str, key: str, expected: Any
) -> None:
    settings = load_settings(data_dir, {name: text})

    value = getattr(getattr(settings, section), key)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("GROK2API_CHAT_STREAM", "maybe", "chat.stream: expected bool, got 'maybe'"),
        ("GROK2API_TOKEN_BASIC_QUOTA", "1.5", "token.basic_quota: expected int"),
        ("GROK2API_TOKEN_BASIC_QUOTA", "", "token.basic_quota: expected int, got ''"),
        ("GROK2API_NETWORK_TIMEOUT", "2s", "network.timeout: expected float"),
        ("GROK2API_RETRY_RETRY_STATUS_CODES", "502,x", "retry.retry_status_codes:"),
        ("GROK2API_RETRY_RETRY_STATUS_CODES", "[1,", "retry.retry_status_codes:"),
        ("GROK2API_CHAT_FILTER_TAGS", '["a", 1]', "chat.filter_tags: expected list"),
        ("GROK2API_MODELS_ALIASES", "[1]", "models.aliases: expected table of str"),
        ("GROK2API_MODELS_ALIASES", "a=b", "models.aliases: expected table of str"),
    ],
)
def test_environment_bad_text_is_a_problem_naming_the_variable(
    data_dir: Path, name: str, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir, {name: text})

    [line] = caught.value.problems
    assert line.startswith(expected)
    assert line.endswith(f"(from {name})")


def test_environment_wins_over_file_and_overrides(data_dir: Path) -> None:
    (data_dir / "config.toml").write_text("[app]\napi_key = 'from-file'\n")
    overrides = {"app": {"api_key": "from-overrides"}}

    settings = load_settings(data_dir, {"GROK2API_APP_API_KEY": "from-env"}, overrides)

    assert settings.app.api_key == "from-env"


def test_environment_empty_string_clears_a_string_setting(data_dir: Path) -> None:
    (data_dir / "config.toml").write_text("[app]\napi_key = 'from-file'\n")

    settings = load_settings(data_dir, {"GROK2API_APP_API_KEY": ""})

    assert settings.app.api_key == ""


def test_environment_unknown_key_of_a_known_section_is_a_problem(
    data_dir: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir, {"GROK2API_NETWORK_TIMEOUTT": "5"})

    assert caught.value.problems == [
        "GROK2API_NETWORK_TIMEOUTT: does not name a setting"
    ]


def test_environment_foreign_variables_are_only_warned_about(data_dir: Path) -> None:
    environ = {"GROK2API_API_KEY": "client-side", "HOME": "/root", "SERVER_PORT": "1"}

    report = check_settings(data_dir, environ)

    assert report.warnings == ("GROK2API_API_KEY: does not name a setting; ignored",)


def test_environment_reference_app_key_sets_the_admin_password(data_dir: Path) -> None:
    report = check_settings(data_dir, {"GROK2API_APP_KEY": "hunter22"})

    assert report.settings.app.app_password == "hunter22"
    assert (
        "GROK2API_APP_KEY: is the old name of GROK2API_APP_APP_PASSWORD"
        in (report.warnings[0])
    )


def test_environment_current_name_beats_the_reference_name(data_dir: Path) -> None:
    environ = {"GROK2API_APP_KEY": "old", "GROK2API_APP_APP_PASSWORD": "new"}

    assert load_settings(data_dir, environ).app.app_password == "new"


def test_environment_old_key_names_are_mapped(data_dir: Path) -> None:
    report = check_settings(data_dir, {"GROK2API_CHAT_STREAM_TIMEOUT": "45"})

    assert report.settings.timeout.stream_idle_timeout == 45.0
    assert report.warnings == (
        "chat.stream_timeout: is the old name of timeout.stream_idle_timeout;"
        " rename it (from GROK2API_CHAT_STREAM_TIMEOUT)",
    )


def test_environment_variable_name_is_upper_case_path() -> None:
    assert variable_name("network", "base_url") == "GROK2API_NETWORK_BASE_URL"


def test_environment_parse_rejects_a_json_array_for_a_table() -> None:
    with pytest.raises(ValueError):
        parse_env_value("[]", dict[str, str])
