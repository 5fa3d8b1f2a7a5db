"""Image generation in a chat answer: progress frames, final URLs, PNG bytes.

A chat request with ``toolOverrides.imageGen`` on asks for
``imageGenerationCount`` images. The answer streams
``streamingImageGenerationResponse`` progress frames per image, then a
``modelResponse`` whose ``generatedImageUrls`` hold relative asset paths. The
bytes behind those paths are small valid PNGs made in memory, each one
different, which the assets host serves to the account that asked.

Two knobs of :class:`~grok2api.emulator.state.EmulatorConfig` shape the
result: ``image_yield`` caps the images of one answer (0 means as many as
asked), and ``moderate_images`` flags every image as moderated, so the answer
carries no URLs at all.
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from typing import Any

import attrs

from .script import ChatScript, build_script

__all__ = ["ImageAnswer", "build_image_script", "png_image", "wants_images"]

#: The most images one answer makes, whatever the request asks.
MAX_IMAGES = 10


def wants_images(body: dict[str, Any]) -> bool:
    """Whether a chat body forces the image generation tool."""
    overrides = body.get("toolOverrides")
    return isinstance(overrides, dict) and overrides.get("imageGen") is True


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_image(label: str) -> bytes:
    """A valid 1x1 PNG whose colour and text chunk derive from ``label``."""
    digest = uuid.uuid5(uuid.NAMESPACE_URL, label).bytes
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + digest[:3])
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"tEXt", b"Comment\x00" + label.encode()),
            _chunk(b"IDAT", pixels),
            _chunk(b"IEND", b""),
        )
    )


@attrs.frozen
class ImageAnswer:
    """The lines of an image answer and the files its URLs point at."""

    script: ChatScript
    files: tuple[tuple[str, bytes], ...]


def _count(body: dict[str, Any], image_yield: int) -> int:
    asked = body.get("imageGenerationCount")
    count = asked if isinstance(asked, int) and not isinstance(asked, bool) else 2
    count = max(1, min(count, MAX_IMAGES))
    return min(count, image_yield) if image_yield > 0 else count


def _line(response: dict[str, Any]) -> bytes:
    text = json.dumps({"result": {"response": response}}, separators=(",", ":"))
    return text.encode() + b"\n"


def build_image_script(
    body: dict[str, Any],
    *,
    user_id: str,
    model_hash: str,
    image_yield: int,
    moderated: bool,
) -> ImageAnswer:
    """Build an image answer to the chat ``body`` for the account ``user_id``."""
    count = _count(body, image_yield)
    text = f"Here {'is' if count == 1 else 'are'} {count} image(s)."
    if moderated:
        text = "I can't generate that image."
    script = build_script(
        str(body.get("message") or ""),
        thinking=0,
        answer=1,
        model_hash=model_hash,
        scripted_answer=[text],
    )
    rid = script.response_id
    files = []
    for index in range(count):
        image_id = str(uuid.uuid4())
        path = f"users/{user_id}/generated/{image_id}/image.png"
        for progress in (50, 100):
            frame = {"imageIndex": index, "progress": progress}
            if moderated and progress == 100:
                frame["moderated"] = True
            script.preamble.append(
                _line({"streamingImageGenerationResponse": frame, "responseId": rid})
            )
        if not moderated:
            files.append((path, png_image(image_id)))
    final = {
        "responseId": rid,
        "message": text,
        "sender": "assistant",
        "parentResponseId": script.user_response_id,
        "generatedImageUrls": [path for path, _ in files],
        "cardAttachmentsJson": [],
        "metadata": {"llm_info": {"modelHash": model_hash}},
    }
    script.closing[0] = _line({"modelResponse": final, "responseId": rid})
    return ImageAnswer(script, tuple(files))
