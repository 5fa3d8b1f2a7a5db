"""The component schemas of the OpenAPI document: every body the API reads
and every answer it gives, by name.

Request schemas say what the route's parser accepts, no more and no less:
what they call invalid the gateway refuses with a 400. Fields the gateway
accepts and ignores are left to ``additionalProperties``.
"""

from __future__ import annotations

from typing import Any

from grok2api.api.admin_assets import (
    ASSET_ID_PATTERN,
    MAX_DELETE_IDS,
    MAX_PAGE_TOKEN,
    PAGE_TOKEN_PATTERN,
)
from grok2api.api.images_request import ASPECT_RATIOS as IMAGE_ASPECT_RATIOS
from grok2api.api.images_request import QUALITIES as IMAGE_QUALITIES
from grok2api.api.images_request import SIZES as IMAGE_SIZES
from grok2api.api.voice import (
    MAX_INSTRUCTIONS,
    MAX_SPEED,
    MIN_SPEED,
    PERSONALITIES,
    VOICES,
)
from grok2api.media.names import STEM_LENGTH, MediaKind, extensions
from grok2api.models import ModelCatalog, ModelKind

__all__ = [
    "SCHEMAS",
    "Schema",
    "ref",
    "ASSET_ID",
    "PAGE_TOKEN",
    "VOICE_OPTIONS",
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
        if (spec := catalog.get(m)) and spec.kind in (ModelKind.CHAT, ModelKind.VIDEO)
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
        "video_config": _or_null(
            _object(
                {
                    "aspect_ratio": {"enum": ["2:3", "3:2", "1:1", "16:9", "9:16"]},
                    "video_length": {"enum": [6, 10, 15]},
                    "resolution_name": {"enum": ["480p", "720p"]},
                    "preset": {"enum": ["fun", "normal", "spicy", "custom"]},
                },
                required=(),
                description="grok-imagine-1.0-video only: the clip to make "
                "(defaults 3:2, 6 s, 480p, normal).",
            )
        ),
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
        "size": {
            "enum": [*IMAGE_SIZES, *IMAGE_ASPECT_RATIOS, None],
            "description": "An OpenAI size or an aspect ratio; it becomes the "
            "Imagine socket's aspect ratio (1024x1024: 1:1, 1536x1024: 3:2, "
            "1024x1536: 2:3, 1792x1024: 16:9, 1024x1792: 9:16).",
        },
        "quality": {
            "enum": [*IMAGE_QUALITIES, None],
            "description": "high or hd ask for the slower pro variant.",
        },
        "style": {**_IGNORED_TEXT, "description": "Accepted and ignored."},
        "user": _IGNORED_TEXT,
        "stream": {
            "enum": [True, False, None],
            "description": "Answer with image stream events (SSE).",
        },
        "partial_images": _or_null({"type": "integer", "minimum": 0, "maximum": 3}),
    },
    required=("prompt",),
    description="Other OpenAI fields (background, output_format, moderation, "
    "...) are accepted and ignored.",
)

#: One event of a streamed image answer.
_IMAGE_STREAM_EVENT = _object(
    {
        "type": {
            "enum": [
                "image_generation.partial_image",
                "image_generation.completed",
                "image_edit.partial_image",
                "image_edit.completed",
            ]
        },
        "b64_json": {"type": "string", "contentEncoding": "base64"},
        "created_at": INTEGER,
        "size": STRING,
        "quality": STRING,
        "background": STRING,
        "output_format": {"enum": ["png", "jpeg", "webp"]},
        "partial_image_index": {"type": "integer", "minimum": 0, "maximum": 2},
        "usage": {"type": "object"},
    },
    required=("type", "b64_json", "created_at"),
)

#: One server-sent event of a streamed image answer: an image event, an
#: error envelope when the request fails after the first event, or the end.
_IMAGE_EVENT = _object(
    {
        "event": STRING,
        "data": {
            "anyOf": [
                _const("[DONE]"),
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"anyOf": [ref("ImageStreamEvent"), ref("Error")]},
                },
            ]
        },
    },
    required=("data",),
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

