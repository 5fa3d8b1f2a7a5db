"""Reading token lists in the formats operators have: plain lines, JSON lists,
and the reference product's token file (``{"ssoBasic": [...], "ssoSuper": [...]}``).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from grok2api.models import BASIC, POOLS, SUPER

__all__ = [
    "MAX_SECRET_LENGTH",
    "ImportedToken",
    "checked_secret",
    "parse_token_import",
    "pool_name",
]

_POOL_ALIASES = {"ssobasic": BASIC, "ssosuper": SUPER, "basic": BASIC, "super": SUPER}


@attrs.frozen
class ImportedToken:
    secret: str
    pool: str
    tags: tuple[str, ...] = ()
    note: str = ""


def pool_name(name: str) -> str:
    """Our pool name for ``basic``/``super``, or for the reference's
    ``ssoBasic``/``ssoSuper``.

    Raises:
        ValueError: for any other name.
    """
    pool = _POOL_ALIASES.get(name.strip().lower())
    if pool is None:
        raise ValueError(f"unknown pool {name!r}; use one of {', '.join(POOLS)}")
    return pool


#: The most a token may hold; real sso values are a few hundred characters.
MAX_SECRET_LENGTH = 8192


def checked_secret(secret: str) -> str:
    """The token value an operator gave, with a leading ``sso=`` removed.

    Raises:
        ValueError: the value cannot be a cookie value: empty, too long, or
            holding whitespace, control characters or ``;,"\\``.
    """
    value = secret.strip()
    if value.startswith("sso="):
        value = value[len("sso=") :]
    if not value:
        raise ValueError("a token is empty")
    if len(value) > MAX_SECRET_LENGTH:
        raise ValueError(f"a token is longer than {MAX_SECRET_LENGTH} characters")
    if not all(33 <= ord(c) <= 126 and c not in ';,"\\' for c in value):
        raise ValueError("a token holds characters a cookie value cannot carry")
    return value


def parse_token_import(text: str, default_pool: str = BASIC) -> list[ImportedToken]:
    """Parse an import in any supported format.

    Raises:
        ValueError: the text is JSON of an unsupported shape, or names an
            unknown pool.
    """
    stripped = text.strip()
    if not stripped:
        return []
    if stripped[0] in "[{":
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"the import looks like JSON but is not valid: {exc}"
            ) from exc
        return _from_json(data, default_pool)
    return [
        _checked(ImportedToken(line.strip(), default_pool), f"line {number}")
        # Numbered as in the text given, blank lines at its top included.
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _checked(token: ImportedToken, where: str) -> ImportedToken:
    try:
        return attrs.evolve(token, secret=checked_secret(token.secret))
    except ValueError as exc:
        raise ValueError(f"{exc} ({where})") from None


def _from_json(data: Any, default_pool: str) -> list[ImportedToken]:
    if isinstance(data, list):
        return [
            _checked(_item(item, default_pool), f"item {i}")
            for i, item in enumerate(data)
        ]
    if isinstance(data, dict) and "tokens" in data:
        pool = pool_name(str(data.get("pool", default_pool)))
        return _from_json(data["tokens"], pool)
    if isinstance(data, dict):
        tokens: list[ImportedToken] = []
        for name, items in data.items():
            if not isinstance(items, list):
                raise ValueError(f"pool {name!r} must hold a list of tokens")
            pool = pool_name(name)
            tokens.extend(
                _checked(_item(item, pool), f"{name} item {i}")
                for i, item in enumerate(items)
            )
        return tokens
    raise ValueError("a JSON import must be a list of tokens or an object of pools")


def _item(item: Any, pool: str) -> ImportedToken:
    if isinstance(item, str):
        return ImportedToken(item, pool)
    if isinstance(item, dict) and isinstance(item.get("token"), str):
        tags = item.get("tags") or ()
        if not isinstance(tags, list | tuple) or not all(
            isinstance(t, str) for t in tags
        ):
            raise ValueError("'tags' must be a list of strings")
        item_pool = (
            pool_name(item["pool"]) if isinstance(item.get("pool"), str) else pool
        )
        return ImportedToken(
            item["token"], item_pool, tuple(tags), str(item.get("note") or "")
        )
    raise ValueError("each token must be a string or an object with a 'token' string")
