"""The emulator package stands alone and exports what it documents."""

from __future__ import annotations

import ast
from pathlib import Path

import grok2api.emulator as emulator_package

PACKAGE_DIR = Path(emulator_package.__file__).parent


def test_package_exports_every_public_name() -> None:
    for name in emulator_package.__all__:
        assert getattr(emulator_package, name) is not None, name
    assert len(set(emulator_package.__all__)) == len(emulator_package.__all__)


def test_package_imports_nothing_else_from_grok2api() -> None:
    for path in PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{path.name} imports from outside the package"
                module = node.module or ""
                assert node.level == 1 or not module.startswith("grok2api"), path.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("grok2api"), path.name
