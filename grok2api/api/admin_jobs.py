"""The admin API for background jobs (``/v1/admin/jobs``).

``POST`` starts a job over chosen tokens and answers ``202`` with its id at
once; the work runs in the background (``grok2api.jobs``). ``GET`` lists the
newest jobs, ``GET /{id}`` shows one with a page of its per-token results,
``GET /{id}/events`` follows it as server-sent events until it ends, and
``POST /{id}/cancel`` stops it. Any worker answers for any job: the state is
in storage. The admin key or session (with its CSRF token) is checked by the
app before routing.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import trio
from quart import Blueprint, Response

from grok2api.api.errors import sse_error_event
from grok2api.api.http import json_response, query_int, read_json_body
from grok2api.api.sse import KEEPALIVE
from grok2api.errors import ApiError, StorageUnavailable
from grok2api.gateway import current_gateway
from grok2api.jobs import JOB_KINDS, JobRunner, job_limits, job_runner
from grok2api.jobs.store import TERMINAL_STATES, JobRecord
from grok2api.pool.importing import pool_name
from grok2api.storage import TokenQuery

__all__ = ["admin_jobs"]

admin_jobs = Blueprint("admin_jobs", __name__, url_prefix="/v1/admin/jobs")

#: How often a progress stream reads the job's state.
PROGRESS_POLL_SECONDS = 0.5
_MAX_PAGE = 500
#: Token ids are 16 hex digits; anything much longer is not one.
_MAX_ID = 64
_JOB_ID = re.compile(r"job_[0-9a-f]{16}")
_SELECTORS = ("token_ids", "pool", "all")
_SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _runner() -> JobRunner:
    return job_runner(current_gateway())


def _not_found(job_id: str) -> ApiError:
    return ApiError(
        404,
        f"There is no job with id {job_id!r} (jobs are kept for 7 days).",
        code="job_not_found",
        param="job_id",
    )


async def _job(job_id: str) -> JobRecord:
    record = await _runner().store.get(job_id) if _JOB_ID.fullmatch(job_id) else None
    if record is None:
        raise _not_found(job_id)
    return record


async def _chosen_tokens(body: dict[str, Any], most: int) -> list[str]:
    """The token ids the body names; at most ``most + 1`` from a listing,
    enough to tell that there are too many."""
    named = [key for key in _SELECTORS if key in body]
    if len(named) != 1:
        raise ApiError(
            400,
            "Name the tokens with exactly one of 'token_ids' (a list of ids), "
            "'pool' (basic or super) or 'all' (true).",
            param="token_ids",
            code="invalid_value",
        )
    if "token_ids" in body:
        ids = body["token_ids"]
        if not isinstance(ids, list) or not all(
            isinstance(i, str) and len(i) <= _MAX_ID for i in ids
        ):
            raise ApiError(
                400,
                "'token_ids' must be a list of token ids.",
                param="token_ids",
                code="invalid_value",
            )
        return list(dict.fromkeys(ids))
    pool = None
    if "pool" in body:
        try:
            pool = pool_name(str(body["pool"]))
        except ValueError as exc:
            raise ApiError(400, f"{exc}.", param="pool", code="invalid_value") from None
    elif body["all"] is not True:
        raise ApiError(400, "'all' must be true.", param="all", code="invalid_value")
    storage = current_gateway().storage
    ids: list[str] = []
    while len(ids) <= most:
        page = await storage.list_tokens(
            TokenQuery(pool=pool, offset=len(ids), limit=_MAX_PAGE)
        )
        ids.extend(t.id for t in page.items)
        if not page.items or len(ids) >= page.total:
            break
    return ids


@admin_jobs.post("")
async def start_job() -> Response:
    body = await read_json_body()
    if not isinstance(body, dict):
        raise ApiError(
            400, "Send a JSON object with 'kind'.", param="body", code="invalid_json"
        )
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in JOB_KINDS:
        raise ApiError(
            400,
            f"'kind' must be one of {', '.join(JOB_KINDS)}.",
            code="invalid_value",
            param="kind",
        )
    gateway = current_gateway()
    limits = job_limits(kind, gateway.settings)
    token_ids = await _chosen_tokens(body, limits.max_tokens)
    if not token_ids:
        raise ApiError(
            400, "The job names no tokens.", param="token_ids", code="invalid_value"
        )
    if len(token_ids) > limits.max_tokens:
        raise ApiError(
            400,
            f"A {kind} job may cover at most {limits.max_tokens} tokens "
            f"({limits.setting}_max_tokens); name fewer.",
            param="token_ids",
            code="invalid_value",
        )
    record = await job_runner(gateway).start(kind, token_ids)
    return json_response(
        record.to_json(),
        status=202,
        headers={"Location": f"/v1/admin/jobs/{record.id}"},
    )


@admin_jobs.get("")
async def list_jobs() -> Response:
    records = await _runner().store.list()
    return json_response({"items": [r.to_json() for r in records]})


@admin_jobs.get("/<job_id>")
async def show_job(job_id: str) -> Response:
    offset = query_int("offset", 0, 0, 10**9)
    limit = query_int("limit", 100, 1, _MAX_PAGE)
    record = await _job(job_id)
    items = await _runner().store.results(job_id, offset, limit)
    return json_response(
        {
            **record.to_json(),
            "results": {
                "items": items,
                "total": record.done,
                "offset": offset,
                "limit": limit,
            },
        }
    )


@admin_jobs.post("/<job_id>/cancel")
async def cancel_job(job_id: str) -> Response:
    record = await _runner().cancel(job_id) if _JOB_ID.fullmatch(job_id) else None
    if record is None:
        raise _not_found(job_id)
    return json_response(record.to_json())


@admin_jobs.get("/<job_id>/events")
async def job_events(job_id: str) -> Response:
    """``progress`` events while the job runs, one ``done`` event at its end
    (whatever the end: finished, cancelled, failed or abandoned)."""
    first = await _job(job_id)
    keepalive = current_gateway().settings.performance.sse_keepalive_sec
    response = Response(
        _events(_runner(), first, keepalive), status=200, headers=_SSE_HEADERS
    )
    # The stream lasts as long as the job, which no fixed timeout bounds;
    # a job whose worker died ends it as abandoned.
    response.timeout = None
    return response


def _event(name: str, record: JobRecord) -> bytes:
    data = json.dumps(record.to_json(), ensure_ascii=False)
    return f"event: {name}\ndata: {data}\n\n".encode()


def _progress_of(record: JobRecord) -> dict[str, Any]:
    # The heartbeat time moves every second; only real changes are sent.
    shown = record.to_json()
    del shown["updated_at"]
    return shown


async def _events(
    runner: JobRunner, record: JobRecord, keepalive: float
) -> AsyncIterator[bytes]:
    last: dict[str, Any] | None = None
    quiet_since = trio.current_time()
    while True:
        if _progress_of(record) != last:
            last = _progress_of(record)
            quiet_since = trio.current_time()
            if record.state in TERMINAL_STATES:
                yield _event("done", record)
                return
            yield _event("progress", record)
        elif trio.current_time() - quiet_since >= keepalive:
            quiet_since = trio.current_time()
            yield KEEPALIVE
        await trio.sleep(PROGRESS_POLL_SECONDS)
        try:
            current = await runner.store.get(record.id)
        except StorageUnavailable as exc:
            yield sse_error_event(ApiError(503, f"Storage is unavailable: {exc}"))
            return
        if current is None:
            yield sse_error_event(
                ApiError(404, "The job's records expired.", code="job_not_found")
            )
            return
        record = current
