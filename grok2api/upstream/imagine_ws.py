"""The Imagine WebSocket: image generation on ``/ws/imagine/listen``.

One socket makes one round of images. The client upgrades an HTTP/1.1
request (httpcore, through the same egress as every other call of the
token), sends one ``conversation.item.create`` message with the prompt and
its properties, and reads ``image`` frames that repeat each image with
growing quality: preview, medium, final. Later servers add ``json`` status
frames (``start_stage`` opens a slot, ``completed`` closes it with the
moderation verdict) and ``percentage_complete`` on image frames; both forms
are understood.

A round ends when it has the images it wanted, when every started slot is
completed, after ``settle_seconds`` of silence following a final image, or
when the server closes. Medium quality without a final within
``blocked_seconds`` is the upstream's quiet way of refusing the image
(*blocked*); ``completed`` with ``moderated`` is the loud one. Both are
reported in the result, never as images. Upgrade refusals and ``error``
frames are classified like any other upstream failure
(:mod:`grok2api.upstream.classify`).

The socket speaks Python TLS, not a browser's, as the reference client did;
behind a strict Cloudflare front the upgrade may be refused (403), and the
caller falls back to the chat path.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import logging
import secrets
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpcore
import trio
import wsproto.utilities
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Ping, TextMessage

from grok2api.errors import (
    EgressBlocked,
    FailureKind,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from grok2api.proxies import EgressPurpose
from grok2api.upstream.classify import (
    BODY_INSPECT_LIMIT,
    classify_response,
    classify_stream_error,
)
from grok2api.upstream.client import UpstreamClient
from grok2api.upstream.headers import ACCEPT_LANGUAGE, client_hints, sso_cookie

__all__ = [
    "IMAGINE_PATH",
    "ImageStage",
    "ImagineFrame",
    "ImagineLimits",
    "ImagineProgress",
    "ImagineRequest",
    "ImagineResult",
    "generate_over_socket",
]

log = logging.getLogger(__name__)

IMAGINE_PATH = "/ws/imagine/listen"
#: The largest text message accepted; a final image is a few MB of base64.
MAX_MESSAGE_CHARS = 32 * 1024 * 1024
#: How long closing the socket may take, shielded.
CLOSE_GRACE = 1.0

_READ_SIZE = 64 * 1024
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_JPEG_SUFFIXES = (".jpg", ".jpeg")
_NETWORK_ERRORS = (
    httpcore.NetworkError,
    httpcore.TimeoutException,
    httpcore.ProtocolError,
    wsproto.utilities.LocalProtocolError,
    wsproto.utilities.RemoteProtocolError,
)


class ImageStage(enum.IntEnum):
    """How far an image frame is; a final frame is the image itself."""

    PREVIEW = 0
    MEDIUM = 1
    FINAL = 2


@attrs.frozen
class ImagineRequest:
    """What one socket is asked to make.

    ``aspect_ratio`` is one of the upstream's ratios (``1:1``, ``2:3``,
    ``3:2``, ``16:9``, ``9:16``, ``auto``); ``enable_pro`` asks for the
    slower higher-quality variant.
    """

    prompt: str
    aspect_ratio: str = "1:1"
    enable_nsfw: bool = True
    enable_pro: bool = False

    def message(self) -> dict[str, Any]:
        """The ``conversation.item.create`` message for this request."""
        properties = {
            "section_count": 0,
            "is_kids_mode": False,
            "enable_nsfw": self.enable_nsfw,
            "skip_upsampler": False,
            "is_initial": False,
            "aspect_ratio": self.aspect_ratio,
            "enable_pro": self.enable_pro,
        }
        content = {
            "requestId": str(uuid.uuid4()),
            "text": self.prompt,
            "type": "input_text",
            "properties": properties,
        }
        return {
            "type": "conversation.item.create",
            "timestamp": int(time.time() * 1000),
            "item": {"type": "message", "content": [content]},
        }


@attrs.frozen
class ImagineLimits:
    """Sizes that classify frames and the waits of one round (seconds)."""

    final_min_bytes: int = 100_000
    medium_min_bytes: int = 30_000
    blocked_seconds: float = 15.0
    idle_timeout: float = 30.0
    settle_seconds: float = 10.0
    total_timeout: float = 120.0
    ping_interval: float = 20.0


@attrs.frozen
class ImagineFrame:
    """One image frame: which image (``slot`` in order of appearance), how
    far it is, and its decoded bytes."""

    image_id: str
    slot: int
    stage: ImageStage
    data: bytes = attrs.field(repr=False)
    url: str
    width: int | None = None
    height: int | None = None


@attrs.frozen
class ImagineResult:
    """A finished round: its final images in slot order, how many slots the
    upstream moderated, and whether an image was blocked."""

    images: tuple[ImagineFrame, ...]
    moderated: int = 0
    blocked: bool = False


@attrs.define
class ImagineProgress:
    """How far a round got: the upgrade was accepted and the request sent
    (the upstream may have charged), and how many messages arrived."""

    accepted: bool = False
    frames: int = 0


OnFrame = Callable[[ImagineFrame], Awaitable[None]]


async def generate_over_socket(
    client: UpstreamClient,
    secret: str,
    request: ImagineRequest,
    count: int,
    limits: ImagineLimits,
    *,
    progress: ImagineProgress | None = None,
    on_frame: OnFrame | None = None,
) -> ImagineResult:
    """Make up to ``count`` images over one Imagine socket.

    Args:
        client: supplies the base URL, browser profile, egress and timeouts.
        secret: the token whose cookie opens the socket.
        request: the prompt and its properties.
        count: final images wanted; the round stops when it has them.
        limits: frame classification and waits.
        progress: updated as the round goes, for the caller's failover.
        on_frame: awaited with every image frame as it arrives.

    Returns:
        The final images (at most ``count``) and the moderation verdicts.

    Raises:
        UpstreamError: the upgrade was refused (429 rate limit, 401 token,
            403 Cloudflare or anti-bot), an ``error`` frame arrived, the
            socket broke or went silent for ``idle_timeout``, or the round
            made no image before ``total_timeout``.
    """
    progress = progress if progress is not None else ImagineProgress()
    round_ = _Round(count, limits, progress, on_frame)
    async with _open_socket(client, secret) as socket:
        await socket.send_text(_dumps(request.message()))
        progress.accepted = True
        send, receive = trio.open_memory_channel[object](16)
        outcome: ImagineResult | UpstreamError
        async with trio.open_nursery() as nursery:
            nursery.start_soon(socket.pump, send)
            nursery.start_soon(socket.keep_alive, limits.ping_interval)
            try:
                outcome = await round_.run(receive)
            except UpstreamError as exc:
                outcome = exc
            nursery.cancel_scope.cancel()
    if isinstance(outcome, UpstreamError):
        raise outcome
    return outcome


# -- the round ----------------------------------------------------------------


@attrs.frozen
class _Closed:
    code: int
    reason: str


class _Round:
    """Reads one round's messages and decides when it is over."""

    def __init__(
        self,
        count: int,
        limits: ImagineLimits,
        progress: ImagineProgress,
        on_frame: OnFrame | None,
    ) -> None:
        self.count = count
        self.limits = limits
        self.progress = progress
        self.on_frame = on_frame
        self.slots: dict[str, int] = {}
        self.latest: dict[str, ImagineFrame] = {}
        self.finals: dict[str, ImagineFrame] = {}
        self.started: set[str] = set()
        self.completed: set[str] = set()
        self.moderated: set[str] = set()
        self.medium_since: dict[str, float] = {}
        self.blocked = False
        now = trio.current_time()
        self.deadline = now + limits.total_timeout
        self.last_message = now

    async def run(self, receive: trio.MemoryReceiveChannel[object]) -> ImagineResult:
        while not self._done():
            wake, reason = self._next_wake()
            message: object = None
            with trio.move_on_at(wake):
                try:
                    message = await receive.receive()
                except trio.EndOfChannel:
                    message = _Closed(1006, "")
            if message is None:
                self._time_is_up(reason)
                break
            self.last_message = trio.current_time()
            if isinstance(message, UpstreamError):
                raise message
            if isinstance(message, _Closed):
                log.debug("imagine closed code=%d", message.code)
                break
            assert isinstance(message, str)
            self.progress.frames += 1
            await self._take(message)
        return self._result()

    def _done(self) -> bool:
        if len(self.finals) >= self.count:
            return True
        return bool(self.started) and self.started <= self.completed

    def _next_wake(self) -> tuple[float, str]:
        limits = self.limits
        wakes = [
            (self.deadline, "total"),
            (self.last_message + limits.idle_timeout, "idle"),
        ]
        if self.finals and not self.started:
            wakes.append((self.last_message + limits.settle_seconds, "settle"))
        waiting = [
            since
            for image_id, since in self.medium_since.items()
            if image_id not in self.finals and image_id not in self.moderated
        ]
        if waiting:
            wakes.append((min(waiting) + limits.blocked_seconds, "blocked"))
        return min(wakes)

    def _time_is_up(self, reason: str) -> None:
        """End the round on a wake-up: with what it has, or with a timeout."""
        if reason == "blocked":
            self.blocked = True
            log.info("imagine blocked finals=%d", len(self.finals))
        if reason in ("settle", "blocked") or self.finals or self.moderated:
            return
        limits = self.limits
        if reason == "idle":
            raise UpstreamTimeout(
                f"Grok's Imagine socket went silent for {limits.idle_timeout:g}s "
                "before any final image (image.image_ws_idle_timeout).",
                charged=True,
            )
        raise UpstreamTimeout(
            "Grok's Imagine socket made no final image within "
            f"{limits.total_timeout:g}s (image.image_ws_timeout).",
            charged=True,
        )

    def _result(self) -> ImagineResult:
        finals = sorted(self.finals.values(), key=lambda frame: frame.slot)
        if not finals and not self.moderated and not self.blocked:
            raise UpstreamProtocolError(
                "Grok's Imagine socket closed without an image.", charged=True
            )
        return ImagineResult(
            tuple(finals[: self.count]), len(self.moderated), self.blocked
        )

    async def _take(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise UpstreamProtocolError(
                "Grok's Imagine socket sent a message that is not JSON.",
                charged=True,
            ) from exc
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "error":
            code = str(message.get("err_code") or "")
            detail = str(message.get("err_msg") or "")
            raise classify_stream_error({"message": f"{code}: {detail}".strip(": ")})
        if kind == "json":
            self._take_status(message)
        elif kind == "image":
            await self._take_image(message)

    def _take_status(self, message: dict[str, Any]) -> None:
        image_id = _frame_id(message)
        if image_id is None:
            return
        self._slot(image_id)
        status = message.get("current_status")
        if status == "start_stage":
            self.started.add(image_id)
        elif status == "completed":
            self.started.add(image_id)
            self.completed.add(image_id)
            if message.get("moderated") is True:
                self.moderated.add(image_id)
                self.finals.pop(image_id, None)
            elif image_id in self.latest:
                # The last blob of a completed slot is its final image.
                latest = self.latest[image_id]
                self.finals[image_id] = attrs.evolve(latest, stage=ImageStage.FINAL)

    async def _take_image(self, message: dict[str, Any]) -> None:
        blob = message.get("blob")
        url = message.get("url")
        url = url if isinstance(url, str) else ""
        image_id = _frame_id(message) or _id_from_url(url)
        if not isinstance(blob, str) or not blob or image_id is None:
            return
        if image_id in self.moderated:
            return
        frame = ImagineFrame(
            image_id=image_id,
            slot=self._slot(image_id),
            stage=self._stage(url, blob, message.get("percentage_complete")),
            data=_decode_blob(blob),
            url=url,
            width=_int_or_none(message.get("width")),
            height=_int_or_none(message.get("height")),
        )
        self.latest[image_id] = frame
        if frame.stage is ImageStage.FINAL:
            self.finals.setdefault(image_id, frame)
        elif frame.stage is ImageStage.MEDIUM:
            self.medium_since.setdefault(image_id, trio.current_time())
        log.debug("imagine frame slot=%d stage=%s", frame.slot, frame.stage.name)
        if self.on_frame is not None:
            await self.on_frame(frame)

    def _slot(self, image_id: str) -> int:
        return self.slots.setdefault(image_id, len(self.slots))

    def _stage(self, url: str, blob: str, percentage: Any) -> ImageStage:
        limits = self.limits
        if url.lower().endswith(_JPEG_SUFFIXES):
            return ImageStage.FINAL
        by_size = ImageStage.PREVIEW
        if len(blob) > limits.medium_min_bytes:
            by_size = ImageStage.MEDIUM
        if isinstance(percentage, int | float) and not isinstance(percentage, bool):
            # The later form says how far it is; size only tells the partials
            # apart.
            return ImageStage.FINAL if percentage >= 100 else by_size
        if len(blob) > limits.final_min_bytes:
            return ImageStage.FINAL
        return by_size


def _frame_id(message: dict[str, Any]) -> str | None:
    for key in ("image_id", "job_id"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _id_from_url(url: str) -> str | None:
    name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0]
    return stem or None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _decode_blob(blob: str) -> bytes:
    if blob.startswith("data:"):
        blob = blob.partition(",")[2]
    try:
        return base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UpstreamProtocolError(
            "Grok's Imagine socket sent an image that is not base64.", charged=True
        ) from exc


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# -- the socket ---------------------------------------------------------------


class _Socket:
    """An upgraded connection speaking WebSocket frames (wsproto).

    Only :meth:`pump` reads; TLS reads are not safe to cancel half-way, so
    the round waits on the channel the pump fills, never on the stream.
    Writes come from the round, the pump (pongs) and the pinger, one at a
    time under a lock.
    """

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._protocol = Connection(ConnectionType.CLIENT)
        self._send_lock = trio.Lock()

    async def _send(self, event: Any) -> None:
        async with self._send_lock:
            await self._stream.write(self._protocol.send(event))

    async def send_text(self, text: str) -> None:
        try:
            await self._send(TextMessage(data=text))
        except _NETWORK_ERRORS as exc:
            raise UpstreamProtocolError(
                f"The Imagine socket broke while sending ({type(exc).__name__})."
            ) from exc

    async def pump(self, send: trio.MemorySendChannel[object]) -> None:
        """Forward text messages to ``send``, then one :class:`_Closed` or
        :class:`UpstreamError`; answers pings and the server's close."""
        async with send:
            try:
                await self._pump(send)
            except _NETWORK_ERRORS as exc:
                await send.send(
                    UpstreamProtocolError(
                        f"The Imagine socket broke mid-round ({type(exc).__name__}).",
                        charged=True,
                    )
                )

    async def _pump(self, send: trio.MemorySendChannel[object]) -> None:
        parts: list[str] = []
        size = 0
        while True:
            data = await self._stream.read(_READ_SIZE)
            self._protocol.receive_data(data or None)
            for event in self._protocol.events():
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    size += len(event.data)
                    if size > MAX_MESSAGE_CHARS:
                        raise wsproto.utilities.RemoteProtocolError(
                            "message too large", event_hint=None
                        )
                    if event.message_finished:
                        await send.send("".join(parts))
                        parts.clear()
                        size = 0
                elif isinstance(event, Ping):
                    await self._send(event.response())
                elif isinstance(event, CloseConnection):
                    if data:
                        await self._send(event.response())
                    await send.send(_Closed(event.code, event.reason or ""))
                    return

    async def keep_alive(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            try:
                await self._send(Ping(payload=secrets.token_bytes(4)))
            except _NETWORK_ERRORS as exc:
                # The pump sees the broken socket too and reports it.
                log.debug("imagine ping_failed error=%s", type(exc).__name__)
                return

    async def aclose(self) -> None:
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            try:
                await self._send(CloseConnection(code=1000))
            except (*_NETWORK_ERRORS, trio.BusyResourceError) as exc:
                log.debug("imagine close_failed error=%s", type(exc).__name__)


def _upgrade_url(base_url: str) -> str:
    # httpcore tunnels https through an HTTP proxy and speaks TLS over SOCKS
    # only for the https scheme, so the upgrade is sent as http(s).
    # TODO: a plain-http base URL through an HTTP proxy is forwarded, not
    # tunnelled, and a forwarding proxy may drop the Upgrade header; the
    # call then falls back to the chat path. SOCKS and https are unaffected.
    return base_url.rstrip("/") + IMAGINE_PATH


def _logged_url(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{IMAGINE_PATH}"


def _proxy(proxy_url: str) -> httpcore.Proxy | None:
    if not proxy_url:
        return None
    parts = urllib.parse.urlsplit(proxy_url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    bare = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    auth = None
    if parts.username is not None:
        auth = (
            urllib.parse.unquote(parts.username),
            urllib.parse.unquote(parts.password or ""),
        )
    return httpcore.Proxy(bare, auth=auth)


def _imagine_headers(secret: str, client: UpstreamClient, key: str) -> dict[str, str]:
    """The upgrade request's headers: the web app's WebSocket set and the
    token's cookie."""
    options = client.options
    headers = {
        "Origin": options.base_url.rstrip("/"),
        "User-Agent": options.user_agent,
        "Accept-Language": ACCEPT_LANGUAGE,
        "Cache-Control": "no-cache",
        "Pragma": "no-cache",
        "Cookie": sso_cookie(secret, options.cf_clearance),
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
    }
    headers.update(client_hints(options.user_agent))
    return headers


def _accept_value(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()


@asynccontextmanager
async def _open_socket(client: UpstreamClient, secret: str) -> AsyncIterator[_Socket]:
    options = client.options
    egress = await client.egress_for(EgressPurpose.API, secret)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    headers = _imagine_headers(secret, client, key)
    timeouts = {
        "connect": options.connect_timeout,
        "read": options.first_frame_timeout,
        "write": options.first_frame_timeout,
        "pool": options.connect_timeout,
    }
    started = trio.current_time()
    status: int | None = None
    try:
        async with (
            httpcore.AsyncConnectionPool(
                proxy=_proxy(egress.proxy_url), http1=True, http2=False
            ) as pool,
            pool.stream(
                "GET",
                _upgrade_url(options.base_url),
                headers=list(headers.items()),
                extensions={"timeout": timeouts},
            ) as response,
        ):
            status = response.status
            log.debug(
                "upstream call GET %s status=%d elapsed=%.3fs egress=%s",
                _logged_url(options.base_url),
                status,
                trio.current_time() - started,
                egress,
            )
            if status != 101:
                await _raise_refusal(response, options.first_frame_timeout)
            answered = _header(response, b"sec-websocket-accept")
            if answered != _accept_value(key):
                raise UpstreamProtocolError(
                    "Grok's Imagine socket answered the upgrade with a wrong "
                    "Sec-WebSocket-Accept."
                )
            socket = _Socket(response.extensions["network_stream"])
            try:
                yield socket
            finally:
                await socket.aclose()
    except EgressBlocked:
        await client.proxies.report_egress_fault(egress)
        raise
    except _NETWORK_ERRORS as exc:
        if status is None:
            log.debug(
                "upstream call GET %s status=failed elapsed=%.3fs egress=%s",
                _logged_url(options.base_url),
                trio.current_time() - started,
                egress,
            )
        error = _translate(exc, upgraded=status == 101)
        if isinstance(error, EgressBlocked):
            await client.proxies.report_egress_fault(egress)
        raise error from exc


def _header(response: httpcore.Response, name: bytes) -> str:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return ""


async def _raise_refusal(response: httpcore.Response, timeout: float) -> None:
    body = bytearray()
    with trio.move_on_after(timeout):
        async for chunk in response.aiter_stream():
            body += chunk
            if len(body) >= BODY_INSPECT_LIMIT:
                break
    headers = {
        key.decode("latin-1").lower(): value.decode("latin-1")
        for key, value in response.headers
    }
    error = classify_response(response.status, headers, bytes(body))
    if response.status == 403 and error.kind is FailureKind.AMBIGUOUS:
        # A bare 403 on this upgrade is the anti-bot front, not the token.
        error = EgressBlocked(
            "Grok refused the Imagine WebSocket upgrade (HTTP 403); the "
            "Cloudflare or anti-bot front did not accept the egress.",
            status=403,
        )
    raise error


def _translate(exc: Exception, *, upgraded: bool) -> UpstreamError:
    """The one place httpcore and wsproto errors become grok2api errors."""
    what = type(exc).__name__
    if isinstance(exc, httpcore.ConnectError | httpcore.ConnectTimeout):
        return EgressBlocked(
            f"Could not connect to Grok's Imagine socket ({what}); check the "
            "network, proxy and DNS."
        )
    if isinstance(exc, httpcore.ProxyError):
        return EgressBlocked(f"The proxy refused the Imagine socket ({what}).")
    if isinstance(exc, httpcore.TimeoutException) and not upgraded:
        return UpstreamTimeout(
            f"Grok did not answer the Imagine upgrade in time ({what})."
        )
    if not upgraded:
        return EgressBlocked(
            f"The connection to Grok's Imagine socket dropped before any answer "
            f"({what})."
        )
    return UpstreamProtocolError(
        f"The Imagine socket broke ({what}).", status=101, charged=True
    )
