"""Video generation in a chat answer: progress frames, the finished clip, faults.

A chat request with ``toolOverrides.videoGen`` on asks for one video, set up
by ``responseMetadata.modelConfigOverride.modelMap.videoGenModelConfig``
(``aspectRatio``, ``videoLength``, ``resolutionName`` and ``parentPostId``, a
media post of the same account) and a message ending in ``--mode=<flag>``.
The answer streams ``streamingVideoGenerationResponse`` frames with growing
``progress`` (one line each, so the ``stall`` and ``cut`` faults can stop it
mid-way through ``after_tokens``), then the frame at 100 that carries the
relative ``videoUrl`` and ``thumbnailImageUrl``. The clip (bytes that start
like an MP4) and its poster (a PNG under the upstream's ``.jpg`` name) are
put on the assets host for the account, so they also appear in its asset
list. A basic account asked for 720p renders 480p, as the free tier does;
the gateway is expected to upscale.

Faults of their own (:data:`VIDEO_FAULT_KINDS`) change only the last frame:
``video_moderated`` ends in a moderated frame without URLs, ``video_no_url``
ends at 100 without ``videoUrl``, so the finished clip can only be found
through the account's asset list.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from .images import png_image
from .script import ChatScript, build_script

__all__ = [
    "VIDEO_FAULT_KINDS",
    "VideoAnswer",
    "VideoScript",
    "build_video_answer",
    "mp4_bytes",
    "video_fault_lines",
    "video_request_problem",
    "wants_video",
]

VIDEO_FAULT_KINDS = frozenset({"video_moderated", "video_no_url"})

ASPECT_RATIOS = frozenset({"2:3", "3:2", "1:1", "16:9", "9:16"})
VIDEO_LENGTHS = frozenset({6, 10, 15})
RESOLUTIONS = frozenset({"480p", "720p"})
MODE_FLAGS = frozenset(
    {"extremely-crazy", "normal", "extremely-spicy-or-crazy", "custom"}
)
#: Model names video turns come under: the reference era's and the later one.
VIDEO_MODEL_NAMES = frozenset({"grok-3", "imagine-video-gen"})
#: Progress frames before the final one.
PROGRESS_FRAMES = 8
_MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def wants_video(body: dict[str, Any]) -> bool:
    """Whether a chat body forces the video generation tool."""
    overrides = body.get("toolOverrides")
    return isinstance(overrides, dict) and overrides.get("videoGen") is True


def _video_config(body: dict[str, Any]) -> dict[str, Any] | None:
    metadata = body.get("responseMetadata")
    override = (
        metadata.get("modelConfigOverride") if isinstance(metadata, dict) else None
    )
    model_map = override.get("modelMap") if isinstance(override, dict) else None
    config = (
        model_map.get("videoGenModelConfig") if isinstance(model_map, dict) else None
    )
    return config if isinstance(config, dict) else None


def video_request_problem(
    body: dict[str, Any], owns_post: Callable[[str], bool]
) -> str | None:
    """What is wrong with a video request, worded as "expected ...", or None."""
    if body.get("modelName") not in VIDEO_MODEL_NAMES:
        return "modelName grok-3 or imagine-video-gen for a video"
    config = _video_config(body)
    if config is None:
        return "modelConfigOverride.modelMap.videoGenModelConfig"
    if config.get("aspectRatio") not in ASPECT_RATIOS:
        return "aspectRatio one of " + ", ".join(sorted(ASPECT_RATIOS))
    length = config.get("videoLength")
    if isinstance(length, bool) or length not in VIDEO_LENGTHS:
        return "videoLength 6, 10 or 15"
    if config.get("resolutionName") not in RESOLUTIONS:
        return "resolutionName 480p or 720p"
    post = config.get("parentPostId")
    if not isinstance(post, str) or not owns_post(post):
        return "parentPostId naming a media post of this account"
    # An image-only video has no prompt: the message is the flag alone.
    message = " " + str(body.get("message") or "")
    _prompt, sep, flag = message.rpartition(" --mode=")
    if not sep or flag not in MODE_FLAGS:
        return "a message ending in --mode=<" + "|".join(sorted(MODE_FLAGS)) + ">"
    return None


def mp4_bytes(label: str, size: int = 48 * 1024) -> bytes:
    """``size`` bytes that open like an MP4 file, different for each label."""
    seed = hashlib.sha256(label.encode()).digest()
    body = (seed * (size // len(seed) + 1))[: size - len(_MP4_HEAD)]
    return _MP4_HEAD + body


@attrs.define
class VideoScript(ChatScript):
    """A video answer's lines: ``tokens`` are the progress frames; the
    alternative closings replace ``closing`` under a video fault."""

    moderated_closing: list[bytes] = attrs.Factory(list)
    unlisted_closing: list[bytes] = attrs.Factory(list)


@attrs.frozen
class VideoAnswer:
    """The lines of a video answer and the files (path, bytes, type) it made."""

    script: VideoScript
    files: tuple[tuple[str, bytes, str], ...]


def _line(response: dict[str, Any]) -> bytes:
    text = json.dumps({"result": {"response": response}}, separators=(",", ":"))
    return text.encode() + b"\n"


def build_video_answer(
    body: dict[str, Any], *, user_id: str, pool: str, model_hash: str
) -> VideoAnswer:
    """Build the answer to a valid video ``body`` for account ``user_id``."""
    config = _video_config(body) or {}
    asked = str(config.get("resolutionName"))
    rendered = "480p" if pool == "basic" else asked
    text = "Your video is ready."
    base = build_script(
        str(body.get("message") or ""),
        thinking=0,
        answer=1,
        model_hash=model_hash,
        scripted_answer=[text],
    )
    rid = base.response_id
    video_id = str(uuid.uuid4())
    folder = f"users/{user_id}/generated/{video_id}"
    video_path = f"{folder}/generated_video.mp4"
    poster_path = f"{folder}/preview_image.jpg"
    frame = {
        "videoId": video_id,
        "videoPostId": str(uuid.uuid4()),
        "resolutionName": rendered,
    }

    def progress_line(progress: int, **extra: Any) -> bytes:
        payload = {**frame, "progress": progress, **extra}
        return _line({"streamingVideoGenerationResponse": payload, "responseId": rid})

    steps = [100 * (i + 1) // (PROGRESS_FRAMES + 1) for i in range(PROGRESS_FRAMES)]
    final = progress_line(
        100, videoUrl=video_path, thumbnailImageUrl=poster_path, moderated=False
    )
    answer_line, *rest = [*base.tokens, *base.closing]
    script = VideoScript(
        base.conversation_id,
        base.response_id,
        base.user_response_id,
        base.preamble,
        [progress_line(step) for step in steps],
        [final, answer_line, *rest],
        moderated_closing=[progress_line(100, moderated=True), *rest],
        unlisted_closing=[progress_line(100, moderated=False), answer_line, *rest],
    )
    files = (
        (video_path, mp4_bytes(video_id), "video/mp4"),
        (poster_path, png_image(video_id), "image/png"),
    )
    return VideoAnswer(script, files)


def video_fault_lines(script: ChatScript, kind: str) -> list[bytes]:
    """The lines a video fault sends; other answers are left whole."""
    if not isinstance(script, VideoScript):
        return script.full()
    closing = (
        script.moderated_closing
        if kind == "video_moderated"
        else script.unlisted_closing
    )
    return [*script.preamble, *script.tokens, *closing]
