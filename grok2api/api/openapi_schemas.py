"""The component schemas of the OpenAPI document: every body the API reads
and every answer it gives, by name.

Request schemas say what the route's parser accepts, no more and no less:
what they call invalid the gateway refuses with a 400. Fields the gateway
accepts and ignores are left to ``additionalProperties``.
"""

from __future__ import annotations

from typing import Any

from grok2api.media.names import STEM_LENGTH, MediaKind, extensions
from grok2api.models import ModelCatalog, ModelKind

__all__ = [
    "SCHEMAS",
    "Schema",
    "ref",
    "CACHED_NAME",
    "MEDIA_KIND",
    "POOL",
    "STRING",
    "TEXT",
    "TOKEN_STATUS",
    "DIMENSION",
    "PERIOD",
]

Schema = dict[str, Any]

NULL: Schema = {"type": "null"}
STRING: Schema = {"type": "string"}
TEXT: Schema = {"type": "string", "minLength": 1}
INTEGER: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
NUMBER: Schema = {"type": "number"}
TIME: Schema = {"type": "number", "description": "Unix time in seconds."}
BOOLEAN: Schema = {"type": "boolean"}
URL: Schema = {"type": "string", "minLength": 1, "format": "uri"}
STRINGS: Schema = {"type": "array", "items": STRING}
POOL: Schema = {
    "type": "string",
    "description": "basic or super (ssoBasic and ssoSuper are read too; any case).",
}
TOKEN_STATUS: Schema = {"enum": ["active", "cooling", "invalid", "disabled"]}
PERIOD: Schema = {"enum": ["hour", "day"]}
DIMENSION: Schema = {"enum": ["total", "model", "key", "token"]}
MEDIA_KIND: Schema = {"enum": [kind.value for kind in MediaKind]}
_MEDIA_EXTENSIONS = "|".join(
    extension for kind in MediaKind for extension in extensions(kind)
)
CACHED_NAME: Schema = {
    "type": "string",
    "pattern": rf"^[0-9a-f]{{{STEM_LENGTH}}}\.(?:{_MEDIA_EXTENSIONS})$",
    "description": "A cached file's name: 32 hex digits and an extension "
    "that suits the kind (jpg, png, gif, webp for images; mp4, webm for videos).",
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _or_null(schema: Schema) -> Schema:
    return {"anyOf": [schema, NULL]}


def _object(
    properties: dict[str, Schema],
    required: tuple[str, ...] | None = None,
    *,
    closed: bool = False,
    description: str | None = None,
) -> Schema:
    """An object schema; ``required=None`` requires every property, and a
    ``closed`` object refuses properties it does not name."""
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


def _const(value: str | int | bool) -> Schema:
    return {"const": value}


def _list_of(name: str, **extra: Schema) -> Schema:
    return _object({"items": {"type": "array", "items": ref(name)}, **extra})


def _page_of(name: str, **extra: Schema) -> Schema:
    data = {"type": "array", "items": ref(name)}
    return _object({"object": _const("list"), **extra, "data": data})


# -- the chat completion ------------------------------------------------------


def _served_chat_models() -> list[str]:
    catalog = ModelCatalog()
    return [
        m
        for m in catalog.public_ids()
        if (spec := catalog.get(m)) and spec.kind is ModelKind.CHAT
    ]


def _part(kind: str, field: str, value: Schema) -> Schema:
    return _object({"type": _const(kind), field: value})


_TEXT_PART: Schema = {
    "oneOf": [
        _part("text", "text", STRING),
        _part("input_text", "text", STRING),
        _part("refusal", "refusal", STRING),
    ]
}

_FILE = _object(
    {
        "file_data": _or_null(STRING),
        "url": _or_null(STRING),
        "filename": _or_null(STRING),
    },
    required=(),
)

_MEDIA_PART: Schema = {
    "oneOf": [
        _part(
            "image_url",
            "image_url",
            {
                "anyOf": [_object({"url": URL}), URL],
                "description": "An http(s) URL the gateway fetches (private "
                "addresses are refused) or a base64 data: URL.",
            },
        ),
        _part(
            "file",
            "file",
            {
                **_FILE,
                "anyOf": [
                    {"required": ["file_data"], "properties": {"file_data": TEXT}},
                    {"required": ["url"], "properties": {"url": URL}},
                ],
                "description": "Base64 'file_data' (or a data: URL in it) wins "
                "over 'url'; uploaded file ids are not supported.",
            },
        ),
        _part(
            "input_audio",
            "input_audio",
            _object({"data": STRING, "format": _or_null(STRING)}, required=("data",)),
        ),
    ]
}


def _message(roles: list[str], part: Schema, description: str) -> Schema:
    return _object(
        {
            "role": {"enum": roles},
            "content": {
                "anyOf": [STRING, {"type": "array", "items": part}, part, NULL],
                "description": "Text, an array of parts, or a single part.",
            },
            "tool_calls": {
                **_or_null({"type": "array", "items": {"type": "object"}}),
                "description": "Earlier tool calls; they reach the model as text.",
            },
        },
        required=("role",),
        description=description,
    )


_CHAT_MESSAGE: Schema = {
    "oneOf": [
        _message(
            ["user"],
            {"anyOf": [ref("TextPart"), ref("MediaPart")]},
            "A user turn: text, images, files and audio.",
        ),
        _message(
            ["system", "developer", "assistant", "tool", "function"],
            ref("TextPart"),
            "Any other turn: text only. System and assistant turns without "
            "text are dropped.",
        ),
    ]
}

_THINKING_SWITCH: Schema = {"enum": ["enabled", "disabled"]}

_CHAT_REQUEST = _object(
    {
        "model": {
            "anyOf": [{"type": "string", "enum": _served_chat_models()}, TEXT],
            "description": "A model GET /v1/models lists, or an alias the "
            "operator configured.",
        },
        "messages": {"type": "array", "minItems": 1, "items": ref("ChatMessage")},
        "stream": _or_null(BOOLEAN),
        "stream_options": _or_null(
            _object({"include_usage": _or_null(BOOLEAN)}, required=())
        ),
        "n": {"enum": [1, None], "description": "Only one answer per request."},
        "max_completion_tokens": _or_null({"type": "integer", "minimum": 1}),
        "max_tokens": _or_null({"type": "integer", "minimum": 1}),
        "stop": {
            "anyOf": [STRING, {"type": "array", "maxItems": 4, "items": STRING}, NULL]
        },
        "temperature": _or_null({"type": "number", "minimum": 0, "maximum": 2}),
        "top_p": _or_null({"type": "number", "minimum": 0, "maximum": 1}),
        "reasoning_effort": {
            "enum": ["none", "minimal", "low", "medium", "high", "xhigh", "max", None]
        },
        "thinking": {
            "anyOf": [
                BOOLEAN,
                _THINKING_SWITCH,
                _object({"type": _THINKING_SWITCH}),
                NULL,
            ],
            "description": "Show the model's reasoning in 'reasoning_content'.",
        },
    },
    required=("model", "messages"),
    description="Other OpenAI fields (tools, response_format, seed, user, ...) "
    "are accepted and ignored.",
)

_USAGE = _object(
    {
        "prompt_tokens": COUNT,
        "completion_tokens": COUNT,
        "total_tokens": COUNT,
        "prompt_tokens_details": _object({"cached_tokens": COUNT}),
        "completion_tokens_details": _object({"reasoning_tokens": COUNT}),
    },
    required=("prompt_tokens", "completion_tokens", "total_tokens"),
    description="Estimated: the upstream reports no token counts.",
)

_FINISH_REASON: Schema = {"enum": ["stop", "length", "content_filter"]}


def _completion(
    kind: str, choice: dict[str, Schema], usage: Schema, *, always_usage: bool
) -> Schema:
    required = ("id", "object", "created", "model", "choices")
    return _object(
        {
            "id": STRING,
            "object": _const(kind),
            "created": INTEGER,
            "model": STRING,
            "choices": {
                "type": "array",
                "items": _object({"index": COUNT, **choice, "logprobs": NULL}),
            },
            "usage": usage,
            "system_fingerprint": STRING,
        },
        required=(*required, "usage") if always_usage else required,
    )


_CHAT_COMPLETION = _completion(
    "chat.completion",
    {
        "message": _object(
            {
                "role": _const("assistant"),
                "content": _or_null(STRING),
                "refusal": _or_null(STRING),
                "reasoning_content": STRING,
            },
            required=("role", "content"),
        ),
        "finish_reason": _FINISH_REASON,
    },
    ref("Usage"),
    always_usage=True,
)

_CHAT_CHUNK = _completion(
    "chat.completion.chunk",
    {
        "delta": _object(
            {
                "role": _const("assistant"),
                "content": STRING,
                "reasoning_content": STRING,
            },
            required=(),
        ),
        "finish_reason": _or_null(_FINISH_REASON),
    },
    _or_null(ref("Usage")),
    always_usage=False,
)

#: One server-sent event of a streamed completion: a chunk, an error
#: envelope when the completion fails after the first byte, or the end.
_CHAT_EVENT = _object(
    {
        "data": {
            "anyOf": [
                _const("[DONE]"),
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "anyOf": [ref("ChatCompletionChunk"), ref("Error")]
                    },
                },
            ]
        }
    },
    required=("data",),
)

