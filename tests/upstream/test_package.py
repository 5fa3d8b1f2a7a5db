from __future__ import annotations

import grok2api.upstream as upstream


def test_package_exports_exactly_its_public_names() -> None:
    assert len(upstream.__all__) == len(set(upstream.__all__))
    missing = [name for name in upstream.__all__ if not hasattr(upstream, name)]
    assert missing == []
    for name in ("UpstreamClient", "ConversationRequest", "ChatStream", "StreamDone"):
        assert name in upstream.__all__
