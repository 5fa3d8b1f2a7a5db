"""Account settings the media features need: terms, birth date, NSFW content.

Three calls, in the order the web app makes them when an account first asks
for NSFW content: accept the terms of service (gRPC-web on the accounts
host), set the account holder's birth date (REST on grok.com), and switch on
``always_show_nsfw_content`` (gRPC-web on grok.com). Each goes through the
:class:`~grok2api.upstream.client.UpstreamClient` (its transport, the token's
egress, headers) and fails with an already classified
:class:`~grok2api.errors.UpstreamError`.
"""

from __future__ import annotations

import datetime

import trio

from grok2api.errors import UpstreamTimeout
from grok2api.upstream.classify import BODY_INSPECT_LIMIT, classify_response
from grok2api.upstream.client import UpstreamClient
from grok2api.upstream.grpc_web import (
    CONTENT_TYPE,
    GrpcReply,
    data_frame,
    grpc_error,
    length_field,
    parse_reply,
    varint_field,
)
from grok2api.upstream.headers import rest_headers

__all__ = [
    "BIRTH_DATE_LIMIT_MARKER",
    "BIRTH_DATE_PATH",
    "NSFW_PATH",
    "NSFW_REQUEST",
    "TOS_PATH",
    "TOS_REQUEST",
    "accept_terms",
    "enable_nsfw_content",
    "set_birth_date",
]

TOS_PATH = "/auth_mgmt.AuthManagement/SetTosAcceptedVersion"
NSFW_PATH = "/auth_mgmt.AuthManagement/UpdateUserFeatureControls"
BIRTH_DATE_PATH = "/rest/auth/set-birth-date"
#: In a 429 to the birth date call: the date is already set and the upstream
#: allows no further change. For us that is success: there is a date.
BIRTH_DATE_LIMIT_MARKER = "birth-date-change-limit-reached"

#: Field 2 (the accepted version) = 1.
TOS_REQUEST = varint_field(2, 1)
#: Field 1, the feature controls with field 2 (the NSFW flag) = true; field
#: 2, the update mask naming that one path.
NSFW_REQUEST = length_field(1, varint_field(2, 1)) + length_field(
    2, length_field(1, b"always_show_nsfw_content")
)

_GRPC_HEADERS = {"x-grpc-web": "1", "x-user-agent": "connect-es/2.1.1"}
#: gRPC-web answers to these calls are a few bytes; anything bigger is wrong.
_MAX_REPLY_BYTES = 64 * 1024


async def accept_terms(client: UpstreamClient, secret: str, accounts_url: str) -> None:
    """Accept the current terms of service for the token's account.

    Args:
        client: sends the call.
        secret: the token.
        accounts_url: the accounts host (``network.accounts_url``).

    Raises:
        UpstreamError: the call was refused, or its gRPC status is not OK.
    """
    origin = accounts_url.rstrip("/")
    headers = rest_headers(
        secret,
        client.options,
        origin=origin,
        referer=origin + "/accept-tos",
        content_type=CONTENT_TYPE,
    )
    headers.update(_GRPC_HEADERS)
    await _grpc_call(client, secret, origin + TOS_PATH, TOS_PATH, headers, TOS_REQUEST)


async def set_birth_date(
    client: UpstreamClient, secret: str, birth_date: datetime.date
) -> bool:
    """Send the account holder's birth date.

    The date goes at noon UTC, which is the same calendar day in every time
    zone from UTC-12 to UTC+11, whatever zone the upstream reads it in.

    Returns:
        True when the date was set now, False when the account already had
        one (the upstream refuses a second change).

    Raises:
        UpstreamError: the call was refused for another reason.
    """
    options = client.options
    body = {"birthDate": f"{birth_date.isoformat()}T12:00:00.000Z"}
    headers = rest_headers(secret, options)
    url = options.base_url.rstrip("/") + BIRTH_DATE_PATH
    timeout = options.request_timeout
    outcome: bool | None = None
    with trio.move_on_after(timeout):
        async with client.open_call(
            secret, url, headers, logged_path=BIRTH_DATE_PATH, json=body
        ) as response:
            if response.status in (200, 204):
                outcome = True
            else:
                text = await response.aread(BODY_INSPECT_LIMIT)
                if response.status == 429 and BIRTH_DATE_LIMIT_MARKER.encode() in text:
                    outcome = False
                else:
                    raise classify_response(response.status, response.headers, text)
    if outcome is None:
        raise _timed_out(BIRTH_DATE_PATH, timeout)
    return outcome


async def enable_nsfw_content(client: UpstreamClient, secret: str) -> None:
    """Switch on ``always_show_nsfw_content`` for the token's account.

    Raises:
        UpstreamError: the call was refused, or its gRPC status is not OK.
    """
    options = client.options
    origin = options.base_url.rstrip("/")
    headers = rest_headers(
        secret,
        options,
        origin=origin,
        referer=origin + "/?_s=data",
        content_type=CONTENT_TYPE,
    )
    headers.update(_GRPC_HEADERS)
    await _grpc_call(
        client, secret, origin + NSFW_PATH, NSFW_PATH, headers, NSFW_REQUEST
    )


async def _grpc_call(
    client: UpstreamClient,
    secret: str,
    url: str,
    path: str,
    headers: dict[str, str],
    message: bytes,
) -> GrpcReply:
    timeout = client.options.request_timeout
    reply: GrpcReply | None = None
    with trio.move_on_after(timeout):
        async with client.open_call(
            secret, url, headers, logged_path=path, content=data_frame(message)
        ) as response:
            if response.status != 200:
                body = await response.aread(BODY_INSPECT_LIMIT)
                raise classify_response(response.status, response.headers, body)
            reply = parse_reply(
                response.headers, await response.aread(_MAX_REPLY_BYTES)
            )
    if reply is None:
        raise _timed_out(path, timeout)
    if not reply.ok:
        raise grpc_error(reply, path.rsplit("/", 1)[-1])
    return reply


def _timed_out(path: str, timeout: float) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"Grok did not answer {path} within {timeout:g}s (network.timeout)."
    )