_EDIT_MODEL: Schema = {
    "anyOf": [{"type": "string", "enum": ["grok-imagine-1.0-edit"]}, TEXT, NULL],
    "description": "grok-imagine-1.0-edit (the default) or an alias of it.",
}
_IMAGE_FILE: Schema = {
    "type": "string",
    "contentMediaType": "application/octet-stream",
    "description": "A PNG, JPEG, WebP or GIF file (told by its bytes).",
}
_IMAGE_FILES: Schema = {"type": "array", "minItems": 1, "items": _IMAGE_FILE}
_EDIT_FIELDS: Schema = {
    "prompt": {"type": "string", "pattern": r"\S"},
    "model": _EDIT_MODEL,
    "n": _or_null({"type": "integer", "minimum": 1, "maximum": 10}),
    "response_format": {"enum": ["url", "b64_json", None]},
    "size": {**_IGNORED_TEXT, "description": "Echoed in stream events."},
    "quality": {**_IGNORED_TEXT, "description": "Echoed in stream events."},
    "user": _IGNORED_TEXT,
    "stream": {
        "enum": [True, False, None],
        "description": "Answer with image_edit stream events (SSE).",
    },
    "partial_images": _or_null({"type": "integer", "minimum": 0, "maximum": 3}),
}
_EDIT_LIMITS = (
    "At most image.edit_max_images images, each at most image.edit_max_image_mb "
    "MB. 'mask' is refused: the upstream edit has no mask."
)

_IMAGE_EDIT_FORM = {
    **_object(
        {**_EDIT_FIELDS, "image": {"anyOf": [_IMAGE_FILE, _IMAGE_FILES]}},
        required=("prompt",),
        description="As the OpenAI SDKs send images.edit: 'image' once, or "
        "'image[]' repeated for several. " + _EDIT_LIMITS,
    ),
    "anyOf": [{"required": ["image"]}, {"required": ["image[]"]}],
}
_IMAGE_EDIT_FORM["properties"]["image[]"] = _IMAGE_FILES

_IMAGE_URL: Schema = {
    "type": "string",
    "minLength": 1,
    "description": "A data: URL (base64) or an http(s) URL the gateway fetches.",
}
_IMAGE_EDIT_JSON = {
    **_object(
        {
            **_EDIT_FIELDS,
            "image": {
                "anyOf": [
                    _IMAGE_URL,
                    {"type": "array", "minItems": 1, "items": _IMAGE_URL},
                ]
            },
            "images": {
                "type": "array",
                "minItems": 1,
                "items": _object({"image_url": _IMAGE_URL}),
            },
        },
        required=("prompt",),
        description="'image' (one URL or a list) or 'images' (the newer "
        "list of {image_url} objects), not both. " + _EDIT_LIMITS,
    ),
    "oneOf": [{"required": ["image"]}, {"required": ["images"]}],
}

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

# -- an account's upstream assets, voice --------------------------------------

ASSET_ID: Schema = {
    "type": "string",
    "pattern": f"^{ASSET_ID_PATTERN}$",
    "description": "An upstream asset id (a UUID upstream).",
}
PAGE_TOKEN: Schema = {
    "type": "string",
    "maxLength": MAX_PAGE_TOKEN,
    "pattern": f"^{PAGE_TOKEN_PATTERN}$",
}

_UPSTREAM_ASSET = _object(
    {
        "asset_id": ASSET_ID,
        "name": _or_null(STRING),
        "mime_type": _or_null(STRING),
        "size_bytes": _or_null(COUNT),
        "created_at": _or_null(STRING),
        "details": {
            "type": "object",
            "description": "Everything the upstream said about the asset.",
        },
    }
)

_UPSTREAM_ASSET_PAGE = _object(
    {
        "token_id": STRING,
        "items": {"type": "array", "items": ref("UpstreamAsset")},
        "next_page_token": {
            **_or_null(STRING),
            "description": "Pass as page_token for the next page; null on the last.",
        },
        "page_size": COUNT,
    }
)

_ASSET_DELETE_RESULT = _object(
    {
        "asset_id": ASSET_ID,
        "deleted": BOOLEAN,
        "error": _object(
            {"code": STRING, "message": STRING, "status": _or_null(INTEGER)},
            description="Why this asset was not deleted: asset_not_found, "
            "token_rejected, not_attempted (the upstream refused or rate-limited "
            "the token earlier in the request), or the upstream error's code.",
        ),
    },
    required=("asset_id", "deleted"),
)

VOICE_OPTIONS: dict[str, Schema] = {
    "voice": {"enum": list(VOICES), "default": "ara"},
    "personality": {
        "enum": list(PERSONALITIES),
        "default": "assistant",
        "description": "'custom' (or none) with 'instructions'; otherwise one "
        "of the upstream's personalities.",
    },
    "instructions": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_INSTRUCTIONS,
        "description": "Custom instructions, which replace the personality.",
    },
    "speed": {
        "type": "number",
        "minimum": MIN_SPEED,
        "maximum": MAX_SPEED,
        "default": 1.0,
    },
}