_MODEL = _object(
    {"id": STRING, "object": _const("model"), "created": INTEGER, "owned_by": STRING}
)

# -- images -------------------------------------------------------------------

_IGNORED_TEXT = _or_null(STRING)

_IMAGE_REQUEST = _object(
    {
        "prompt": {"type": "string", "pattern": r"\S"},
        "model": {
            "anyOf": [{"type": "string", "enum": ["grok-imagine-1.0"]}, TEXT, NULL],
            "description": "grok-imagine-1.0 (the default) or an alias of it.",
        },
        "n": _or_null({"type": "integer", "minimum": 1, "maximum": 10}),
        "response_format": {"enum": ["url", "b64_json", None]},
        "size": _IGNORED_TEXT,
        "quality": _IGNORED_TEXT,
        "style": _IGNORED_TEXT,
        "user": _IGNORED_TEXT,
        "stream": {"enum": [False, None], "description": "Not supported yet."},
    },
    required=("prompt",),
    description="size, quality and style are accepted and ignored (the "
    "upstream's HTTP image path has no field for them); other OpenAI fields "
    "are accepted and ignored too.",
)

_IMAGE = {
    "oneOf": [
        _object({"url": URL}, closed=True),
        _object({"b64_json": {"type": "string", "contentEncoding": "base64"}}),
    ]
}

