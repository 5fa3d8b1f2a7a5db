"""The fake account settings: terms of service, birth date, NSFW content.

Three routes, each admitted like the chat routes (request log, scripted
faults for its endpoint name, Cloudflare, anti-bot and credential checks):

* ``POST /auth_mgmt.AuthManagement/SetTosAcceptedVersion`` (endpoint
  ``accounts-tos``) -- gRPC-web; the real site serves it on
  ``accounts.x.ai``, the emulator on its one origin (point
  ``network.accounts_url`` at it). Answers "trailers-only": an empty body
  with ``grpc-status`` in the HTTP headers.
* ``POST /rest/auth/set-birth-date`` (``birth-date``) -- JSON
  ``{"birthDate": "YYYY-MM-DDThh:mm:ss.sssZ"}``; a second change is refused
  with 429 and the ``birth-date-change-limit-reached`` marker.
* ``POST /auth_mgmt.AuthManagement/UpdateUserFeatureControls`` (``nsfw``) --
  gRPC-web; sets ``always_show_nsfw_content``. Answers an empty data frame
  and a trailer frame. Before a birth date is set it answers gRPC status 9
  (FAILED_PRECONDITION) with a percent-encoded ``grpc-message``: the
  emulator's choice, so that a client skipping the birth date is noticed.

The gRPC bodies are logged as hex (``body.grpc_hex``) so tests can check the
exact bytes. A ``stall`` fault scripted for one of these endpoints holds the
answer back for its ``seconds``. ``GET /_emulator/account-settings`` lists
what each account has set; :class:`EmulatorAccountSettings` reads it.
"""

from __future__ import annotations

import datetime
import struct
import urllib.parse
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import attrs
import httpx
import trio
from quart import Blueprint, Response, request
from quart_trio import QuartTrio

from .responses import json_response
from .state import Account, EmulatorState, RequestRecord

__all__ = [
    "AccountSettings",
    "EmulatorAccountSettings",
    "NSFW_DISABLE",
    "NSFW_ENABLE",
    "TOS_ACCEPT",
    "register_accounts",
]

Admit = Callable[[str], Awaitable["tuple[RequestRecord, Account] | Response"]]
Reject = Callable[[RequestRecord, Response, str], Response]

GRPC_CONTENT_TYPE = "application/grpc-web+proto"
#: The protobuf messages the web app sends, byte for byte.
TOS_ACCEPT = b"\x10\x01"
_NSFW_MASK = b"\x12\x1a\x0a\x18always_show_nsfw_content"
NSFW_ENABLE = b"\x0a\x02\x10\x01" + _NSFW_MASK
NSFW_DISABLE = b"\x0a\x02\x10\x00" + _NSFW_MASK

BIRTH_DATE_LIMIT = (
    "[WKE=account:birth-date-change-limit-reached] The birth date can no "
    "longer be changed."
)
_INVALID_ARGUMENT = 3
_FAILED_PRECONDITION = 9


@attrs.define
class AccountSettings:
    """What one account has set."""

    token_id: str
    tos_accepted: bool = False
    birth_date: str | None = None
    always_show_nsfw_content: bool = False

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class _SettingsStore:
    def __init__(self) -> None:
        self.accounts: dict[str, AccountSettings] = {}

    def of(self, tid: str) -> AccountSettings:
        return self.accounts.setdefault(tid, AccountSettings(tid))


def _frames(body: bytes) -> list[tuple[int, bytes]] | None:
    frames, offset = [], 0
    while offset < len(body):
        if len(body) - offset < 5:
            return None
        flags, length = struct.unpack_from(">BI", body, offset)
        offset += 5
        if len(body) - offset < length:
            return None
        frames.append((flags, body[offset : offset + length]))
        offset += length
    return frames


def _grpc_answer(status: int, message: str = "", *, in_headers: bool) -> Response:
    encoded = urllib.parse.quote(message, safe=" ")
    if in_headers:
        headers = {"grpc-status": str(status)}
        if message:
            headers["grpc-message"] = encoded
        return Response(
            b"", status=200, headers=headers, content_type=GRPC_CONTENT_TYPE
        )
    trailer = f"grpc-status: {status}\r\n"
    if message:
        trailer += f"grpc-message: {encoded}\r\n"
    body = struct.pack(">BI", 0, 0) + struct.pack(">BI", 0x80, len(trailer))
    return Response(body + trailer.encode(), status=200, content_type=GRPC_CONTENT_TYPE)