_VOICE_TOKEN = _object(
    {
        "token": {**TEXT, "description": "The LiveKit access token."},
        "url": {**TEXT, "description": "The LiveKit server (voice.livekit_url)."},
        "voice": {"enum": list(VOICES)},
        "personality": {
            "anyOf": [{"enum": list(PERSONALITIES)}, NULL],
            "description": "null when instructions replace it.",
        },
        "speed": NUMBER,
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

# -- background jobs and account settings ---------------------------------------

_JOB_STATES = ["running", "finished", "cancelled", "failed", "abandoned"]

_JOB_FIELDS: dict[str, Schema] = {
    "id": STRING,
    "kind": {"enum": ["refresh", "nsfw", "assets_clear"]},
    "total": COUNT,
    "worker": {**STRING, "description": "host/pid of the worker running it."},
    "created_at": TIME,
    "state": {"enum": _JOB_STATES},
    "updated_at": TIME,
    "finished_at": _or_null(TIME),
    "done": COUNT,
    "ok": COUNT,
    "failed": COUNT,
    "cancel_requested": BOOLEAN,
    "error": STRING,
}

_JOB_TOKEN_RESULT = _object(
    {
        "token_id": STRING,
        "ok": BOOLEAN,
        "status": {
            **STRING,
            "description": "enabled, refreshed, cleared, partly_cleared, "
            "needs_birth_date, no_such_token, token_rejected, egress_blocked, "
            "rate_limited, timeout, upstream_error, ...",
        },
        "error": STRING,
        "http_status": _or_null(INTEGER),
    },
    description="What a job did with one token; a kind adds its own fields "
    "(step, birth_date_set, remaining, deleted, failed_deletes).",
)

_JOB_REQUEST: Schema = {
    **_object(
        {
            "kind": {"enum": ["refresh", "nsfw", "assets_clear"]},
            "token_ids": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "maxLength": 64},
            },
            "pool": POOL,
            "all": _const(True),
        },
        required=("kind",),
        description="The tokens: exactly one of token_ids, pool or all.",
    ),
    "oneOf": [
        {"required": ["token_ids"]},
        {"required": ["pool"]},
        {"required": ["all"]},
    ],
}

_JOB_SCHEMAS: dict[str, Schema] = {
    "JobRequest": _JOB_REQUEST,
    "Job": _object(_JOB_FIELDS),
    "JobList": _list_of("Job"),
    "JobTokenResult": _JOB_TOKEN_RESULT,
    "JobDetail": _object(
        {
            **_JOB_FIELDS,
            "results": _list_of(
                "JobTokenResult", total=COUNT, offset=COUNT, limit=COUNT
            ),
        }
    ),
    "BirthDateRequest": _object(
        {
            "birth_date": {
                "type": "string",
                "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                "description": "The account holder's own birth date, YYYY-MM-DD: "
                "a real date, not in the future, an age from 13 to 120.",
            }
        }
    ),
    "BirthDateRecord": _object({"token_id": STRING, "birth_date_recorded": BOOLEAN}),
}

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
    "ImageStreamEvent": _IMAGE_STREAM_EVENT,
    "ImageGenerationEvent": _IMAGE_EVENT,
    "ImageEditForm": _IMAGE_EDIT_FORM,
    "ImageEditRequest": _IMAGE_EDIT_JSON,
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
    # an account's upstream assets
    "UpstreamAsset": _UPSTREAM_ASSET,
    "UpstreamAssetPage": _UPSTREAM_ASSET_PAGE,
    "UpstreamAssetDeletion": _object(
        {"token_id": STRING, "asset_id": ASSET_ID, "deleted": _const(True)}
    ),
    "UpstreamAssetIds": _object(
        {
            "asset_ids": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_DELETE_IDS,
                "items": ASSET_ID,
            }
        }
    ),
    "UpstreamAssetDeleteResult": _ASSET_DELETE_RESULT,
    "UpstreamAssetBatchDeletion": _object(
        {
            "token_id": STRING,
            "total": COUNT,
            "deleted": COUNT,
            "failed": COUNT,
            "results": {"type": "array", "items": ref("UpstreamAssetDeleteResult")},
        }
    ),
    # voice
    "VoiceTokenRequest": _or_null(
        _object(
            {name: _or_null(option) for name, option in VOICE_OPTIONS.items()},
            required=(),
            description="Every option may be left out (or null) for its default.",
        )
    ),
    "VoiceToken": _VOICE_TOKEN,
    **_JOB_SCHEMAS,
}
