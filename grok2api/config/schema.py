"""The settings schema: one frozen attrs class per TOML section.

Attribute names are the TOML key names, so ``settings.security.browser`` is
``[security] browser`` in ``config.toml``. The defaults here are the product's
defaults; ``defaults.toml`` beside this module repeats them with comments (a
test keeps the two equal). Each field carries a one-line ``help`` in its
metadata for the docs and the admin panel.
"""

from __future__ import annotations

from typing import Any

import attrs

from grok2api.config import checks

CHROME_136_MAC_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/136.0.0.0 Safari/537.36"
)
DEFAULT_FILTER_TAGS = ("xaiartifact", "xai:tool_usage_card", "grok:render")

positive = checks.greater_than(0)
non_negative = checks.at_least(0)
at_least_one = checks.at_least(1)


def setting(default: Any, help_text: str, *validators: checks.Validator) -> Any:
    """An attrs field with a default, a help line and its validators."""
    return attrs.field(
        default=default,
        validator=list(validators) or None,
        metadata={"help": help_text},
    )


@attrs.frozen(kw_only=True)
class AppSettings:
    app_url: str = setting(
        "",
        "Public base URL for file links; empty derives it from each request.",
        checks.optional_http_url,
    )
    app_username: str = setting("admin", "Admin panel user name.", checks.non_empty)
    app_password: str = setting("", "Admin panel password; empty means not set yet.")
    api_key: str = setting("", "Key API clients must send; empty means no master key.")
    image_format: str = setting(
        "url",
        "Image output: url, b64_json, base64 or markdown.",
        checks.one_of("url", "b64_json", "base64", "markdown"),
    )
    video_format: str = setting(
        "html",
        "Video output: html (player tag), url or markdown.",
        checks.one_of("html", "url", "markdown"),
    )


@attrs.frozen(kw_only=True)
class NetworkSettings:
    timeout: float = setting(120.0, "Seconds one upstream request may take.", positive)
    base_proxy_url: str = setting(
        "",
        "Proxy for grok.com traffic (http, https, socks4/4a/5/5h).",
        checks.optional_proxy_url,
    )
    asset_proxy_url: str = setting(
        "", "Proxy for asset uploads and downloads.", checks.optional_proxy_url
    )
    base_url: str = setting(
        "https://grok.com", "Upstream web app URL.", checks.http_url
    )
    assets_url: str = setting(
        "https://assets.grok.com", "Upstream asset host URL.", checks.http_url
    )
    accounts_url: str = setting(
        "https://accounts.x.ai",
        "Upstream accounts host URL (terms of service acceptance).",
        checks.http_url,
    )
    transport: str = setting(
        "auto",
        "HTTP client: auto (curl_cffi for https, trio for http), trio, httpx, "
        "curl_cffi.",
        checks.one_of("auto", "trio", "httpx", "curl_cffi"),
    )
    connect_timeout: float = setting(
        10.0, "Seconds to establish an upstream connection.", positive
    )
    max_connections: int = setting(
        1000, "Upper bound of open upstream connections.", at_least_one
    )


@attrs.frozen(kw_only=True)
class SecuritySettings:
    cf_clearance: str = setting("", "Cloudflare clearance cookie sent upstream.")
    browser: str = setting(
        "chrome136", "curl_cffi browser fingerprint to impersonate.", checks.non_empty
    )
    user_agent: str = setting(
        CHROME_136_MAC_USER_AGENT, "User-Agent sent upstream.", checks.non_empty
    )
    allow_anonymous_api: bool = setting(False, "Serve the API without any key.")
    allow_anonymous_admin: bool = setting(False, "Serve the admin panel without login.")
    cors_allow_origins: tuple[str, ...] = setting(
        (),
        "Origins allowed by CORS ('*' for any); empty disables CORS.",
        checks.origins,
    )
    max_body_size_mb: int = setting(50, "Largest request body in MB.", at_least_one)
    rate_limit_enabled: bool = setting(True, "Limit requests per client IP.")
    rate_limit_per_minute: int = setting(
        120, "Requests per minute per client IP.", at_least_one
    )
    rate_limit_burst: int = setting(60, "Burst above the steady rate.", at_least_one)
    trusted_proxies: tuple[str, ...] = setting(
        (), "CIDR networks whose X-Forwarded-For is believed.", checks.cidr_networks
    )
    secret_key: str = setting(
        "",
        "Key that encrypts tokens at rest in storage; empty stores them plain.",
    )
    admin_session_ttl_sec: float = setting(
        43_200.0, "Lifetime of an admin login session (s).", positive
    )
    login_attempts_per_minute: int = setting(
        5, "Admin logins (and bad admin keys) per client IP per minute.", at_least_one
    )
    media_fetch_allow_hosts: tuple[str, ...] = setting(
        (),
        "Host names the gateway may fetch user media from even though they"
        " resolve to a private or loopback address.",
    )


