"""``POST /v1/images/generations``: images from ``grok-imagine-1.0``.

Images are made over the upstream's HTTP chat path: each upstream call is a
new conversation with the image tool forced on (``toolOverrides.imageGen``)
and ``imageGenerationCount`` set, whose stream ends in a ``modelResponse``
listing the generated images. Each image is downloaded with the cookie of
the account that made it (:meth:`MediaCache.fetch <grok2api.media.MediaCache.fetch>`)
and handed out as a link on the gateway, or as base64 of the same bytes.

One call may yield fewer images than asked. The gateway asks for up to
:data:`IMAGES_PER_CALL` per call, runs the calls a request needs in
parallel, and when a round falls short runs another, sized by the best yield
seen so far, for at most :data:`MAX_ROUNDS` rounds. The client gets exactly
``n`` distinct images or an error, never fewer: moderated images are a 400
``content_policy_violation``, other shortfalls the upstream's error or a 502.
Every call goes through the token pool with the chat path's failover and
settling (:mod:`grok2api.api.failover`).

Known gaps: the Imagine WebSocket (``image.image_ws*``) is not used yet, so
``size`` (an aspect ratio there), ``quality`` and ``style`` are validated and
ignored, since the HTTP path has no field for them; ``stream: true`` is
refused with a 400.
"""

from __future__ import annotations

import base64
import functools
import logging
import math
import time
from typing import Any

import attrs
import trio
from quart import Blueprint, Response, request

from grok2api.api.failover import AttemptProgress, with_failover
from grok2api.api.http import json_response, read_json_body
from grok2api.api.images_request import parse_image_request
from grok2api.api.models_routes import served_model
from grok2api.errors import ApiError, Grok2APIError
from grok2api.gateway import Gateway, current_gateway
from grok2api.media import MediaKind
from grok2api.models import ModelKind, ModelSpec
from grok2api.security.limits import check_model_allowed
from grok2api.storage import Lease
from grok2api.upstream import ConversationRequest, ImageProgress, ModelResponse

__all__ = ["IMAGES_PER_CALL", "MAX_ROUNDS", "images_routes"]

log = logging.getLogger(__name__)

images_routes = Blueprint("images", __name__, url_prefix="/v1/images")

#: Images asked of one upstream call; ``n`` above it needs parallel calls.
IMAGES_PER_CALL = 4
#: Rounds of calls before a shortfall becomes an error.
MAX_ROUNDS = 3

# The catalogue leaves the imagine model's selectors empty (its own product
# is the WebSocket); over the chat path the image tool runs under a chat mode.
_UPSTREAM_NAME = "grok-3"
_UPSTREAM_MODE = "MODEL_MODE_GROK_3"
_UPSTREAM_MODE_ID = "auto"


@images_routes.post("/generations")
async def image_generations() -> Response:
    gateway = current_gateway()
    body = await read_json_body()
    asked = parse_image_request(body)
    request.scope["grok2api.stream"] = False
    request.scope["grok2api.model"] = asked.model
    model = served_model(
        gateway,
        asked.model,
        ModelKind.IMAGE,
        "cannot generate images; use grok-imagine-1.0.",
    )
    check_model_allowed(request.scope.get("grok2api.api_key"), model.id, asked.model)
    base_url = gateway.media.base_url()
    images = await generate_images(gateway, model, asked.prompt, asked.n, base_url)
    request.scope["grok2api.token_id"] = images[0].token_id
    data: list[dict[str, Any]] = []
    for image in images:
        if asked.response_format == "b64_json":
            content = await _cached_bytes(gateway, image.url)
            data.append({"b64_json": base64.b64encode(content).decode("ascii")})
        else:
            data.append({"url": image.url})
    return json_response({"created": int(time.time()), "data": data})


@attrs.frozen
class GeneratedImage:
    """An image on the gateway: its served URL and the token that made it."""

    url: str
    token_id: str


@attrs.frozen
class _Answer:
    """What one upstream call produced, before any download."""

    asset_urls: tuple[str, ...]
    moderated: bool
    token_id: str
    secret: str = attrs.field(repr=False)


@attrs.define
class _Collected:
    """Everything the calls of one request gathered, in arrival order."""

    images: dict[str, GeneratedImage] = attrs.Factory(dict)
    errors: list[Grok2APIError] = attrs.Factory(list)
    moderated: bool = False
    best_yield: int = 0


async def generate_images(
    gateway: Gateway, model: ModelSpec, prompt: str, n: int, base_url: str
) -> list[GeneratedImage]:
    """Make exactly ``n`` distinct images, in parallel calls and rounds.

    Raises:
        ApiError: the images were moderated (400) or too few came (502).
        Grok2APIError: no call produced an image; the first call's error.
    """
    collected = _Collected()
    per_call = min(n, IMAGES_PER_CALL)
    for _round in range(MAX_ROUNDS):
        missing = n - len(collected.images)
        calls = math.ceil(missing / per_call)
        before = len(collected.images)
        async with trio.open_nursery() as nursery:
            for index in range(calls):
                count = min(per_call, missing - index * per_call)
                nursery.start_soon(
                    _call, gateway, model, prompt, count, base_url, collected
                )
        gained = len(collected.images) - before
        if len(collected.images) >= n or collected.moderated or gained == 0:
            break
        per_call = max(1, min(collected.best_yield, IMAGES_PER_CALL))
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
        return ApiError(
            400,
            "Grok's moderation blocked the images for this prompt "
            f"({got} of {n} came back); change the prompt and try again.",
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


async def _call(
    gateway: Gateway,
    model: ModelSpec,
    prompt: str,
    count: int,
    base_url: str,
    collected: _Collected,
) -> None:
    """One upstream call and its downloads; failures are collected, so one
    call's error never cancels the calls beside it."""
    ask = functools.partial(_ask, gateway, prompt, count)
    try:
        answer = await with_failover(gateway, model, ask)
    except Grok2APIError as exc:
        collected.errors.append(exc)
        return
    collected.moderated = collected.moderated or answer.moderated
    collected.best_yield = max(collected.best_yield, len(answer.asset_urls))
    for asset in answer.asset_urls:
        try:
            url = await gateway.media.fetch(
                asset, answer.secret, MediaKind.IMAGE, base_url=base_url
            )
        except Grok2APIError as exc:
            collected.errors.append(exc)
            continue
        collected.images.setdefault(url, GeneratedImage(url, answer.token_id))


async def _ask(
    gateway: Gateway,
    prompt: str,
    count: int,
    lease: Lease,
    progress: AttemptProgress,
) -> _Answer:
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
    finals: list[str] = []
    listed: tuple[str, ...] = ()
    moderated = False
    async with gateway.upstream.open_conversation(lease.secret, conversation) as stream:
        progress.upstream_accepted = True
        async for event in stream:
            if isinstance(event, ImageProgress):
                moderated = moderated or event.moderated
                if event.final and event.url is not None:
                    finals.append(event.url)
            elif isinstance(event, ModelResponse):
                listed = event.generated_image_urls
    # The final frame lists every image; progress frames are the fallback
    # for answers that only stream them.
    urls = tuple(dict.fromkeys(listed or finals))
    return _Answer(urls, moderated, lease.token_id, lease.secret)


async def _cached_bytes(gateway: Gateway, url: str) -> bytes:
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
