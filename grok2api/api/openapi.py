"""The OpenAPI 3.1 document of the public and admin APIs, served without a
credential at ``GET /openapi.json``.

It is written out by hand next to the routes rather than derived from them:
the routes read their bodies with small hand-written parsers, and the
schemas (``openapi_schemas.py``) say what those accept. A test holds the
operations here to the app's URL map, and the fuzz tests hold every route to
its schemas, so the document and the code cannot drift apart unnoticed.
"""

from __future__ import annotations

import copy
from functools import cache

import attrs
from quart import Blueprint, Response

from grok2api.api.http import json_response
from grok2api.api.openapi_schemas import (
    ASSET_ID,
    CACHED_NAME,
    DIMENSION,
    MEDIA_KIND,
    PAGE_TOKEN,
    PERIOD,
    POOL,
    SCHEMAS,
    STRING,
    TEXT,
    TOKEN_STATUS,
    VOICE_OPTIONS,
    Schema,
    ref,
)
from grok2api.media import FILES_PATH, MediaKind, content_type
from grok2api.media.names import extensions
from grok2api.security.sessions import SESSION_COOKIE

__all__ = ["openapi_document", "openapi_routes"]

openapi_routes = Blueprint("openapi", __name__)

#: The error answers, by status: the component name and when it happens.
_ERRORS = {
    400: ("BadRequest", "The request is invalid; 'param' names the field."),
    401: ("Unauthorized", "No credential, or a wrong one."),
    403: ("Forbidden", "The credential may not do this."),
    404: ("NotFound", "No such route, model, record or file."),
    405: ("MethodNotAllowed", "The path exists, the method does not."),
    413: ("PayloadTooLarge", "The body is larger than security.max_body_size_mb."),
    416: ("RangeNotSatisfiable", "The Range lies wholly outside the file."),
    429: ("RateLimited", "A rate limit or the quota; wait 'Retry-After' seconds."),
    502: ("UpstreamFailed", "The upstream failed on every token tried."),
    503: ("Unavailable", "Storage is down, or no token can serve the model."),
    504: ("UpstreamTimeout", "The upstream did not answer in time."),
}

_RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}

_ERROR_HEADERS: dict[int, Schema] = {
    416: {
        "Content-Range": {
            "description": "bytes */<the file's size>.",
            "required": True,
            "schema": {"type": "string", "pattern": "^bytes \\*/[0-9]+$"},
        }
    },
    429: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}


def _error_response(status: int, description: str) -> Schema:
    answer: Schema = {
        "description": description,
        "content": {"application/json": {"schema": ref("Error")}},
    }
    if status in _ERROR_HEADERS:
        answer["headers"] = _ERROR_HEADERS[status]
    return answer


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
        "name": SESSION_COOKIE,
        "description": "The session POST /v1/admin/login sets.",
    },
    "csrfToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
        "description": "The session's CSRF token, which a session needs on "
        "every request that changes something.",
    },
}

Security = list[dict[str, list[str]]]

_NONE: Security = []
_API: Security = [{"apiKey": []}, {"apiKeyHeader": []}]
_ADMIN: Security = [{"adminPassword": []}, {"adminSession": []}]
_ADMIN_WRITE: Security = [
    {"adminPassword": []},
    {"adminSession": [], "csrfToken": []},
]


@attrs.frozen(kw_only=True)
class _Operation:
    """One route and method. ``answer`` names the success schema (or is the
    whole response object); an authenticated operation can always also fail
    its credential check, a rate limit or a storage outage."""

    method: str
    path: str
    id: str
    summary: str
    tag: str
    security: Security
    answer: str | Schema
    status: int = 200
    #: Further answers that are not errors, by status.
    other_answers: dict[int, Schema] = attrs.field(factory=dict)
    errors: tuple[int, ...] = ()
    parameters: tuple[Schema, ...] = ()
    #: A component name, or the whole request body object.
    body: str | Schema | None = None
    body_required: bool = True

    def as_dict(self) -> Schema:
        errors = set(self.errors)
        if self.security:
            errors |= {401, 403, 429, 503}
        if self.body is not None:
            errors |= {400, 413}
        answer = self.answer
        if isinstance(answer, str):
            described = "Created." if self.status == 201 else "OK."
            answer = {"description": described, "content": _json(ref(answer))}
        operation: Schema = {
            "operationId": self.id,
            "summary": self.summary,
            "tags": [self.tag],
            "security": self.security,
            "responses": {
                str(self.status): answer,
                **{str(status): other for status, other in self.other_answers.items()},
                **{
                    str(status): {
                        "$ref": f"#/components/responses/{_ERRORS[status][0]}"
                    }
                    for status in sorted(errors)
                },
            },
        }
        if self.parameters:
            operation["parameters"] = list(self.parameters)
        if isinstance(self.body, str):
            operation["requestBody"] = {
                "required": self.body_required,
                "content": _json(ref(self.body)),
            }
        elif self.body is not None:
            operation["requestBody"] = self.body
        return operation


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _path(name: str, schema: Schema = TEXT) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _header(name: str, description: str) -> Schema:
    return {"name": name, "in": "header", "schema": STRING, "description": description}


