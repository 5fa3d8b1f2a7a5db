"""``POST /v1/images/generations``: images from ``grok-imagine-1.0``.

Two upstream paths make the images. With ``image.image_ws`` on (the
default) each call is a round on the Imagine WebSocket
(:mod:`grok2api.upstream.imagine_ws`), whose frames carry the image bytes;
the request's ``size`` becomes the socket's aspect ratio and ``quality``
``high``/``hd`` its pro variant. The other path is the HTTP chat path: a new
conversation with the image tool forced on (``toolOverrides.imageGen``) and
``imageGenerationCount`` set, whose ``modelResponse`` lists the images to
download with the owning account's cookie
(:meth:`MediaCache.fetch <grok2api.media.MediaCache.fetch>`); it has no
field for size or quality. Either way the image ends up in the media cache
and is handed out as a link on the gateway, or as base64 of the same bytes.

A socket that fails before its first frame (upgrade refused, connection
failed, silence) sends that call, and every later call of the request, to
the chat path. A token fault or rate limit on the socket (an upgrade 401 or
429, an ``error`` frame ``rate_limit_exceeded``) fails over to another token
on the socket instead. Moderated or blocked results never fall back: they
are a 400 ``content_policy_violation``.

One call may yield fewer images than asked. The gateway asks for up to
``image.image_ws_max_per_request`` per socket (:data:`IMAGES_PER_CALL` per
chat call), runs the calls a request needs in parallel, and when a round
falls short runs another, sized by the best yield seen so far, for at most
:data:`MAX_ROUNDS` rounds. The client gets exactly ``n`` distinct images or
an error, never fewer. Every call goes through the token pool with the chat
path's failover and settling (:mod:`grok2api.api.failover`).

``stream: true`` answers with image stream events
(:mod:`grok2api.api.image_stream`): up to ``partial_images`` partial images
per image from the socket's preview and medium frames, then one completed
event per image. ``style`` is accepted and ignored; Grok has no such
setting.
"""

from __future__ import annotations

import base64
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
from quart import Blueprint, Response, request

from grok2api.api.failover import AttemptProgress, with_failover
from grok2api.api.http import json_response, read_json_body
from grok2api.api.image_stream import ImageEvents, PartialImages, open_image_stream
from grok2api.api.images_request import ImageRequest, parse_image_request
from grok2api.api.models_routes import served_model
from grok2api.errors import ApiError, FailureKind, Grok2APIError, UpstreamError
from grok2api.gateway import Gateway, current_gateway
from grok2api.media import MediaKind
from grok2api.models import ModelKind, ModelSpec
from grok2api.security.limits import check_model_allowed
from grok2api.storage import Lease
from grok2api.upstream import ConversationRequest, ImageProgress, ModelResponse
from grok2api.upstream.imagine_ws import (
    ImageStage,
    ImagineFrame,
    ImagineLimits,
    ImagineProgress,
    ImagineRequest,
    generate_over_socket,
)

__all__ = [
    "IMAGES_PER_CALL",
    "MAX_ROUNDS",
    "GeneratedImage",
    "ImageAnswer",
    "ImageAsk",
    "SocketPlan",
    "cached_image_bytes",
    "collect_images",
    "generate_images",
    "images_response",
    "images_routes",
]

log = logging.getLogger(__name__)

images_routes = Blueprint("images", __name__, url_prefix="/v1/images")

#: Images asked of one chat-path call; ``n`` above it needs parallel calls.
IMAGES_PER_CALL = 4
#: Rounds of calls before a shortfall becomes an error.
MAX_ROUNDS = 3

# The catalogue leaves the imagine model's selectors empty (its own product
# is the WebSocket); over the chat path the image tool runs under a chat mode.
_UPSTREAM_NAME = "grok-3"
_UPSTREAM_MODE = "MODEL_MODE_GROK_3"
_UPSTREAM_MODE_ID = "auto"
#: Socket failures another token may not have; they fail over on the socket.
_TOKEN_FAULTS = (FailureKind.TOKEN, FailureKind.RATE_LIMIT)


