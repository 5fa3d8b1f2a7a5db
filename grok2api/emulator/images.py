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

A plain chat makes images when its message holds a directive (and the body
does not turn ``enableImageGeneration`` off)::

    [emulator:images count=2 format=card moderated=2]

``count`` images (default 1), in the reference's ``format=legacy`` (progress
frames, then ``generatedImageUrls``; the default) or the later
``format=card`` (``image_chunk`` cards: a preview at 50, a
``<grok:render type="render_generated_image">`` tag in the answer text, the
final card at 100, the text " Enjoy!" after the last tag). ``moderated``
lists the 1-based images that come back moderated (``all`` for every one);
their files are never stored.
"""

from __future__ import annotations

import json
import re
import struct
import uuid
import zlib
from typing import Any

import attrs

from .script import ChatScript, build_script

__all__ = [
    "ChatImageRequest",
    "ImageAnswer",
    "build_chat_image_script",
    "build_image_script",
    "chat_image_request",
    "png_image",
    "wants_images",
]

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


# -- images inside a plain chat ----------------------------------------------

_DIRECTIVE = re.compile(r"\[emulator:images((?:\s+[a-z]+=[A-Za-z0-9,]+)*)\s*\]")
_FORMATS = ("legacy", "card")


@attrs.frozen
class ChatImageRequest:
    """What a chat message's ``[emulator:images ...]`` directive asks for."""

    count: int = 1
    card: bool = False
    #: 1-based numbers of the images that come back moderated.
    moderated: frozenset[int] = frozenset()


def chat_image_request(body: dict[str, Any]) -> ChatImageRequest | None:
    """The images a chat body asks for, or ``None`` for a plain answer.

    Raises:
        ValueError: the directive names an unknown option or value.
    """
    if body.get("enableImageGeneration") is False:
        return None
    match = _DIRECTIVE.search(str(body.get("message") or ""))
    if match is None:
        return None
    options = dict(part.split("=", 1) for part in match.group(1).split())
    unknown = sorted(set(options) - {"count", "format", "moderated"})
    if unknown:
        raise ValueError(f"unknown image directive option(s): {', '.join(unknown)}")
    count = int(options.get("count", "1"))
    if not 1 <= count <= MAX_IMAGES:
        raise ValueError(f"count must be 1 to {MAX_IMAGES}, got {count}")
    image_format = options.get("format", "legacy")
    if image_format not in _FORMATS:
        raise ValueError(f"format must be legacy or card, got {image_format!r}")
    flagged = options.get("moderated", "")
    if flagged == "all":
        moderated = frozenset(range(1, count + 1))
    else:
        moderated = frozenset(int(n) for n in flagged.split(",") if n)
    return ChatImageRequest(count, image_format == "card", moderated)


def _token_line(text: str, rid: str) -> bytes:
    return _line(
        {"token": text, "isThinking": False, "messageTag": "final", "responseId": rid}
    )


def _card(
    card_id: str, image_id: str, path: str, progress: int, moderated: bool
) -> str:
    chunk = {
        "imageUuid": image_id,
        "imageUrl": path,
        "progress": progress,
        "moderated": moderated,
    }
    card = {
        "id": card_id,
        "type": "render_generated_image",
        "cardType": "generated_image_card",
        "image_chunk": chunk,
    }
    return json.dumps(card, separators=(",", ":"))


def build_chat_image_script(
    body: dict[str, Any],
    asked: ChatImageRequest,
    *,
    user_id: str,
    model_hash: str,
    thinking: int,
    conversation_id: str | None = None,
) -> ImageAnswer:
    """Build a chat answer that makes the images ``asked`` for.

    Args:
        body: the chat request body.
        asked: what its directive asks for.
        user_id: the account's user id, the first segment of asset paths.
        model_hash: the value of ``llmInfo.modelHash``.
        thinking: reasoning tokens before the answer.
        conversation_id: the conversation a reply continues (no header line).
    """
    count = asked.count
    intro = f"Here {'is' if count == 1 else 'are'} {count} image(s)."
    script = build_script(
        str(body.get("message") or ""),
        thinking=thinking,
        answer=1,
        model_hash=model_hash,
        scripted_answer=[intro],
        conversation_id=conversation_id,
    )
    rid = script.response_id
    files: list[tuple[str, bytes]] = []
    frames: list[bytes] = []
    cards: list[str] = []
    text = [intro]
    for number in range(1, count + 1):
        moderated = number in asked.moderated
        image_id = str(uuid.uuid4())
        path = f"users/{user_id}/generated/{image_id}/image.png"
        if not moderated:
            files.append((path, png_image(image_id)))
        if not asked.card:
            for progress in (50, 100):
                frame: dict[str, Any] = {"imageIndex": number - 1, "progress": progress}
                if moderated and progress == 100:
                    frame["moderated"] = True
                frames.append(
                    _line(
                        {"streamingImageGenerationResponse": frame, "responseId": rid}
                    )
                )
            continue
        card_id = f"card-{image_id[:8]}"
        preview = f"users/{user_id}/generated/{image_id}-part-0/image.png"
        tag = (
            f'\n<grok:render card_id="{card_id}" card_type="generated_image_card" '
            'type="render_generated_image"></grok:render>'
        )
        final = _card(card_id, image_id, path, 100, moderated)
        cards.append(final)
        text.append(tag)
        script.tokens.extend(
            (
                _line(
                    {
                        "cardAttachment": {
                            "jsonData": _card(card_id, image_id, preview, 50, False)
                        },
                        "responseId": rid,
                    }
                ),
                _token_line(tag, rid),
                _line({"cardAttachment": {"jsonData": final}, "responseId": rid}),
            )
        )
    if asked.card:
        text.append(" Enjoy!")
        script.tokens.append(_token_line(" Enjoy!", rid))
    final_turn = {
        "responseId": rid,
        "message": "".join(text),
        "sender": "assistant",
        "parentResponseId": script.user_response_id,
        "generatedImageUrls": [path for path, _ in files],
        "cardAttachmentsJson": cards,
        "metadata": {"llm_info": {"modelHash": model_hash}},
    }
    script.closing[0:1] = [
        *frames,
        _line({"modelResponse": final_turn, "responseId": rid}),
    ]
    return ImageAnswer(script, tuple(files))
