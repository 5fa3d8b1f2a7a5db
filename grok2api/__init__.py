"""grok2api: an OpenAI-compatible gateway to the Grok web app.

This module exports the public API that plugins build on; a plugin package
imports from here only, never from the submodules.
"""

from __future__ import annotations

from grok2api.errors import (
    ConfigError,
    FailureKind,
    Grok2APIError,
    PluginError,
    StorageError,
    StorageUnavailable,
)
from grok2api.filters import ResponseFilter, TagFilter, TextFilter
from grok2api.hookspecs import hookimpl
from grok2api.plugins import PluginHost
from grok2api.pool.strategies import SelectionStrategy
from grok2api.proxies import (
    EgressPurpose,
    ProxyProvider,
    mask_proxy_url,
    proxy_url_problem,
)
from grok2api.storage import (
    ApiKeyChanges,
    ApiKeyLimits,
    ApiKeyRecord,
    AuditEntry,
    CandidateOrder,
    Chooser,
    ExportedToken,
    Lease,
    NewToken,
    PoolCounts,
    StatsRow,
    Storage,
    TokenChanges,
    TokenPage,
    TokenQuery,
    TokenRecord,
    TokenStatus,
    token_id_for,
)

__version__ = "0.1.0"

__all__ = [
    # plugin API
    "hookimpl",
    "PluginHost",
    # storage backends
    "Storage",
    "TokenRecord",
    "TokenStatus",
    "NewToken",
    "ExportedToken",
    "Lease",
    "TokenQuery",
    "TokenPage",
    "TokenChanges",
    "PoolCounts",
    "CandidateOrder",
    "Chooser",
    "token_id_for",
    "ApiKeyRecord",
    "ApiKeyLimits",
    "ApiKeyChanges",
    "StatsRow",
    "AuditEntry",
    # selection strategies
    "SelectionStrategy",
    # response filters
    "ResponseFilter",
    "TextFilter",
    "TagFilter",
    # proxy providers
    "ProxyProvider",
    "EgressPurpose",
    "mask_proxy_url",
    "proxy_url_problem",
    # errors
    "Grok2APIError",
    "ConfigError",
    "PluginError",
    "StorageError",
    "StorageUnavailable",
    "FailureKind",
]
