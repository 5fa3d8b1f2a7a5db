"""The settings cover the reference README's tables, and the docs cover them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from grok2api.config import Settings, settings_as_dict
from grok2api.config.aliases import IGNORED, RENAMED
from grok2api.config.schema import FIELDS

REPO = Path(__file__).resolve().parents[2]
SEED_README = REPO.parent / "shared" / "seed" / "README.md"
DOCS = REPO / "docs" / "configuration.md"

# Defaults this product changes on purpose (see docs/configuration.md).
DELIBERATE = {
    "app.app_url": "",  # empty: derive the public URL from each request
    "app.app_password": "",  # no well-known password is ever shipped
    "chat.stream": False,  # OpenAI clients read a missing `stream` as false
    "security.cors_allow_origins": [],
}

_SECTION = re.compile(r"^### `\[(\w+)\]`")
_ROW = re.compile(r"^\|\s*`(\w+)`\s*\|.*\|\s*`(.*)`\s*\|\s*$")


def _readme_defaults() -> dict[str, str]:
    """``section.key`` -> the default cell's text, from every settings table."""
    found: dict[str, str] = {}
    section = None
    for line in SEED_README.read_text("utf-8").splitlines():
        if line.startswith("#"):
            match = _SECTION.match(line)
            section = match.group(1) if match else None
        elif section and (row := _ROW.match(line)):
            found[f"{section}.{row.group(1)}"] = row.group(2)
    return found


def _as_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:  # a bare word such as max_quota
        return text


README_DEFAULTS = _readme_defaults()


def test_reference_tables_were_found() -> None:
    sections = {path.split(".")[0] for path in README_DEFAULTS}

    assert sections == {
        "app",
        "network",
        "security",
        "chat",
        "retry",
        "timeout",
        "image",
        "token",
        "cache",
        "proxy",
        "stats",
        "performance",
    }
    assert len(README_DEFAULTS) > 70


@pytest.mark.parametrize("path", sorted(README_DEFAULTS))
def test_reference_key_exists_with_its_default(path: str) -> None:
    section, key = path.split(".")
    assert key in FIELDS.get(section, {}), f"{path} is missing from the schema"

    actual = settings_as_dict(Settings(), redact=False)[section][key]
    expected = DELIBERATE.get(path, _as_value(README_DEFAULTS[path]))
    assert actual == expected


def test_reference_docs_list_every_key_with_type_and_default() -> None:
    docs = DOCS.read_text("utf-8")
    shown = settings_as_dict(Settings(), redact=False)

    for section, fields in FIELDS.items():
        heading = f"### `[{section}]`"
        assert heading in docs, heading
        table = docs.split(heading, 1)[1].split("\n### ", 1)[0]
        for key in fields:
            row = next(
                (
                    line
                    for line in table.splitlines()
                    if line.startswith(f"| `{key}` |")
                ),
                None,
            )
            assert row is not None, f"{section}.{key} is not documented"
            if isinstance(shown[section][key], str | int) and key != "user_agent":
                assert str(shown[section][key]).lower() in row.lower(), row


def test_reference_docs_state_the_precedence_order() -> None:
    docs = DOCS.read_text("utf-8")

    order = [
        docs.index("**Packaged defaults**"),
        docs.index("**`DATA_DIR/config.toml`**"),
        docs.index("**Runtime overrides**"),
        docs.index("**Environment variables**"),
    ]
    assert order == sorted(order)


def test_reference_docs_list_every_old_name_and_ignored_key() -> None:
    docs = DOCS.read_text("utf-8")

    for (old_section, old_key), (section, key) in RENAMED.items():
        assert f"| `{old_section}.{old_key}` | `{section}.{key}` |" in docs
    for section, key in IGNORED:
        assert f"`{section}.{key}`" in docs
