"""Load, merge and check the configuration.

Layers, lowest precedence first:

1. the packaged defaults (``grok2api/config/defaults.toml``);
2. ``DATA_DIR/config.toml``;
3. runtime overrides saved by the admin API in storage;
4. ``GROK2API_<SECTION>_<KEY>`` environment variables.

A later layer replaces single keys of an earlier one, never whole sections,
and the environment wins over everything. Old reference key names are mapped
within each layer (see :mod:`grok2api.config.aliases`). Every unknown key,
wrong type and out-of-range value is collected and raised once as
:class:`~grok2api.errors.ConfigError`, each line naming the path and the
file, ``runtime overrides`` or variable it came from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from grok2api.config import aliases
from grok2api.config.converter import (
    STRUCTURE_ERRORS,
    converter,
    describe_type,
    show_value,
    structure_value,
)
from grok2api.config.environment import environment_entries
from grok2api.config.layers import Entry, flatten, merge, problem
from grok2api.config.redaction import SECRET_KEYS
from grok2api.config.schema import FIELDS, Settings
from grok2api.errors import ConfigError

logger = logging.getLogger(__name__)

CONFIG_FILE_NAME = "config.toml"
DEFAULTS_SOURCE = "packaged defaults"
OVERRIDES_SOURCE = "runtime overrides"


@attrs.frozen
class SettingsReport:
    """Loaded settings and the warnings met on the way (renamed or ignored
    keys), for ``grok2api config check`` and start-up logging."""

    settings: Settings
    warnings: tuple[str, ...]


def defaults_text() -> str:
    """The packaged ``defaults.toml``, comments included."""
    return (
        resources.files("grok2api.config").joinpath("defaults.toml").read_text("utf-8")
    )


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message ends with "(at line N, column M)".
        raise ConfigError([f"{source}: invalid TOML: {exc}"]) from None


def _read_file(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: the file is not valid UTF-8"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the file ({exc.strerror})"]) from None
    return _parse_toml(text, str(path))


def _unknown(entry: Entry) -> str:
    if entry.section in FIELDS or entry.section in aliases.OLD_SECTIONS:
        return problem(entry.path, "unknown key", entry.source)
    return problem(entry.section, "unknown section", entry.source)


def check_entries(
    entries: Iterable[Entry],
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Convert and validate each entry against the schema.

    Returns:
        ``{section: {key: value}}`` of the converted values, and one problem
        line per bad entry (an unknown section is reported once per source).
    """
    tables: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for entry in entries:
        field = FIELDS.get(entry.section, {}).get(entry.key)
        if field is None:
            line = _unknown(entry)
            if line not in problems:
                problems.append(line)
            continue
        try:
            value = structure_value(entry.value, field.type)
        except STRUCTURE_ERRORS:
            expected = describe_type(field.type)
            shown = (
                # A secret put in the wrong shape is still a secret.
                f"{type(entry.value).__name__} (value hidden)"
                if entry.path in SECRET_KEYS
                else show_value(entry.value)
            )
            reason = f"expected {expected}, got {shown}"
            problems.append(problem(entry.path, reason, entry.source))
            continue
        if field.validator is not None:
            try:
                field.validator(None, field, value)
            except ValueError as exc:
                problems.append(problem(entry.path, str(exc), entry.source))
                continue
        tables.setdefault(entry.section, {})[entry.key] = value
    return tables, problems


def _layer(
    document: Mapping[str, Any], source: str, problems: list[str], warnings: list[str]
) -> list[Entry]:
    entries, shape_problems = flatten(document, source)
    problems.extend(shape_problems)
    entries, alias_warnings = aliases.resolve_aliases(entries)
    warnings.extend(alias_warnings)
    return entries


def check_settings(
    data_dir: Path,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
) -> SettingsReport:
    """Load the settings and return them with the warnings met on the way.

    Args:
        data_dir: the data directory; ``config.toml`` in it is read if present.
        environ: the environment (usually ``os.environ``).
        overrides: runtime overrides, ``{section: {key: value}}``.

    Returns:
        The settings and the warning lines, each naming its source.

    Raises:
        ConfigError: with every problem found in any layer.
    """
    problems: list[str] = []
    warnings: list[str] = []
    defaults = _parse_toml(defaults_text(), DEFAULTS_SOURCE)
    config_path = Path(data_dir) / CONFIG_FILE_NAME
    layers = [
        _layer(defaults, DEFAULTS_SOURCE, problems, warnings),
        _layer(_read_file(config_path) or {}, str(config_path), problems, warnings),
        _layer(overrides or {}, OVERRIDES_SOURCE, problems, warnings),
    ]
    env_entries, env_problems, env_warnings = environment_entries(environ)
    warnings.extend(env_warnings)
    env_entries, alias_warnings = aliases.resolve_aliases(env_entries)
    warnings.extend(alias_warnings)
    layers.append(env_entries)

    tables, check_problems = check_entries(merge(layers))
    problems.extend(check_problems)
    problems.extend(env_problems)
    if problems:
        raise ConfigError(problems)
    return SettingsReport(converter.structure(tables, Settings), tuple(warnings))


def load_settings(
    data_dir: Path,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load the settings, logging each warning (see :func:`check_settings`).

    Raises:
        ConfigError: with every problem found in any layer.
    """
    report = check_settings(data_dir, environ, overrides)
    for warning in report.warnings:
        logger.warning("config: %s", warning)
    return report.settings


def validate_overrides(overrides: Mapping[str, Any]) -> list[str]:
    """Check a partial update from the admin API before it is stored.

    Only current names are accepted here (old names are for existing files).

    Returns:
        Problem lines worded as at load time, without a source; empty when
        the update is valid.
    """
    entries, problems = flatten(overrides, "")
    _, check_problems = check_entries(entries)
    return problems + check_problems


def ensure_config_file(data_dir: Path) -> Path:
    """Write ``DATA_DIR/config.toml`` from the packaged defaults if missing.

    The file is created with mode 0600 through a temporary file, so a crash
    never leaves half a file, and an existing file is never replaced.

    Returns:
        The path of the configuration file.
    """
    data_dir = Path(data_dir)
    target = data_dir / CONFIG_FILE_NAME
    if target.exists():
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=data_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:  # mkstemp: mode 0600
            file.write(defaults_text())
            file.flush()
            os.fsync(file.fileno())
        # A hard link is a rename that refuses to replace: if another process
        # created the file since the check above, its file stays.
        try:
            os.link(temp_name, target)
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system
            if not target.exists():
                os.replace(temp_name, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
    return target
