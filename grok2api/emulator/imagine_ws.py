"""The fake Imagine WebSocket, ``/ws/imagine/listen``.

The upgrade passes the same gate as the REST routes (scripted HTTP fault,
Cloudflare, account cookie, blocked flag; no ``x-statsig-id``, which the web
app does not send on sockets), and a refusal is an HTTP answer instead of
the ``101``. Each ``conversation.item.create`` message with an
``input_text`` part is one round, charged one query: every slot gets a
preview, a medium and a final ``image`` frame, interleaved as if they were
made side by side. ``imagine_format`` picks the frames:

* ``later`` (default): ``json`` ``start_stage`` / ``completed`` frames around
  each slot, ``percentage_complete`` on image frames, PNG blobs throughout;
* ``reference``: image frames only, the final one a JPEG under a ``.jpg``
  URL.

A round makes ``imagine_slots`` images (at most 4 when ``enable_pro`` asks
for the slower variant; capped by ``image_yield`` when set). Finals are
stored as the account's assets, like the chat path's images. A ``reset``
message is accepted and ignored. The socket stays open for further rounds
until the client closes it.

Faults for ``endpoint="imagine"``: every HTTP kind refuses the upgrade with
that answer; ``ws_rate_limit`` and ``ws_error`` send an ``error`` frame and
close; ``ws_moderated`` completes every slot as moderated (so does the
``moderate_images`` option); ``ws_blocked`` sends previews and mediums, then
nothing for ``seconds``; ``ws_stall`` only previews, then nothing.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from typing import Any

import trio
from quart import Response, websocket
from quart_trio import QuartTrio

from .assets import AssetStore
from .images import png_image
from .responses import (
    blocked_user,
    cloudflare_response,
    fault_response,
    invalid_credentials,
)
from .state import Account, EmulatorState, Fault, RequestRecord, token_id

__all__ = ["IMAGINE_PATH", "jpeg_image", "register_imagine"]

IMAGINE_PATH = "/ws/imagine/listen"
#: Raw bytes of a medium frame's PNG: its base64 passes the gateway's
#: default 30 000-character medium threshold.
MEDIUM_BYTES = 24_000
PRO_SLOTS = 4


def register_imagine(app: QuartTrio, state: EmulatorState, assets: AssetStore) -> None:
    """Serve the Imagine socket from ``app``; finals go into ``assets``."""

    async def listen() -> Response | None:
        return await _serve(state, assets)

    app.add_websocket("/ws/imagine/listen", "imagine_listen", listen)


# -- image bytes --------------------------------------------------------------


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def jpeg_image(label: str) -> bytes:
    """A valid 8x8 grey baseline JPEG whose comment segment holds ``label``.

    One Huffman code per table is enough: the only block has a zero DC
    difference and no AC coefficients.
    """
    one_code = bytes([1] + [0] * 15)
    frame = struct.pack(">BHHB", 8, 8, 8, 1) + bytes([1, 0x11, 0])
    scan = bytes([1, 1, 0x00, 0, 63, 0])
    return b"".join(
        (
            b"\xff\xd8",
            _segment(0xFE, label.encode()),
            _segment(0xDB, bytes([0]) + bytes([1] * 64)),
            _segment(0xC0, frame),
            _segment(0xC4, bytes([0x00]) + one_code + bytes([0])),
            _segment(0xC4, bytes([0x10]) + one_code + bytes([0])),
            _segment(0xDA, scan),
            # DC category 0 ("0"), end of block ("0"), padded with ones.
            b"\x3f",
            b"\xff\xd9",
        )
    )


def _medium_png(label: str) -> bytes:
    """A PNG padded with a text chunk to a medium frame's size."""
    small = png_image(label)
    padding = b"Comment\x00" + b"m" * MEDIUM_BYTES
    chunk = struct.pack(">I", len(padding)) + b"tEXt" + padding + b"\x00" * 4
    # Inserted before IEND (the last 12 bytes); the CRC is not checked by
    # anyone reading these frames.
    return small[:-12] + chunk + small[-12:]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- the route ----------------------------------------------------------------


async def _serve(state: EmulatorState, assets: AssetStore) -> Response | None:
    cookies = websocket.cookies
    token = cookies.get("sso") or ""
    tid = token_id(token) if token else None
    record = state.open_record(
        method="GET",
        path=IMAGINE_PATH,
        token_id=tid,
        body=None,
        user_agent=websocket.headers.get("user-agent"),
        statsig_present="x-statsig-id" in websocket.headers,
        cookie_names=sorted(cookies.keys()),
    )
    refusal = _refusal(state, record, token, tid)
    if refusal is not None:
        return refusal
    account = state.lookup(token)
    assert account is not None
    await websocket.accept()
    record.status = 101
    session = _Session()
    try:
        await _rounds(state, assets, record, account, session)
        session.between_rounds = True
    finally:
        # A client that closes after a whole round leaves normally.
        outcome = "completed" if session.between_rounds else "cancelled"
        state.close_record(record, outcome)
    return None


class _Session:
    """Whether the socket is waiting between rounds (or before the first)."""

    between_rounds = False


