"""``POST /v1/images/edits``: images edited by ``grok-imagine-1.0-edit``.

One upstream call of an edit runs, with its leased token: every input image
is uploaded to that token's account (``upload-file``); an image media post
is created for the first one, its id the edit's ``parentPostId`` (when the
post cannot be made, the id in the upload's URL stands in, as the web app's
own fallback does); then a new conversation with ``modelName``
``imagine-image-edit``, the image tool forced on, and
``modelConfigOverride.modelMap`` naming the ``imagine`` edit model, the
uploads' URLs as ``imageReferences`` and the parent post. Its answer lists
up to :data:`EDITS_PER_CALL` images.

Uploads belong to an account, so they are made once per token a request
uses and shared by that token's calls. The rounds of parallel calls, the
downloads into the media cache, exactly ``n`` distinct images or an error,
and the failover and settling of every call are those of image generation
(:func:`grok2api.api.images.generate_images`); the request body is read and
checked in :mod:`grok2api.api.image_edits_request` before any token is
leased.
"""

from __future__ import annotations

import functools
import logging
import re

import attrs
import trio
from quart import Blueprint, Response, request

from grok2api.api.failover import AttemptProgress
from grok2api.api.image_edits_request import (
    EditImage,
    EditRequest,
    load_edit_images,
    read_edit_request,
)
from grok2api.api.image_stream import ImageEvents, PartialImages, open_image_stream
from grok2api.api.images import (
    GeneratedImage,
    ImageAnswer,
    cached_image_bytes,
    collect_images,
    generate_images,
    images_response,
)
from grok2api.api.models_routes import served_model
from grok2api.config import ChatSettings
from grok2api.errors import (
    FailureKind,
    Grok2APIError,
    UpstreamError,
    UpstreamProtocolError,
)
from grok2api.gateway import Gateway, current_gateway
from grok2api.media import MediaKind
from grok2api.models import ModelKind, ModelSpec
from grok2api.security.limits import check_model_allowed
from grok2api.storage import Lease
from grok2api.upstream import ConversationRequest, ImageProgress

__all__ = [
    "EDITS_PER_CALL",
    "edit_conversation",
    "image_edits_routes",
    "post_id_from_url",
]

log = logging.getLogger(__name__)

image_edits_routes = Blueprint("image_edits", __name__, url_prefix="/v1/images")

#: Images one upstream edit makes.
EDITS_PER_CALL = 2

_EDIT_MODEL = "imagine"
_POST_TYPE = "MEDIA_POST_TYPE_IMAGE"
#: The id segment of an upload (``users/<uid>/<id>/content``) or a generated
#: image (``.../generated/<id>/...``) URL.
_ID_IN_URL = re.compile(r"/generated/([^/]+)/|/users/[^/]+/([^/]+)/content$")
#: Failures of the media post that another token may not have; any other
#: failure falls back to the id in the upload's URL.
_TOKEN_FAULTS = (FailureKind.TOKEN, FailureKind.RATE_LIMIT, FailureKind.EGRESS)


@image_edits_routes.post("/edits")
async def image_edits() -> Response:
    gateway = current_gateway()
    settings = gateway.settings
    asked = await read_edit_request(settings)
    request.scope["grok2api.stream"] = asked.stream
    request.scope["grok2api.model"] = asked.model
    model = served_model(
        gateway,
        asked.model,
        ModelKind.IMAGE_EDIT,
        "cannot edit images; use grok-imagine-1.0-edit.",
    )
    check_model_allowed(request.scope.get("grok2api.api_key"), model.id, asked.model)
    inputs = _Inputs(await load_edit_images(asked, settings))
    base_url = gateway.media.base_url()
    if asked.stream:
        return await _stream(gateway, model, asked, inputs, base_url)
    images = await _edit(gateway, model, asked, inputs, base_url, None)
    request.scope["grok2api.token_id"] = images[0].token_id
    return await images_response(gateway, images, asked.response_format)


async def _edit(
    gateway: Gateway,
    model: ModelSpec,
    asked: EditRequest,
    inputs: _Inputs,
    base_url: str,
    partials: PartialImages | None,
) -> list[GeneratedImage]:
    ask = functools.partial(
        _ask_edit, gateway, model, asked.prompt, inputs, base_url, partials
    )
    return await generate_images(
        gateway,
        model,
        asked.prompt,
        asked.n,
        base_url,
        ask=ask,
        most_per_call=EDITS_PER_CALL,
    )


async def _stream(
    gateway: Gateway,
    model: ModelSpec,
    asked: EditRequest,
    inputs: _Inputs,
    base_url: str,
) -> Response:
    events = ImageEvents("image_edit", asked.size, asked.quality)
    scope = request.scope

    async def produce(partials: PartialImages) -> list[bytes]:
        images = await _edit(gateway, model, asked, inputs, base_url, partials)
        scope["grok2api.token_id"] = images[0].token_id
        return [await cached_image_bytes(gateway, image.url) for image in images]

    partials = PartialImages(events, asked.n, asked.partial_images)
    return await open_image_stream(gateway, events, partials, produce, scope)


