"""Image edits: the chat answer to an ``imagine-image-edit`` request.

The web app edits images in a new conversation whose ``modelName`` is
``imagine-image-edit``, with the image tool forced on and
``responseMetadata.modelConfigOverride.modelMap`` holding
``imageEditModel: "imagine"`` and ``imageEditModelConfig`` with the input
images (``imageReferences``, absolute asset URLs) and the media post the edit
hangs off (``parentPostId``). The emulator refuses, before any charge, a
request whose references are not files of the asking account on this
origin (its uploads, or images it generated) or whose parent post the
account did not create.

An edit makes :data:`EDITS_PER_ANSWER` images whatever the request asks
(fewer with ``image_yield``), each a small distinct PNG stored as the
account's asset. The answer comes in the reference's shape
(``streamingImageGenerationResponse`` progress frames, then a
``modelResponse`` listing ``generatedImageUrls``) or, with ``cards``, in the
later one: ``render_edited_image`` card attachments with ``image_chunk``
progress (a ``-part-0`` preview, then the final URL), a render tag in the
answer text, and a ``modelResponse`` that lists the cards instead of URLs.
``moderate_images`` marks every image moderated, with no URL.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

from .assets import AssetStore
from .images import ImageAnswer, png_image
from .media_rest import MediaPosts
from .script import build_script
from .state import Upload

__all__ = [
    "EDIT_MODEL_NAME",
    "EDITS_PER_ANSWER",
    "build_edit_answer",
    "edit_request_problem",
    "wants_edit",
]

EDIT_MODEL_NAME = "imagine-image-edit"
EDITS_PER_ANSWER = 2


def wants_edit(body: Mapping[str, Any]) -> bool:
    """Whether a chat body asks for an image edit."""
    return body.get("modelName") == EDIT_MODEL_NAME


def _edit_config(body: Mapping[str, Any]) -> Any:
    metadata = body.get("responseMetadata")
    override = (
        metadata.get("modelConfigOverride") if isinstance(metadata, dict) else None
    )
    model_map = override.get("modelMap") if isinstance(override, dict) else None
    if not isinstance(model_map, dict) or model_map.get("imageEditModel") != "imagine":
        return None
    return model_map.get("imageEditModelConfig")


def reference_path(url: Any, host_url: str) -> str | None:
    """The asset path of ``url`` when it points at this origin, else ``None``."""
    if not isinstance(url, str):
        return None
    where, home = urllib.parse.urlsplit(url), urllib.parse.urlsplit(host_url)
    if (where.scheme, where.netloc) != (home.scheme, home.netloc):
        return None
    return where.path.lstrip("/") or None


def edit_request_problem(
    body: Mapping[str, Any],
    token_id: str,
    *,
    host_url: str,
    uploads: Mapping[str, Upload],
    assets: AssetStore,
    posts: MediaPosts,
) -> str | None:
    """What an edit request of the account ``token_id`` lacks, as the
    "expected ..." of a 400, or ``None``.

    Args:
        host_url: this origin; references elsewhere are refused.
        uploads: every upload, by file id.
        assets: the assets host's files (generated images among them).
        posts: the media posts.
    """
    overrides = body.get("toolOverrides")
    if not isinstance(overrides, dict) or overrides.get("imageGen") is not True:
        return "toolOverrides.imageGen true for an image edit"
    config = _edit_config(body)
    if not isinstance(config, dict):
        return "modelConfigOverride.modelMap with imageEditModel 'imagine'"
    references = config.get("imageReferences")
    if not isinstance(references, list) or not references:
        return "imageEditModelConfig.imageReferences with at least one URL"
    uploaded = {u.file_uri for u in uploads.values() if u.token_id == token_id}
    for url in references:
        path = reference_path(url, host_url)
        asset = assets.assets.get(path or "")
        owned = asset is not None and asset.token_id == token_id
        if path is None or not (path in uploaded or owned):
            return "imageReferences to this account's own assets"
    post_id = config.get("parentPostId")
    if not isinstance(post_id, str) or not (
        posts.owned(post_id, token_id) is not None
        or _is_own_asset_id(post_id, token_id, uploads, assets)
    ):
        return "a parentPostId of a media post this account created"
    return None


def _is_own_asset_id(
    asset_id: str, token_id: str, uploads: Mapping[str, Upload], assets: AssetStore
) -> bool:
    """Whether ``asset_id`` names an upload or generated image of the account.

    Assumed, after the reference client, which uses such an id as the parent
    when creating the media post fails; whether Grok accepts it is unverified.
    """
    upload = uploads.get(asset_id)
    if upload is not None:
        return upload.token_id == token_id
    return any(
        f"/generated/{asset_id}/" in "/" + asset.path and asset.token_id == token_id
        for asset in assets.assets.values()
    )


def _line(response: dict[str, Any]) -> bytes:
    text = json.dumps({"result": {"response": response}}, separators=(",", ":"))
    return text.encode() + b"\n"


def build_edit_answer(
    body: Mapping[str, Any],
    *,
    user_id: str,
    model_hash: str,
    image_yield: int,
    moderated: bool,
    cards: bool = False,
) -> ImageAnswer:
    """Build the answer to a valid edit ``body`` for the account ``user_id``."""
    count = min(EDITS_PER_ANSWER, image_yield) if image_yield else EDITS_PER_ANSWER
    text = "I can't edit that image." if moderated else "Here is the edited image."
    script = build_script(
        str(body.get("message") or ""),
        thinking=0,
        answer=1,
        model_hash=model_hash,
        scripted_answer=[text],
    )
    rid = script.response_id
    images = [str(uuid.uuid4()) for _ in range(count)]
    paths = [f"users/{user_id}/generated/{image}/image.png" for image in images]
    previews = [
        f"users/{user_id}/generated/{image}-part-0/image.png" for image in images
    ]
    final: dict[str, Any] = {
        "responseId": rid,
        "message": text,
        "sender": "assistant",
        "parentResponseId": script.user_response_id,
        "generatedImageUrls": [] if moderated or cards else paths,
        "cardAttachmentsJson": [],
        "metadata": {"llm_info": {"modelHash": model_hash}},
    }
    if cards:
        tags = []
        for index, image in enumerate(images):
            card_id = f"edit-{index}-{image[:8]}"
            for progress, url in ((50, previews[index]), (100, paths[index])):
                card = _card(card_id, image, url, progress, moderated)
                script.preamble.append(
                    _line({"cardAttachment": {"jsonData": card}, "messageTag": "final"})
                )
            tags.append(
                f'<grok:render card_id="{card_id}" card_type="generated_image_card" '
                'type="render_edited_image"></grok:render>'
            )
            final["cardAttachmentsJson"].append(card)
        script.tokens.insert(
            0,
            _line(
                {
                    "token": "".join(tags),
                    "isThinking": False,
                    "messageTag": "final",
                    "responseId": rid,
                }
            ),
        )
        final["message"] = "".join(tags) + text
    else:
        for index in range(count):
            for progress in (50, 100):
                frame: dict[str, Any] = {"imageIndex": index, "progress": progress}
                if moderated and progress == 100:
                    frame["moderated"] = True
                progress_line = {"streamingImageGenerationResponse": frame}
                script.preamble.append(_line({**progress_line, "responseId": rid}))
    script.closing[0] = _line({"modelResponse": final, "responseId": rid})
    if moderated:
        return ImageAnswer(script, ())
    files = [(path, png_image("edit:" + path)) for path in paths]
    if cards:
        files += [(path, png_image("preview:" + path)) for path in previews]
    return ImageAnswer(script, tuple(files))


def _card(card_id: str, image: str, url: str, progress: int, moderated: bool) -> str:
    chunk = {
        "imageUuid": image,
        "imageUrl": url,
        "progress": progress,
        "moderated": moderated and progress == 100,
    }
    card = {
        "id": card_id,
        "type": "render_edited_image",
        "cardType": "generated_image_card",
        "image_chunk": chunk,
    }
    return json.dumps(card, separators=(",", ":"))
