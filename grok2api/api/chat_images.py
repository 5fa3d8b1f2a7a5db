"""Images a chat model generates, placed in the text of its answer.

A chat answer may call Grok's image tool. The upstream reports it in one of
two shapes: the reference's ``streamingImageGenerationResponse`` progress
frames with the finished images listed in ``modelResponse.generatedImageUrls``,
or the later ``image_chunk`` cards with a ``<grok:render
type="render_generated_image">`` tag in the answer text marking where each
image belongs. Either way the client gets each finished image as markdown
(``![image](<link>)``) in ``content``: a link on the gateway's media cache
(``app.image_format`` ``url`` or ``markdown``), or the same bytes as a
``data:`` URI (``base64`` or ``b64_json``). Upstream asset URLs never reach
the client; they open only with the account's cookie.

An image with a render tag takes the tag's place. The answer text after a
tag whose image is not finished yet waits for it, so streamed and collected
answers read the same. Images without a tag follow the text at the end.
Progress percentages go to the reasoning channel, which the shaper shows or
hides. A moderated image, a failed download or an image that never finished
becomes a one-line notice in ``content`` instead: the client always learns
that an image was meant to be there.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Awaitable, Callable

import attrs
import trio

from grok2api.api.shaping import AnswerShaper, Delta
from grok2api.errors import Grok2APIError
from grok2api.gateway import Gateway
from grok2api.media import MediaKind, content_type
from grok2api.upstream import ImageProgress, ModelResponse, asset_url

__all__ = ["IMAGE_RENDER_TYPES", "ChatImages", "ImageSlot", "RenderSplitter"]

log = logging.getLogger(__name__)

#: Render types whose card is an image the model made.
IMAGE_RENDER_TYPES = frozenset({"render_generated_image", "render_edited_image"})
#: ``app.image_format`` values that put the bytes into the answer itself.
INLINE_FORMATS = frozenset({"base64", "b64_json"})

_OPEN = "<grok:render"
_ELEMENT = re.compile(
    r"<grok:render(?=[\s/>])([^>]*?)(?:/>|>.*?</grok:render\s*>)", re.DOTALL
)
_ATTRIBUTE = re.compile(r'([\w:-]+)\s*=\s*"([^"]*)"')


@attrs.frozen
class ImageSlot:
    """Where the answer text placed the image of card ``card_id``."""

    card_id: str


class RenderSplitter:
    """Finds image render tags in answer text that arrives in pieces.

    Other render tags (citations, searched images) stay in the text for the
    response filters to handle. Text that may be the start of a tag is held
    back until the next piece tells.
    """

    def __init__(self) -> None:
        self._buffer = ""

    def split(self, text: str) -> list[str | ImageSlot]:
        if not self._buffer and "<" not in text:
            return [text] if text else []
        self._buffer += text
        pieces: list[str | ImageSlot] = []
        while True:
            start = self._buffer.find(_OPEN)
            if start == -1:
                cut = len(self._buffer) - _partial_open(self._buffer)
                pieces.append(self._buffer[:cut])
                self._buffer = self._buffer[cut:]
                break
            pieces.append(self._buffer[:start])
            self._buffer = self._buffer[start:]
            match = _ELEMENT.match(self._buffer)
            if match is None:
                after = self._buffer[len(_OPEN) : len(_OPEN) + 1]
                if after and not (after.isspace() or after in "/>"):
                    # Some other tag that merely starts alike.
                    pieces.append(_OPEN)
                    self._buffer = self._buffer[len(_OPEN) :]
                    continue
                break  # the element is not complete yet
            attributes = dict(_ATTRIBUTE.findall(match.group(1)))
            card_id = attributes.get("card_id")
            if attributes.get("type") in IMAGE_RENDER_TYPES and card_id:
                pieces.append(ImageSlot(card_id))
            else:
                pieces.append(match.group(0))
            self._buffer = self._buffer[match.end() :]
        return [piece for piece in pieces if piece != ""]

    def finish(self) -> str:
        """The answer ended: whatever is still held, as plain text."""
        rest, self._buffer = self._buffer, ""
        return rest


def _partial_open(text: str) -> int:
    for size in range(min(len(_OPEN) - 1, len(text)), 0, -1):
        if text.endswith(_OPEN[:size]):
            return size
    return 0


@attrs.define
class _Image:
    number: int
    percent: int = -1
    asset: str | None = None
    moderated: bool = False
    #: The markdown or notice the client gets, once known.
    text: str | None = None
    placed: bool = False


class ChatImages:
    """The generated images of one upstream answer and the text around them.

    All answer text of the attempt goes through :meth:`text`, so that an
    image lands where its render tag stood.

    Args:
        gateway: for the media cache and ``app.image_format``.
        secret: the token of the account that made the images.
        base_url: the scheme and host of served links; ``None`` when the
            request gave no usable address (only inline formats work then).
        shaper: the attempt's answer shaper.
        emit: sends a shaped delta to the client.
    """

    def __init__(
        self,
        gateway: Gateway,
        secret: str,
        base_url: str | None,
        shaper: AnswerShaper,
        emit: Callable[[Delta], Awaitable[None]],
    ) -> None:
        self._gateway = gateway
        self._secret = secret
        self._base_url = base_url
        self._shaper = shaper
        self._emit = emit
        self._splitter = RenderSplitter()
        self._images: dict[str, _Image] = {}
        self._held: list[str | ImageSlot] = []
        self._listed: list[str] = []
        self._media_sent = False

    async def text(self, text: str) -> None:
        """Answer text from the upstream, render tags included."""
        self._held.extend(self._splitter.split(text))
        await self._release()

    async def progress(self, event: ImageProgress) -> None:
        """A progress frame: a reasoning line, and the download once final."""
        image = self._image(event.card_id or f"#{event.index}")
        if image.text is not None:
            return
        if event.moderated:
            image.moderated = True
            image.text = _moderated(image.number)
            await self._release()
            return
        if event.progress > image.percent:
            image.percent = event.progress
            line = f"Generating image {image.number}: {event.progress}%\n"
            await self._emit(await self._shaper.reasoning(line))
        if event.final:
            # TODO: this download runs while the upstream stream waits; a
            # slow assets host delays the rest of the answer by as much.
            image.asset = event.url
            image.text = await self._render(image)
            await self._release()

    def listed(self, event: ModelResponse) -> None:
        """Note the images the final model turn lists; :meth:`finish` shows
        those no progress frame finished."""
        assets_url = self._gateway.upstream.options.assets_url
        for card in event.card_attachments:
            chunk = card.get("image_chunk")
            if not isinstance(chunk, dict) or card.get("id") is None:
                continue
            image = self._image(str(card["id"]))
            path = chunk.get("imageUrl")
            if image.text is not None:
                continue
            if chunk.get("moderated") is True:
                image.moderated = True
                image.text = _moderated(image.number)
            elif (
                isinstance(path, str)
                and path
                and "-part-" not in path
                and int(chunk.get("progress") or 0) >= 100
            ):
                image.asset = asset_url(path, assets_url)
        for url in event.generated_image_urls:
            if url not in self._listed:
                self._listed.append(url)

    async def finish(self) -> None:
        """The upstream answer ended: show every image not shown yet."""
        rest = self._splitter.finish()
        if rest:
            self._held.append(rest)
        if self._shaper.finish_reason:
            return  # a stop string or max_tokens ended the answer already
        known = {image.asset for image in self._images.values() if image.asset}
        extra = [url for url in self._listed if url not in known]
        # The reference's progress frames carry no URL: the listed images
        # are theirs, in order.
        for image in self._images.values():
            if image.text is None and image.asset is None and extra:
                image.asset = extra.pop(0)
        for url in extra:
            self._image("url:" + url).asset = url
        waiting = [
            image
            for image in self._images.values()
            if image.text is None and image.asset is not None
        ]
        if waiting:
            async with trio.open_nursery() as nursery:
                for image in waiting:
                    nursery.start_soon(self._render_into, image)
        for image in self._images.values():
            if image.text is None:
                image.text = _unfinished(image.number)
        await self._release(ending=True)
        for image in self._images.values():
            if not image.placed and image.text is not None:
                image.placed = True
                await self._send_media(image.text, paragraph=True)

    # -- internals -------------------------------------------------------

    def _image(self, key: str) -> _Image:
        image = self._images.get(key)
        if image is None:
            image = self._images[key] = _Image(len(self._images) + 1)
        return image

    async def _release(self, *, ending: bool = False) -> None:
        """Send held text up to the first slot whose image is not ready."""
        while self._held:
            head = self._held[0]
            if isinstance(head, ImageSlot):
                image = self._images.get(head.card_id)
                if image is None or image.text is None:
                    if not ending:
                        return
                    # A tag for a card that never came: nothing to show.
                    self._held.pop(0)
                    continue
                self._held.pop(0)
                if not image.placed:
                    image.placed = True
                    await self._send_media(image.text, paragraph=False)
            else:
                self._held.pop(0)
                await self._emit(await self._shaper.content(head))

    async def _send_media(self, text: str, *, paragraph: bool) -> None:
        if paragraph and (self._media_sent or self._shaper.content_chars):
            text = "\n\n" + text
        self._media_sent = True
        await self._emit(await self._shaper.media(text))

    async def _render_into(self, image: _Image) -> None:
        image.text = await self._render(image)

    async def _render(self, image: _Image) -> str:
        """The markdown for a finished image, or the notice why there is none."""
        assert image.asset is not None
        inline = self._gateway.settings.app.image_format in INLINE_FORMATS
        if not inline and self._base_url is None:
            return _no_address(image.number)
        try:
            url = await self._gateway.media.fetch(
                image.asset,
                self._secret,
                MediaKind.IMAGE,
                base_url="" if inline else self._base_url,
            )
            if not inline:
                return f"![image]({url})"
            name = url.rsplit("/", 1)[-1]
            data = await _cached_bytes(self._gateway, name)
        except Grok2APIError as exc:
            status = getattr(exc, "status", None)
            log.warning(
                "chat image not downloaded number=%d status=%s; the answer says so",
                image.number,
                status,
            )
            return _not_downloaded(image.number, status)
        except OSError:
            log.exception("reading a cached chat image failed; the answer says so")
            return _not_downloaded(image.number, None)
        if data is None:
            return _not_downloaded(image.number, None)
        encoded = base64.b64encode(data).decode("ascii")
        return f"![image](data:{content_type(MediaKind.IMAGE, name)};base64,{encoded})"


async def _cached_bytes(gateway: Gateway, name: str) -> bytes | None:
    opened = await gateway.media.open(MediaKind.IMAGE, name)
    if opened is None:
        return None  # only a cleaner racing the grace period removes it this soon
    try:
        return await trio.to_thread.run_sync(opened.read, 0, opened.size)
    finally:
        opened.close()


def _moderated(number: int) -> str:
    return f"(Image {number} was blocked by Grok's moderation.)"


def _not_downloaded(number: int, status: int | None) -> str:
    reason = f" (HTTP {status})" if status else ""
    return f"(Image {number} could not be downloaded from Grok{reason}.)"


def _no_address(number: int) -> str:
    return (
        f"(Image {number} cannot be linked: the gateway does not know its "
        "public address; set app.app_url.)"
    )


def _unfinished(number: int) -> str:
    return f"(Image {number} did not finish generating.)"