_IMAGES = _object(
    {"created": INTEGER, "data": {"type": "array", "minItems": 1, "items": _IMAGE}}
)

# -- tokens -------------------------------------------------------------------

_TOKEN = _object(
    {
        "id": STRING,
        "pool": {"enum": ["basic", "super"]},
        "status": TOKEN_STATUS,
        "state": {"enum": ["active", "cooling", "exhausted", "invalid", "disabled"]},
        "quota": INTEGER,
        "quota_total": INTEGER,
        "reserved": INTEGER,
        "window_seconds": INTEGER,
        "window_reset_at": _or_null(TIME),
        "cooldown_until": _or_null(TIME),
        "cooldown_reason": STRING,
        "fail_count": COUNT,
        "last_fail_at": _or_null(TIME),
        "last_fail_reason": STRING,
        "last_used_at": _or_null(TIME),
        "use_count": COUNT,
        "created_at": TIME,
        "last_sync_at": _or_null(TIME),
        "stale": BOOLEAN,
        "tags": STRINGS,
        "note": STRING,
    },
    description="A token as operators see it: never its secret.",
)

_IMPORTED_TOKEN: Schema = {
    "anyOf": [
        {**STRING, "description": "The sso cookie value."},
        _object(
            {
                "token": STRING,
                "pool": {"description": "Overrides the pool when a string."},
                "tags": _or_null(STRINGS),
                "note": {"description": "Kept as text."},
            },
            required=("token",),
        ),
    ]
}

_TOKEN_IMPORT: Schema = {
    "description": "A list of tokens; {'tokens': [...], 'pool': ...}; or "
    "{pool name: [tokens]} as the reference product's token file has it.",
    "anyOf": [
        {"type": "array", "items": _IMPORTED_TOKEN},
        _object(
            {
                "tokens": {"type": ["array", "object"]},
                "pool": {"type": ["string", "number", "boolean"]},
            },
            required=("tokens",),
        ),
        {
            "type": "object",
            "additionalProperties": {"type": "array", "items": _IMPORTED_TOKEN},
        },
    ],
}

_EXPORTED_TOKEN = _object({"token": STRING, "tags": STRINGS, "note": STRING})