@images_routes.post("/generations")
async def image_generations() -> Response:
    gateway = current_gateway()
    body = await read_json_body()
    asked = parse_image_request(body)
    request.scope["grok2api.stream"] = asked.stream
    request.scope["grok2api.model"] = asked.model
    model = served_model(
        gateway,
        asked.model,
        ModelKind.IMAGE,
        "cannot generate images; use grok-imagine-1.0.",
    )
    check_model_allowed(request.scope.get("grok2api.api_key"), model.id, asked.model)
    base_url = gateway.media.base_url()
    settings = gateway.settings.image
    socket = SocketPlan(
        ImagineRequest(
            asked.prompt,
            aspect_ratio=asked.aspect_ratio,
            enable_nsfw=settings.image_ws_nsfw,
            enable_pro=asked.enable_pro,
        )
    )
    if asked.stream:
        return await _stream(gateway, model, asked, socket, base_url)
    images = await generate_images(
        gateway, model, asked.prompt, asked.n, base_url, socket=socket
    )
    request.scope["grok2api.token_id"] = images[0].token_id
    return await images_response(gateway, images, asked.response_format)


async def _stream(
    gateway: Gateway,
    model: ModelSpec,
    asked: ImageRequest,
    socket: SocketPlan,
    base_url: str,
) -> Response:
    events = ImageEvents("image_generation", asked.size, asked.quality)
    scope = request.scope

    async def produce(partials: PartialImages) -> list[bytes]:
        async def show(frame: ImagineFrame) -> None:
            final = frame.stage is ImageStage.FINAL
            await partials.offer(frame.image_id, frame.stage, frame.data, final=final)

        socket.on_frame = show
        images = await generate_images(
            gateway, model, asked.prompt, asked.n, base_url, socket=socket
        )
        scope["grok2api.token_id"] = images[0].token_id
        return [await cached_image_bytes(gateway, image.url) for image in images]

    partials = PartialImages(events, asked.n, asked.partial_images)
    return await open_image_stream(gateway, events, partials, produce, scope)


@attrs.frozen
class GeneratedImage:
    """An image on the gateway: its served URL and the token that made it."""

    url: str
    token_id: str


@attrs.frozen
class ImageAnswer:
    """What one upstream call produced: asset URLs still to download, or
    images that came inline (URL they were given, bytes), and whether the
    upstream moderated (or, on the socket, blocked) any."""

    asset_urls: tuple[str, ...]
    moderated: bool
    token_id: str
    secret: str = attrs.field(repr=False)
    inline: tuple[tuple[str, bytes], ...] = attrs.field(default=(), repr=False)
    blocked: bool = False

    @property
    def count(self) -> int:
        return len(self.asset_urls) + len(self.inline)


@attrs.define
class SocketPlan:
    """How a request's calls use the Imagine socket.

    ``refused`` turns to true when a socket fails before its first frame;
    the request's remaining calls then take the chat path. ``on_frame``
    sees every image frame (the stream's partial images).
    """

    request: ImagineRequest
    on_frame: Callable[[ImagineFrame], Awaitable[None]] | None = None
    refused: bool = False


@attrs.define
class _Collected:
    """Everything the calls of one request gathered, in arrival order."""

    images: dict[str, GeneratedImage] = attrs.Factory(dict)
    errors: list[Grok2APIError] = attrs.Factory(list)
    moderated: bool = False
    blocked: bool = False
    best_yield: int = 0


#: One upstream call with a leased token: ask for ``count`` images (the first
#: argument) and report what came back. The edits route brings its own.
ImageAsk = Callable[[int, Lease, AttemptProgress], Awaitable[ImageAnswer]]


