"""The JSON control API under ``/_emulator/`` that tests use to steer the fake.

Routes (bodies and answers are JSON; tokens are never echoed, only token ids):

* ``GET /health`` -- ``{"ok": true}``.
* ``GET``/``POST /config`` -- read or partly change the global options.
* ``GET``/``POST /accounts`` -- list accounts, or add/replace one from
  ``token``, ``pool``, ``quota``, ``remaining``, ``window_seconds``,
  ``blocked``; ``DELETE /accounts/<token_id>`` removes one.
* ``GET``/``POST``/``DELETE /faults`` -- list, script (``kind``, ``token``,
  ``times``, ``endpoint``, ``after_tokens``, ``code``, ``message``,
  ``seconds``, ``abort``, ``remaining``) or clear faults;
  ``DELETE /faults/<id>`` clears one. ``endpoint`` is ``chat`` (the
  default, ``conversations/new``), ``continue`` (replies to a
  conversation), ``upload``, ``rate-limits``, ``asset`` (downloads from
  the assets host), the media calls (``media-post``, ``upscale``,
  ``assets-list``, ``assets-delete``, ``livekit``; see ``media_rest.py``),
  ``imagine`` (the WebSocket, ``imagine_ws.py``), the account settings
  calls (``accounts-tos``, ``birth-date``, ``nsfw``; ``accounts.py``) or
  ``any``.
* ``GET``/``DELETE /conversations`` -- the conversations replies can go to
  (id, owner's token id, response ids), or forget them all;
  ``DELETE /conversations/<id>`` forgets one, as if it expired upstream.
* ``GET /requests`` -- the log, filtered by ``token_id`` and ``path``; with
  ``min_count`` / ``settled`` it waits up to ``timeout`` seconds and answers
  504 if the log does not get there. ``DELETE /requests`` empties it.
* ``GET /uploads`` and ``GET /uploads/<id>`` -- stored uploads, base64.
* ``POST /reset`` -- forget everything, default options.
"""

from __future__ import annotations

import base64
from typing import Any

import trio
from quart import Blueprint, Response, request

from .responses import json_response
from .state import EmulatorState, RequestRecord, Upload

__all__ = ["control_blueprint"]

_ACCOUNT_KEYS = frozenset(
    {"token", "pool", "quota", "remaining", "window_seconds", "blocked"}
)


def _upload_json(upload: Upload) -> dict[str, Any]:
    return {
        "fileMetadataId": upload.file_id,
        "fileUri": upload.file_uri,
        "fileName": upload.file_name,
        "fileMimeType": upload.mime_type,
        "token_id": upload.token_id,
        "size": len(upload.data),
        "content": base64.b64encode(upload.data).decode(),
    }


def _error(message: str, status: int = 400) -> Response:
    return json_response(status, {"error": message})


def _no_content() -> Response:
    return Response(b"", status=204)


async def _json_object() -> dict[str, Any]:
    body = await request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


def control_blueprint(state: EmulatorState) -> Blueprint:
    """The control routes bound to ``state``."""
    bp = Blueprint("emulator_control", __name__, url_prefix="/_emulator")

    @bp.errorhandler(ValueError)
    @bp.errorhandler(TypeError)
    async def bad_input(error: Exception) -> Response:
        return _error(str(error))

    @bp.get("/health")
    async def health() -> Response:
        return json_response(200, {"ok": True})

    @bp.route("/config", methods=["GET", "POST"])
    async def config() -> Response:
        if request.method == "POST":
            state.configure(await _json_object())
        return json_response(200, state.config.to_json())

    @bp.get("/accounts")
    async def list_accounts() -> Response:
        return json_response(200, [a.to_json() for a in state.accounts.values()])

    @bp.post("/accounts")
    async def add_account() -> Response:
        body = await _json_object()
        unknown = sorted(set(body) - _ACCOUNT_KEYS)
        if unknown:
            return _error(f"unknown account field(s): {', '.join(unknown)}")
        token = body.pop("token", None)
        if not isinstance(token, str):
            return _error("token must be a string")
        return json_response(200, state.add_account(token, **body).to_json())

    @bp.delete("/accounts/<tid>")
    async def remove_account(tid: str) -> Response:
        if state.remove_account(tid):
            return _no_content()
        return _error(f"no account with token_id {tid}", 404)

    @bp.route("/faults", methods=["GET", "POST", "DELETE"])
    async def faults() -> Response:
        if request.method == "DELETE":
            state.clear_faults()
            return _no_content()
        if request.method == "POST":
            body = await _json_object()
            kind = body.pop("kind", None)
            if not isinstance(kind, str):
                return _error("kind must be a string")
            return json_response(200, state.add_fault(kind, **body).to_json())
        return json_response(200, [f.to_json() for f in state.faults])

    @bp.delete("/faults/<int:fault_id>")
    async def remove_fault(fault_id: int) -> Response:
        state.clear_faults(fault_id)
        return _no_content()

    @bp.route("/conversations", methods=["GET", "DELETE"])
    async def conversations() -> Response:
        if request.method == "DELETE":
            state.forget_conversations()
            return _no_content()
        return json_response(200, [c.to_json() for c in state.conversations.values()])

    @bp.delete("/conversations/<conversation_id>")
    async def forget_conversation(conversation_id: str) -> Response:
        if state.forget_conversations(conversation_id):
            return _no_content()
        return _error(f"no conversation {conversation_id}", 404)

    @bp.route("/requests", methods=["GET", "DELETE"])
    async def requests() -> Response:
        if request.method == "DELETE":
            state.log.clear()
            return _no_content()
        args = request.args
        tid, path = args.get("token_id"), args.get("path")
        min_count = int(args.get("min_count", 0))
        settled = args.get("settled", "").lower() in ("1", "true", "yes")
        timeout = float(args.get("timeout", 5.0))

        def selected() -> list[RequestRecord]:
            return [
                r
                for r in state.log
                if (tid is None or r.token_id == tid)
                and (path is None or r.path == path)
            ]

        def ready() -> bool:
            records = selected()
            return len(records) >= min_count and not (
                settled and any(r.outcome == "pending" for r in records)
            )

        with trio.move_on_after(timeout):
            await state.wait_until(ready)
        if not ready():
            return _error(
                f"timed out after {timeout} s waiting for {min_count} request(s)"
                + (" to settle" if settled else ""),
                504,
            )
        return json_response(200, {"requests": [r.to_json() for r in selected()]})

    @bp.get("/uploads")
    async def list_uploads() -> Response:
        return json_response(200, [_upload_json(u) for u in state.uploads.values()])

    @bp.get("/uploads/<file_id>")
    async def get_upload(file_id: str) -> Response:
        upload = state.uploads.get(file_id)
        if upload is None:
            return _error(f"no upload {file_id}", 404)
        return json_response(200, _upload_json(upload))

    @bp.post("/reset")
    async def reset() -> Response:
        state.reset()
        return _no_content()

    return bp
