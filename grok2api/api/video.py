"""Video generation through ``POST /v1/chat/completions`` (``grok-imagine-1.0-video``).

The chat route checks ``video_config`` (:func:`parse_video_config`) and
hands a video model here (:func:`plan_video`), which loads the optional
input image before any token is touched, and returns the runner the chat
route streams or collects like any completion. One video is one upstream
job:

1. The token is leased through the failover loop, preferring the super pool
   for 720p or clips longer than 6 s and the basic pool otherwise, as the
   reference does; either falls back to the other.
2. With that token: the input image is uploaded and an image media post made
   from it, or a video media post from the prompt; its id is the
   ``parentPostId`` of the app-chat turn that forces the ``videoGen`` tool.
3. ``streamingVideoGenerationResponse`` frames report progress (shown as
   reasoning when thinking is on) under ``timeout.video_idle_timeout``
   between frames, so a long render never times out while frames arrive.
   The first frame commits the answer; a failure before it fails over.
4. The frame at 100 carries the clip's URL. When it does not, the clip is
   looked for in the account's asset list (``timeout.video_result_*``).
   A 720p clip rendered by a basic account is upscaled.
5. The clip and its poster are downloaded into the media cache with the
   owning account's cookie and answered as a link (``app.video_format``).

Failures are never swallowed: moderation is a 400
``content_policy_violation``, a stall or a missing result a clear upstream
error, as one error event when the stream had already begun.

Each video holds one of the worker's ``performance.media_max_concurrent``
generation slots while it renders. Known gap: the whole stream stays under
``timeout.stream_total_timeout``, as there is no separate total for videos.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from grok2api.api.chat_request import ChatMessage, ChatRequest, MediaPart
from grok2api.api.completion import Outcome, Sink
from grok2api.api.failover import AttemptProgress, with_failover
from grok2api.api.image_edits_request import sniff_image_type
from grok2api.api.media_input import LoadedMedia, load_media
from grok2api.api.shaping import Delta, estimate_tokens
from grok2api.errors import ApiError, UpstreamError, UpstreamTimeout
from grok2api.gateway import Gateway
from grok2api.media import MediaKind
from grok2api.models import BASIC, SUPER, ModelSpec
from grok2api.storage import Lease
from grok2api.upstream import (
    AnswerDelta,
    ConversationRequest,
    ConversationStarted,
    ModelResponse,
    VideoProgress,
)

__all__ = [
    "VideoConfig",
    "VideoRunner",
    "parse_video_config",
    "plan_video",
    "render_video",
]

log = logging.getLogger(__name__)

#: What the chat route awaits with its sink: the whole video completion.
VideoRunner = Callable[[Sink], Awaitable[Outcome]]

ASPECT_RATIOS = ("2:3", "3:2", "1:1", "16:9", "9:16")
VIDEO_LENGTHS = (6, 10, 15)
RESOLUTIONS = ("480p", "720p")
#: Public preset -> the ``--mode=`` flag the upstream reads from the message.
PRESET_FLAGS = {
    "fun": "extremely-crazy",
    "normal": "normal",
    "spicy": "extremely-spicy-or-crazy",
    "custom": "custom",
}
#: Video turns run under this chat model with the video tool forced on.
_UPSTREAM_NAME = "grok-3"


@attrs.frozen
class VideoConfig:
    """The ``video_config`` of a request, validated; defaults as the reference."""

    aspect_ratio: str = "3:2"
    video_length: int = 6
    resolution_name: str = "480p"
    preset: str = "normal"

    @property
    def prefers_super(self) -> bool:
        """Whether the super pool should render it (HD or a long clip)."""
        return self.resolution_name == "720p" or self.video_length > 6


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, code="invalid_value", param=param)


def parse_video_config(raw: Any) -> VideoConfig:
    """Validate the request's ``video_config`` (absent means all defaults).

    Raises:
        ApiError: 400 naming the first bad field, e.g. ``video_config.preset``.
    """
    if raw is None:
        return VideoConfig()
    if not isinstance(raw, dict):
        raise _bad("'video_config' must be an object.", "video_config")
    defaults = VideoConfig()
    aspect = raw.get("aspect_ratio", defaults.aspect_ratio)
    if aspect not in ASPECT_RATIOS:
        raise _bad(
            f"'video_config.aspect_ratio' must be one of {', '.join(ASPECT_RATIOS)}.",
            "video_config.aspect_ratio",
        )
    length = raw.get("video_length", defaults.video_length)
    if isinstance(length, float) and length.is_integer():
        length = int(length)  # JSON does not tell 6.0 from 6
    if type(length) is not int or length not in VIDEO_LENGTHS:
        raise _bad(
            "'video_config.video_length' must be 6, 10 or 15 (seconds).",
            "video_config.video_length",
        )
    resolution = raw.get("resolution_name", defaults.resolution_name)
    if resolution not in RESOLUTIONS:
        raise _bad(
            "'video_config.resolution_name' must be 480p or 720p.",
            "video_config.resolution_name",
        )
    preset = raw.get("preset", defaults.preset)
    if not isinstance(preset, str) or preset not in PRESET_FLAGS:
        raise _bad(
            f"'video_config.preset' must be one of {', '.join(PRESET_FLAGS)}.",
            "video_config.preset",
        )
    return VideoConfig(aspect, length, resolution, preset)


@attrs.frozen
class _VideoPlan:
    """Everything about a video request that does not depend on the token."""

    model: ModelSpec
    prompt: str
    image: LoadedMedia | None
    config: VideoConfig
    show_progress: bool
    #: Scheme and host of the links, taken while the request is at hand.
    base_url: str


async def plan_video(
    gateway: Gateway,
    chat: ChatRequest,
    config: VideoConfig,
    model: ModelSpec,
    base_url: str,
) -> VideoRunner:
    """Validate a video request and load its image; nothing touches a token.

    Args:
        config: the request's ``video_config``, from :func:`parse_video_config`.
        base_url: the scheme and host of the links handed out.

    Raises:
        ApiError: 400 for no prompt, or input that is not one image.
        MediaFetchError: the image could not be loaded.
    """
    settings = gateway.settings
    index, message = _last_user_message(chat)
    prompt = message.text.strip()
    image_part = _image_part(message.media, index)
    image = None
    if image_part is not None:
        (image,) = await load_media(
            [image_part],
            max_bytes=settings.security.max_body_size_mb * 1024 * 1024,
            timeout=settings.network.timeout,
            allow_hosts=settings.security.media_fetch_allow_hosts,
            proxy=settings.network.base_proxy_url or None,
        )
        # The declared type is the client's word; the bytes decide, so a
        # file that is no image never reaches the upstream or spends quota.
        mime = sniff_image_type(image.content)
        if mime is None:
            raise _bad(
                f"The part at {image_part.param} is not a PNG, JPEG, WebP or GIF "
                "image.",
                image_part.param,
            )
        image = attrs.evolve(image, mime_type=mime)
    if not prompt and image is None:
        raise _bad(
            "A video needs a prompt or an image in the last user message.",
            f"messages[{index}].content",
        )
    show = (
        chat.show_thinking if chat.show_thinking is not None else settings.chat.thinking
    )
    plan = _VideoPlan(
        model=attrs.evolve(model, pools=_routed_pools(model.pools, config)),
        prompt=prompt,
        image=image,
        config=config,
        show_progress=show,
        base_url=base_url,
    )
    return functools.partial(_run_video, gateway, plan)


def _last_user_message(chat: ChatRequest) -> tuple[int, ChatMessage]:
    for index in range(len(chat.messages) - 1, -1, -1):
        if chat.messages[index].role == "user":
            return index, chat.messages[index]
    raise _bad("A video request needs a user message with the prompt.", "messages")


def _image_part(parts: tuple[MediaPart, ...], index: int) -> MediaPart | None:
    for part in parts:
        if part.kind != "image":
            raise _bad("Video generation takes images only, no files.", part.param)
    if len(parts) > 1:
        raise _bad(
            "Video generation takes at most one image.", f"messages[{index}].content"
        )
    return parts[0] if parts else None


def _routed_pools(pools: tuple[str, ...], config: VideoConfig) -> tuple[str, ...]:
    """The model's pools in the order this video should try them."""
    preferred = (SUPER, BASIC) if config.prefers_super else (BASIC, SUPER)
    first = [pool for pool in preferred if pool in pools]
    return (*first, *(pool for pool in pools if pool not in first))


