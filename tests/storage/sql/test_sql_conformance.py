"""The shipped storage conformance suite, on real PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from grok2api_storage_sql import SqlStorage

from grok2api.testing.storage_conformance import StorageConformance

from .conftest import empty_schema, open_storage


class TestPostgresConformance(StorageConformance):
    @pytest.fixture
    async def storage(self, postgres_url: str) -> AsyncIterator[SqlStorage]:
        async with open_storage(postgres_url) as backend:
            empty_schema(postgres_url)
            yield backend


class TestMariaDBConformance(StorageConformance):
    @pytest.fixture
    async def storage(self, mariadb_url: str) -> AsyncIterator[SqlStorage]:
        async with open_storage(mariadb_url) as backend:
            empty_schema(mariadb_url)
            yield backend
