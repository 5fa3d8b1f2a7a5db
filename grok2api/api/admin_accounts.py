"""Admin routes for one token's account settings (``/v1/admin/tokens/{id}/...``).

``PUT``/``DELETE .../birth-date`` record or forget the account holder's own
birth date, which the NSFW setting needs upstream; ``POST .../nsfw`` runs the
NSFW sequence (terms, birth date, NSFW flag) for that one token now. Batches
go through the jobs API (``api/admin_jobs.py``). The birth date is personal
data: it is validated, stored (sealed when ``security.secret_key`` is set)
and never echoed into a log line or an error.
"""

from __future__ import annotations

import datetime
import logging

from quart import Blueprint, Response

from grok2api.api.admin_tokens import token_not_found
from grok2api.api.http import json_response, read_json_body
from grok2api.errors import ApiError
from grok2api.gateway import current_gateway
from grok2api.jobs import BirthDates, parse_birth_date
from grok2api.jobs.operations import enable_nsfw

__all__ = ["admin_accounts"]

log = logging.getLogger(__name__)

admin_accounts = Blueprint(
    "admin_accounts", __name__, url_prefix="/v1/admin/tokens/<token_id>"
)


async def _existing(token_id: str) -> None:
    if await current_gateway().storage.get_token(token_id) is None:
        raise token_not_found(token_id)


@admin_accounts.put("/birth-date")
async def record_birth_date(token_id: str) -> Response:
    body = await read_json_body()
    if not isinstance(body, dict) or "birth_date" not in body:
        raise ApiError(
            400,
            'Send {"birth_date": "YYYY-MM-DD"}, the account holder\'s own.',
            param="birth_date",
        )
    try:
        born = parse_birth_date(body["birth_date"], datetime.date.today())
    except ValueError as exc:
        raise ApiError(
            400, f"{str(exc).capitalize()}.", code="invalid_value", param="birth_date"
        ) from None
    await _existing(token_id)
    await BirthDates(current_gateway().storage).put(token_id, born)
    log.info("birth date recorded token=%s", token_id)
    return json_response({"token_id": token_id, "birth_date_recorded": True})


@admin_accounts.delete("/birth-date")
async def forget_birth_date(token_id: str) -> Response:
    await _existing(token_id)
    forgotten = await BirthDates(current_gateway().storage).forget(token_id)
    if forgotten:
        log.info("birth date forgotten token=%s", token_id)
    return json_response({"token_id": token_id, "birth_date_recorded": False})


@admin_accounts.post("/nsfw")
async def enable_token_nsfw(token_id: str) -> Response:
    """Enable NSFW content for one token now; the answer is its result."""
    gateway = current_gateway()
    secrets = await gateway.storage.token_secrets([token_id])
    if token_id not in secrets:
        raise token_not_found(token_id)
    result = await enable_nsfw(gateway, token_id, secrets[token_id])
    return json_response(result.to_json())
