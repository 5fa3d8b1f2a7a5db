from __future__ import annotations

import grok2api.media as media


def test_package_exports_exactly_its_public_names() -> None:
    assert len(media.__all__) == len(set(media.__all__))
    assert [name for name in media.__all__ if not hasattr(media, name)] == []
    for name in ("MediaCache", "MediaKind", "public_base_url", "FILES_PATH"):
        assert name in media.__all__