class _AccountRoutes:
    def __init__(
        self, state: EmulatorState, store: _SettingsStore, admit: Admit, reject: Reject
    ) -> None:
        self.state = state
        self.store = store
        self.admit = admit
        self.reject = reject

    async def _admitted_grpc(
        self, endpoint: str
    ) -> tuple[RequestRecord, Account, bytes] | Response:
        admitted = await self.admit(endpoint)
        if isinstance(admitted, Response):
            return admitted
        record, account = admitted
        raw = await request.get_data()
        record.body = {"grpc_hex": raw.hex()}
        if request.mimetype != GRPC_CONTENT_TYPE:
            body = {"error": f"expected Content-Type {GRPC_CONTENT_TYPE}"}
            return self.reject(record, json_response(415, body), "bad-content-type")
        await self._stall(account, endpoint)
        return record, account, raw

    async def _stall(self, account: Account, endpoint: str) -> None:
        fault = self.state.take_fault(account.token_id, endpoint, stream=True)
        if fault is not None and fault.kind == "stall":
            await trio.sleep(fault.seconds)

    def _grpc_done(
        self,
        record: RequestRecord,
        status: int,
        message: str = "",
        *,
        in_headers: bool = False,
    ) -> Response:
        reason = None if status == 0 else f"grpc-status:{status}"
        self.state.close_record(record, "completed", status=200, reason=reason)
        return _grpc_answer(status, message, in_headers=in_headers)

    async def accept_tos(self) -> Response:
        admitted = await self._admitted_grpc("accounts-tos")
        if isinstance(admitted, Response):
            return admitted
        record, account, raw = admitted
        if _frames(raw) != [(0, TOS_ACCEPT)]:
            return self._grpc_done(
                record, _INVALID_ARGUMENT, "unexpected request", in_headers=True
            )
        self.store.of(account.token_id).tos_accepted = True
        return self._grpc_done(record, 0, in_headers=True)

    async def feature_controls(self) -> Response:
        admitted = await self._admitted_grpc("nsfw")
        if isinstance(admitted, Response):
            return admitted
        record, account, raw = admitted
        frames = _frames(raw)
        if frames not in ([(0, NSFW_ENABLE)], [(0, NSFW_DISABLE)]):
            return self._grpc_done(record, _INVALID_ARGUMENT, "unexpected request")
        settings = self.store.of(account.token_id)
        if settings.birth_date is None:
            return self._grpc_done(
                record,
                _FAILED_PRECONDITION,
                "birth date required: set it first (18+ only)",
            )
        settings.always_show_nsfw_content = frames == [(0, NSFW_ENABLE)]
        return self._grpc_done(record, 0)

    async def set_birth_date(self) -> Response:
        admitted = await self.admit("birth-date")
        if isinstance(admitted, Response):
            return admitted
        record, account = admitted
        await self._stall(account, "birth-date")
        body = record.body if isinstance(record.body, dict) else {}
        value = body.get("birthDate")
        try:
            moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            error = {"error": {"code": 3, "message": "birthDate must be ISO 8601"}}
            return self.reject(record, json_response(400, error), "bad-request")
        settings = self.store.of(account.token_id)
        if settings.birth_date is not None:
            error = {"error": {"code": 8, "message": BIRTH_DATE_LIMIT}}
            return self.reject(record, json_response(429, error), "birth-date-set")
        settings.birth_date = moment.date().isoformat()
        self.state.close_record(record, "completed", status=200)
        return json_response(200, {})


def register_accounts(
    app: QuartTrio, state: EmulatorState, admit: Admit, reject: Reject
) -> None:
    """Serve the account settings routes and their control route."""
    store = _SettingsStore()
    routes = _AccountRoutes(state, store, admit, reject)
    app.add_url_rule(
        "/auth_mgmt.AuthManagement/SetTosAcceptedVersion",
        "accept_tos",
        routes.accept_tos,
        methods=["POST"],
    )
    app.add_url_rule(
        "/auth_mgmt.AuthManagement/UpdateUserFeatureControls",
        "feature_controls",
        routes.feature_controls,
        methods=["POST"],
    )
    app.add_url_rule(
        "/rest/auth/set-birth-date",
        "set_birth_date",
        routes.set_birth_date,
        methods=["POST"],
    )
    control = Blueprint("emulator_accounts", __name__, url_prefix="/_emulator")

    @control.get("/account-settings")
    async def account_settings() -> Response:
        return json_response(200, [s.to_json() for s in store.accounts.values()])

    app.register_blueprint(control)

    @app.before_request
    async def forget_on_reset() -> None:
        if request.endpoint == "emulator_control.reset":
            store.accounts.clear()


class EmulatorAccountSettings:
    """Read what accounts of a running emulator have set.

    Args:
        base_url: the emulator's root, e.g. ``http://127.0.0.1:8765``.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/_emulator", timeout=timeout
        )

    def all(self) -> dict[str, dict[str, Any]]:
        """Every account's settings, keyed by token id."""
        response = self._http.get("/account-settings")
        response.raise_for_status()
        return {item["token_id"]: item for item in response.json()}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EmulatorAccountSettings:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