async def generate_images(
    gateway: Gateway,
    model: ModelSpec,
    prompt: str,
    n: int,
    base_url: str,
    *,
    ask: ImageAsk | None = None,
    most_per_call: int = IMAGES_PER_CALL,
    socket: SocketPlan | None = None,
) -> list[GeneratedImage]:
    """Make exactly ``n`` distinct images, in parallel calls and rounds.

    Args:
        ask: the chat-path call; by default a generation from ``prompt``.
        most_per_call: the most images one chat-path call is asked for.
        socket: try the Imagine socket first (when ``image.image_ws`` is on),
            falling back to ``ask``.

    Raises:
        ApiError: the images were moderated (400) or too few came (502).
        Grok2APIError: no call produced an image; the first call's error.
    """
    collected = _Collected()
    if ask is None:
        ask = functools.partial(_ask, gateway, prompt)
    settings = gateway.settings.image
    chat_per_call = most_per_call
    if socket is not None and settings.image_ws:
        most_per_call = settings.image_ws_max_per_request
    else:
        socket = None
    per_call = min(n, most_per_call)
    for _round in range(MAX_ROUNDS):
        missing = n - len(collected.images)
        calls = math.ceil(missing / per_call)
        before = len(collected.images)
        async with trio.open_nursery() as nursery:
            for index in range(calls):
                count = min(per_call, missing - index * per_call)
                nursery.start_soon(
                    _call,
                    gateway,
                    model,
                    ask,
                    socket,
                    _CallSize(count, chat_per_call),
                    base_url,
                    collected,
                )
        gained = len(collected.images) - before
        if len(collected.images) >= n or collected.moderated or gained == 0:
            break
        if socket is not None and socket.refused:
            most_per_call = chat_per_call
        per_call = max(1, min(collected.best_yield, most_per_call))
        log.info(
            "images short got=%d of=%d next_per_call=%d",
            len(collected.images),
            n,
            per_call,
        )
    images = list(collected.images.values())
    if len(images) >= n:
        return images[:n]
    raise _shortfall(collected, len(images), n)


def _shortfall(collected: _Collected, got: int, n: int) -> Grok2APIError:
    if collected.moderated:
        how = (
            "stopped the images after a preview (no final image came within "
            "image.image_ws_blocked_seconds)"
            if collected.blocked
            else "blocked the images"
        )
        return ApiError(
            400,
            f"Grok's moderation {how} for this prompt ({got} of {n} came back); "
            "change the prompt and try again.",
            code="content_policy_violation",
            param="prompt",
        )
    if got == 0 and collected.errors:
        return collected.errors[0]
    reason = f": {collected.errors[0]}" if collected.errors else ""
    return ApiError(
        502,
        f"Grok produced only {got} of the {n} images asked for{reason}",
        type="server_error",
        code="insufficient_images",
    )


@attrs.frozen
class _CallSize:
    """Images one call asks for, and the most the chat path makes at once
    (a socket call falling back asks the chat path for no more)."""

    count: int
    chat_most: int


async def _call(
    gateway: Gateway,
    model: ModelSpec,
    ask: ImageAsk,
    socket: SocketPlan | None,
    size: _CallSize,
    base_url: str,
    collected: _Collected,
) -> None:
    """One upstream call and its downloads; failures are collected, so one
    call's error never cancels the calls beside it."""
    count = size.count
    try:
        async with gateway.media_generation():
            answer = None
            if socket is not None and not socket.refused:
                answer = await _socket_call(gateway, model, socket, count)
            if answer is None:
                # The next round asks for what is still missing.
                answer = await with_failover(
                    gateway, model, functools.partial(ask, min(count, size.chat_most))
                )
    except Grok2APIError as exc:
        collected.errors.append(exc)
        return
    collected.moderated = collected.moderated or answer.moderated
    collected.blocked = collected.blocked or answer.blocked
    collected.best_yield = max(collected.best_yield, answer.count)
    for asset, data in answer.inline:
        try:
            url = await gateway.media.store(
                asset, data, MediaKind.IMAGE, base_url=base_url
            )
        except Grok2APIError as exc:
            collected.errors.append(exc)
            continue
        collected.images.setdefault(url, GeneratedImage(url, answer.token_id))
    for asset in answer.asset_urls:
        try:
            url = await gateway.media.fetch(
                asset, answer.secret, MediaKind.IMAGE, base_url=base_url
            )
        except Grok2APIError as exc:
            collected.errors.append(exc)
            continue
        collected.images.setdefault(url, GeneratedImage(url, answer.token_id))


