"""The Quart-Trio application: routes, auth, error envelopes, lifespan.

Each Hypercorn worker imports :func:`create_app` and serves one app. The
worker's gateway (storage, upstream client, background services) lives in a
task of the app's lifespan nursery, started before the first request and
closed after the last one, so every service has one owner.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from grok2api.api.access_log import AccessLog
from grok2api.api.admin_accounts import admin_accounts
from grok2api.api.admin_assets import admin_assets
from grok2api.api.admin_auth import admin_auth
from grok2api.api.admin_cache import admin_cache
from grok2api.api.admin_config import admin_config
from grok2api.api.admin_jobs import admin_jobs
from grok2api.api.admin_keys import admin_keys
from grok2api.api.admin_stats import admin_stats
from grok2api.api.admin_tokens import admin_tokens
from grok2api.api.bad_host import RejectBadHost
from grok2api.api.caller import admit_api_caller, client_address
from grok2api.api.cors import Cors, is_admin_path
from grok2api.api.direct_chat import CHAT_PATH, DirectChat
from grok2api.api.errors import answerable
from grok2api.api.health import health_routes
from grok2api.api.http import BODY_TOO_LARGE, json_error
from grok2api.api.image_edits import image_edits_routes
from grok2api.api.images import images_routes
from grok2api.api.media_routes import media_routes
from grok2api.api.models_routes import models_routes
from grok2api.api.openapi import openapi_routes
from grok2api.api.unread_body import CloseWhenBodyUnread
from grok2api.api.voice import voice_routes
from grok2api.config import ServerOptions, Settings, server_options_from_env
from grok2api.errors import ApiError, Grok2APIError
from grok2api.gateway import Gateway, open_gateway
from grok2api.logs import configure_logging
from grok2api.security.auth import presented_key
from grok2api.security.sessions import SESSION_COOKIE

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_HTTP_ERRORS = {
    404: ("not_found_error", "not_found", "There is no route {path}."),
    405: (
        "invalid_request_error",
        "method_not_allowed",
        "{method} is not allowed on {path}.",
    ),
    413: ("invalid_request_error", "request_too_large", BODY_TOO_LARGE),
}


def create_app(options: ServerOptions | None = None) -> Any:
    """Build the ASGI app for one worker (settings are read at start-up)."""
    options = options or server_options_from_env(os.environ)
    configure_logging(options.log_level)
    app = QuartTrio(__name__)
    # "//v1/..." is a 404 like any unknown path, not a redirect whose
    # Location is built from the client's Host header.
    app.url_map.merge_slashes = False
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = 120
    app.register_blueprint(models_routes)
    app.register_blueprint(admin_tokens)
    app.register_blueprint(admin_config)
    # Served by DirectChat below; the rule keeps routing (405) and the API
    # document aware of it.
    app.url_map.add(
        app.url_rule_class(CHAT_PATH, methods={"POST"}, endpoint="chat_completions")
    )
    app.register_blueprint(health_routes)
    app.register_blueprint(admin_stats)
    app.register_blueprint(admin_keys)
    app.register_blueprint(admin_auth)
    app.register_blueprint(openapi_routes)
    app.register_blueprint(media_routes)
    app.register_blueprint(admin_cache)
    app.register_blueprint(admin_jobs)
    app.register_blueprint(admin_accounts)
    app.register_blueprint(admin_assets)
    app.register_blueprint(voice_routes)
    app.register_blueprint(images_routes)
    app.register_blueprint(image_edits_routes)
    _install_lifespan(app, options)
    _install_auth(app)
    _install_error_handlers(app)
    cors_origins = partial(_cors_origins, app)
    direct = DirectChat(
        app.asgi_app,
        lambda: app.extensions.get("grok2api"),
        body_timeout=app.config["BODY_TIMEOUT"],
    )
    app.asgi_app = AccessLog(  # type: ignore[method-assign]
        CloseWhenBodyUnread(
            RejectBadHost(Cors(SlotRelease(direct, app), cors_origins))
        ),
        lambda: getattr(app.extensions.get("grok2api"), "recorder", None),
    )
    return app


def _install_lifespan(app: QuartTrio, options: ServerOptions) -> None:
    stop = trio.Event()
    stopped = trio.Event()

    async def run_gateway(task_status: trio.TaskStatus[Gateway]) -> None:
        try:
            async with open_gateway(options) as gateway:
                task_status.started(gateway)
                await stop.wait()
        finally:
            stopped.set()

    @app.before_serving
    async def start() -> None:
        gateway: Gateway = await app.nursery.start(run_gateway)
        await gateway.auth.open()
        app.extensions["grok2api"] = gateway
        gateway.on_settings(partial(_apply_settings, app))
        log.info(
            "worker ready storage=%s plugins=%s strategy=%s upstream=%s",
            options.storage_type,
            ",".join(gateway.plugins.names()),
            gateway.settings.token.selection_strategy,
            gateway.settings.network.base_url,
        )

    @app.after_serving
    async def finish() -> None:
        stop.set()
        await stopped.wait()


def _apply_settings(app: QuartTrio, settings: Settings) -> None:
    # Quart fixes a request's body limit when the request is created, from
    # the app config; keep that in step with the current settings.
    app.config["MAX_CONTENT_LENGTH"] = settings.security.max_body_size_mb * 1024 * 1024


def _cors_origins(app: QuartTrio) -> tuple[str, ...]:
    gateway = app.extensions.get("grok2api")
    return gateway.settings.security.cors_allow_origins if gateway else ()


#: Routes anyone may call: liveness and readiness probes, the admin login,
#: the OpenAPI document.
_PUBLIC_PATHS = frozenset({"/health", "/ready", "/v1/admin/login", "/openapi.json"})
#: Cached media, opened by browsers without credentials (unguessable names).
_PUBLIC_PREFIXES = ("/v1/files/",)


def _install_auth(app: QuartTrio) -> None:
    @app.before_request
    async def authenticate() -> None:
        auth = app.extensions["grok2api"].auth
        scope = request.scope
        address = client_address(auth, scope, request.headers)
        path = request.path
        if (
            request.method == "OPTIONS"
            or path in _PUBLIC_PATHS
            or path.startswith(_PUBLIC_PREFIXES)
        ):
            return
        if is_admin_path(path):
            g.admin_identity = await auth.admin_identity(
                key=presented_key(request.headers),
                cookie=request.cookies.get(SESSION_COOKIE),
                csrf_token=request.headers.get("x-csrf-token"),
                method=request.method,
                client_address=address,
            )
            return
        if path.startswith("/v1/"):
            await admit_api_caller(auth, scope, request.headers, address)


class SlotRelease:
    """Gives a key's concurrent-request slot back when the response is done,
    which for a stream is long after the handler returned."""

    def __init__(self, inner: Any, app: QuartTrio) -> None:
        self._inner = inner
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await self._inner(scope, receive, send)
        finally:
            slot = scope.get("grok2api.slot")
            if slot is not None:
                await self._app.extensions["grok2api"].auth.limiter.release(*slot)


def _install_error_handlers(app: QuartTrio) -> None:
    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        return json_error(error)

    @app.errorhandler(Grok2APIError)
    async def gateway_error(error: Grok2APIError) -> Response:
        return json_error(answerable(error, request.method, request.path, log))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        kind, code, template = _HTTP_ERRORS.get(
            status,
            (
                "invalid_request_error",
                "http_error",
                error.description or "Request failed.",
            ),
        )
        message = template.format(path=request.path, method=request.method)
        response = json_error(ApiError(status, message, type=kind, code=code))
        if status == 413:
            # The rest of the oversized body is still on its way; closing is
            # the only way to keep it from being read as the next request.
            response.headers["Connection"] = "close"
        allowed = getattr(error, "valid_methods", None)
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        return json_error(answerable(error, request.method, request.path, log))
