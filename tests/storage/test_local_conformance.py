"""The shipped storage conformance suite, run against the local backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grok2api_storage_local import LocalStorage, create_local_storage

from grok2api.testing.storage_conformance import StorageConformance


class TestLocalStorageConformance(StorageConformance):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[LocalStorage]:
        backend = create_local_storage("", tmp_path)
        await backend.open()
        try:
            yield backend
        finally:
            await backend.aclose()
