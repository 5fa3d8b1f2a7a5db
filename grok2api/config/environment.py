"""Settings from ``GROK2API_<SECTION>_<KEY>`` environment variables.

The variable name is the setting's path in upper case with ``_`` between the
parts (``network.base_url`` is ``GROK2API_NETWORK_BASE_URL``). Its text is
parsed by the field's type: booleans accept ``true/false/1/0/yes/no``, lists a
JSON array or comma-separated items, tables a JSON object.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from typing import Any

from grok2api.config import aliases
from grok2api.config.converter import describe_type, show_value
from grok2api.config.layers import Entry, problem
from grok2api.config.schema import FIELDS

PREFIX = "GROK2API_"

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def variable_name(section: str, key: str) -> str:
    """The environment variable that sets ``section.key``."""
    return f"{PREFIX}{section}_{key}".upper()


def _parse_scalar(text: str, tp: Any) -> Any:
    if tp is bool:
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(text)
    if tp is int:
        return int(text.strip())
    if tp is float:
        return float(text.strip())
    return text


def _parse_json(text: str, kind: type) -> Any:
    value = json.loads(text)
    if not isinstance(value, kind):
        raise ValueError(text)
    return value


def parse_env_value(text: str, tp: Any) -> Any:
    """Parse an environment variable's text as a value of field type ``tp``.

    Raises:
        ValueError: the text does not spell a value of that type.
    """
    origin = typing.get_origin(tp)
    if origin is tuple:
        if text.strip().startswith("["):
            return _parse_json(text, list)
        item_type = typing.get_args(tp)[0]
        items = (item.strip() for item in text.split(","))
        return [_parse_scalar(item, item_type) for item in items if item]
    if origin is dict:
        return _parse_json(text, dict) if text.strip() else {}
    return _parse_scalar(text, tp)


def _known_variables() -> dict[str, tuple[str, str]]:
    names = {
        variable_name(section, key): (section, key)
        for section, fields in FIELDS.items()
        for key in fields
    }
    for section, key in [*aliases.RENAMED, *aliases.IGNORED]:
        names[variable_name(section, key)] = (section, key)
    return names


_VARIABLES = _known_variables()


def _field_type(section: str, key: str) -> Any | None:
    section, key = aliases.RENAMED.get((section, key), (section, key))
    field = FIELDS.get(section, {}).get(key)
    return None if field is None else field.type


def environment_entries(
    environ: Mapping[str, str],
) -> tuple[list[Entry], list[str], list[str]]:
    """Read every ``GROK2API_*`` variable as a setting entry.

    Returns:
        ``(entries, problems, warnings)``. A variable whose section part is a
        current section but whose key is unknown is a problem (a typo should
        not pass unnoticed); any other unknown ``GROK2API_*`` variable is only
        a warning, since other tools may use the prefix.
    """
    entries: list[Entry] = []
    problems: list[str] = []
    warnings: list[str] = []
    for name in sorted(environ):
        if not name.startswith(PREFIX):
            continue
        text = environ[name]
        if name in aliases.ENVIRONMENT_RENAMED:
            path = aliases.ENVIRONMENT_RENAMED[name]
            if path is None:
                warnings.append(f"{name}: is not used by grok2api and is ignored")
                continue
            replacement = variable_name(*path)
            if replacement in environ:
                warnings.append(f"{name}: {replacement} is also set; ignored")
                continue
            warnings.append(f"{name}: is the old name of {replacement}; rename it")
            section, key = path
        elif name in _VARIABLES:
            section, key = _VARIABLES[name]
        else:
            rest = name.removeprefix(PREFIX).lower()
            if any(rest.startswith(f"{section}_") for section in FIELDS):
                problems.append(f"{name}: does not name a setting")
            else:
                warnings.append(f"{name}: does not name a setting; ignored")
            continue

        tp = _field_type(section, key)
        if tp is None:  # an ignored reference key: the aliases step reports it
            entries.append(Entry(section, key, text, name))
            continue
        try:
            value = parse_env_value(text, tp)
        except ValueError:
            reason = f"expected {describe_type(tp)}, got {show_value(text)}"
            problems.append(problem(f"{section}.{key}", reason, name))
            continue
        entries.append(Entry(section, key, value, name))
    return entries, problems, warnings


def variable_for(environ: Mapping[str, str], section: str, key: str) -> str | None:
    """The environment variable that sets ``section.key``, an old name
    included, or None when the environment leaves it alone."""
    entries, _, _ = environment_entries(environ)
    resolved, _ = aliases.resolve_aliases(entries)
    for entry in resolved:
        if (entry.section, entry.key) == (section, key):
            return entry.source
    return None
