"""The header set the Grok web app sends on its REST calls.

Only the ``Cookie`` header carries the token. Everything else imitates a
Chrome tab on grok.com: the client hints are derived from the configured
User-Agent so that the two never disagree, and ``x-xai-request-id`` is fresh
for every call.
"""

from __future__ import annotations

import functools
import re
import uuid
from urllib.parse import urlsplit

from grok2api.errors import TokenRejected
from grok2api.upstream.options import UpstreamOptions
from grok2api.upstream.statsig import fixed_statsig_id, random_statsig_id

__all__ = ["clean_token", "client_hints", "rest_headers", "sso_cookie"]

ACCEPT_LANGUAGE = "zh-CN,zh;q=0.9,en;q=0.8"
ACCEPT_ENCODING = "gzip, deflate, br, zstd"

# A cookie value may not hold separators, whitespace or control characters;
# anything outside this set would let a pasted token inject header text.
_COOKIE_SAFE = re.compile(r"[!#-+\--:<-\[\]-~]+")
_CHROME_VERSION = re.compile(r"Chrome/(\d+)")


def clean_token(secret: str) -> str:
    """Strip whitespace and a pasted ``sso=`` prefix from a token.

    Raises:
        TokenRejected: the token is empty or holds characters a cookie cannot
            carry; no request with it could ever succeed.
    """
    token = secret.strip()
    if token.startswith("sso="):
        token = token[len("sso=") :]
    if not _COOKIE_SAFE.fullmatch(token):
        raise TokenRejected(
            "The token is empty or contains characters a cookie cannot carry "
            "(whitespace, ';', quotes or non-ASCII); import it again."
        )
    return token


def sso_cookie(secret: str, cf_clearance: str = "") -> str:
    """Build the ``Cookie`` header: the token twice, then the clearance."""
    token = clean_token(secret)
    cookie = f"sso={token}; sso-rw={token}"
    if cf_clearance:
        cookie += f"; cf_clearance={cf_clearance}"
    return cookie


def client_hints(user_agent: str) -> dict[str, str]:
    """Derive Chromium's ``Sec-Ch-Ua*`` headers from a User-Agent string."""
    return dict(_client_hints(user_agent))


@functools.lru_cache(maxsize=16)
def _client_hints(user_agent: str) -> tuple[tuple[str, str], ...]:
    # Every upstream call needs them and the User-Agent rarely changes.
    match = _CHROME_VERSION.search(user_agent)
    major = match.group(1) if match else "136"
    if "Windows" in user_agent:
        platform = "Windows"
    elif "Macintosh" in user_agent or "Mac OS X" in user_agent:
        platform = "macOS"
    elif "Android" in user_agent:
        platform = "Android"
    else:
        platform = "Linux"
    arm = "arm" in user_agent.lower() or "aarch64" in user_agent
    brands = (
        f'"Google Chrome";v="{major}", "Chromium";v="{major}", "Not(A:Brand";v="24"'
    )
    return (
        ("Sec-Ch-Ua", brands),
        ("Sec-Ch-Ua-Mobile", "?1" if platform == "Android" else "?0"),
        ("Sec-Ch-Ua-Platform", f'"{platform}"'),
        ("Sec-Ch-Ua-Arch", '"arm"' if arm else '"x86"'),
        ("Sec-Ch-Ua-Bitness", '"64"'),
        ("Sec-Ch-Ua-Model", '""'),
    )


@functools.lru_cache(maxsize=64)
def _fetch_site(origin: str, referer: str) -> str:
    same = urlsplit(origin).hostname == urlsplit(referer).hostname
    return "same-origin" if same else "same-site"


def rest_headers(
    secret: str,
    options: UpstreamOptions,
    *,
    origin: str | None = None,
    referer: str | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    """Return the headers for one REST call to grok.com.

    Args:
        secret: the token (with or without a leading ``sso=``).
        options: supplies the User-Agent, ``cf_clearance`` and statsig mode.
        origin: the ``Origin`` header; defaults to ``options.base_url``.
        referer: the ``Referer`` header; defaults to the origin plus ``/``.
        content_type: the body's media type.

    Returns:
        A fresh dict; each call has a new request id and, in dynamic mode, a
        new statsig value.

    Raises:
        TokenRejected: the token cannot be put in a cookie.
    """
    origin = origin or options.base_url.rstrip("/")
    referer = referer or origin + "/"
    if options.dynamic_statsig:
        statsig = random_statsig_id(options.statsig_prefix)
    else:
        statsig = fixed_statsig_id(options.statsig_prefix)
    headers = {
        "Accept": "*/*",
        "Accept-Encoding": ACCEPT_ENCODING,
        "Accept-Language": ACCEPT_LANGUAGE,
        "Content-Type": content_type,
        "Cookie": sso_cookie(secret, options.cf_clearance),
        "Origin": origin,
        "Priority": "u=1, i",
        "Referer": referer,
        "Sec-Fetch-Dest": "empty",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": _fetch_site(origin, referer),
        "User-Agent": options.user_agent,
        "x-statsig-id": statsig,
        "x-xai-request-id": str(uuid.uuid4()),
    }
    headers.update(_client_hints(options.user_agent))
    return headers