@attrs.frozen(kw_only=True)
class ChatSettings:
    temporary: bool = setting(True, "Ask upstream for temporary conversations.")
    disable_memory: bool = setting(True, "Ask upstream not to use its memory.")
    stream: bool = setting(False, "Stream when a request does not say.")
    thinking: bool = setting(True, "Show reasoning when a request does not say.")
    dynamic_statsig: bool = setting(True, "Send a fresh x-statsig-id per request.")
    filter_tags: tuple[str, ...] = setting(
        DEFAULT_FILTER_TAGS,
        "Upstream markup tags removed from answers.",
        checks.non_empty_items,
    )
    continue_conversations: bool = setting(
        False,
        "Continue an earlier answer's upstream conversation instead of resending "
        "history.",
    )
    conversation_ttl_sec: float = setting(
        3600.0, "How long an answer can be continued (s).", positive
    )


@attrs.frozen(kw_only=True)
class RetrySettings:
    max_retry: int = setting(3, "Retries of one upstream call.", non_negative)
    retry_status_codes: tuple[int, ...] = setting(
        (401, 429, 403), "Upstream statuses that are retried.", checks.status_codes
    )
    retry_backoff_base: float = setting(0.5, "First backoff delay (s).", non_negative)
    retry_backoff_factor: float = setting(
        2.0, "Backoff growth per attempt.", checks.at_least(1)
    )
    retry_backoff_max: float = setting(
        30.0, "Longest single backoff (s).", non_negative
    )
    retry_budget: float = setting(
        90.0, "Total backoff time allowed per call (s).", non_negative
    )


@attrs.frozen(kw_only=True)
class TimeoutSettings:
    stream_idle_timeout: float = setting(
        120.0, "Longest gap between upstream stream frames (s).", positive
    )
    stream_first_timeout: float = setting(
        30.0, "Wait for the first upstream frame (s).", positive
    )
    stream_total_timeout: float = setting(
        600.0, "Longest whole upstream stream (s).", positive
    )
    video_idle_timeout: float = setting(
        90.0, "Longest gap in a video generation stream (s).", positive
    )
    video_result_wait_timeout: float = setting(
        90.0, "Wait for a finished video to appear (s).", non_negative
    )
    video_result_poll_interval: float = setting(
        1.0, "Pause between checks for a finished video (s).", positive
    )
    video_result_scan_pages: int = setting(
        12, "Asset list pages searched for a video.", at_least_one
    )
    video_result_scan_assets: int = setting(
        800, "Assets searched for a video.", at_least_one
    )
    video_result_candidate_attempts: int = setting(
        4, "Candidate videos tried before giving up.", at_least_one
    )
    shutdown_grace: float = setting(
        10.0, "Seconds in-flight requests get on SIGTERM.", non_negative
    )
    storage_timeout: float = setting(5.0, "Longest storage operation (s).", positive)


