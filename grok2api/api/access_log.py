"""The outermost ASGI layer: request ids, the access log, and recording.

An ASGI wrapper rather than a Quart hook: a streamed answer's duration and
outcome are known only after its body has been sent, long after the handler
returned, and every response, a 404 or a 413 included, must carry its
``x-request-id``.

The id goes into the scope as ``grok2api.request_id`` before the app runs.
The layers below describe the request through other scope keys, all
optional: ``grok2api.model``, ``grok2api.token_id`` (the public id, never the
token), ``grok2api.client`` (the client address after trusted-proxy
handling), ``grok2api.key_name`` and ``grok2api.key_id`` (a managed API
key), ``grok2api.stream`` and ``grok2api.error`` (the error type of the
envelope sent), and ``grok2api.refused_http`` (the status and code the
server's HTTP/1.1 protocol answered with when the request's body turned out
not to be HTTP). When the response has ended, one line goes to the
``grok2api.access`` logger and the request goes to the worker's recorder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio

from grok2api.observe import FinishedRequest, Recorder, new_request_id

__all__ = ["AccessLog"]

log = logging.getLogger("grok2api.access")

Scope = dict[str, Any]

_REQUEST_ID_HEADER = b"x-request-id"
#: What Hypercorn's ``send`` raises when the connection is already going:
#: the client left while the answer was being written.
_CONNECTION_GONE = (
    trio.BrokenResourceError,
    trio.BusyResourceError,
    trio.ClosedResourceError,
)
#: What ``error`` says when a request produced no error envelope but did not
#: finish either.
_UNFINISHED = {"client_gone": "client_gone", "cancelled": "cancelled"}


class _ClientGone(Exception):
    """The connection closed under a response being sent."""


class AccessLog:
    """Wraps an ASGI app.

    Args:
        app: the ASGI app.
        recorder: returns the worker's recorder, or None before the worker's
            gateway is open (requests are then only logged).
    """

    def __init__(self, app: Any, recorder: Callable[[], Recorder | None]) -> None:
        self._app = app
        self._recorder = recorder

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = new_request_id()
        scope["grok2api.request_id"] = request_id
        recorder = self._recorder()
        metrics = recorder.metrics if recorder is not None else None
        arrived = time.time()
        started = time.perf_counter()
        status: list[int] = []
        finished: list[bool] = []
        streaming: list[bool] = []
        outcome = "ok"

        async def send_and_watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                headers = list(message.get("headers", ()))
                headers.append((_REQUEST_ID_HEADER, request_id.encode("ascii")))
                message = {**message, "headers": headers}
                if metrics is not None and _is_event_stream(headers):
                    streaming.append(True)
                    metrics.open_streams.inc()
            elif message["type"] == "http.response.body" and not message.get(
                "more_body"
            ):
                finished.append(True)
            try:
                await send(message)
            except _CONNECTION_GONE as exc:
                # Hypercorn closes a connection the client left while the
                # app may still be sending on it (an early 401 or 413 is
                # the usual case); that is the client's leaving, not a bug.
                raise _ClientGone from exc

        if metrics is not None:
            metrics.requests_in_flight.inc()
        try:
            await self._app(scope, receive, send_and_watch)
            if not finished:
                outcome = "client_gone"
        except _ClientGone:
            outcome = "client_gone"
        except BaseExceptionGroup as group:
            # Quart-Trio runs a handler in a nursery, which wraps what escapes.
            outcome = _outcome_of(group)
            if outcome != "client_gone":
                raise
        except trio.Cancelled:
            outcome = "cancelled"
            raise
        except BaseException:
            outcome = "failed"
            raise
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            refused = scope.get("grok2api.refused_http")
            if refused is not None:
                # The server refused the rest of the request (its body was
                # not HTTP) and answered for the app.
                status[:] = [refused[0]]
                outcome = refused[1]
                scope["grok2api.error"] = "invalid_request_error"
            elif outcome == "ok" and status[0] < 400 and "grok2api.error" in scope:
                # A stream whose 200 was sent ends with an error event.
                outcome = "error_event"
            if metrics is not None:
                metrics.requests_in_flight.dec()
                if streaming:
                    metrics.open_streams.dec()
            log.info(
                "%s %s %s model=%s token=%s duration_ms=%.1f request_id=%s%s",
                scope["method"],
                scope["path"],
                status[0] if status else "-",
                scope.get("grok2api.model", "-"),
                scope.get("grok2api.token_id", "-"),
                duration_ms,
                request_id,
                "" if outcome == "ok" else f" outcome={outcome}",
            )
            if recorder is not None:
                recorder.record(
                    _finished(scope, request_id, arrived, duration_ms, status, outcome)
                )


def _outcome_of(group: BaseExceptionGroup[BaseException]) -> str:
    _, rest = group.split(_ClientGone)
    if rest is None:
        return "client_gone"
    _, rest = rest.split(trio.Cancelled)
    # Cancelled alone, as at shutdown once the grace period is over.
    return "cancelled" if rest is None else "failed"


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"content-type" and value.startswith(b"text/event-stream")
        for name, value in headers
    )


def _finished(
    scope: Scope,
    request_id: str,
    arrived: float,
    duration_ms: float,
    status: list[int],
    outcome: str,
) -> FinishedRequest:
    sent = status[0] if status else 500 if outcome == "failed" else 499
    error = scope.get("grok2api.error") or _UNFINISHED.get(outcome, "")
    if not error and outcome == "failed":
        error = "server_error"
    client = scope.get("grok2api.client")
    if not client:
        peer = scope.get("client")
        client = peer[0] if peer else ""
    return FinishedRequest(
        at=arrived,
        request_id=request_id,
        client=str(client),
        method=scope["method"],
        path=scope["path"],
        status=sent,
        duration_ms=round(duration_ms, 1),
        model=str(scope.get("grok2api.model") or ""),
        key_name=str(scope.get("grok2api.key_name") or ""),
        key_id=str(scope.get("grok2api.key_id") or ""),
        token_id=str(scope.get("grok2api.token_id") or ""),
        stream=bool(scope.get("grok2api.stream", False)),
        error=str(error),
    )