def _paging(limit: int, most: int) -> tuple[Schema, ...]:
    return (
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
    )


_POOL_ARG = _query("pool", POOL, "Only this pool.")

_CHAT_ANSWER: Schema = {
    "description": "The completion: JSON, or server-sent events when 'stream' "
    "is true (each 'data:' line a chunk, then [DONE]).",
    "content": {
        **_json(ref("ChatCompletion")),
        "text/event-stream": {"schema": ref("ChatCompletionEvent")},
    },
}

_IMAGE_ANSWER: Schema = {
    "description": "The images: JSON, or server-sent events when 'stream' is "
    "true (partial_image events, one completed event per image, then [DONE]).",
    "content": {
        **_json(ref("ImagesResponse")),
        "text/event-stream": {"schema": ref("ImageGenerationEvent")},
    },
}

_TOKEN_IMPORT_BODY: Schema = {
    "required": True,
    "content": {
        **_json(ref("TokenImport")),
        "text/plain": {
            "schema": {
                **STRING,
                "description": "One token per line; lines starting with # are skipped.",
            }
        },
    },
}

_IMAGE_EDIT_BODY: Schema = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": ref("ImageEditForm")},
        **_json(ref("ImageEditRequest")),
    },
}

_LOGIN_ANSWER: Schema = {
    "description": "The session; send csrf_token back as X-CSRF-Token.",
    "content": _json(ref("Session")),
    "headers": {
        "Set-Cookie": {
            "description": "grok2api_session, HttpOnly, SameSite=Strict.",
            "schema": STRING,
        }
    },
}

_METRICS_ANSWER: Schema = {
    "description": "The Prometheus text exposition format 0.0.4.",
    "content": {"text/plain": {"schema": STRING}},
}

#: The headers of a served file; each answer sends those it names.
_FILE_HEADERS: dict[str, Schema] = {
    "ETag": {"description": "The file's validator.", "schema": STRING},
    "Accept-Ranges": {"schema": {"const": "bytes"}},
    "Cache-Control": {
        "description": "Public and immutable: a name never changes content.",
        "schema": STRING,
    },
    "Content-Length": {"schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "Content-Range": {
        "description": "bytes <first>-<last>/<size>.",
        "schema": {"type": "string", "pattern": "^bytes [0-9]+-[0-9]+/[0-9]+$"},
    },
}

_ALWAYS_SENT = ("ETag", "Accept-Ranges", "Cache-Control")

#: Every format the cache keeps; the bytes are served as they are.
_MEDIA_CONTENT: Schema = {
    content_type(kind, f".{extension}"): {}
    for kind in MediaKind
    for extension in extensions(kind)
}


def _file_headers(*names: str) -> Schema:
    return {name: {**_FILE_HEADERS[name], "required": True} for name in names}


def _file_answer(description: str, *headers: str) -> Schema:
    return {
        "description": description,
        "headers": _file_headers(*_ALWAYS_SENT, "Content-Length", *headers),
        "content": _MEDIA_CONTENT,
    }


_FILE_ARGS = (
    _path("kind", MEDIA_KIND),
    _path("name", CACHED_NAME),
    _header(
        "Range",
        "One byte range: bytes=<first>-<last>, bytes=<first>- or "
        "bytes=-<suffix>. Several ranges, other units and malformed ones get "
        "the whole file.",
    ),
    _header("If-Range", "An ETag; the Range is honoured only when it matches."),
    _header("If-None-Match", "ETags (or *); a match answers 304 with no body."),
)

_FILE_ANSWERS: dict[int, Schema] = {
    206: _file_answer("The byte range the Range header asked for.", "Content-Range"),
    304: {
        "description": "The client's copy is current (If-None-Match).",
        "headers": _file_headers(*_ALWAYS_SENT),
    },
}

