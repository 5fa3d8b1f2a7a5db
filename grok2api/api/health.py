"""What a worker tells load balancers and monitoring: ``/health``, ``/ready``
and ``/metrics``.

``/health`` answers while the worker serves at all (a liveness probe);
``/ready`` only while it could serve a completion: storage answers within
``timeout.storage_timeout`` and at least one token is usable. Neither needs a
key. ``/metrics`` is the Prometheus text exposition of this worker's metrics.
"""

from __future__ import annotations

import logging
import time

import trio
from quart import Blueprint, Response

from grok2api.api.http import json_error, json_response
from grok2api.errors import ApiError, StorageError
from grok2api.gateway import current_gateway
from grok2api.models import POOLS
from grok2api.observe import METRICS_CONTENT_TYPE

__all__ = ["health_routes"]

log = logging.getLogger(__name__)

health_routes = Blueprint("health", __name__)

#: Seconds a probe is told to wait before asking again when not ready.
_RETRY_AFTER = "5"


@health_routes.get("/health")
async def health() -> Response:
    return json_response({"status": "ok"})


@health_routes.get("/ready")
async def ready() -> Response:
    gateway = current_gateway()
    timeout = gateway.settings.timeout.storage_timeout
    try:
        with trio.fail_after(timeout):
            counts = await gateway.storage.pool_counts(POOLS, 1, time.time())
    except trio.TooSlowError:
        return _not_ready(
            f"Storage did not answer within {timeout:g}s "
            "(timeout.storage_timeout); check the storage backend."
        )
    except StorageError as exc:
        # The probe is unauthenticated: the reason goes to the log only.
        log.warning("not ready: storage failed: %s", exc)
        return _not_ready("Storage is unavailable; the worker log says why.")
    usable = counts.counts.get("active", 0)
    if not usable:
        described = ", ".join(
            f"{n} {state}" for state, n in sorted(counts.counts.items()) if n
        )
        return _not_ready(
            f"No token is usable right now (tokens: {described or 'none'}); "
            "add tokens or wait for quota to come back."
        )
    return json_response({"status": "ready", "usable_tokens": usable})


def _not_ready(message: str) -> Response:
    return json_error(
        ApiError(
            503,
            message,
            type="server_error",
            code="not_ready",
            headers={"Retry-After": _RETRY_AFTER},
        )
    )


@health_routes.get("/metrics")
async def metrics() -> Response:
    text = await current_gateway().recorder.render_metrics()
    return Response(text, status=200, content_type=METRICS_CONTENT_TYPE)
