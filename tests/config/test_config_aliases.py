from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from grok2api.config import check_settings, load_settings
from grok2api.config.aliases import IGNORED, RENAMED
from grok2api.config.schema import FIELDS
from grok2api.errors import ConfigError

WriteConfig = Callable[[str], Path]

# Shaped like a config.toml written for the reference project: its code's key
# names, not its README's.
REFERENCE_CONFIG = """
[app]
app_url = "https://gateway.example.test"
app_key = "an-admin-password"
api_key = "sk-reference-master-key"
public_enabled = false
public_key = ""
session_secret = "0123456789abcdef"
admin_session_ttl_hours = 24
image_format = "url"
video_format = "html"
temporary = false
disable_memory = false
stream = true
thinking = false
dynamic_statsig = false
filter_tags = ["xaiartifact"]

[proxy]
base_proxy_url = "socks5h://127.0.0.1:1080"
asset_proxy_url = "http://127.0.0.1:3128"
pool_url = "http://127.0.0.1:9/proxy"
pool_refresh_sec = 60
pool_403_max = 5
cf_clearance = "cf-cookie"
browser = "chrome131"
user_agent = "Reference UA"

[retry]
max_retry = 2
retry_status_codes = [401, 429]
reset_session_status_codes = [403]
retry_backoff_max = 20
retry_budget = 60

[token]
auto_refresh = false
save_delay_ms = 500
usage_flush_interval_sec = 5
reload_interval_sec = 30
cooldown_error_requests = 5
cooldown_429_quota_sec = 1800

[cache]
enable_auto_clean = true
limit_mb = 512

[chat]
concurrent = 50
timeout = 60
stream_timeout = 110
stream_first_timeout = 25
stream_total_timeout = 500

[image]
timeout = 60
final_timeout = 12
nsfw = false
medium_min_bytes = 20000
final_min_bytes = 90000

[video]
concurrent = 70
timeout = 60
stream_timeout = 95

[asset]
upload_concurrent = 100
list_concurrent = 33
list_batch_size = 44
delete_batch_size = 55

[nsfw]
concurrent = 61
batch_size = 31
timeout = 60

[usage]
concurrent = 62
batch_size = 32

[conversation]
ttl_seconds = 86400

[stats]
hourly_keep = 24
daily_keep = 7
save_delay_ms = 500

[logs]
max_len = 2000

[api_keys]
save_delay_ms = 500

[mcp]
enabled = true
mount_path = "/mcp"
"""


def test_aliases_reference_file_loads_onto_new_paths(
    data_dir: Path, write_config: WriteConfig
) -> None:
    write_config(REFERENCE_CONFIG)

    s = load_settings(data_dir, {})

    assert s.app.app_password == "an-admin-password"
    assert s.app.api_key == "sk-reference-master-key"
    assert (s.chat.temporary, s.chat.disable_memory) == (False, False)
    assert (s.chat.stream, s.chat.thinking, s.chat.dynamic_statsig) == (
        True,
        False,
        False,
    )
    assert s.chat.filter_tags == ("xaiartifact",)
    assert s.network.base_proxy_url == "socks5h://127.0.0.1:1080"
    assert s.network.asset_proxy_url == "http://127.0.0.1:3128"
    assert s.network.timeout == 60.0
    assert s.proxy.proxy_pool_url == "http://127.0.0.1:9/proxy"
    assert s.proxy.proxy_pool_interval == 60.0
    assert s.security.cf_clearance == "cf-cookie"
    assert s.security.browser == "chrome131"
    assert s.security.user_agent == "Reference UA"
    assert s.retry.retry_status_codes == (401, 429)
    assert s.token.cooldown_429_quota_sec == 1800.0
    assert s.token.save_delay_ms == 500
    assert s.cache.image_limit_mb == 512
    assert s.timeout.stream_idle_timeout == 110.0
    assert s.timeout.stream_first_timeout == 25.0
    assert s.timeout.stream_total_timeout == 500.0
    assert s.timeout.video_idle_timeout == 95.0
    assert s.image.image_ws_blocked_seconds == 12.0
    assert s.image.image_ws_nsfw is False
    assert s.image.image_ws_medium_min_bytes == 20000
    assert s.image.image_ws_final_min_bytes == 90000
    assert s.performance.media_max_concurrent == 70
    assert s.performance.assets_max_concurrent == 33
    assert s.performance.assets_batch_size == 44
    assert s.performance.assets_delete_batch_size == 55
    assert s.performance.nsfw_max_concurrent == 61
    assert s.performance.nsfw_batch_size == 31
    assert s.performance.usage_max_concurrent == 62
    assert s.performance.usage_batch_size == 32
    assert (s.stats.hourly_retention, s.stats.daily_retention) == (24, 7)
    assert s.stats.log_max_entries == 2000