_REFRESH_RESULT = _object(
    {
        "total": COUNT,
        "ok": COUNT,
        "results": {
            "type": "array",
            "items": _object(
                {
                    "id": STRING,
                    "ok": BOOLEAN,
                    "remaining": _or_null(INTEGER),
                    "error": STRING,
                }
            ),
        },
    }
)

# -- API keys -----------------------------------------------------------------


def _limit(low: int, high: int) -> Schema:
    return _or_null({"type": "integer", "minimum": low, "maximum": high})


_KEY_LIMITS = _object(
    {
        "requests_per_minute": _limit(1, 1_000_000),
        "concurrent_requests": _limit(1, 100_000),
        "quota": _limit(1, 10**12),
        "quota_window_seconds": _limit(60, 31 * 86_400),
        "models": {
            **_or_null(STRINGS),
            "description": "Model ids the key may use; empty allows every model.",
        },
    },
    required=(),
    closed=True,
    description="Optional limits of an API key; null means unlimited.",
)

_KEY_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 100}

_KEY_CREATE = _or_null(
    _object(
        {
            "name": _KEY_NAME,
            "count": _limit(1, 100),
            "limits": _or_null(ref("ApiKeyLimits")),
            "enabled": BOOLEAN,
        },
        required=(),
        description="Every field is optional; count keys are named name-1, ...",
    )
)

_KEY_CHANGES = _object(
    {"name": _KEY_NAME, "limits": _or_null(ref("ApiKeyLimits")), "enabled": BOOLEAN},
    required=(),
    closed=True,
)

_API_KEY = _object(
    {
        "id": STRING,
        "name": STRING,
        "hint": STRING,
        "enabled": BOOLEAN,
        "created_at": TIME,
        "use_count": COUNT,
        "last_used_at": _or_null(TIME),
        "limits": _object(
            {
                "requests_per_minute": _or_null(INTEGER),
                "concurrent_requests": _or_null(INTEGER),
                "quota": _or_null(INTEGER),
                "quota_window_seconds": INTEGER,
                "models": STRINGS,
            }
        ),
    },
    description="A managed API key: its hint, never the key.",
)

_CREATED_KEYS = _object(
    {
        "items": {
            "type": "array",
            "items": {"allOf": [ref("ApiKey"), _object({"key": STRING})]},
        }
    },
    description="The new keys; 'key' is shown here and never again.",
)

# -- config, observability, session -------------------------------------------

_SECTIONS: Schema = {"type": "object", "additionalProperties": {"type": "object"}}

_CONFIG_VIEW = _object(
    {
        "settings": {**_SECTIONS, "description": "Effective settings, secrets masked."},
        "overrides": {**_SECTIONS, "description": "Runtime changes kept in storage."},
        "pinned_by_environment": {
            **STRINGS,
            "description": "Changed keys an environment variable overrides.",
        },
    }
)

_STATS_ROW = _object(
    {
        "start": INTEGER,
        "value": STRING,
        "requests": COUNT,
        "successes": COUNT,
        "failures": COUNT,
        "latency_ms_total": NUMBER,
        "latency_ms_average": _or_null(NUMBER),
    }
)

_AUDIT_ENTRY = _object(
    {
        "at": TIME,
        "request_id": STRING,
        "client": STRING,
        "key_name": STRING,
        "method": STRING,
        "path": STRING,
        "model": STRING,
        "status": INTEGER,
        "duration_ms": NUMBER,
        "stream": BOOLEAN,
        "token_id": STRING,
        "error": STRING,
    }
)

_SESSION = {"username": STRING, "csrf_token": STRING, "expires_at": TIME}

# -- the media cache ----------------------------------------------------------

_CACHE_KIND_SUMMARY = _object(
    {
        "count": COUNT,
        "bytes": COUNT,
        "partial_bytes": {**COUNT, "description": "Downloads still being written."},
        "limit_bytes": COUNT,
        "target_bytes": {**COUNT, "description": "What a trim brings it down to."},
    },
    description="One kind's cached files, and the cap the cleaner keeps.",
)

_CACHE_SUMMARY = _object(
    {
        "auto_clean": BOOLEAN,
        "cleanup_interval_sec": NUMBER,
        "grace_seconds": {
            **NUMBER,
            "description": "A file handed out this recently is never trimmed.",
        },
        **{kind.value: ref("CacheKindSummary") for kind in MediaKind},
    }
)

