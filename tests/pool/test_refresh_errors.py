"""The background quota refresher meets storage that cannot serve it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
from grok2api_storage_local import create_local_storage

from grok2api.config import load_settings
from grok2api.errors import SealedSecretError
from grok2api.pool.refresh import serve_refresher
from grok2api.storage import NewToken


async def test_a_token_that_cannot_be_opened_is_logged_and_the_refresher_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = create_local_storage("", tmp_path)
    await storage.open()
    try:
        await storage.add_tokens([NewToken("sso-a", "basic", 5, 5, 3600)], 0.0)
        calls = 0

        async def sealed_elsewhere(token_ids: object) -> dict[str, str]:
            nonlocal calls
            calls += 1
            raise SealedSecretError("a stored secret was sealed with another key")

        storage.token_secrets = sealed_elsewhere  # type: ignore[method-assign]
        # Refresh every token at once and look again every second.
        settings = load_settings(
            tmp_path,
            {
                "GROK2API_TOKEN_REFRESH_INTERVAL_HOURS": "0.0001",
                "GROK2API_TOKEN_SUPER_REFRESH_INTERVAL_HOURS": "0.0001",
            },
        )

        async def read_quota(secret: str) -> tuple[int, int | None, int | None]:
            raise AssertionError("no secret may be read")

        with trio.move_on_after(3):
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    serve_refresher, storage, read_quota, lambda: settings
                )
    finally:
        await storage.aclose()
    assert calls >= 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and all("quota refresh skipped" in r.getMessage() for r in errors)
