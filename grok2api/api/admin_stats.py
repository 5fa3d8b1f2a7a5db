"""The admin API for request statistics and the audit log.

``GET /v1/admin/stats`` reads counters per hour or day along one dimension;
``GET /v1/admin/audit`` pages through the newest API requests. Both read
shared storage, so every worker answers the same, up to
``stats.flush_interval_sec`` behind the requests themselves. The admin key is
checked by the app before routing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import attrs
import trio
from quart import Blueprint, Response, request

from grok2api.api.http import json_response
from grok2api.errors import ApiError, StorageUnavailable
from grok2api.gateway import Gateway, current_gateway
from grok2api.observe.buffers import DIMENSIONS, PERIODS, bucket_start
from grok2api.storage import StatsRow

__all__ = ["admin_stats"]

admin_stats = Blueprint("admin_stats", __name__, url_prefix="/v1/admin")

_MAX_AUDIT_PAGE = 1000
T = TypeVar("T")


@admin_stats.get("/stats")
async def read_stats() -> Response:
    gateway = current_gateway()
    period = _choice("period", "hour", tuple(PERIODS))
    dimension = _choice("dimension", "total", DIMENSIONS)
    since = _since(gateway, period)
    rows = await _bounded(gateway, gateway.storage.read_stats(period, dimension, since))
    return json_response(
        {
            "object": "list",
            "period": period,
            "dimension": dimension,
            "since": int(since) if since.is_integer() else since,
            "data": [_row(row) for row in rows],
        }
    )


@admin_stats.get("/audit")
async def read_audit() -> Response:
    gateway = current_gateway()
    limit = _int_arg("limit", 50, 1, _MAX_AUDIT_PAGE)
    offset = _int_arg("offset", 0, 0, 10**9)
    entries = await _bounded(gateway, gateway.storage.list_audit(limit, offset))
    return json_response(
        {
            "object": "list",
            "limit": limit,
            "offset": offset,
            "data": [attrs.asdict(entry) for entry in entries],
        }
    )


def _row(row: StatsRow) -> dict[str, Any]:
    return {
        "start": int(row.start),
        "value": row.value,
        "requests": row.requests,
        "successes": row.successes,
        "failures": row.failures,
        "latency_ms_total": round(row.latency_ms, 1),
        "latency_ms_average": round(row.latency_ms / row.requests, 1)
        if row.requests
        else None,
    }


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = request.args.get(name, default)
    if value not in allowed:
        raise ApiError(
            400, f"'{name}' must be one of {', '.join(allowed)}.", param=name
        )
    return value


def _since(gateway: Gateway, period: str) -> float:
    raw = request.args.get("since")
    if raw is None:
        stats = gateway.settings.stats
        retention = (
            stats.hourly_retention if period == "hour" else stats.daily_retention
        )
        seconds = PERIODS[period]
        return bucket_start(time.time(), seconds) - (retention - 1) * seconds
    try:
        since = float(raw)
    except ValueError:
        since = math.nan
    if not math.isfinite(since) or since < 0:
        raise ApiError(
            400,
            "'since' must be a Unix time in seconds (a number, 0 or more).",
            param="since",
        )
    return since


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(
            400, f"'{name}' must be an integer from {low} to {high}.", param=name
        )
    return value


async def _bounded(gateway: Gateway, read: Awaitable[T]) -> T:
    timeout = gateway.settings.timeout.storage_timeout
    try:
        with trio.fail_after(timeout):
            return await read
    except trio.TooSlowError as exc:
        raise StorageUnavailable(f"storage did not answer within {timeout:g}s") from exc
