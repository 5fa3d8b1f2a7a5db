"""The Grok web protocol: requests, dialects, the stream parser, transports.

This package is the only place that knows what grok.com expects and sends.
Everything above it speaks :class:`ConversationRequest` in and
:data:`UpstreamEvent` values out, and catches
:class:`~grok2api.errors.UpstreamError` subclasses that already say whose
fault a failure was.
"""

from __future__ import annotations

from grok2api.upstream.chat_stream import ChatStream
from grok2api.upstream.classify import classify_response, classify_stream_error
from grok2api.upstream.client import (
    AssetPage,
    RateLimits,
    UploadedFile,
    UpstreamAsset,
    UpstreamClient,
    UpstreamStatistics,
)
from grok2api.upstream.conversation import ConversationRequest
from grok2api.upstream.dialects import (
    DIALECTS,
    Dialect,
    ModeIdDialect,
    ReferenceDialect,
    get_dialect,
)
from grok2api.upstream.events import (
    AnswerDelta,
    CardAttachment,
    ConversationStarted,
    ImageProgress,
    ModelResponse,
    StreamDone,
    ThinkingDelta,
    ToolCard,
    UpstreamEvent,
    VideoProgress,
)
from grok2api.upstream.headers import rest_headers, sso_cookie
from grok2api.upstream.options import DEFAULT_USER_AGENT, UpstreamOptions
from grok2api.upstream.statsig import fixed_statsig_id, random_statsig_id
from grok2api.upstream.stream import StreamParser, asset_url, parse_stream
from grok2api.upstream.transport import (
    Response,
    Transport,
    TransportStatistics,
    create_transport,
)
from grok2api.upstream.transport_curl import CurlCffiTransport
from grok2api.upstream.transport_httpx import HttpxTransport
from grok2api.upstream.transport_trio import TrioTransport

__all__ = [
    # the client
    "UpstreamClient",
    "UpstreamOptions",
    "UpstreamStatistics",
    "DEFAULT_USER_AGENT",
    "ChatStream",
    "UploadedFile",
    "AssetPage",
    "UpstreamAsset",
    "RateLimits",
    # requests and dialects
    "ConversationRequest",
    "Dialect",
    "DIALECTS",
    "ReferenceDialect",
    "ModeIdDialect",
    "get_dialect",
    # events
    "UpstreamEvent",
    "ConversationStarted",
    "ThinkingDelta",
    "AnswerDelta",
    "ToolCard",
    "ImageProgress",
    "VideoProgress",
    "CardAttachment",
    "ModelResponse",
    "StreamDone",
    # protocol pieces
    "StreamParser",
    "parse_stream",
    "asset_url",
    "classify_response",
    "classify_stream_error",
    "rest_headers",
    "sso_cookie",
    "random_statsig_id",
    "fixed_statsig_id",
    # transports
    "Transport",
    "Response",
    "TransportStatistics",
    "create_transport",
    "HttpxTransport",
    "TrioTransport",
    "CurlCffiTransport",
]
