"""One access-log line per request, written when the response has finished.

An ASGI wrapper rather than a Quart hook: a streamed answer's duration and
outcome are known only after its body has been sent, long after the handler
returned. Handlers put the model and the token id (never the token) into the
ASGI scope under ``grok2api.model`` and ``grok2api.token_id``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

__all__ = ["AccessLog"]

log = logging.getLogger("grok2api.access")

Scope = dict[str, Any]


class AccessLog:
    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = []
        finished: list[bool] = []
        outcome = "ok"

        async def send_and_watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body" and not message.get(
                "more_body"
            ):
                finished.append(True)
            await send(message)

        try:
            await self._app(scope, receive, send_and_watch)
            if not finished:
                outcome = "client_gone"
        except trio.Cancelled:
            outcome = "cancelled"
            raise
        except BaseException:
            outcome = "failed"
            raise
        finally:
            log.info(
                "%s %s %s model=%s token=%s duration_ms=%.1f%s",
                scope["method"],
                scope["path"],
                status[0] if status else "-",
                scope.get("grok2api.model", "-"),
                scope.get("grok2api.token_id", "-"),
                (time.perf_counter() - started) * 1000,
                "" if outcome == "ok" else f" outcome={outcome}",
            )