_CACHED_FILE = _object(
    {
        "name": CACHED_NAME,
        "size": COUNT,
        "mtime": {**TIME, "description": "When it was last handed out or served."},
        "url": {**URL, "description": "Where anyone can open it."},
    }
)

_ERROR = _object(
    {
        "error": _object(
            {
                "message": STRING,
                "type": STRING,
                "param": _or_null(STRING),
                "code": _or_null(STRING),
            },
            closed=True,
        )
    },
    closed=True,
    description="Every error the gateway answers, in the OpenAI envelope.",
)

SCHEMAS: dict[str, Schema] = {
    "Error": _ERROR,
    # the OpenAI API
    "ChatCompletionRequest": _CHAT_REQUEST,
    "ChatMessage": _CHAT_MESSAGE,
    "TextPart": _TEXT_PART,
    "MediaPart": _MEDIA_PART,
    "ChatCompletion": _CHAT_COMPLETION,
    "ChatCompletionChunk": _CHAT_CHUNK,
    "ChatCompletionEvent": _CHAT_EVENT,
    "Usage": _USAGE,
    "Model": _MODEL,
    "ModelList": _page_of("Model"),
    "ImageGenerationRequest": _IMAGE_REQUEST,
    "ImagesResponse": _IMAGES,
    "Health": _object({"status": _const("ok")}),
    "Ready": _object({"status": _const("ready"), "usable_tokens": COUNT}),
    # tokens
    "Token": _TOKEN,
    "TokenPage": _list_of("Token", total=COUNT, offset=COUNT, limit=COUNT),
    "TokenImport": _TOKEN_IMPORT,
    "TokenImportResult": _object({"received": COUNT, "added": COUNT}),
    "TokenIds": _object({"ids": STRINGS}),
    "TokenRemoval": _object({"removed": COUNT}),
    "TokenChanges": _object(
        {"status": TOKEN_STATUS, "tags": _or_null(STRINGS), "note": _or_null(STRING)},
        required=(),
    ),
    "TokenExport": {
        "type": "object",
        "additionalProperties": {"type": "array", "items": _EXPORTED_TOKEN},
        "description": "Tokens with their secrets by pool, as the import reads them.",
    },
    "RefreshRequest": _or_null(_object({"ids": _or_null(STRINGS)}, required=())),
    "RefreshResult": _REFRESH_RESULT,
    # API keys
    "ApiKeyLimits": _KEY_LIMITS,
    "ApiKey": _API_KEY,
    "ApiKeyList": _list_of("ApiKey"),
    "ApiKeyCreate": _KEY_CREATE,
    "CreatedApiKeys": _CREATED_KEYS,
    "ApiKeyChanges": _KEY_CHANGES,
    "ApiKeyDeletion": _object({"deleted": _const(1)}),
    # config, observability, session
    "ConfigChanges": {
        **_SECTIONS,
        "description": "{section: {key: value}}; a null value removes that "
        "key's override.",
    },
    "ConfigView": _CONFIG_VIEW,
    "StatsRow": _STATS_ROW,
    "StatsPage": _page_of("StatsRow", period=PERIOD, dimension=DIMENSION, since=TIME),
    "AuditEntry": _AUDIT_ENTRY,
    "AuditPage": _page_of("AuditEntry", limit=COUNT, offset=COUNT),
    "Login": _object({"username": TEXT, "password": TEXT}),
    "Session": _object(_SESSION),
    "SessionView": _object(
        {
            "auth": {"enum": ["bearer", "session", "anonymous"]},
            "password_source": STRING,
            **_SESSION,
        },
        required=("auth", "password_source"),
        description="How the request was authenticated; a session shows its "
        "CSRF token too.",
    ),
    "Logout": _object({"logged_out": _const(True)}),
    # the media cache
    "CacheKindSummary": _CACHE_KIND_SUMMARY,
    "CacheSummary": _CACHE_SUMMARY,
    "CachedFile": _CACHED_FILE,
    "CachedFilePage": _list_of("CachedFile", total=COUNT, offset=COUNT, limit=COUNT),
    "CacheClear": _object({"deleted": COUNT, "bytes": COUNT}),
    "CachedFileDeletion": _object({"deleted": _const(1), "bytes": COUNT}),
}