_CACHE = "/v1/admin/cache"
_VOICE_TOKEN = "/v1/public/voice/token"
_TOKENS = "/v1/admin/tokens"
_KEYS = "/v1/admin/keys"
_JOBS = "/v1/admin/jobs"
_JOB_ARG = _path("job_id", {"type": "string", "pattern": "^job_[0-9a-f]{16}$"})

_JOB_EVENTS_ANSWER: Schema = {
    "description": "Server-sent events until the job ends: 'progress' events "
    "with the job (as GET /v1/admin/jobs/{job_id} without results) while it "
    "runs, then one 'done' event; ': keepalive' comments every "
    "performance.sse_keepalive_sec while nothing changes.",
    "content": {"text/event-stream": {"schema": STRING}},
}

_OPERATIONS = (
    # -- the OpenAI API and the probes --
    _Operation(
        method="post",
        path="/v1/chat/completions",
        id="createChatCompletion",
        summary="Chat with a Grok model",
        tag="chat",
        security=_API,
        answer=_CHAT_ANSWER,
        errors=(404, 502, 504),
        body="ChatCompletionRequest",
    ),
    _Operation(
        method="post",
        path="/v1/images/generations",
        id="createImage",
        summary="Generate images with grok-imagine-1.0",
        tag="images",
        security=_API,
        answer=_IMAGE_ANSWER,
        errors=(404, 502, 504),
        body="ImageGenerationRequest",
    ),
    _Operation(
        method="post",
        path="/v1/images/edits",
        id="createImageEdit",
        summary="Edit images with grok-imagine-1.0-edit",
        tag="images",
        security=_API,
        answer=_IMAGE_ANSWER,
        errors=(404, 502, 504),
        body=_IMAGE_EDIT_BODY,
    ),
    _Operation(
        method="get",
        path=_VOICE_TOKEN,
        id="createVoiceToken",
        summary="A LiveKit token for a Grok voice session (options in the query)",
        tag="voice",
        security=_API,
        answer="VoiceToken",
        errors=(400, 502, 504),
        parameters=tuple(
            _query(name, option, option.get("description", f"The {name}."))
            for name, option in VOICE_OPTIONS.items()
        ),
    ),
    _Operation(
        method="post",
        path=_VOICE_TOKEN,
        id="createVoiceTokenFromJson",
        summary="A LiveKit token for a Grok voice session (options as JSON)",
        tag="voice",
        security=_API,
        answer="VoiceToken",
        errors=(502, 504),
        body="VoiceTokenRequest",
        body_required=False,
    ),
    _Operation(
        method="get",
        path="/v1/models",
        id="listModels",
        summary="The models this gateway serves",
        tag="models",
        security=_API,
        answer="ModelList",
    ),
    _Operation(
        method="get",
        path="/v1/models/{model_id}",
        id="retrieveModel",
        summary="One served model",
        tag="models",
        security=_API,
        answer="Model",
        errors=(404,),
        parameters=(_path("model_id"),),
    ),
    _Operation(
        method="get",
        path="/health",
        id="health",
        summary="Liveness: the worker answers",
        tag="operations",
        security=_NONE,
        answer="Health",
    ),
    _Operation(
        method="get",
        path="/ready",
        id="ready",
        summary="Readiness: storage answers and a token is usable",
        tag="operations",
        security=_NONE,
        answer="Ready",
        errors=(503,),
    ),
    _Operation(
        method="get",
        path="/openapi.json",
        id="openapi",
        summary="This document",
        tag="operations",
        security=_NONE,
        answer={"description": "OK.", "content": _json({"type": "object"})},
    ),
    # -- cached media --
    _Operation(
        method="get",
        path=f"{FILES_PATH}/{{kind}}/{{name}}",
        id="readCachedFile",
        summary="A generated image or video the gateway cached",
        tag="media",
        security=_NONE,
        answer=_file_answer("The whole file."),
        other_answers=_FILE_ANSWERS,
        errors=(404, 416),
        parameters=_FILE_ARGS,
    ),
    # -- tokens --
    _Operation(
        method="get",
        path=_TOKENS,
        id="listTokens",
        summary="A page of tokens, never their secrets",
        tag="admin: tokens",
        security=_ADMIN,
        answer="TokenPage",
        errors=(400,),
        parameters=(
            _POOL_ARG,
            _query("status", TOKEN_STATUS, "Only this stored status."),
            _query("tag", STRING, "Only tokens with this tag."),
            _query("search", STRING, "Only ids or notes containing this."),
            *_paging(50, 500),
        ),
    ),
    _Operation(
        method="post",
        path=_TOKENS,
        id="addTokens",
        summary="Add tokens (JSON in any import format, or one per line)",
        tag="admin: tokens",
        security=_ADMIN_WRITE,
        answer="TokenImportResult",
        status=201,
        parameters=(_query("pool", POOL, "The pool of tokens that name none."),),
        body=_TOKEN_IMPORT_BODY,
    ),
    _Operation(
        method="delete",
        path=_TOKENS,
        id="removeTokens",
        summary="Remove tokens by id",
        tag="admin: tokens",
        security=_ADMIN_WRITE,
        answer="TokenRemoval",
        body="TokenIds",
    ),
    _Operation(
        method="get",
        path=f"{_TOKENS}/export",
        id="exportTokens",
        summary="Every token with its secret, in the import format",
        tag="admin: tokens",
        security=_ADMIN,
        answer="TokenExport",
        errors=(400,),
        parameters=(_POOL_ARG,),
    ),
    _Operation(
        method="post",
        path=f"{_TOKENS}/refresh",
        id="refreshTokens",
        summary="Read the quota of the tokens named (all without ids) upstream",
        tag="admin: tokens",
        security=_ADMIN_WRITE,
        answer="RefreshResult",
        body="RefreshRequest",
        body_required=False,
    ),
    _Operation(
        method="patch",
        path=f"{_TOKENS}/{{token_id}}",
        id="updateToken",
        summary="Change a token's status, tags or note",
        tag="admin: tokens",
        security=_ADMIN_WRITE,
        answer="Token",
        errors=(404, 405),
        parameters=(_path("token_id"),),
        body="TokenChanges",
    ),
    _Operation(
        method="post",
        path=f"{_TOKENS}/{{token_id}}/reset",
        id="resetToken",
        summary="Clear a token's failures and cooldown",
        tag="admin: tokens",
        security=_ADMIN_WRITE,
        answer="Token",
        errors=(404,),
        parameters=(_path("token_id"),),
    ),
    # -- an account's upstream assets --
    _Operation(
        method="get",
        path=f"{_TOKENS}/{{token_id}}/assets",
        id="listUpstreamAssets",
        summary="A page of the files Grok keeps for the token's account",
        tag="admin: assets",
        security=_ADMIN,
        answer="UpstreamAssetPage",
        errors=(400, 404, 405, 502, 504),
        parameters=(
            _path("token_id"),
            _query("page_token", PAGE_TOKEN, "next_page_token of the previous page."),
            _query(
                "page_size",
                {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
                "How many assets to return.",
            ),
        ),
    ),
    _Operation(
        method="delete",
        path=f"{_TOKENS}/{{token_id}}/assets/{{asset_id}}",
        id="deleteUpstreamAsset",
        summary="Delete one of the account's upstream assets",
        tag="admin: assets",
        security=_ADMIN_WRITE,
        answer="UpstreamAssetDeletion",
        errors=(400, 404, 405, 502, 504),
        parameters=(_path("token_id"), _path("asset_id", ASSET_ID)),
    ),
    _Operation(
        method="post",
        path=f"{_TOKENS}/{{token_id}}/assets/delete",
        id="deleteUpstreamAssets",
        summary="Delete several of the account's upstream assets, a result each",
        tag="admin: assets",
        security=_ADMIN_WRITE,
        answer="UpstreamAssetBatchDeletion",
        errors=(404, 405),
        parameters=(_path("token_id"),),
        body="UpstreamAssetIds",
    ),
    # -- API keys --
    _Operation(
        method="get",
        path=_KEYS,
        id="listKeys",
        summary="Every managed API key, never the keys themselves",
        tag="admin: keys",
        security=_ADMIN,
        answer="ApiKeyList",
    ),
    _Operation(
        method="post",
        path=_KEYS,
        id="createKeys",
        summary="Create API keys",
        tag="admin: keys",
        security=_ADMIN_WRITE,
        answer="CreatedApiKeys",
        status=201,
        body="ApiKeyCreate",
        body_required=False,
    ),
    _Operation(
        method="patch",
        path=f"{_KEYS}/{{key_id}}",
        id="updateKey",
        summary="Rename, enable or disable a key, or change its limits",
        tag="admin: keys",
        security=_ADMIN_WRITE,
        answer="ApiKey",
        errors=(404,),
        parameters=(_path("key_id"),),
        body="ApiKeyChanges",
    ),
    _Operation(
        method="delete",
        path=f"{_KEYS}/{{key_id}}",
        id="deleteKey",
        summary="Delete a key",
        tag="admin: keys",
        security=_ADMIN_WRITE,
        answer="ApiKeyDeletion",
        errors=(404,),
        parameters=(_path("key_id"),),
    ),
    # -- runtime config --
    _Operation(
        method="get",
        path="/v1/admin/config",
        id="showConfig",
        summary="The settings and the runtime overrides",
        tag="admin: config",
        security=_ADMIN,
        answer="ConfigView",
    ),
    _Operation(
        method="patch",
        path="/v1/admin/config",
        id="changeConfig",
        summary="Merge changes into the runtime overrides",
        tag="admin: config",
        security=_ADMIN_WRITE,
        answer="ConfigView",
        body="ConfigChanges",
    ),
    # -- the media cache --
    _Operation(
        method="get",
        path=_CACHE,
        id="summarizeCache",
        summary="Files, bytes and limits of each kind of cached media",
        tag="admin: cache",
        security=_ADMIN,
        answer="CacheSummary",
    ),
    _Operation(
        method="get",
        path=f"{_CACHE}/{{kind}}",
        id="listCachedFiles",
        summary="A page of one kind's cached files, newest first",
        tag="admin: cache",
        security=_ADMIN,
        answer="CachedFilePage",
        errors=(400, 404, 405),
        parameters=(_path("kind", MEDIA_KIND), *_paging(50, 500)),
    ),
    _Operation(
        method="delete",
        path=f"{_CACHE}/{{kind}}",
        id="clearCache",
        summary="Delete every cached file of a kind (never one being written)",
        tag="admin: cache",
        security=_ADMIN_WRITE,
        answer="CacheClear",
        errors=(400, 404),
        parameters=(_path("kind", MEDIA_KIND),),
    ),
    _Operation(
        method="delete",
        path=f"{_CACHE}/{{kind}}/{{name}}",
        id="deleteCachedFile",
        summary="Delete one cached file",
        tag="admin: cache",
        security=_ADMIN_WRITE,
        answer="CachedFileDeletion",
        errors=(400, 404, 405),
        parameters=(_path("kind", MEDIA_KIND), _path("name", CACHED_NAME)),
    ),
    # -- background jobs and account settings --
    _Operation(
        method="post",
        path=_JOBS,
        id="startJob",
        summary="Start a refresh, nsfw or assets_clear job over chosen tokens",
        tag="admin: jobs",
        security=_ADMIN_WRITE,
        answer={"description": "Accepted; it runs.", "content": _json(ref("Job"))},
        status=202,
        body="JobRequest",
    ),
    _Operation(
        method="get",
        path=_JOBS,
        id="listJobs",
        summary="The newest jobs, newest first",
        tag="admin: jobs",
        security=_ADMIN,
        answer="JobList",
    ),
    _Operation(
        method="get",
        path=f"{_JOBS}/{{job_id}}",
        id="showJob",
        summary="A job's state and counts, with a page of its per-token results",
        tag="admin: jobs",
        security=_ADMIN,
        answer="JobDetail",
        errors=(400, 404),
        parameters=(_JOB_ARG, *_paging(100, 500)),
    ),
    _Operation(
        method="get",
        path=f"{_JOBS}/{{job_id}}/events",
        id="followJob",
        summary="A job's progress as server-sent events until it ends",
        tag="admin: jobs",
        security=_ADMIN,
        answer=_JOB_EVENTS_ANSWER,
        errors=(404,),
        parameters=(_JOB_ARG,),
    ),
    _Operation(
        method="post",
        path=f"{_JOBS}/{{job_id}}/cancel",
        id="cancelJob",
        summary="Stop a job, whichever worker runs it; finished work is kept",
        tag="admin: jobs",
        security=_ADMIN_WRITE,
        answer="Job",
        errors=(404,),
        parameters=(_JOB_ARG,),
    ),
    _Operation(
        method="put",
        path=f"{_TOKENS}/{{token_id}}/birth-date",
        id="recordBirthDate",
        summary="Record the account holder's own birth date (for NSFW)",
        tag="admin: tokens",
        security=_ADMIN_WRITE,
        answer="BirthDateRecord",
        errors=(404, 405),
        parameters=(_path("token_id"),),
        body="BirthDateRequest",
    ),
    _Operation(
        method="delete",
        path=f"{_TOKENS}/{{token_id}}/birth-date",
        id="forgetBirthDate",
        summary="Forget a token's recorded birth date",
        tag="admin: tokens",
        security=_ADMIN_WRITE,
        answer="BirthDateRecord",
        errors=(404, 405),
        parameters=(_path("token_id"),),
    ),
    _Operation(
        method="post",
        path=f"{_TOKENS}/{{token_id}}/nsfw",
        id="enableTokenNsfw",
        summary="Accept the terms, send the birth date, enable NSFW content now",
        tag="admin: tokens",
        security=_ADMIN_WRITE,
        answer="JobTokenResult",
        errors=(404,),
        parameters=(_path("token_id"),),
    ),
    # -- observability --
    _Operation(
        method="get",
        path="/v1/admin/stats",
        id="readStats",
        summary="Request counters per hour or day",
        tag="admin: observability",
        security=_ADMIN,
        answer="StatsPage",
        errors=(400,),
        parameters=(
            _query("period", PERIOD, "Bucket length."),
            _query("dimension", DIMENSION, "What the counters are split by."),
            _query(
                "since",
                {"type": "number", "minimum": 0},
                "The first bucket (Unix time); the whole retention by default.",
            ),
        ),
    ),
    _Operation(
        method="get",
        path="/v1/admin/audit",
        id="readAudit",
        summary="The newest API requests",
        tag="admin: observability",
        security=_ADMIN,
        answer="AuditPage",
        errors=(400,),
        parameters=_paging(50, 1000),
    ),
    _Operation(
        method="get",
        path="/metrics",
        id="metrics",
        summary="Prometheus metrics of the worker that answers",
        tag="admin: observability",
        security=_ADMIN,
        answer=_METRICS_ANSWER,
    ),
    # -- the admin session --
    _Operation(
        method="post",
        path="/v1/admin/login",
        id="login",
        summary="Open an admin session (sets the session cookie)",
        tag="admin: session",
        security=_NONE,
        answer=_LOGIN_ANSWER,
        errors=(401, 429, 503),
        body="Login",
    ),
    _Operation(
        method="post",
        path="/v1/admin/logout",
        id="logout",
        summary="Forget the session cookie",
        tag="admin: session",
        security=_ADMIN_WRITE,
        answer="Logout",
    ),
    _Operation(
        method="get",
        path="/v1/admin/session",
        id="session",
        summary="How this request is authenticated",
        tag="admin: session",
        security=_ADMIN,
        answer="SessionView",
    ),
)

_TAGS = [
    {"name": "chat"},
    {
        "name": "images",
        "description": "Exactly n images or an error; a moderated prompt is a "
        "400 content_policy_violation.",
    },
    {"name": "models"},
    {
        "name": "voice",
        "description": "The client joins the LiveKit server itself with the "
        "token; the audio never passes through the gateway.",
    },
    {"name": "operations", "description": "Probes and this document; no credential."},
    {
        "name": "media",
        "description": "Generated media the gateway cached; no credential, "
        "the names are unguessable.",
    },
    {"name": "admin: tokens"},
    {"name": "admin: keys"},
    {"name": "admin: config"},
    {"name": "admin: cache"},
    {
        "name": "admin: jobs",
        "description": "Batch work in the background; any worker answers for any job.",
    },
    {
        "name": "admin: assets",
        "description": "The files Grok keeps for one token's account; a "
        "refused token counts against it.",
    },
    {"name": "admin: observability"},
    {"name": "admin: session"},
]


@cache
def _document() -> Schema:
    paths: dict[str, Schema] = {}
    for operation in _OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = operation.as_dict()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "grok2api",
            "version": "1",
            "description": "An OpenAI-compatible gateway to Grok, and its admin "
            "API. Every error is {'error': {message, type, param, code}}.",
        },
        "tags": _TAGS,
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                name: _error_response(status, description)
                for status, (name, description) in _ERRORS.items()
            },
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


def openapi_document() -> Schema:
    """The OpenAPI 3.1 document of every route, as a new dict."""
    return copy.deepcopy(_document())


@openapi_routes.get("/openapi.json")
async def serve_openapi() -> Response:
    return json_response(_document())
