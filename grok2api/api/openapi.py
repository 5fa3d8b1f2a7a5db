"""The OpenAPI 3.1 document of the public and admin APIs (``GET /openapi.json``).

It is written out here rather than derived from the routes: the routes read
their bodies with small hand-written parsers (``chat_request.py`` and the
admin modules), and the schemas below say what those parsers accept, no more
and no less. Fields the gateway accepts and ignores are left to
``additionalProperties``. A test holds the paths and methods to the app's URL
map, and the fuzz tests hold every route to its schemas.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from quart import Blueprint, Response

from grok2api.api.http import json_response
from grok2api.models import ModelCatalog, ModelKind

__all__ = ["openapi_document", "openapi_routes"]

openapi_routes = Blueprint("openapi", __name__)

Schema = dict[str, Any]

_NULL: Schema = {"type": "null"}
_STRING: Schema = {"type": "string"}
_TEXT: Schema = {"type": "string", "minLength": 1}
_INTEGER: Schema = {"type": "integer"}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_NUMBER: Schema = {"type": "number"}
_TIME: Schema = {"type": "number", "description": "Unix time in seconds."}
_BOOLEAN: Schema = {"type": "boolean"}
_STRINGS: Schema = {"type": "array", "items": _STRING}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _or_null(schema: Schema) -> Schema:
    return {"anyOf": [schema, _NULL]}


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


def _const(value: str) -> Schema:
    return {"type": "string", "const": value}


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
        _part("text", "text", _STRING),
        _part("input_text", "text", _STRING),
        _part("refusal", "refusal", _STRING),
    ]
}

_MEDIA_PART: Schema = {
    "oneOf": [
        _part(
            "image_url",
            "image_url",
            {
                "anyOf": [_object({"url": _TEXT}), _TEXT],
                "description": "An http(s) URL the gateway fetches (private "
                "addresses are refused) or a base64 data: URL.",
            },
        ),
        _part(
            "file",
            "file",
            {
                **_object(
                    {
                        "file_data": _or_null(_STRING),
                        "url": _or_null(_STRING),
                        "filename": _or_null(_STRING),
                    },
                    required=(),
                ),
                "anyOf": [
                    {"required": ["file_data"], "properties": {"file_data": _TEXT}},
                    {"required": ["url"], "properties": {"url": _TEXT}},
                ],
                "description": "Base64 'file_data' (or a data: URL in it) wins "
                "over 'url'; uploaded file ids are not supported.",
            },
        ),
        _part(
            "input_audio",
            "input_audio",
            _object({"data": _STRING, "format": _or_null(_STRING)}, required=("data",)),
        ),
    ]
}


def _message(roles: list[str], part: Schema, description: str) -> Schema:
    return _object(
        {
            "role": {"enum": roles},
            "content": {
                "anyOf": [_STRING, {"type": "array", "items": part}, part, _NULL],
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
            {"anyOf": [_ref("TextPart"), _ref("MediaPart")]},
            "A user turn: text, images, files and audio.",
        ),
        _message(
            ["system", "developer", "assistant", "tool", "function"],
            _ref("TextPart"),
            "Any other turn: text only. System and assistant turns without "
            "text are dropped.",
        ),
    ]
}

_CHAT_REQUEST = _object(
    {
        "model": {
            "anyOf": [{"type": "string", "enum": _served_chat_models()}, _TEXT],
            "description": "A model GET /v1/models lists, or an alias the "
            "operator configured.",
        },
        "messages": {"type": "array", "minItems": 1, "items": _ref("ChatMessage")},
        "stream": _or_null(_BOOLEAN),
        "stream_options": _or_null(
            _object({"include_usage": _or_null(_BOOLEAN)}, required=())
        ),
        "n": {"enum": [1, None], "description": "Only one answer per request."},
        "max_completion_tokens": _or_null({"type": "integer", "minimum": 1}),
        "max_tokens": _or_null({"type": "integer", "minimum": 1}),
        "stop": {
            "anyOf": [
                _STRING,
                {"type": "array", "maxItems": 4, "items": _STRING},
                _NULL,
            ]
        },
        "temperature": _or_null({"type": "number", "minimum": 0, "maximum": 2}),
        "top_p": _or_null({"type": "number", "minimum": 0, "maximum": 1}),
        "reasoning_effort": {
            "enum": ["none", "minimal", "low", "medium", "high", "xhigh", "max", None]
        },
        "thinking": {
            "anyOf": [
                _BOOLEAN,
                {"enum": ["enabled", "disabled"]},
                _object({"type": {"enum": ["enabled", "disabled"]}}),
                _NULL,
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
        "prompt_tokens": _COUNT,
        "completion_tokens": _COUNT,
        "total_tokens": _COUNT,
        "prompt_tokens_details": _object({"cached_tokens": _COUNT}),
        "completion_tokens_details": _object({"reasoning_tokens": _COUNT}),
    },
    required=("prompt_tokens", "completion_tokens", "total_tokens"),
    description="Estimated: the upstream reports no token counts.",
)

_FINISH_REASON: Schema = {"enum": ["stop", "length", "content_filter"]}

_CHAT_COMPLETION = _object(
    {
        "id": _STRING,
        "object": _const("chat.completion"),
        "created": _INTEGER,
        "model": _STRING,
        "choices": {
            "type": "array",
            "items": _object(
                {
                    "index": _COUNT,
                    "message": _object(
                        {
                            "role": _const("assistant"),
                            "content": _or_null(_STRING),
                            "refusal": _or_null(_STRING),
                            "reasoning_content": _STRING,
                        },
                        required=("role", "content"),
                    ),
                    "finish_reason": _FINISH_REASON,
                    "logprobs": _NULL,
                }
            ),
        },
        "usage": _ref("Usage"),
        "system_fingerprint": _STRING,
    },
    required=("id", "object", "created", "model", "choices", "usage"),
)

_CHAT_CHUNK = _object(
    {
        "id": _STRING,
        "object": _const("chat.completion.chunk"),
        "created": _INTEGER,
        "model": _STRING,
        "choices": {
            "type": "array",
            "items": _object(
                {
                    "index": _COUNT,
                    "delta": _object(
                        {
                            "role": _const("assistant"),
                            "content": _STRING,
                            "reasoning_content": _STRING,
                        },
                        required=(),
                    ),
                    "finish_reason": _or_null(_FINISH_REASON),
                    "logprobs": _NULL,
                }
            ),
        },
        "usage": _or_null(_ref("Usage")),
        "system_fingerprint": _STRING,
    },
    required=("id", "object", "created", "model", "choices"),
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
                        "anyOf": [_ref("ChatCompletionChunk"), _ref("Error")]
                    },
                },
            ]
        }
    },
    required=("data",),
)

_MODEL = _object(
    {
        "id": _STRING,
        "object": _const("model"),
        "created": _INTEGER,
        "owned_by": _STRING,
    }
)

# -- the admin API ------------------------------------------------------------

_POOL: Schema = {
    "type": "string",
    "description": "basic or super (ssoBasic and ssoSuper are read too; any case).",
}
_TOKEN_STATUS: Schema = {"enum": ["active", "cooling", "invalid", "disabled"]}

_TOKEN = _object(
    {
        "id": _STRING,
        "pool": {"enum": ["basic", "super"]},
        "status": _TOKEN_STATUS,
        "state": {"enum": ["active", "cooling", "exhausted", "invalid", "disabled"]},
        "quota": _INTEGER,
        "quota_total": _INTEGER,
        "reserved": _INTEGER,
        "window_seconds": _INTEGER,
        "window_reset_at": _or_null(_TIME),
        "cooldown_until": _or_null(_TIME),
        "cooldown_reason": _STRING,
        "fail_count": _COUNT,
        "last_fail_at": _or_null(_TIME),
        "last_fail_reason": _STRING,
        "last_used_at": _or_null(_TIME),
        "use_count": _COUNT,
        "created_at": _TIME,
        "last_sync_at": _or_null(_TIME),
        "stale": _BOOLEAN,
        "tags": _STRINGS,
        "note": _STRING,
    },
    description="A token as operators see it: never its secret.",
)

_IMPORTED_TOKEN: Schema = {
    "anyOf": [
        {**_STRING, "description": "The sso cookie value."},
        _object(
            {
                "token": _STRING,
                "pool": {"description": "Overrides the pool when a string."},
                "tags": _or_null(_STRINGS),
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

_TOKEN_IDS = _object({"ids": _STRINGS})

_TOKEN_CHANGES = _object(
    {"status": _TOKEN_STATUS, "tags": _or_null(_STRINGS), "note": _or_null(_STRING)},
    required=(),
)

_KEY_LIMITS = _object(
    {
        "requests_per_minute": _or_null(
            {"type": "integer", "minimum": 1, "maximum": 1_000_000}
        ),
        "concurrent_requests": _or_null(
            {"type": "integer", "minimum": 1, "maximum": 100_000}
        ),
        "quota": _or_null({"type": "integer", "minimum": 1, "maximum": 10**12}),
        "quota_window_seconds": _or_null(
            {"type": "integer", "minimum": 60, "maximum": 31 * 86_400}
        ),
        "models": {
            **_or_null(_STRINGS),
            "description": "Model ids the key may use; empty allows every model.",
        },
    },
    required=(),
    closed=True,
    description="Optional limits of an API key; null means unlimited.",
)

_KEY_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 100}

_KEY_CREATE = _object(
    {
        "name": _KEY_NAME,
        "count": _or_null({"type": "integer", "minimum": 1, "maximum": 100}),
        "limits": _or_null(_ref("ApiKeyLimits")),
        "enabled": _BOOLEAN,
    },
    required=(),
)

_KEY_CHANGES = _object(
    {"name": _KEY_NAME, "limits": _or_null(_ref("ApiKeyLimits")), "enabled": _BOOLEAN},
    required=(),
    closed=True,
)

_API_KEY = _object(
    {
        "id": _STRING,
        "name": _STRING,
        "hint": _STRING,
        "enabled": _BOOLEAN,
        "created_at": _TIME,
        "use_count": _COUNT,
        "last_used_at": _or_null(_TIME),
        "limits": _object(
            {
                "requests_per_minute": _or_null(_INTEGER),
                "concurrent_requests": _or_null(_INTEGER),
                "quota": _or_null(_INTEGER),
                "quota_window_seconds": _INTEGER,
                "models": _STRINGS,
            }
        ),
    },
    description="A managed API key: its hint, never the key.",
)

_SECTIONS: Schema = {"type": "object", "additionalProperties": {"type": "object"}}

_CONFIG_VIEW = _object(
    {
        "settings": {**_SECTIONS, "description": "Effective settings, secrets masked."},
        "overrides": {**_SECTIONS, "description": "Runtime changes kept in storage."},
        "pinned_by_environment": {
            **_STRINGS,
            "description": "Changed keys an environment variable overrides.",
        },
    }
)

_STATS_ROW = _object(
    {
        "start": _INTEGER,
        "value": _STRING,
        "requests": _COUNT,
        "successes": _COUNT,
        "failures": _COUNT,
        "latency_ms_total": _NUMBER,
        "latency_ms_average": _or_null(_NUMBER),
    }
)

_AUDIT_ENTRY = _object(
    {
        "at": _TIME,
        "request_id": _STRING,
        "client": _STRING,
        "key_name": _STRING,
        "method": _STRING,
        "path": _STRING,
        "model": _STRING,
        "status": _INTEGER,
        "duration_ms": _NUMBER,
        "stream": _BOOLEAN,
        "token_id": _STRING,
        "error": _STRING,
    }
)

_ERROR = _object(
    {
        "error": _object(
            {
                "message": _STRING,
                "type": _STRING,
                "param": _or_null(_STRING),
                "code": _or_null(_STRING),
            },
            closed=True,
        )
    },
    closed=True,
    description="Every error the gateway answers, in the OpenAI envelope.",
)

_SCHEMAS: dict[str, Schema] = {
    "Error": _ERROR,
    "ChatMessage": _CHAT_MESSAGE,
    "TextPart": _TEXT_PART,
    "MediaPart": _MEDIA_PART,
    "ChatCompletionRequest": _CHAT_REQUEST,
    "ChatCompletion": _CHAT_COMPLETION,
    "ChatCompletionChunk": _CHAT_CHUNK,
    "ChatCompletionEvent": _CHAT_EVENT,
    "Usage": _USAGE,
    "Model": _MODEL,
    "ModelList": _object(
        {"object": _const("list"), "data": {"type": "array", "items": _ref("Model")}}
    ),
    "Token": _TOKEN,
    "TokenImport": _TOKEN_IMPORT,
    "ApiKeyLimits": _KEY_LIMITS,
    "ApiKey": _API_KEY,
    "ConfigView": _CONFIG_VIEW,
    "StatsRow": _STATS_ROW,
    "AuditEntry": _AUDIT_ENTRY,
}

# -- responses, parameters and security ---------------------------------------

#: The error answers, by status: the component name and when it happens.
_ERRORS = {
    400: ("BadRequest", "The request is invalid; 'param' names the field."),
    401: ("Unauthorized", "No credential, or a wrong one."),
    403: ("Forbidden", "The credential may not do this."),
    404: ("NotFound", "No such route, model or record."),
    405: ("MethodNotAllowed", "The path exists, the method does not."),
    413: ("PayloadTooLarge", "The body is larger than security.max_body_size_mb."),
    429: ("RateLimited", "A rate limit or the quota; wait 'Retry-After' seconds."),
    502: ("UpstreamFailed", "The upstream failed on every token tried."),
    503: ("Unavailable", "Storage is down, or no token can serve the model."),
    504: ("UpstreamTimeout", "The upstream did not answer in time."),
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}


def _error_response(status: int, description: str) -> Schema:
    answer: Schema = {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    if status in (429, 503):
        answer["headers"] = _RETRY_AFTER
    return answer


_RESPONSES = {name: _error_response(s, text) for s, (name, text) in _ERRORS.items()}

_SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "app.api_key or a managed key (POST /v1/admin/keys).",
    },
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "adminPassword": {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin password (app.app_password) as a bearer key.",
    },
    "adminSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "grok2api_session",
        "description": "The session POST /v1/admin/login sets.",
    },
    "csrfToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
        "description": "The session's CSRF token; a session needs it on every "
        "request that changes something.",
    },
}

_PUBLIC: list[dict[str, list[str]]] = []
_API = [{"apiKey": []}, {"apiKeyHeader": []}]
_ADMIN_READ = [{"adminPassword": []}, {"adminSession": []}]
_ADMIN_WRITE = [{"adminPassword": []}, {"adminSession": [], "csrfToken": []}]


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _path(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": _TEXT}


def _paging(limit: int, most: int) -> list[Schema]:
    return [
        _query(
            "offset",
            {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0},
            "How many entries to skip.",
        ),
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": most, "default": limit},
            "How many entries to return.",
        ),
    ]


def _json(schema: Schema) -> dict[str, Schema]:
    return {"application/json": {"schema": schema}}


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    security: list[dict[str, list[str]]],
    answer: Schema,
    *,
    errors: tuple[int, ...] = (),
    status: int = 200,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
) -> Schema:
    """One operation; an authenticated one can always fail its credential
    check (401, 403) and a rate limit or storage outage (429, 503)."""
    if security:
        errors = (*errors, 401, 403, 429, 503)
    responses: dict[str, Schema] = {str(status): answer}
    for code in sorted(set(errors)):
        responses[str(code)] = {"$ref": f"#/components/responses/{_ERRORS[code][0]}"}
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "security": security,
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return operation


def _answer(description: str, schema: Schema | None = None) -> Schema:
    answer: Schema = {"description": description}
    if schema is not None:
        answer["content"] = _json(schema)
    return answer


def _body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": _json(schema)}


def _array_of(name: str, **extra: Schema) -> Schema:
    return _object({"items": {"type": "array", "items": _ref(name)}, **extra})


def _public_paths() -> dict[str, Schema]:
    chat_answer = {
        "description": "The completion: JSON, or server-sent events when "
        "'stream' is true (each 'data:' line a chunk, then [DONE]).",
        "content": {
            **_json(_ref("ChatCompletion")),
            "text/event-stream": {"schema": _ref("ChatCompletionEvent")},
        },
    }
    return {
        "/v1/chat/completions": {
            "post": _operation(
                "createChatCompletion",
                "Chat with a Grok model",
                "chat",
                _API,
                chat_answer,
                errors=(400, 404, 413, 502, 504),
                body=_body(_ref("ChatCompletionRequest")),
            )
        },
        "/v1/models": {
            "get": _operation(
                "listModels",
                "The models this gateway serves",
                "models",
                _API,
                _answer("Every served model.", _ref("ModelList")),
            )
        },
        "/v1/models/{model_id}": {
            "parameters": [_path("model_id")],
            "get": _operation(
                "retrieveModel",
                "One served model",
                "models",
                _API,
                _answer("The model.", _ref("Model")),
                errors=(404,),
            ),
        },
        "/health": {
            "get": _operation(
                "health",
                "Liveness: the worker answers",
                "operations",
                _PUBLIC,
                _answer("Alive.", _object({"status": _const("ok")})),
            )
        },
        "/ready": {
            "get": _operation(
                "ready",
                "Readiness: storage answers and a token is usable",
                "operations",
                _PUBLIC,
                _answer(
                    "Ready.",
                    _object({"status": _const("ready"), "usable_tokens": _COUNT}),
                ),
                errors=(503,),
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                "operations",
                _PUBLIC,
                _answer("The OpenAPI document.", {"type": "object"}),
            )
        },
    }


def _token_paths() -> dict[str, Schema]:
    pool_arg = _query("pool", _POOL, "Only this pool.")
    return {
        "/v1/admin/tokens": {
            "get": _operation(
                "listTokens",
                "A page of tokens",
                "admin: tokens",
                _ADMIN_READ,
                _answer(
                    "The page and the number of matching tokens.",
                    _array_of("Token", total=_COUNT, offset=_COUNT, limit=_COUNT),
                ),
                errors=(400,),
                parameters=[
                    pool_arg,
                    _query("status", _TOKEN_STATUS, "Only this stored status."),
                    _query("tag", _STRING, "Only tokens with this tag."),
                    _query("search", _STRING, "Only ids or notes containing this."),
                    *_paging(50, 500),
                ],
            ),
            "post": _operation(
                "addTokens",
                "Add tokens",
                "admin: tokens",
                _ADMIN_WRITE,
                _answer(
                    "How many tokens the import held and how many were new.",
                    _object({"received": _COUNT, "added": _COUNT}),
                ),
                status=201,
                errors=(400, 413),
                parameters=[_query("pool", _POOL, "The pool of tokens without one.")],
                body={
                    "required": True,
                    "content": {
                        **_json(_ref("TokenImport")),
                        "text/plain": {
                            "schema": {
                                **_STRING,
                                "description": "One token per line; lines "
                                "starting with # are skipped.",
                            }
                        },
                    },
                },
            ),
            "delete": _operation(
                "removeTokens",
                "Remove tokens by id",
                "admin: tokens",
                _ADMIN_WRITE,
                _answer("How many were removed.", _object({"removed": _COUNT})),
                errors=(400, 413),
                body=_body(_TOKEN_IDS),
            ),
        },
        "/v1/admin/tokens/export": {
            "get": _operation(
                "exportTokens",
                "Every token with its secret, in the import format",
                "admin: tokens",
                _ADMIN_READ,
                _answer(
                    "Tokens by pool.",
                    {
                        "type": "object",
                        "additionalProperties": {
                            "type": "array",
                            "items": _object(
                                {"token": _STRING, "tags": _STRINGS, "note": _STRING}
                            ),
                        },
                    },
                ),
                errors=(400,),
                parameters=[pool_arg],
            )
        },
        "/v1/admin/tokens/refresh": {
            "post": _operation(
                "refreshTokens",
                "Read the quota of tokens from the upstream now",
                "admin: tokens",
                _ADMIN_WRITE,
                _answer(
                    "One result per token.",
                    _object(
                        {
                            "total": _COUNT,
                            "ok": _COUNT,
                            "results": {
                                "type": "array",
                                "items": _object(
                                    {
                                        "id": _STRING,
                                        "ok": _BOOLEAN,
                                        "remaining": _or_null(_INTEGER),
                                        "error": _STRING,
                                    }
                                ),
                            },
                        }
                    ),
                ),
                errors=(400, 413),
                body={
                    **_body(
                        _or_null(_object({"ids": _or_null(_STRINGS)}, required=())),
                        required=False,
                    ),
                    "description": "Without ids (or with none), every token.",
                },
            )
        },
        "/v1/admin/tokens/{token_id}": {
            "parameters": [_path("token_id")],
            "patch": _operation(
                "updateToken",
                "Change a token's status, tags or note",
                "admin: tokens",
                _ADMIN_WRITE,
                _answer("The token after the change.", _ref("Token")),
                errors=(400, 404, 405, 413),
                body=_body(_TOKEN_CHANGES),
            ),
        },
        "/v1/admin/tokens/{token_id}/reset": {
            "parameters": [_path("token_id")],
            "post": _operation(
                "resetToken",
                "Clear a token's failures and cooldown",
                "admin: tokens",
                _ADMIN_WRITE,
                _answer("The token after the reset.", _ref("Token")),
                errors=(404,),
            ),
        },
    }


def _key_paths() -> dict[str, Schema]:
    return {
        "/v1/admin/keys": {
            "get": _operation(
                "listKeys",
                "Every managed API key",
                "admin: keys",
                _ADMIN_READ,
                _answer("The keys.", _array_of("ApiKey")),
            ),
            "post": _operation(
                "createKeys",
                "Create API keys",
                "admin: keys",
                _ADMIN_WRITE,
                _answer(
                    "The new keys; 'key' is shown here and never again.",
                    _object(
                        {
                            "items": {
                                "type": "array",
                                "items": {
                                    "allOf": [
                                        _ref("ApiKey"),
                                        _object({"key": _STRING}),
                                    ]
                                },
                            }
                        }
                    ),
                ),
                status=201,
                errors=(400, 413),
                body=_body(_or_null(_KEY_CREATE), required=False),
            ),
        },
        "/v1/admin/keys/{key_id}": {
            "parameters": [_path("key_id")],
            "patch": _operation(
                "updateKey",
                "Rename, enable or disable a key, or change its limits",
                "admin: keys",
                _ADMIN_WRITE,
                _answer("The key after the change.", _ref("ApiKey")),
                errors=(400, 404, 413),
                body=_body(_KEY_CHANGES),
            ),
            "delete": _operation(
                "deleteKey",
                "Delete a key",
                "admin: keys",
                _ADMIN_WRITE,
                _answer("Deleted.", _object({"deleted": {"const": 1}})),
                errors=(404,),
            ),
        },
    }


def _admin_paths() -> dict[str, Schema]:
    session = _object(
        {"username": _STRING, "csrf_token": _STRING, "expires_at": _TIME},
    )
    return {
        "/v1/admin/config": {
            "get": _operation(
                "showConfig",
                "The settings and the runtime overrides",
                "admin: config",
                _ADMIN_READ,
                _answer("The configuration.", _ref("ConfigView")),
            ),
            "patch": _operation(
                "changeConfig",
                "Merge {section: {key: value}} into the runtime overrides",
                "admin: config",
                _ADMIN_WRITE,
                _answer("The configuration after the change.", _ref("ConfigView")),
                errors=(400, 413),
                body={
                    **_body(_SECTIONS),
                    "description": "A null value removes that key's override.",
                },
            ),
        },
        "/v1/admin/stats": {
            "get": _operation(
                "readStats",
                "Request counters per hour or day",
                "admin: observability",
                _ADMIN_READ,
                _answer(
                    "Counters per bucket, oldest first.",
                    _object(
                        {
                            "object": _const("list"),
                            "period": {"enum": ["hour", "day"]},
                            "dimension": {"enum": ["total", "model", "key", "token"]},
                            "since": _TIME,
                            "data": {"type": "array", "items": _ref("StatsRow")},
                        }
                    ),
                ),
                errors=(400,),
                parameters=[
                    _query("period", {"enum": ["hour", "day"]}, "Bucket length."),
                    _query(
                        "dimension",
                        {"enum": ["total", "model", "key", "token"]},
                        "What the counters are split by.",
                    ),
                    _query(
                        "since",
                        {"type": "number", "minimum": 0},
                        "The first bucket (Unix time); the retention by default.",
                    ),
                ],
            )
        },
        "/v1/admin/audit": {
            "get": _operation(
                "readAudit",
                "The newest API requests",
                "admin: observability",
                _ADMIN_READ,
                _answer(
                    "Requests, newest first.",
                    _object(
                        {
                            "object": _const("list"),
                            "limit": _COUNT,
                            "offset": _COUNT,
                            "data": {"type": "array", "items": _ref("AuditEntry")},
                        }
                    ),
                ),
                errors=(400,),
                parameters=_paging(50, 1000),
            )
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus metrics of the worker that answers",
                "admin: observability",
                _ADMIN_READ,
                {
                    "description": "The text exposition format 0.0.4.",
                    "content": {"text/plain": {"schema": _STRING}},
                },
            )
        },
        "/v1/admin/login": {
            "post": _operation(
                "login",
                "Open an admin session (sets the session cookie)",
                "admin: session",
                _PUBLIC,
                {
                    **_answer(
                        "The session; send csrf_token back as X-CSRF-Token.", session
                    ),
                    "headers": {
                        "Set-Cookie": {
                            "description": "grok2api_session, HttpOnly, "
                            "SameSite=Strict.",
                            "schema": _STRING,
                        }
                    },
                },
                errors=(400, 401, 413, 429, 503),
                body=_body(
                    _object({"username": _TEXT, "password": _TEXT}),
                ),
            )
        },
        "/v1/admin/logout": {
            "post": _operation(
                "logout",
                "Forget the session cookie",
                "admin: session",
                _ADMIN_WRITE,
                _answer("Logged out.", _object({"logged_out": {"const": True}})),
            )
        },
        "/v1/admin/session": {
            "get": _operation(
                "session",
                "How this request is authenticated",
                "admin: session",
                _ADMIN_READ,
                _answer(
                    "The identity; a session also shows its CSRF token.",
                    _object(
                        {
                            "auth": {"enum": ["bearer", "session", "anonymous"]},
                            "password_source": _STRING,
                            "username": _STRING,
                            "csrf_token": _STRING,
                            "expires_at": _TIME,
                        },
                        required=("auth", "password_source"),
                    ),
                ),
            )
        },
    }


@cache
def _document() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "grok2api",
            "version": "1",
            "description": "An OpenAI-compatible gateway to Grok, and its admin "
            "API. Every error is {'error': {message, type, param, code}}.",
        },
        "tags": [
            {"name": "chat"},
            {"name": "models"},
            {"name": "operations", "description": "Probes; no credential."},
            {"name": "admin: tokens"},
            {"name": "admin: keys"},
            {"name": "admin: config"},
            {"name": "admin: observability"},
            {"name": "admin: session"},
        ],
        "paths": {
            **_public_paths(),
            **_token_paths(),
            **_key_paths(),
            **_admin_paths(),
        },
        "components": {
            "schemas": _SCHEMAS,
            "responses": _RESPONSES,
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


def openapi_document() -> Schema:
    """The OpenAPI 3.1 document of every route, as a new dict."""
    return copy.deepcopy(_document())


@openapi_routes.get("/openapi.json")
async def serve_openapi() -> Response:
    return json_response(_document())