async def _socket_call(
    gateway: Gateway, model: ModelSpec, socket: SocketPlan, count: int
) -> ImageAnswer | None:
    """One round on the Imagine socket; None when the chat path should make
    these images instead."""
    falls_back = False

    async def attempt(lease: Lease, progress: AttemptProgress) -> ImageAnswer:
        nonlocal falls_back
        reached = ImagineProgress()
        try:
            result = await generate_over_socket(
                gateway.upstream,
                lease.secret,
                socket.request,
                count,
                _limits(gateway),
                progress=reached,
                on_frame=socket.on_frame,
            )
        except UpstreamError as exc:
            falls_back = reached.frames == 0 and exc.kind not in _TOKEN_FAULTS
            raise
        finally:
            # Once the request went out, the upstream may have charged.
            progress.upstream_accepted = reached.accepted
        inline = tuple(
            (image.url or image.image_id, image.data) for image in result.images
        )
        return ImageAnswer(
            (),
            bool(result.moderated) or result.blocked,
            lease.token_id,
            lease.secret,
            inline=inline,
            blocked=result.blocked,
        )

    try:
        # A socket that failed on its own (not the token's fault) would fail
        # for the next token too: stop failing over and use the chat path.
        return await with_failover(
            gateway, model, attempt, output_started=lambda: falls_back
        )
    except UpstreamError as exc:
        if not falls_back:
            raise
        socket.refused = True
        log.warning(
            "imagine socket failed kind=%s; using the chat path: %s",
            exc.kind.value,
            exc,
        )
        return None


def _limits(gateway: Gateway) -> ImagineLimits:
    image = gateway.settings.image
    return ImagineLimits(
        final_min_bytes=image.image_ws_final_min_bytes,
        medium_min_bytes=image.image_ws_medium_min_bytes,
        blocked_seconds=image.image_ws_blocked_seconds,
        idle_timeout=image.image_ws_idle_timeout,
        settle_seconds=image.image_ws_settle_seconds,
        total_timeout=image.image_ws_timeout,
        ping_interval=image.image_ws_ping_interval,
    )


async def _ask(
    gateway: Gateway,
    prompt: str,
    count: int,
    lease: Lease,
    progress: AttemptProgress,
) -> ImageAnswer:
    settings = gateway.settings
    conversation = ConversationRequest(
        message=prompt,
        model_name=_UPSTREAM_NAME,
        model_mode=_UPSTREAM_MODE,
        mode_id=_UPSTREAM_MODE_ID,
        tool_overrides={"imageGen": True},
        enable_image_generation=True,
        image_generation_count=count,
        disable_text_follow_ups=True,
        temporary=settings.chat.temporary,
        disable_memory=settings.chat.disable_memory,
    )
    return await collect_images(gateway, conversation, lease, progress)


async def collect_images(
    gateway: Gateway,
    conversation: ConversationRequest,
    lease: Lease,
    progress: AttemptProgress,
    *,
    on_progress: Callable[[ImageProgress], Awaitable[None]] | None = None,
) -> ImageAnswer:
    """Open ``conversation`` with the leased token and gather the images its
    answer lists, and whether any was moderated; ``on_progress`` sees every
    progress frame as it arrives (an edit stream's partial images)."""
    finals: list[str] = []
    listed: tuple[str, ...] = ()
    moderated = False
    async with gateway.upstream.open_conversation(lease.secret, conversation) as stream:
        progress.upstream_accepted = True
        async for event in stream:
            if isinstance(event, ImageProgress):
                if on_progress is not None:
                    await on_progress(event)
                moderated = moderated or event.moderated
                if event.final and event.url is not None:
                    finals.append(event.url)
            elif isinstance(event, ModelResponse):
                listed = event.generated_image_urls
    # The final frame lists every image; progress frames are the fallback
    # for answers that only stream them.
    urls = tuple(dict.fromkeys(listed or finals))
    return ImageAnswer(urls, moderated, lease.token_id, lease.secret)


async def images_response(
    gateway: Gateway, images: list[GeneratedImage], response_format: str
) -> Response:
    """The images schema answer: links, or base64 of the cached bytes."""
    data: list[dict[str, Any]] = []
    for image in images:
        if response_format == "b64_json":
            content = await cached_image_bytes(gateway, image.url)
            data.append({"b64_json": base64.b64encode(content).decode("ascii")})
        else:
            data.append({"url": image.url})
    return json_response({"created": int(time.time()), "data": data})


async def cached_image_bytes(gateway: Gateway, url: str) -> bytes:
    """The bytes of an image just fetched into the cache."""
    name = url.rsplit("/", 1)[-1]
    opened = await gateway.media.open(MediaKind.IMAGE, name)
    if opened is None:
        # Only a cleaner racing the grace period could remove it this soon.
        raise ApiError(
            502,
            "A generated image left the cache before it could be sent; try again.",
            type="server_error",
            code="image_unavailable",
        )
    try:
        return await trio.to_thread.run_sync(opened.read, 0, opened.size)
    finally:
        opened.close()
