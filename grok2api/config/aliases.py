"""Old key names, and keys that have no counterpart here.

The reference project's code read other names than its README documented
(``app.app_key`` for the admin password, ``[proxy]`` for what the README puts
under ``[network]`` and ``[security]``, per-feature ``[video]``/``[asset]``
tables, ...). An existing reference ``config.toml`` should keep working, so
old names are mapped onto their new path, and keys for features this product
does not have are accepted and reported as ignored. Each mapping or dropped
key produces a warning line that names the file or variable it came from.
"""

from __future__ import annotations

from collections.abc import Iterable

from grok2api.config.layers import Entry, problem

Path = tuple[str, str]


def _moved(old_section: str, new_section: str, *keys: str) -> dict[Path, Path]:
    return {(old_section, key): (new_section, key) for key in keys}


#: Old ``(section, key)`` -> current ``(section, key)``.
RENAMED: dict[Path, Path] = {
    ("app", "app_key"): ("app", "app_password"),
    # The reference read this for CORS before its config was loaded, so it
    # never took effect there; here it means what its author wanted.
    ("app", "allowed_origins"): ("security", "cors_allow_origins"),
    **_moved(
        "app",
        "chat",
        "temporary",
        "disable_memory",
        "stream",
        "thinking",
        "dynamic_statsig",
        "filter_tags",
    ),
    **_moved("proxy", "network", "base_proxy_url", "asset_proxy_url"),
    **_moved("proxy", "security", "cf_clearance", "browser", "user_agent"),
    ("proxy", "pool_url"): ("proxy", "proxy_pool_url"),
    ("proxy", "pool_refresh_sec"): ("proxy", "proxy_pool_interval"),
    ("chat", "timeout"): ("network", "timeout"),
    ("chat", "stream_timeout"): ("timeout", "stream_idle_timeout"),
    **_moved("chat", "timeout", "stream_first_timeout", "stream_total_timeout"),
    ("image", "final_timeout"): ("image", "image_ws_blocked_seconds"),
    ("image", "nsfw"): ("image", "image_ws_nsfw"),
    ("image", "medium_min_bytes"): ("image", "image_ws_medium_min_bytes"),
    ("image", "final_min_bytes"): ("image", "image_ws_final_min_bytes"),
    ("video", "stream_timeout"): ("timeout", "video_idle_timeout"),
    ("video", "concurrent"): ("performance", "media_max_concurrent"),
    ("stats", "hourly_keep"): ("stats", "hourly_retention"),
    ("stats", "daily_keep"): ("stats", "daily_retention"),
    ("logs", "max_len"): ("stats", "log_max_entries"),
    ("cache", "limit_mb"): ("cache", "image_limit_mb"),
    ("nsfw", "concurrent"): ("performance", "nsfw_max_concurrent"),
    ("nsfw", "batch_size"): ("performance", "nsfw_batch_size"),
    ("usage", "concurrent"): ("performance", "usage_max_concurrent"),
    ("usage", "batch_size"): ("performance", "usage_batch_size"),
    ("asset", "list_concurrent"): ("performance", "assets_max_concurrent"),
    ("asset", "list_batch_size"): ("performance", "assets_batch_size"),
    ("asset", "delete_batch_size"): ("performance", "assets_delete_batch_size"),
}


def _keys(section: str, *keys: str) -> set[Path]:
    return {(section, key) for key in keys}


#: Reference keys for features this product does not have (or does
#: differently, with no faithful translation such as a unit change).
IGNORED: frozenset[Path] = frozenset(
    _keys(
        "app",
        "public_enabled",
        "public_key",
        "session_secret",
        "admin_session_ttl_hours",
        "public_session_ttl_hours",
    )
    | _keys("proxy", "pool_403_max")
    | _keys("retry", "reset_session_status_codes")
    | _keys("token", "usage_flush_interval_sec", "cooldown_error_requests")
    | _keys("chat", "concurrent")
    | _keys(
        "image",
        "timeout",
        "stream_timeout",
        "stream_first_timeout",
        "stream_total_timeout",
    )
    | _keys("video", "timeout", "stream_first_timeout", "stream_total_timeout")
    | _keys(
        "asset",
        "upload_concurrent",
        "upload_timeout",
        "download_concurrent",
        "download_timeout",
        "list_timeout",
        "delete_concurrent",
        "delete_timeout",
    )
    | _keys("nsfw", "timeout")
    | _keys("usage", "timeout")
    | _keys("stats", "save_delay_ms")
    | _keys("logs", "save_delay_ms")
    # The LiveKit token call is bounded by network.timeout like every REST call.
    | _keys("voice", "timeout")
)

#: Reference sections dropped as a whole, whatever keys they hold.
IGNORED_SECTIONS = frozenset({"conversation", "mcp", "api_keys"})

#: Sections that exist only in reference files; a key in one of them that is
#: in neither table is an unknown key, not an unknown section.
OLD_SECTIONS = (
    frozenset({section for section, _ in RENAMED} | {section for section, _ in IGNORED})
    | IGNORED_SECTIONS
)

#: Environment variables the reference documented outside the
#: ``GROK2API_<SECTION>_<KEY>`` scheme: new path, or ``None`` when ignored.
ENVIRONMENT_RENAMED: dict[str, Path | None] = {
    "GROK2API_APP_KEY": ("app", "app_password"),
    "GROK2API_SESSION_SECRET": None,
}


def is_ignored(section: str, key: str) -> bool:
    """True when ``section.key`` is a reference key this product drops."""
    return section in IGNORED_SECTIONS or (section, key) in IGNORED


def resolve_aliases(entries: Iterable[Entry]) -> tuple[list[Entry], list[str]]:
    """Map old names onto current ones within one layer.

    When a layer sets both the old and the current name, the current one wins.

    Returns:
        The entries under current names (unknown names are kept for the checker
        to report), and warning lines for every renamed or ignored key.
    """
    entries = list(entries)
    present = {(entry.section, entry.key) for entry in entries}
    resolved: list[Entry] = []
    warnings: list[str] = []
    for entry in entries:
        old = (entry.section, entry.key)
        if old in RENAMED:
            new_section, new_key = target = RENAMED[old]
            new_path = f"{new_section}.{new_key}"
            if target in present:
                reason = f"is the old name of {new_path}, which is also set; ignored"
            else:
                reason = f"is the old name of {new_path}; rename it"
                resolved.append(Entry(new_section, new_key, entry.value, entry.source))
            warnings.append(problem(entry.path, reason, entry.source))
        elif is_ignored(*old):
            reason = "is not used by grok2api and is ignored"
            warnings.append(problem(entry.path, reason, entry.source))
        else:
            resolved.append(entry)
    return resolved, warnings