@attrs.frozen(kw_only=True)
class ImageSettings:
    image_ws: bool = setting(True, "Generate images over the WebSocket endpoint.")
    image_ws_nsfw: bool = setting(True, "Ask for NSFW-enabled image generation.")
    image_ws_blocked_seconds: float = setting(
        15.0,
        "Wait for a final image after a preview before calling it blocked (s).",
        positive,
    )
    image_ws_final_min_bytes: int = setting(
        100000, "Smallest size of a final image.", non_negative
    )
    image_ws_medium_min_bytes: int = setting(
        30000, "Smallest size of a medium preview.", non_negative
    )
    image_ws_max_per_request: int = setting(
        6, "Most images one Imagine socket is asked for.", at_least_one
    )
    image_ws_timeout: float = setting(
        120.0, "Longest Imagine WebSocket round (s).", positive
    )
    image_ws_idle_timeout: float = setting(
        30.0, "Longest silence on the Imagine WebSocket before a stall (s).", positive
    )
    image_ws_settle_seconds: float = setting(
        10.0, "Silence after a final image that ends a round (s).", positive
    )
    image_ws_ping_interval: float = setting(
        20.0, "Seconds between pings on the Imagine WebSocket.", positive
    )
    edit_max_images: int = setting(
        16, "Most input images one edit request may send.", at_least_one
    )
    edit_max_image_mb: int = setting(
        20, "Largest input image of an edit request (MB).", at_least_one
    )


@attrs.frozen(kw_only=True)
class TokenSettings:
    auto_refresh: bool = setting(True, "Re-read token quotas in the background.")
    refresh_interval_hours: float = setting(
        8.0, "Refresh period for basic tokens (h).", positive
    )
    super_refresh_interval_hours: float = setting(
        2.0, "Refresh period for super tokens (h).", positive
    )
    fail_threshold: int = setting(
        5, "Consecutive auth failures before a token is invalid.", at_least_one
    )
    save_delay_ms: int = setting(2000, "Debounce of token writes (ms).", non_negative)
    reload_interval_sec: float = setting(
        120.0, "Longest staleness of a worker's token view (s).", positive
    )
    selection_strategy: str = setting(
        "max_quota",
        "Token selection strategy (built-in or from a plugin).",
        checks.non_empty,
    )
    basic_quota: int = setting(
        80, "Requests per window of a basic token.", at_least_one
    )
    basic_window_hours: float = setting(20.0, "Basic quota window (h).", positive)
    super_quota: int = setting(
        140, "Requests per window of a super token.", at_least_one
    )
    super_window_hours: float = setting(2.0, "Super quota window (h).", positive)
    reservation_ttl_sec: float = setting(
        900.0, "Lifetime of an uncommitted quota reservation (s).", positive
    )
    cooldown_429_quota_sec: float = setting(
        3600.0, "Cooldown after a 429 while quota remains (s).", non_negative
    )
    cooldown_429_empty_sec: float = setting(
        36000.0, "Cooldown after a 429 with no quota left (s).", non_negative
    )
    lease_sample_size: int = setting(
        16, "Candidate tokens a strategy picks from.", at_least_one
    )


@attrs.frozen(kw_only=True)
class CacheSettings:
    enable_auto_clean: bool = setting(True, "Trim the media cache automatically.")
    image_limit_mb: int = setting(2048, "Image cache size limit (MB).", non_negative)
    video_limit_mb: int = setting(4096, "Video cache size limit (MB).", non_negative)
    cleanup_target_ratio: float = setting(
        0.8,
        "Trim down to this share of the limit.",
        checks.between(0, 1, low_open=True),
    )
    cleanup_interval_sec: float = setting(30.0, "Cache check period (s).", positive)
    cleanup_max_delete: int = setting(
        1000, "Most files removed in one trim.", at_least_one
    )


def _provider_proxy_scheme(_inst: Any, _attr: Any, value: str) -> None:
    # The proxy providers carry traffic over either transport, and httpx
    # speaks no SOCKS4; the reason names the scheme, never the URL.
    scheme = value.partition(":")[0].lower()
    if value and scheme in ("socks4", "socks4a"):
        raise ValueError(
            f"scheme {scheme!r} is not supported here; use http, https, socks5 "
            "or socks5h"
        )


@attrs.frozen(kw_only=True)
class ProxySettings:
    proxy_url: str = setting(
        "",
        "Fixed proxy for upstream traffic (http, https, socks5, socks5h).",
        checks.optional_proxy_url,
        _provider_proxy_scheme,
    )
    proxy_pool_url: str = setting(
        "", "URL that returns a proxy address.", checks.optional_http_url
    )
    proxy_pool_interval: float = setting(
        300.0, "Proxy pool refresh period (s).", positive
    )
    sticky_per_token: bool = setting(
        False,
        "Keep each token on the pool proxy it got until that proxy fails "
        "(a Cloudflare clearance is bound to one address).",
    )


