from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def write_config(data_dir: Path) -> Callable[[str], Path]:
    """Write ``DATA_DIR/config.toml`` with the given text."""

    def write(text: str) -> Path:
        path = data_dir / "config.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write
