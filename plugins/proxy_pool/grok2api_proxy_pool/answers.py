"""Reading a proxy pool API's answer: every proxy address it names.

Pool services answer in many shapes. Accepted here: plain text with one
address per line (``host:port``, ``user:pass@host:port`` or a full URL); a
JSON string; a JSON object whose address sits in a common field (``proxy``,
``proxy_url``, ``url``, ``http``, ``https``, ``result``, ``data``, nested
under any of those, or split into ``ip``/``host`` and ``port`` with optional
``username``/``password`` and ``protocol``); or a JSON list of any of these.
An address without a scheme is an HTTP proxy.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from grok2api import proxy_url_problem

__all__ = ["PoolAnswerError", "proxy_candidates"]

#: Fields that hold an address or something containing one, in the order
#: they are searched.
_ADDRESS_FIELDS = (
    "proxy",
    "proxy_url",
    "proxyUrl",
    "url",
    "http",
    "https",
    "result",
    "data",
    "proxies",
    "list",
)
_HOST_FIELDS = ("ip", "host", "server", "address", "addr")
_USER_FIELDS = ("username", "user")
_PASSWORD_FIELDS = ("password", "pass", "pwd")
_SCHEME_FIELDS = ("protocol", "scheme", "type")
_MAX_DEPTH = 4


class PoolAnswerError(ValueError):
    """The answer names no usable proxy; the reason never quotes it."""


def proxy_candidates(body: bytes) -> list[str]:
    """The proxy URLs in a pool API's answer, in the order given.

    Raises:
        PoolAnswerError: the answer holds no usable proxy address.
    """
    text = body.decode("utf-8", "replace").strip()
    if not text:
        raise PoolAnswerError("the answer is empty")
    try:
        document = json.loads(text)
    except ValueError:
        found = [_as_url(line) for line in text.splitlines()]
    else:
        found = []
        _collect(document, found, _MAX_DEPTH)
    usable = [url for url in dict.fromkeys(found) if url and _usable(url)]
    if not usable:
        raise PoolAnswerError("the answer names no usable proxy address")
    return usable


def _usable(url: str) -> bool:
    return proxy_url_problem(url) is None


def _as_url(address: str) -> str:
    address = address.strip()
    if not address or any(space in address for space in " \t"):
        return ""
    return address if "://" in address else f"http://{address}"


def _collect(value: Any, found: list[str], depth: int) -> None:
    if depth < 0:
        return
    if isinstance(value, str):
        found.append(_as_url(value))
    elif isinstance(value, list):
        for item in value:
            _collect(item, found, depth - 1)
    elif isinstance(value, dict):
        before = len(found)
        for field in _ADDRESS_FIELDS:
            if field in value:
                _collect(value[field], found, depth - 1)
        if len(found) == before:
            found.append(_from_parts(value))


def _first(value: dict[str, Any], fields: tuple[str, ...]) -> str:
    for field in fields:
        item = value.get(field)
        if isinstance(item, str | int) and not isinstance(item, bool) and item != "":
            return str(item)
    return ""


def _from_parts(value: dict[str, Any]) -> str:
    """``{"ip": "10.0.0.2", "port": 3128, ...}`` as a URL, or ``""``."""
    host, port = _first(value, _HOST_FIELDS), _first(value, ("port",))
    if host and not port and host.count(":") == 1:
        return _as_url(host)  # {"ip": "10.0.0.2:3128"}
    if not host or not port:
        return ""
    scheme = _first(value, _SCHEME_FIELDS).lower() or "http"
    user, password = _first(value, _USER_FIELDS), _first(value, _PASSWORD_FIELDS)
    credentials = ""
    if user:
        credentials = quote(user, safe="") + ":" + quote(password, safe="") + "@"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{credentials}{host}:{port}"
