from __future__ import annotations

import grok2api.observe as observe


def test_package_exports_exactly_its_public_names() -> None:
    assert len(observe.__all__) == len(set(observe.__all__))
    missing = [name for name in observe.__all__ if not hasattr(observe, name)]
    assert missing == []
    for name in ("Recorder", "FinishedRequest", "GatewayMetrics", "new_request_id"):
        assert name in observe.__all__