def _refusal(
    state: EmulatorState, record: RequestRecord, token: str, tid: str | None
) -> Response | None:
    account = state.lookup(token) if token else None
    fault = state.take_fault(tid, "imagine", stream=False)
    response: Response | None = None
    reason = ""
    if fault is not None:
        record.fault = fault.kind
        limits = account.rate_limits(_now()) if account is not None else None
        retry_after = account.retry_after(_now()) if account is not None else 60
        response = fault_response(fault.kind, limits, retry_after, None)
        reason = "fault:" + fault.kind
    elif state.config.require_cf_clearance and not _clearance_ok(state):
        response, reason = cloudflare_response(), "cloudflare"
    elif account is None or websocket.cookies.get("sso-rw") != token:
        response, reason = invalid_credentials(), "invalid-credentials"
    elif account.blocked:
        response, reason = blocked_user(), "blocked-user"
    if response is not None:
        state.close_record(
            record, "rejected", status=response.status_code, reason=reason
        )
    return response


def _now() -> float:
    return time.monotonic()


def _clearance_ok(state: EmulatorState) -> bool:
    clearance = websocket.cookies.get("cf_clearance")
    expected = state.config.cf_clearance
    return bool(clearance) and (expected is None or clearance == expected)


async def _rounds(
    state: EmulatorState,
    assets: AssetStore,
    record: RequestRecord,
    account: Account,
    session: _Session,
) -> None:
    while True:
        session.between_rounds = record.charged > 0
        raw = await websocket.receive()
        session.between_rounds = False
        message = _parse(raw)
        if message is None:
            continue
        record.body = message
        content = message["item"]["content"][0]
        if not account.charge(1, _now()):
            await _send(
                {
                    "type": "error",
                    "err_code": "rate_limit_exceeded",
                    "err_msg": "You have reached your image generation limit.",
                }
            )
            return
        record.charged += 1
        fault = state.take_fault(account.token_id, "imagine", stream=True)
        if fault is not None:
            record.fault = fault.kind
        if not await _round(state, assets, account, content, fault):
            return


def _parse(raw: Any) -> dict[str, Any] | None:
    """The message if it asks for images; None for a reset or anything else."""
    try:
        message = json.loads(raw)
        content = message["item"]["content"][0]
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    if message.get("type") != "conversation.item.create":
        return None
    if not isinstance(content, dict) or content.get("type") != "input_text":
        return None
    return message  # type: ignore[no-any-return]


async def _send(frame: dict[str, Any]) -> None:
    await websocket.send(json.dumps(frame, separators=(",", ":")))


async def _round(
    state: EmulatorState,
    assets: AssetStore,
    account: Account,
    content: dict[str, Any],
    fault: Fault | None,
) -> bool:
    """Play one round; False when the socket should close afterwards."""
    config = state.config
    kind = fault.kind if fault is not None else None
    if kind in ("ws_rate_limit", "ws_error"):
        limited = kind == "ws_rate_limit"
        assert fault is not None
        await _send(
            {
                "type": "error",
                "err_code": "rate_limit_exceeded" if limited else "internal_error",
                "err_msg": fault.message
                or ("Too many requests" if limited else "internal error"),
            }
        )
        return False
    properties = content.get("properties") or {}
    slots = config.imagine_slots
    if properties.get("enable_pro") is True:
        slots = min(slots, PRO_SLOTS)
    if config.image_yield:
        slots = min(slots, config.image_yield)
    ids = [str(uuid.uuid4()) for _ in range(slots)]
    later = config.imagine_format == "later" or kind == "ws_moderated"
    moderated = config.moderate_images or kind == "ws_moderated"
    folder = f"users/{account.user_id}/imagine/images"
    delay = config.line_delay

    async def frames(stage: str, percentage: int) -> None:
        for order, image_id in enumerate(ids):
            if delay:
                await trio.sleep(delay)
            frame: dict[str, Any] = {"type": "image"}
            if stage == "final" and not later:
                data, url = jpeg_image(image_id), f"{folder}/{image_id}.jpg"
            elif stage == "medium":
                data, url = _medium_png(image_id), f"{folder}/{image_id}.png"
            else:
                data, url = png_image(f"{image_id}:{stage}"), f"{folder}/{image_id}.png"
            if stage == "final":
                assets.put(
                    account.token,
                    url,
                    data,
                    "image/jpeg" if url.endswith(".jpg") else "image/png",
                )
            frame.update(url=url, blob=_b64(data))
            if later:
                frame.update(
                    image_id=image_id,
                    order=order,
                    percentage_complete=percentage,
                    width=1024,
                    height=1024,
                )
            await _send(frame)

    async def status(current: str, **extra: Any) -> None:
        for order, image_id in enumerate(ids):
            await _send(
                {
                    "type": "json",
                    "current_status": current,
                    "image_id": image_id,
                    "order": order,
                    "width": 1024,
                    "height": 1024,
                    **extra,
                }
            )

    if later:
        await status("start_stage")
    await frames("preview", 30)
    if kind == "ws_stall" or kind == "ws_blocked":
        assert fault is not None
        if kind == "ws_blocked":
            await frames("medium", 70)
        await trio.sleep(fault.seconds)
        return False
    if moderated:
        await status("completed", moderated=True, r_rated=False)
        return True
    await frames("medium", 70)
    await frames("final", 100)
    if later:
        await status("completed", moderated=False, r_rated=False)
    return True