def test_aliases_reference_file_reports_renamed_and_ignored_keys(
    data_dir: Path, write_config: WriteConfig
) -> None:
    config_path = write_config(REFERENCE_CONFIG)

    warnings = check_settings(data_dir, {}).warnings

    source = f"(from {config_path})"
    assert (
        f"app.app_key: is the old name of app.app_password; rename it {source}"
        in warnings
    )
    assert f"app.session_secret: is not used by grok2api and is ignored {source}" in (
        warnings
    )
    assert f"mcp.mount_path: is not used by grok2api and is ignored {source}" in (
        warnings
    )
    assert "retry.reset_session_status_codes: is not used by grok2api and is" in (
        "\n".join(warnings)
    )
    # Every key of the reference file is either current, renamed or ignored,
    # and each renamed or ignored one is mentioned exactly once.
    assert len(warnings) == len(set(warnings))
    assert all(source in warning for warning in warnings)


def test_aliases_new_name_wins_over_old_in_the_same_file(
    data_dir: Path, write_config: WriteConfig
) -> None:
    write_config(
        """
        [app]
        app_key = "old"
        app_password = "new"
        [stats]
        hourly_keep = 1
        hourly_retention = 2
        """
    )

    report = check_settings(data_dir, {})

    assert report.settings.app.app_password == "new"
    assert report.settings.stats.hourly_retention == 2
    assert any(
        w.startswith("app.app_key: is the old name of app.app_password, which is also")
        for w in report.warnings
    )


def test_aliases_old_name_in_a_higher_layer_beats_new_name_below(
    data_dir: Path, write_config: WriteConfig
) -> None:
    write_config("[network]\ntimeout = 10")

    settings = load_settings(data_dir, {}, {"chat": {"timeout": 20}})

    assert settings.network.timeout == 20.0


def test_aliases_old_values_are_still_checked(
    data_dir: Path, write_config: WriteConfig
) -> None:
    config_path = write_config("[app]\napp_key = 1\n[video]\nstream_timeout = -5")

    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir, {})

    assert sorted(caught.value.problems) == [
        f"app.app_password: expected str, got int (value hidden) (from {config_path})",
        "timeout.video_idle_timeout: must be greater than 0, got -5.0"
        f" (from {config_path})",
    ]


def test_aliases_unknown_key_in_a_reference_section_is_a_problem(
    data_dir: Path, write_config: WriteConfig
) -> None:
    config_path = write_config("[video]\nresolution = '720p'")

    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir, {})

    assert caught.value.problems == [
        f"video.resolution: unknown key (from {config_path})"
    ]


def test_aliases_tables_point_at_real_keys_and_never_shadow_them() -> None:
    for (old_section, old_key), (section, key) in RENAMED.items():
        assert key in FIELDS[section], f"{section}.{key}"
        assert old_key not in FIELDS.get(old_section, {}), f"{old_section}.{old_key}"
    for section, key in IGNORED:
        assert key not in FIELDS.get(section, {}), f"{section}.{key}"
