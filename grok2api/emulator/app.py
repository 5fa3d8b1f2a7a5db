"""The fake grok.com: the ``/rest`` routes the gateway's chat path calls.

Every request passes the same gate, in the order the real site's layers sit:
scripted HTTP fault, Cloudflare (``cf_clearance``), the anti-bot check
(``x-statsig-id``), the account (``sso`` / ``sso-rw``), the blocked flag.
Then the endpoint's own work runs; for a chat that is the quota charge and the
NDJSON stream. A reply to an existing conversation
(``conversations/<id>/responses``) must come from the account that opened it
and name one of its responses as ``parentResponseId``.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import trio
from quart import Response, current_app, request
from quart_trio import QuartTrio

from .accounts import register_accounts
from .assets import AssetStore, register_assets
from .control import control_blueprint
from .edits import build_edit_answer, edit_request_problem, wants_edit
from .images import (
    build_chat_image_script,
    build_image_script,
    chat_image_request,
    wants_images,
)
from .imagine_ws import register_imagine
from .media_rest import register_media_rest
from .responses import (
    ANTI_BOT_BODY,
    blocked_user,
    cloudflare_response,
    fault_response,
    invalid_credentials,
    json_response,
    quota_exhausted,
)
from .script import (
    ChatScript,
    build_script,
    chat_cost,
    error_line,
    is_thinking_request,
)
from .state import (
    Account,
    Conversation,
    EmulatorState,
    Fault,
    RequestRecord,
    Upload,
    token_id,
)
from .video import (
    VIDEO_FAULT_KINDS,
    build_video_answer,
    video_fault_lines,
    video_request_problem,
    wants_video,
)

__all__ = ["StreamAborted", "create_app"]

_Admitted = tuple[RequestRecord, Account] | Response

#: The log records opened while serving the current ASGI request.
_records_of_request: contextvars.ContextVar[list[RequestRecord]] = (
    contextvars.ContextVar("records_of_request")
)


class StreamAborted(Exception):
    """Raised inside a ``cut`` stream with ``abort`` to drop the connection.

    Hypercorn closes the connection without finishing the chunked body when
    the app fails mid-response, which is exactly the abrupt cut we want. The
    server's logger filters this exception out of its error log.
    """


def create_app(state: EmulatorState | None = None) -> QuartTrio:
    """Build the emulator app.

    Args:
        state: what the app serves and records; a fresh one if omitted. It is
            reachable afterwards as ``app.extensions["grok_emulator"]``.

    Returns:
        a Quart-Trio app; serve it with Hypercorn's Trio worker, or use
        :func:`serve_emulator`.
    """
    state = state if state is not None else EmulatorState()
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024
    app.extensions["grok_emulator"] = state
    routes = _UpstreamRoutes(state, AssetStore())
    register_media_rest(app, state, routes.assets, routes._admit, routes._reject)
    register_accounts(app, state, routes._admit, routes._reject)
    app.add_url_rule(
        "/rest/app-chat/conversations/new",
        "new_conversation",
        routes.new_conversation,
        methods=["POST"],
    )
    app.add_url_rule(
        "/rest/app-chat/conversations/<conversation_id>/responses",
        "continue_conversation",
        routes.continue_conversation,
        methods=["POST"],
    )
    app.add_url_rule(
        "/rest/app-chat/upload-file",
        "upload_file",
        routes.upload_file,
        methods=["POST"],
    )
    app.add_url_rule(
        "/rest/rate-limits", "rate_limits", routes.rate_limits, methods=["POST"]
    )
    app.add_url_rule(
        "/rest/<path:rest>",
        "unknown_rest",
        routes.unknown,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    )
    app.register_blueprint(control_blueprint(state))
    register_assets(app, state, routes.assets)
    register_imagine(app, state, routes.assets)
    app.asgi_app = _CloseAbandonedRecords(app.asgi_app, state)  # type: ignore[method-assign]
    return app


class _CloseAbandonedRecords:
    """ASGI middleware: no log record stays ``pending`` after its request ends.

    The stream generator records its own ending, but a client that leaves
    before Quart starts iterating the body (while the response head is being
    sent) means the generator never runs, so its ``finally`` never does
    either. Those records are closed here as cancelled.
    """

    def __init__(self, asgi_app: Any, state: EmulatorState) -> None:
        self.asgi_app = asgi_app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.asgi_app(scope, receive, send)
            return
        records: list[RequestRecord] = []
        reset = _records_of_request.set(records)
        try:
            await self.asgi_app(scope, receive, send)
        finally:
            _records_of_request.reset(reset)
            for record in records:
                if record.outcome == "pending":
                    self.state.close_record(record, "cancelled")


def _statsig_ok(value: str | None, prefixes: tuple[str, ...]) -> bool:
    if not value:
        return False
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        text = decoded.decode()
    except (binascii.Error, ValueError):
        return False
    return text.startswith(prefixes)


class _UpstreamRoutes:
    def __init__(self, state: EmulatorState, assets: AssetStore) -> None:
        self.state = state
        #: Where image answers put the files their URLs point at.
        self.assets = assets

    def _reject(
        self,
        record: RequestRecord,
        response: Response,
        reason: str,
    ) -> Response:
        self.state.close_record(
            record, "rejected", status=response.status_code, reason=reason
        )
        return response

    async def _admit(self, endpoint: str) -> _Admitted:
        """Log the request and run the shared checks.

        Returns:
            the log record and the account, or the refusal to send back.
        """
        state, config = self.state, self.state.config
        cookies = request.cookies
        headers = request.headers
        token = cookies.get("sso") or ""
        tid = token_id(token) if token else None
        statsig = headers.get("x-statsig-id")
        body = await request.get_json(force=True, silent=True)
        record = state.open_record(
            method=request.method,
            path=request.path,
            token_id=tid,
            body=body,
            user_agent=headers.get("user-agent"),
            statsig_present=statsig is not None,
            cookie_names=sorted(cookies.keys()),
        )
        _records_of_request.get([]).append(record)
        account = state.lookup(token) if token else None

        fault = state.take_fault(tid, endpoint, stream=False)
        if fault is not None:
            record.fault = fault.kind
            return self._fault(record, fault, account)
        if config.require_cf_clearance:
            clearance = cookies.get("cf_clearance")
            expected = config.cf_clearance
            if not clearance or (expected is not None and clearance != expected):
                return self._reject(record, cloudflare_response(), "cloudflare")
        if config.require_statsig and not _statsig_ok(statsig, config.statsig_prefixes):
            return self._reject(record, json_response(403, ANTI_BOT_BODY), "anti-bot")
        if account is None or cookies.get("sso-rw") != token:
            return self._reject(record, invalid_credentials(), "invalid-credentials")
        if account.blocked:
            return self._reject(record, blocked_user(), "blocked-user")
        return record, account

    def _fault(
        self, record: RequestRecord, fault: Fault, account: Account | None
    ) -> Response:
        now = time.monotonic()
        limits = account.rate_limits(now) if account is not None else None
        retry_after = account.retry_after(now) if account is not None else 60
        response = fault_response(fault.kind, limits, retry_after, fault.remaining)
        return self._reject(record, response, "fault:" + fault.kind)

    # -- endpoints -----------------------------------------------------------

    async def rate_limits(self) -> Response:
        admitted = await self._admit("rate-limits")
        if isinstance(admitted, Response):
            return admitted
        record, account = admitted
        self.state.close_record(record, "completed", status=200)
        return json_response(200, account.rate_limits(time.monotonic()))

    async def unknown(self, rest: str) -> Response:
        admitted = await self._admit("other")
        if isinstance(admitted, Response):
            return admitted
        record, _account = admitted
        body = {"error": {"code": 5, "message": f"no such endpoint: /rest/{rest}"}}
        return self._reject(record, json_response(404, body), "not-found")

    async def upload_file(self) -> Response:
        admitted = await self._admit("upload")
        if isinstance(admitted, Response):
            return admitted
        record, account = admitted
        body = record.body
        fields = ("fileName", "fileMimeType", "content")
        if not isinstance(body, dict) or not all(
            isinstance(body.get(name), str) for name in fields
        ):
            return self._bad_request(record, "fileName, fileMimeType and content")
        try:
            data = base64.b64decode(body["content"], validate=True)
        except (binascii.Error, ValueError):
            return self._bad_request(record, "content as plain base64")

        file_id = str(uuid.uuid4())
        upload = Upload(
            file_id=file_id,
            token_id=account.token_id,
            file_name=body["fileName"],
            mime_type=body["fileMimeType"],
            data=data,
            file_uri=f"users/{account.user_id}/{file_id}/content",
        )
        self.state.uploads[file_id] = upload
        # The log keeps the body; drop the base64 so big uploads do not pile up.
        record.body = {**body, "content": f"<{len(data)} bytes>"}
        self.state.close_record(record, "completed", status=200)
        return json_response(
            200, {"fileMetadataId": file_id, "fileUri": upload.file_uri}
        )

    def _bad_request(self, record: RequestRecord, wanted: str) -> Response:
        body = {"error": {"code": 3, "message": f"invalid request: expected {wanted}"}}
        return self._reject(record, json_response(400, body), "bad-request")

    async def new_conversation(self) -> Response:
        admitted = await self._admit("chat")
        if isinstance(admitted, Response):
            return admitted
        record, account = admitted
        return self._answer(record, account, None)

    async def continue_conversation(self, conversation_id: str) -> Response:
        admitted = await self._admit("continue")
        if isinstance(admitted, Response):
            return admitted
        record, account = admitted
        # Another account's conversation is as unknown as a missing one.
        conversation = self.state.conversation(conversation_id, account.token_id)
        if conversation is None:
            error = {"error": {"code": 5, "message": "conversation not found"}}
            return self._reject(record, json_response(404, error), "not-found")
        body = record.body if isinstance(record.body, dict) else {}
        parent = body.get("parentResponseId")
        if not isinstance(parent, str) or parent not in conversation.response_ids:
            return self._bad_request(
                record, "a parentResponseId from this conversation"
            )
        return self._answer(record, account, conversation)

    def _answer(
        self,
        record: RequestRecord,
        account: Account,
        conversation: Conversation | None,
    ) -> Response:
        """Charge and stream a chat answer, in ``conversation`` or a new one."""
        body = record.body
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            return self._bad_request(record, "a JSON object with a string message")
        file_names = self._attachment_names(account, body.get("fileAttachments"))
        if file_names is None:
            return self._bad_request(
                record, "fileAttachments from this account's uploads"
            )
        video = wants_video(body) and conversation is None
        if video:
            posts = current_app.extensions["grok_emulator_posts"]
            problem = video_request_problem(
                body, lambda post: posts.owned(post, account.token_id) is not None
            )
            if problem is not None:
                return self._bad_request(record, problem)
        try:
            chat_images = chat_image_request(body)
        except ValueError as exc:
            return self._bad_request(record, f"a valid image directive ({exc})")
        edit = wants_edit(body) and conversation is None
        if edit:
            problem = edit_request_problem(
                body,
                account.token_id,
                host_url=request.host_url,
                uploads=self.state.uploads,
                assets=self.assets,
                posts=current_app.extensions["grok_emulator_posts"],
            )
            if problem is not None:
                return self._bad_request(record, problem)

        now = time.monotonic()
        record.charged = account.charge(chat_cost(body), now)
        if record.charged == 0:
            response = quota_exhausted(
                account.rate_limits(now), account.retry_after(now)
            )
            return self._reject(record, response, "quota")

        state, config = self.state, self.state.config
        if video:
            answer = build_video_answer(
                body,
                user_id=account.user_id,
                pool=account.pool,
                model_hash=config.model_hash,
            )
            for path, data, content_type in answer.files:
                self.assets.put(account.token, path, data, content_type)
            script = answer.script
        elif edit:
            # The directive's format=card switches an edit to image cards too.
            images = build_edit_answer(
                body,
                user_id=account.user_id,
                model_hash=config.model_hash,
                image_yield=config.image_yield,
                moderated=config.moderate_images,
                cards=chat_images is not None and chat_images.card,
            )
            for path, data in images.files:
                self.assets.put(account.token, path, data, "image/png")
            script = images.script
        elif wants_images(body) and conversation is None:
            images = build_image_script(
                body,
                user_id=account.user_id,
                model_hash=config.model_hash,
                image_yield=config.image_yield,
                moderated=config.moderate_images,
            )
            for path, data in images.files:
                self.assets.put(account.token, path, data, "image/png")
            script = images.script
        elif chat_images is not None:
            images = build_chat_image_script(
                body,
                chat_images,
                user_id=account.user_id,
                model_hash=config.model_hash,
                thinking=config.thinking_tokens if is_thinking_request(body) else 0,
                conversation_id=conversation.conversation_id if conversation else None,
            )
            for path, data in images.files:
                self.assets.put(account.token, path, data, "image/png")
            script = images.script
        else:
            script = build_script(
                body["message"],
                thinking=config.thinking_tokens if is_thinking_request(body) else 0,
                answer=config.answer_tokens,
                model_hash=config.model_hash,
                file_names=file_names,
                scripted_answer=config.scripted_answer,
                conversation_id=conversation.conversation_id if conversation else None,
            )
        record.conversation_id = script.conversation_id
        record.response_id = script.response_id
        record.status = 200
        turn = (script.user_response_id, script.response_id)
        if conversation is None:
            state.open_conversation(script.conversation_id, account.token_id, turn)
        else:
            conversation.response_ids.extend(turn)
        endpoint = "chat" if conversation is None else "continue"
        fault = state.take_fault(account.token_id, endpoint, stream=True)
        if fault is not None:
            record.fault = fault.kind
        lines, stall, abort = _plan(script, fault)
        response = Response(
            self._stream(record, lines, config.line_delay, stall, abort),
            status=200,
            content_type="application/x-ndjson",
        )
        # Quart would otherwise cut long streams (stalls) after 60 s and we
        # could not tell that from a client disconnect.
        response.timeout = None
        return response

    def _attachment_names(self, account: Account, ids: Any) -> list[str] | None:
        if not ids:
            return []
        if not isinstance(ids, list):
            return None
        names = []
        for file_id in ids:
            upload = (
                self.state.uploads.get(file_id) if isinstance(file_id, str) else None
            )
            if upload is None or upload.token_id != account.token_id:
                return None
            names.append(upload.file_name)
        return names

    async def _stream(
        self,
        record: RequestRecord,
        lines: list[bytes],
        delay: float,
        stall: float | None,
        abort: bool,
    ) -> AsyncIterator[bytes]:
        # A client disconnect cancels the task that drives this generator:
        # either a trio.Cancelled arrives at one of our sleeps, or Quart closes
        # the generator (GeneratorExit at the yield). Both skip the line that
        # sets `finished`, so the finally clause can tell the two endings apart.
        finished = False
        try:
            if delay:
                for index, line in enumerate(lines):
                    if index:
                        await trio.sleep(delay)
                    yield line
            else:
                yield b"".join(lines)
            if stall is not None:
                await trio.sleep(stall)
            finished = True
            if abort:
                raise StreamAborted("scripted cut")
        finally:
            self.state.close_record(record, "completed" if finished else "cancelled")


def _plan(
    script: ChatScript, fault: Fault | None
) -> tuple[list[bytes], float | None, bool]:
    """The lines to send for ``fault``, the stall length and the abort flag."""
    if fault is None:
        return script.full(), None, False
    kind = fault.kind
    if kind in VIDEO_FAULT_KINDS:
        return video_fault_lines(script, kind), None, False
    head = [*script.preamble, *script.tokens[: fault.after_tokens]]
    if kind.startswith("inband_error"):
        internal = kind == "inband_error_internal"
        line = error_line(
            fault.code or (13 if internal else 8),
            fault.message or ("internal error" if internal else "Too many requests"),
        )
        return ([*head, line] if kind.endswith("after_tokens") else [line]), None, False
    if kind == "stall":
        return head, fault.seconds, False
    # "cut": half of the line that would have come next, then the end.
    rest = [*script.tokens[fault.after_tokens :], *script.closing]
    return [*head, rest[0][: len(rest[0]) // 2]], None, fault.abort
