"""Generated media: the cache that downloads upstream assets and the names,
folders and links it serves them under.

The image and video flows call :meth:`MediaCache.fetch` with an asset's
upstream URL and the owning token; it returns the link to give the client.
The serving route and the admin API live in :mod:`grok2api.api`.
"""

from __future__ import annotations

from grok2api.media.cache import (
    GRACE_SECONDS,
    MAX_BYTES,
    KindSummary,
    MediaCache,
    MediaStatistics,
)
from grok2api.media.folder import (
    STALE_PART_SECONDS,
    CachedFile,
    MediaFolder,
    OpenedFile,
    TrimResult,
)
from grok2api.media.names import MediaKind, content_type, is_cached_name
from grok2api.media.urls import (
    FILES_PATH,
    file_path,
    public_base_url,
    request_base_url,
)

__all__ = [
    "FILES_PATH",
    "GRACE_SECONDS",
    "MAX_BYTES",
    "STALE_PART_SECONDS",
    "CachedFile",
    "KindSummary",
    "MediaCache",
    "MediaFolder",
    "MediaKind",
    "MediaStatistics",
    "OpenedFile",
    "TrimResult",
    "content_type",
    "file_path",
    "is_cached_name",
    "public_base_url",
    "request_base_url",
]
