"""Field validators for the settings schema.

Each factory returns an attrs validator, a callable ``(instance, attribute,
value)`` that raises :class:`ValueError` with a reason such as ``must be at
least 1, got 0``. The loader calls them one field at a time (with
``instance=None``) so that every bad value is reported, not just the first;
the attrs classes call them too, so a hand-built ``Settings`` is checked the
same way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

Validator = Callable[[Any, Any, Any], None]

HTTP_SCHEMES = frozenset({"http", "https"})
PROXY_SCHEMES = frozenset({"http", "https", "socks4", "socks4a", "socks5", "socks5h"})
WEBSOCKET_SCHEMES = frozenset({"ws", "wss"})


def at_least(minimum: float) -> Validator:
    """Values must be ``>= minimum``."""

    def check(_inst: Any, _attr: Any, value: float) -> None:
        if not value >= minimum:  # written this way so NaN fails too
            raise ValueError(f"must be at least {minimum}, got {value!r}")

    return check


def greater_than(bound: float) -> Validator:
    """Values must be ``> bound`` (NaN fails)."""

    def check(_inst: Any, _attr: Any, value: float) -> None:
        if not value > bound:
            raise ValueError(f"must be greater than {bound}, got {value!r}")

    return check


def between(low: float, high: float, *, low_open: bool = False) -> Validator:
    """Values must lie in ``[low, high]``, or ``(low, high]`` when ``low_open``."""

    def check(_inst: Any, _attr: Any, value: float) -> None:
        above = value > low if low_open else value >= low
        if not (above and value <= high):
            left = "(" if low_open else "["
            raise ValueError(f"must be in {left}{low}, {high}], got {value!r}")

    return check


def one_of(*choices: str) -> Validator:
    """Values must be one of ``choices``."""

    def check(_inst: Any, _attr: Any, value: str) -> None:
        if value not in choices:
            names = ", ".join(repr(choice) for choice in choices)
            raise ValueError(f"must be one of {names}, got {value!r}")

    return check


def non_empty(_inst: Any, _attr: Any, value: str) -> None:
    """Strings must not be empty or blank."""
    if not value.strip():
        raise ValueError("must not be empty")


def _shown_url(value: str) -> str:
    """A URL as an error message may repeat it: a proxy or pool URL may
    carry a password or a key, so user info and query are masked."""
    scheme, _, rest = value.partition("://")
    if not rest:
        return "***" if "@" in value or "?" in value else repr(value)
    host = rest.rsplit("@", 1)[-1]
    masked = "***@" if "@" in rest else ""
    path, question, _query = host.partition("?")
    return repr(f"{scheme}://{masked}{path}{'?***' if question else ''}")


def _url_problem(value: str, schemes: Iterable[str]) -> str | None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- parsing the port is what raises on junk
    except ValueError as exc:
        return f"is not a valid URL ({exc}), got {_shown_url(value)}"
    allowed = sorted(schemes)
    if parts.scheme not in allowed or not parts.hostname:
        shown = ", ".join(allowed[:-1]) + " or " + allowed[-1]
        return f"must be a URL with a host and scheme {shown}, got {_shown_url(value)}"
    return None


def http_url(_inst: Any, _attr: Any, value: str) -> None:
    """An ``http://`` or ``https://`` URL with a host."""
    problem = _url_problem(value, HTTP_SCHEMES)
    if problem:
        raise ValueError(problem)


def websocket_url(_inst: Any, _attr: Any, value: str) -> None:
    """A ``ws://`` or ``wss://`` URL with a host."""
    problem = _url_problem(value, WEBSOCKET_SCHEMES)
    if problem:
        raise ValueError(problem)


def optional_http_url(_inst: Any, _attr: Any, value: str) -> None:
    """Empty, or an ``http(s)`` URL."""
    if value:
        http_url(_inst, _attr, value)


def optional_proxy_url(_inst: Any, _attr: Any, value: str) -> None:
    """Empty, or a proxy URL (http, https, socks4/4a/5/5h)."""
    problem = _url_problem(value, PROXY_SCHEMES) if value else None
    if problem:
        raise ValueError(problem)


def each(item_check: Callable[[Any], str | None]) -> Validator:
    """Apply ``item_check`` (returning a reason or ``None``) to every item."""

    def check(_inst: Any, _attr: Any, values: Iterable[Any]) -> None:
        for index, item in enumerate(values):
            reason = item_check(item)
            if reason:
                raise ValueError(f"item {index} {reason}, got {item!r}")

    return check


def _status_code(item: int) -> str | None:
    return None if 100 <= item <= 599 else "must be an HTTP status (100-599)"


def _cidr(item: str) -> str | None:
    try:
        ipaddress.ip_network(item, strict=False)
    except ValueError:
        return "must be an IP address or CIDR network"
    return None


def _origin(item: str) -> str | None:
    if item == "*" or _url_problem(item, HTTP_SCHEMES) is None:
        return None
    return "must be '*' or an http(s) origin"


def _text(item: str) -> str | None:
    return None if item.strip() else "must not be empty"


status_codes = each(_status_code)
cidr_networks = each(_cidr)
origins = each(_origin)
non_empty_items = each(_text)


def alias_table(_inst: Any, _attr: Any, value: dict[str, str]) -> None:
    """Alias names and their target model ids must be non-empty."""
    for alias, target in value.items():
        if not alias.strip() or not target.strip():
            raise ValueError(f"alias {alias!r} -> {target!r} must name both sides")
