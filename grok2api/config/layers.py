"""Configuration layers as flat lists of entries that remember their source.

Every layer (packaged defaults, ``config.toml``, runtime overrides, the
environment) is flattened into :class:`Entry` values before anything else
happens, so aliasing, merging and checking treat them alike and every problem
can say where the bad value came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from grok2api.config.converter import show_value


@attrs.frozen
class Entry:
    """One ``section.key = value`` setting and where it was read."""

    section: str
    key: str
    value: Any
    #: A file path, ``runtime overrides`` or an environment variable name.
    source: str

    @property
    def path(self) -> str:
        return f"{self.section}.{self.key}"


def problem(path: str, reason: str, source: str | None) -> str:
    """Word one problem line: ``path: reason (from source)``."""
    suffix = f" (from {source})" if source else ""
    return f"{path}: {reason}{suffix}"


def flatten(document: Mapping[str, Any], source: str) -> tuple[list[Entry], list[str]]:
    """Split a ``{section: {key: value}}`` document into entries.

    Returns:
        The entries, and a problem line for every top-level value that is not
        a table (a key written above the first ``[section]`` header).
    """
    entries: list[Entry] = []
    problems: list[str] = []
    for section, table in document.items():
        if not isinstance(table, Mapping):
            reason = f"expected a [{section}] table, got {show_value(table)}"
            problems.append(problem(str(section), reason, source))
            continue
        for key, value in table.items():
            entries.append(Entry(str(section), str(key), value, source))
    return entries, problems


def merge(layers: Iterable[Iterable[Entry]]) -> list[Entry]:
    """Merge layers given lowest precedence first; a later entry replaces an
    earlier one for the same path."""
    merged: dict[tuple[str, str], Entry] = {}
    for layer in layers:
        for entry in layer:
            merged[entry.section, entry.key] = entry
    return list(merged.values())
