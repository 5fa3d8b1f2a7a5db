"""The worker's watch for settings changed by another worker or the CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from grok2api import gateway as gateway_module
from grok2api.config import ServerOptions
from grok2api.errors import StorageUnavailable
from grok2api.gateway import open_gateway


async def test_a_storage_outage_while_watching_is_a_warning_not_a_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(gateway_module, "CHANGE_POLL_SECONDS", 0.01)
    async with open_gateway(ServerOptions(data_dir=tmp_path), {}) as gateway:
        version = await gateway.storage.change_version()

        async def unavailable() -> int:
            raise StorageUnavailable("The storage is restarting.")

        with monkeypatch.context() as outage:
            outage.setattr(gateway.storage, "change_version", unavailable)
            await trio.sleep(0.1)
        # The next change after the outage is still applied.
        applied = trio.Event()
        gateway.on_settings(
            lambda settings: None if settings.chat.thinking else applied.set()
        )
        await gateway.storage.save_config_overrides({"chat": {"thinking": False}})
        with trio.fail_after(5):
            await applied.wait()
        assert await gateway.storage.change_version() != version

    watch = [r for r in caplog.records if "shared settings" in r.getMessage()]
    assert watch and all(r.levelno == logging.WARNING for r in watch)
    assert all(r.exc_info is None for r in watch)
    assert "The storage is restarting." in watch[0].getMessage()