async def _offer_preview(
    gateway: Gateway,
    partials: PartialImages,
    secret: str,
    base_url: str,
    event: ImageProgress,
) -> None:
    """Show an image's preview as a partial image, when the upstream gave
    one (image cards do; the reference's progress frames carry no URL)."""
    # TODO: over the reference's progress frames a stream shows no partial
    # images at all, whatever partial_images asks; nothing upstream to show.
    if event.url is None or event.final or event.moderated or partials.limit == 0:
        return
    try:
        url = await gateway.media.fetch(
            event.url, secret, MediaKind.IMAGE, base_url=base_url
        )
        data = await cached_image_bytes(gateway, url)
    except Grok2APIError as exc:
        # A preview is a courtesy; the final image still comes.
        log.debug("image edit preview_skipped error=%s", type(exc).__name__)
        return
    key = event.image_id or str(event.index)
    await partials.offer(key, event.progress, data, final=False)


@attrs.frozen
class _Prepared:
    """The inputs as one account holds them: asset URLs and the parent post."""

    image_urls: tuple[str, ...]
    parent_post_id: str


@attrs.define
class _Inputs:
    """A request's input images and, per token, their uploaded form."""

    images: tuple[EditImage, ...]
    prepared: dict[str, _Prepared] = attrs.Factory(dict)
    locks: dict[str, trio.Lock] = attrs.Factory(dict)

    async def prepare(self, gateway: Gateway, lease: Lease) -> _Prepared:
        """Upload the images for the lease's account, once per token: parallel
        calls that drew the same token wait for the first one's uploads."""
        lock = self.locks.setdefault(lease.token_id, trio.Lock())
        async with lock:
            prepared = self.prepared.get(lease.token_id)
            if prepared is None:
                prepared = await _upload(gateway, lease.secret, self.images)
                self.prepared[lease.token_id] = prepared
            return prepared


async def _upload(
    gateway: Gateway, secret: str, images: tuple[EditImage, ...]
) -> _Prepared:
    urls = []
    for image in images:
        uploaded = await gateway.upstream.upload_file(
            secret, image.file_name, image.mime_type, image.content
        )
        if not uploaded.asset_url:
            raise UpstreamProtocolError(
                "Grok's upload answer has no fileUri to reference the image by."
            )
        urls.append(uploaded.asset_url)
    post_id = await _parent_post(gateway, secret, urls[0])
    return _Prepared(tuple(urls), post_id)


async def _parent_post(gateway: Gateway, secret: str, image_url: str) -> str:
    try:
        return await gateway.upstream.create_media_post(
            secret, _POST_TYPE, media_url=image_url
        )
    except UpstreamError as exc:
        # TODO: that Grok takes an upload's id as parentPostId is unverified;
        # the reference relies on it, and the emulator assumes it.
        fallback = post_id_from_url(image_url)
        if exc.kind in _TOKEN_FAULTS or fallback is None:
            raise
        log.warning(
            "image edit media post failed kind=%s status=%s, using the upload's id",
            exc.kind.value,
            exc.status,
        )
        return fallback


def post_id_from_url(url: str) -> str | None:
    """The asset id an upload or generated-image URL carries, if any."""
    found = _ID_IN_URL.search(url.split("?", 1)[0])
    if found is None:
        return None
    return found.group(1) or found.group(2)


def edit_conversation(
    model: ModelSpec,
    prompt: str,
    count: int,
    image_urls: tuple[str, ...],
    parent_post_id: str,
    chat: ChatSettings,
) -> ConversationRequest:
    """The conversation that edits the images at ``image_urls``."""
    return ConversationRequest(
        message=prompt,
        model_name=model.upstream_name,
        model_mode=None,
        tool_overrides={"imageGen": True},
        enable_image_generation=True,
        image_generation_count=count,
        disable_text_follow_ups=True,
        temporary=chat.temporary,
        disable_memory=chat.disable_memory,
        model_config_override={
            "modelMap": {
                "imageEditModel": _EDIT_MODEL,
                "imageEditModelConfig": {
                    "imageReferences": list(image_urls),
                    "parentPostId": parent_post_id,
                },
            }
        },
    )


async def _ask_edit(
    gateway: Gateway,
    model: ModelSpec,
    prompt: str,
    inputs: _Inputs,
    base_url: str,
    partials: PartialImages | None,
    count: int,
    lease: Lease,
    progress: AttemptProgress,
) -> ImageAnswer:
    prepared = await inputs.prepare(gateway, lease)
    conversation = edit_conversation(
        model,
        prompt,
        count,
        prepared.image_urls,
        prepared.parent_post_id,
        gateway.settings.chat,
    )
    on_progress = None
    if partials is not None:
        on_progress = functools.partial(
            _offer_preview, gateway, partials, lease.secret, base_url
        )
    return await collect_images(
        gateway, conversation, lease, progress, on_progress=on_progress
    )
