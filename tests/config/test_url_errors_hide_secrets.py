"""A bad proxy URL is reported without the password it may carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from grok2api.config import load_settings
from grok2api.errors import ConfigError


@pytest.mark.parametrize(
    "url",
    ["ftp://user:hunter2-secret@proxy.example:1", "http://u:hunter2-secret@h:99999999"],
)
def test_bad_proxy_url_error_masks_credentials(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, {"GROK2API_NETWORK_BASE_PROXY_URL": url})

    message = str(caught.value)
    assert "network.base_proxy_url" in message
    assert "hunter2-secret" not in message
    assert "***@" in message