# -- the job ------------------------------------------------------------------


@attrs.frozen
class _Rendered:
    """What the upstream job left: the clip's asset URLs and their owner."""

    video_id: str
    video_url: str | None
    poster_url: str | None
    resolution_name: str | None
    token_id: str
    pool: str
    secret: str = attrs.field(repr=False)


async def _run_video(gateway: Gateway, plan: _VideoPlan, sink: Sink) -> Outcome:
    attempt = functools.partial(_render, gateway, plan, sink)
    async with gateway.media_generation():
        rendered = await with_failover(
            gateway,
            plan.model,
            attempt,
            output_started=lambda: sink.committed,
            before_retry=sink.reset,
        )
    video_link, poster_link = await _deliver(gateway, plan, rendered, sink)
    content = render_video(gateway.settings.app.video_format, video_link, poster_link)
    await sink.delta(Delta(content=content))
    prompt_tokens = estimate_tokens(plan.prompt)
    completion_tokens = estimate_tokens(content)
    return Outcome(
        "stop",
        {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        rendered.token_id,
    )


async def _note(plan: _VideoPlan, sink: Sink, text: str) -> None:
    if plan.show_progress:
        await sink.delta(Delta(reasoning=text))


async def _parent_post(gateway: Gateway, plan: _VideoPlan, secret: str) -> str:
    upstream = gateway.upstream
    if plan.image is None:
        return await upstream.create_media_post(
            secret, "MEDIA_POST_TYPE_VIDEO", prompt=plan.prompt
        )
    uploaded = await upstream.upload_file(
        secret, plan.image.filename, plan.image.mime_type, plan.image.content
    )
    return await upstream.create_media_post(
        secret, "MEDIA_POST_TYPE_IMAGE", media_url=uploaded.asset_url
    )


async def _render(
    gateway: Gateway,
    plan: _VideoPlan,
    sink: Sink,
    lease: Lease,
    progress: AttemptProgress,
) -> _Rendered:
    """One attempt: the media post and the app-chat turn, read to progress 100."""
    sink.serving(lease.token_id)
    settings = gateway.settings
    config = plan.config
    post_id = await _parent_post(gateway, plan, lease.secret)
    request = ConversationRequest(
        message=f"{plan.prompt} --mode={PRESET_FLAGS[config.preset]}".lstrip(),
        model_name=_UPSTREAM_NAME,
        model_mode=None,
        tool_overrides={"videoGen": True},
        video_gen_config={
            "aspectRatio": config.aspect_ratio,
            "parentPostId": post_id,
            "resolutionName": config.resolution_name,
            "videoLength": config.video_length,
        },
        temporary=settings.chat.temporary,
        disable_memory=settings.chat.disable_memory,
    )
    idle = settings.timeout.video_idle_timeout
    last: VideoProgress | None = None
    last_at = trio.current_time()
    said: list[str] = []
    async with gateway.upstream.open_conversation(
        lease.secret, request, idle_timeout=idle
    ) as stream:
        progress.upstream_accepted = True
        try:
            async for event in stream:
                if isinstance(event, ConversationStarted):
                    continue
                await sink.started()
                if isinstance(event, AnswerDelta):
                    said.append(event.text)
                elif isinstance(event, ModelResponse) and not said:
                    said.append(event.message)
                if not isinstance(event, VideoProgress):
                    continue
                last_at = trio.current_time()
                if event.moderated:
                    raise _moderated()
                if last is None or event.progress > last.progress:
                    shown = f"Generating the video: {event.progress}%\n"
                    await _note(plan, sink, shown)
                last = event
                if event.progress >= 100 and event.url is not None:
                    break
        except UpstreamTimeout as exc:
            if last is None or trio.current_time() - last_at < idle:
                raise
            raise UpstreamTimeout(
                f"The video stalled at {last.progress}%: Grok sent no progress "
                f"for {idle:g}s (timeout.video_idle_timeout).",
                status=200,
                charged=True,
            ) from exc
    if last is None:
        answer = " ".join("".join(said).split())[:300]
        raise UpstreamError(
            "Grok answered without making a video" + (f": {answer}" if answer else "."),
            status=200,
            charged=True,
        )
    if last.progress < 100:
        raise UpstreamError(
            f"Grok's video stream ended at {last.progress}% without a result.",
            status=200,
            charged=True,
        )
    return _Rendered(
        last.video_id,
        last.url,
        last.thumbnail_url,
        last.resolution_name,
        lease.token_id,
        lease.pool,
        lease.secret,
    )


def _moderated() -> ApiError:
    return ApiError(
        400,
        "Grok's moderation blocked this video; change the prompt or the image "
        "and try again.",
        code="content_policy_violation",
        param="messages",
    )


# -- after the job: finding, upscaling and caching the clip -------------------


async def _deliver(
    gateway: Gateway, plan: _VideoPlan, rendered: _Rendered, sink: Sink
) -> tuple[str, str | None]:
    """The served links of the clip and its poster (``None`` when it has none)."""
    media = gateway.media
    video_url, poster_url = rendered.video_url, rendered.poster_url
    video_link: str | None = None
    if video_url is None:
        await _note(plan, sink, "Looking for the finished video in the account…\n")
        video_link, found_poster = await _find_in_assets(gateway, plan, rendered)
        poster_url = poster_url or found_poster
    if _needs_upscale(plan.config, rendered):
        await _note(plan, sink, "Upscaling the video to 720p…\n")
        try:
            video_url = await gateway.upstream.upscale_video(
                rendered.secret, rendered.video_id
            )
        except UpstreamError as exc:
            raise UpstreamError(
                f"Grok made the video but did not upscale it to 720p: {exc}",
                status=exc.status,
            ) from exc
        video_link = None
    if video_link is None:
        assert video_url is not None
        video_link = await media.fetch(
            video_url, rendered.secret, MediaKind.VIDEO, base_url=plan.base_url
        )
    poster_link = None
    if poster_url is not None:
        try:
            poster_link = await media.fetch(
                poster_url, rendered.secret, MediaKind.IMAGE, base_url=plan.base_url
            )
        except UpstreamError as exc:
            # The clip is what was asked for; it is answered without a poster.
            log.warning(
                "video poster unavailable token=%s error=%s", rendered.token_id, exc
            )
    return video_link, poster_link


def _needs_upscale(config: VideoConfig, rendered: _Rendered) -> bool:
    if config.resolution_name != "720p":
        return False
    if rendered.resolution_name is not None:
        return rendered.resolution_name != "720p"
    return rendered.pool != SUPER


async def _find_in_assets(
    gateway: Gateway, plan: _VideoPlan, rendered: _Rendered
) -> tuple[str, str | None]:
    """Poll the account's asset list for the clip the stream did not link.

    Candidates are video assets whose key names the clip's id; each is tried
    (downloaded into the cache) once, at most ``video_result_candidate_attempts``
    of them, until ``video_result_wait_timeout`` runs out.

    Returns:
        the served link of the clip and the poster's asset key, if listed.
    """
    timeouts = gateway.settings.timeout
    deadline = trio.current_time() + timeouts.video_result_wait_timeout
    tried: set[str] = set()
    last_error: UpstreamError | None = None
    while True:
        videos, poster = await _scan_assets(gateway, rendered)
        for key in videos:
            if key in tried:
                continue
            if len(tried) >= timeouts.video_result_candidate_attempts:
                raise _not_found(rendered, len(tried), last_error)
            tried.add(key)
            try:
                link = await gateway.media.fetch(
                    key, rendered.secret, MediaKind.VIDEO, base_url=plan.base_url
                )
            except UpstreamError as exc:
                last_error = exc
                continue
            return link, poster
        pause = timeouts.video_result_poll_interval
        if trio.current_time() + pause > deadline:
            raise _not_found(rendered, len(tried), last_error)
        await trio.sleep(pause)


async def _scan_assets(
    gateway: Gateway, rendered: _Rendered
) -> tuple[list[str], str | None]:
    """Video keys naming the clip, newest first, and its poster's key."""
    timeouts = gateway.settings.timeout
    marker = f"/{rendered.video_id}/"
    videos: list[str] = []
    poster: str | None = None
    seen = 0
    page_token: str | None = None
    for _page in range(timeouts.video_result_scan_pages):
        size = min(50, timeouts.video_result_scan_assets - seen)
        page = await gateway.upstream.list_assets(
            rendered.secret, page_token=page_token, page_size=size
        )
        for asset in page.assets[:size]:
            key = str(asset.details.get("key") or "")
            mime = str(asset.details.get("mimeType") or "")
            if marker not in "/" + key:
                continue
            if mime.startswith("video/") or key.endswith(".mp4"):
                videos.append(key)
            elif mime.startswith("image/") and poster is None:
                poster = key
        seen += min(len(page.assets), size)
        if (
            not page.next_page_token
            or page.next_page_token == page_token
            or seen >= timeouts.video_result_scan_assets
        ):
            break
        page_token = page.next_page_token
    return videos, poster


def _not_found(
    rendered: _Rendered, tried: int, last_error: UpstreamError | None
) -> UpstreamError:
    reason = f"; the last candidate failed: {last_error}" if last_error else ""
    return UpstreamError(
        f"Grok finished video {rendered.video_id} without a link, and it did not "
        f"appear in the account's assets within timeout.video_result_wait_timeout "
        f"({tried} candidate(s) tried){reason}.",
        status=200,
        charged=True,
    )


def render_video(video_format: str, video_url: str, poster_url: str | None) -> str:
    """The answer text for a finished clip in ``app.video_format``."""
    if video_format == "url":
        return video_url
    if video_format == "markdown":
        if poster_url is None:
            return f"[video]({video_url})"
        return f"[![video]({poster_url})]({video_url})"
    poster = f' poster="{html.escape(poster_url)}"' if poster_url else ""
    return (
        f'<video controls preload="metadata" src="{html.escape(video_url)}"'
        f"{poster}></video>"
    )
