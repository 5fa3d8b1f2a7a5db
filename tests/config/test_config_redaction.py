from __future__ import annotations

import json

import attrs

from grok2api.config import (
    SECRET_KEYS,
    AppSettings,
    NetworkSettings,
    ProxySettings,
    SecuritySettings,
    Settings,
    mask_secret,
    settings_as_dict,
)

API_KEY = "sk-live-0123456789abcdefWXYZ"
PASSWORD = "correct horse battery"
COOKIE = "cf-clearance-cookie-value-1234"


def _settings_with_secrets() -> Settings:
    return Settings(
        app=AppSettings(api_key=API_KEY, app_password=PASSWORD),
        security=SecuritySettings(cf_clearance=COOKIE),
        network=NetworkSettings(
            base_proxy_url="socks5h://alice:s3cret-pw@127.0.0.1:1080",
            asset_proxy_url="http://bob:other-pw@[::1]:3128/",
        ),
        proxy=ProxySettings(
            proxy_url="http://carol:third-pw@127.0.0.1:8080",
            proxy_pool_url="http://127.0.0.1:9/get?key=pool-api-key&count=1",
        ),
    )


def test_redaction_hides_every_secret() -> None:
    shown = settings_as_dict(_settings_with_secrets())

    text = json.dumps(shown)
    for secret in (
        PASSWORD,
        COOKIE,
        "s3cret-pw",
        "other-pw",
        "third-pw",
        "pool-api-key",
        "0123456789",
    ):
        assert secret not in text
    assert shown["app"]["api_key"] == "sk-…WXYZ"
    assert shown["app"]["app_password"] == "***"
    assert shown["security"]["cf_clearance"] == "***"
    assert shown["network"]["base_proxy_url"] == "socks5h://alice:***@127.0.0.1:1080"
    assert shown["network"]["asset_proxy_url"] == "http://bob:***@[::1]:3128/"
    assert shown["proxy"]["proxy_url"] == "http://carol:***@127.0.0.1:8080"
    assert (
        shown["proxy"]["proxy_pool_url"] == "http://127.0.0.1:9/get?key=***&count=***"
    )


def test_redaction_off_shows_the_values() -> None:
    shown = settings_as_dict(_settings_with_secrets(), redact=False)

    assert shown["app"]["api_key"] == API_KEY
    assert shown["app"]["app_password"] == PASSWORD
    assert shown["proxy"]["proxy_url"] == "http://carol:third-pw@127.0.0.1:8080"


def test_redaction_keeps_unset_secrets_visibly_empty() -> None:
    shown = settings_as_dict(Settings())

    assert shown["app"]["api_key"] == ""
    assert shown["network"]["base_proxy_url"] == ""


def test_redaction_short_secret_is_masked_whole() -> None:
    assert mask_secret("short-key") == "***"


def test_redaction_secret_keys_name_real_string_settings() -> None:
    settings = Settings()
    for path in SECRET_KEYS:
        section, key = path.split(".")
        assert isinstance(getattr(getattr(settings, section), key), str), path
    assert {"app.api_key", "app.app_password", "security.cf_clearance"} <= SECRET_KEYS


def test_redaction_output_is_plain_json_and_leaves_settings_alone() -> None:
    settings = _settings_with_secrets()
    before = attrs.asdict(settings)

    shown = settings_as_dict(settings)

    assert json.loads(json.dumps(shown)) == shown
    assert isinstance(shown["chat"]["filter_tags"], list)
    assert attrs.asdict(settings) == before