@attrs.frozen(kw_only=True)
class StatsSettings:
    enabled: bool = setting(True, "Keep request statistics.")
    hourly_retention: int = setting(48, "Hourly buckets kept (h).", at_least_one)
    daily_retention: int = setting(30, "Daily buckets kept (days).", at_least_one)
    log_max_entries: int = setting(1000, "Audit log entries kept.", non_negative)
    flush_interval_sec: float = setting(2.0, "Statistics write period (s).", positive)


@attrs.frozen(kw_only=True)
class PerformanceSettings:
    nsfw_max_concurrent: int = setting(
        50, "Parallel NSFW enabling calls.", at_least_one
    )
    nsfw_batch_size: int = setting(100, "Tokens per NSFW batch.", at_least_one)
    nsfw_max_tokens: int = setting(5000, "Most tokens per NSFW job.", at_least_one)
    usage_max_concurrent: int = setting(100, "Parallel quota refreshes.", at_least_one)
    usage_batch_size: int = setting(
        100, "Tokens per quota refresh batch.", at_least_one
    )
    usage_max_tokens: int = setting(
        5000, "Most tokens per quota refresh job.", at_least_one
    )
    assets_max_concurrent: int = setting(100, "Parallel asset calls.", at_least_one)
    assets_batch_size: int = setting(50, "Tokens per asset batch.", at_least_one)
    assets_max_tokens: int = setting(5000, "Most tokens per asset job.", at_least_one)
    assets_delete_batch_size: int = setting(
        50, "Assets removed per delete batch.", at_least_one
    )
    media_max_concurrent: int = setting(
        200, "Parallel image and video generation calls per worker.", at_least_one
    )
    sse_keepalive_sec: float = setting(
        15.0, "SSE keep-alive comment period (s).", positive
    )


@attrs.frozen(kw_only=True)
class VoiceSettings:
    livekit_url: str = setting(
        "wss://livekit.grok.com",
        "LiveKit server voice clients join with the token (ws or wss URL).",
        checks.websocket_url,
    )


@attrs.frozen(kw_only=True)
class ModelsSettings:
    aliases: dict[str, str] = attrs.field(
        factory=dict,
        validator=checks.alias_table,
        metadata={"help": "Public alias name -> model id."},
    )


@attrs.frozen(kw_only=True)
class Settings:
    """The whole configuration; ``Settings()`` is the packaged defaults."""

    app: AppSettings = attrs.field(factory=AppSettings)
    network: NetworkSettings = attrs.field(factory=NetworkSettings)
    security: SecuritySettings = attrs.field(factory=SecuritySettings)
    chat: ChatSettings = attrs.field(factory=ChatSettings)
    retry: RetrySettings = attrs.field(factory=RetrySettings)
    timeout: TimeoutSettings = attrs.field(factory=TimeoutSettings)
    image: ImageSettings = attrs.field(factory=ImageSettings)
    token: TokenSettings = attrs.field(factory=TokenSettings)
    cache: CacheSettings = attrs.field(factory=CacheSettings)
    proxy: ProxySettings = attrs.field(factory=ProxySettings)
    stats: StatsSettings = attrs.field(factory=StatsSettings)
    performance: PerformanceSettings = attrs.field(factory=PerformanceSettings)
    voice: VoiceSettings = attrs.field(factory=VoiceSettings)
    models: ModelsSettings = attrs.field(factory=ModelsSettings)


#: Section name -> its attrs class, in file order.
SECTIONS: dict[str, type[Any]] = {
    field.name: attrs.resolve_types(field.type)
    for field in attrs.fields(attrs.resolve_types(Settings))
}

#: Section name -> key name -> attrs field (types resolved).
FIELDS: dict[str, dict[str, attrs.Attribute[Any]]] = {
    name: {field.name: field for field in attrs.fields(cls)}
    for name, cls in SECTIONS.items()
}
