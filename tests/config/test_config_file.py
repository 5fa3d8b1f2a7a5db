from __future__ import annotations

import stat
from pathlib import Path

from grok2api.config import Settings, defaults_text, ensure_config_file, load_settings


def test_config_file_is_written_on_first_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"

    path = ensure_config_file(data_dir)

    assert path == data_dir / "config.toml"
    assert path.read_text("utf-8") == defaults_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in data_dir.iterdir()] == ["config.toml"]  # no temp left
    assert load_settings(data_dir, {}) == Settings()


def test_config_file_is_never_overwritten(data_dir: Path) -> None:
    existing = data_dir / "config.toml"
    existing.write_text("[app]\napi_key = 'mine'\n")
    existing.chmod(0o644)

    path = ensure_config_file(data_dir)
    ensure_config_file(data_dir)

    assert path == existing
    assert existing.read_text() == "[app]\napi_key = 'mine'\n"
    assert stat.S_IMODE(existing.stat().st_mode) == 0o644
    assert sorted(p.name for p in data_dir.iterdir()) == ["config.toml"]


def test_config_file_second_call_keeps_operator_edits(data_dir: Path) -> None:
    path = ensure_config_file(data_dir)
    path.write_text(path.read_text().replace('api_key = ""', 'api_key = "edited"'))

    ensure_config_file(data_dir)

    assert load_settings(data_dir, {}).app.api_key == "edited"
