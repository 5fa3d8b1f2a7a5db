"""Response filters: an ordered chain over the answer text as it streams.

Each chat answer gets a fresh instance of every filter (filters keep state
between chunks: a tag may arrive split over two upstream tokens). The core
feeds every answer delta through the chain in ascending ``order`` and calls
``finish`` once at the end so a filter can release text it held back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import attrs

__all__ = ["FilterChain", "ResponseFilter", "TagFilter", "TextFilter"]


class TextFilter(Protocol):
    """One filter's state for one answer."""

    async def feed(self, text: str) -> str:
        """Take the next piece of text; return what may be emitted now."""

    async def finish(self) -> str:
        """The answer ended; return whatever was held back and is safe to emit."""


@attrs.frozen
class ResponseFilter:
    """A registered filter: ``create(settings)`` makes one instance per answer,
    or returns ``None`` when the configuration turns the filter off."""

    name: str
    order: int
    create: Callable[[object], TextFilter | None]


class FilterChain:
    """The filters of one answer, applied in order."""

    def __init__(self, filters: Iterable[TextFilter]) -> None:
        self._filters = list(filters)

    async def feed(self, text: str) -> str:
        for text_filter in self._filters:
            if not text:
                break
            text = await text_filter.feed(text)
        return text

    async def finish(self) -> str:
        # A filter's held-back text still has to pass the filters after it.
        text = ""
        for text_filter in self._filters:
            if text:
                text = await text_filter.feed(text)
            text += await text_filter.finish()
        return text


class TagFilter:
    """Removes whole elements (``<tag ...>...</tag>`` or ``<tag .../>``) of the
    named tags, case-insensitively, across chunk boundaries.

    Text that might be the start of a filtered tag is held back until it is
    clear either way, so the client never sees half a tag. An element that
    never closes is dropped at the end of the answer, since it was filtered
    markup all along.
    """

    def __init__(self, tags: Sequence[str]) -> None:
        self._names = [tag.lower() for tag in tags if tag]
        names = "|".join(re.escape(name) for name in self._names)
        self._open = re.compile(rf"<({names})(?=[\s/>])", re.IGNORECASE)
        self._buffer = ""
        self._inside: str | None = None

    async def feed(self, text: str) -> str:
        if not self._names:
            return text
        self._buffer += text
        return self._drain(final=False)

    async def finish(self) -> str:
        if not self._names:
            return ""
        out = self._drain(final=True)
        self._buffer = ""
        self._inside = None
        return out

    def _drain(self, *, final: bool) -> str:
        out: list[str] = []
        while self._buffer:
            if self._inside is not None:
                if not self._skip_element():
                    break
                continue
            match = self._open.search(self._buffer)
            if match is None:
                safe = len(self._buffer) if final else self._safe_prefix_length()
                out.append(self._buffer[:safe])
                self._buffer = self._buffer[safe:]
                break
            out.append(self._buffer[: match.start()])
            self._buffer = self._buffer[match.start() :]
            self._inside = match.group(1).lower()
        if final and self._inside is not None:
            self._buffer = ""
        return "".join(out)

    def _skip_element(self) -> bool:
        """Drop the element at the head of the buffer; False when it is not
        complete yet."""
        name = self._inside
        assert name is not None
        open_end = self._buffer.find(">")
        if open_end == -1:
            return False
        if self._buffer[open_end - 1] == "/":
            self._buffer = self._buffer[open_end + 1 :]
            self._inside = None
            return True
        close = re.search(rf"</{re.escape(name)}\s*>", self._buffer, re.IGNORECASE)
        if close is None:
            return False
        self._buffer = self._buffer[close.end() :]
        self._inside = None
        return True

    def _safe_prefix_length(self) -> int:
        """How much of the buffer cannot be the beginning of a filtered tag."""
        start = self._buffer.rfind("<")
        if start == -1:
            return len(self._buffer)
        tail = self._buffer[start + 1 :].lower()
        if any(name.startswith(tail) for name in self._names):
            return start
        return len(self._buffer)
